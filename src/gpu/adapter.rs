//! Finding adapters: what `gpu-cnn adapters` lists, the best one or the one the user named (`--adapter`, `--backend`,
//! wgpu's `WGPU_*` environment variables), in a stable order.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

use super::error::GpuError;

/// What the user asked for with `--adapter` and `--backend`.
#[derive(Clone, Debug, Default)]
pub struct AdapterSelection {
    /// An index into `gpu-cnn adapters`, or a case-insensitive substring of the adapter name.
    pub adapter: Option<String>,
    /// Only adapters of these backends.
    pub backend: Option<wgpu::Backends>,
}

impl AdapterSelection {
    /// Fills what was not chosen from wgpu's usual environment variables: `WGPU_BACKEND` (a comma list of vulkan,
    /// metal, dx12, gl, as wgpu reads it) and `WGPU_ADAPTER_NAME` (a substring of the adapter's name). Command-line
    /// options take precedence.
    pub fn or_env(mut self) -> Result<AdapterSelection, GpuError> {
        if self.backend.is_none() {
            if let Ok(v) = std::env::var("WGPU_BACKEND") {
                if !v.is_empty() {
                    let b =
                        parse_backends(&v).map_err(|message| GpuError::Config { variable: "WGPU_BACKEND", message })?;
                    self.backend = Some(b);
                }
            }
        }
        if self.adapter.is_none() {
            self.adapter = std::env::var("WGPU_ADAPTER_NAME").ok().filter(|v| !v.is_empty());
        }
        Ok(self)
    }
}

/// An adapter as `gpu-cnn adapters` lists it and as every result records it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub vendor: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    /// Subgroup widths the adapter may use ("8", "32–64"), or "none" where it offers no subgroup operations.
    pub subgroups: String,
    /// The PCI device id (or the backend's equivalent; 0 where it gives none).
    #[serde(default)]
    pub device_id: String,
    /// The limits a compute engine meets first (`LIMITS`), as the adapter offers them.
    #[serde(default)]
    pub limits: BTreeMap<String, u64>,
    /// Every optional feature the adapter offers, by wgpu's name (`TIMESTAMP_QUERY`, `SUBGROUP`, `SHADER_F16`, …).
    #[serde(default)]
    pub features: Vec<String>,
}

/// The limits `AdapterSummary::limits` records, by wgpu's names.
pub const LIMITS: [&str; 10] = [
    "max_buffer_size",
    "max_storage_buffer_binding_size",
    "max_uniform_buffer_binding_size",
    "max_storage_buffers_per_shader_stage",
    "max_compute_workgroup_storage_size",
    "max_compute_invocations_per_workgroup",
    "max_compute_workgroup_size_x",
    "max_compute_workgroups_per_dimension",
    "min_uniform_buffer_offset_alignment",
    "max_bind_groups",
];

fn limit(l: &wgpu::Limits, name: &str) -> u64 {
    match name {
        "max_buffer_size" => l.max_buffer_size,
        "max_storage_buffer_binding_size" => l.max_storage_buffer_binding_size,
        "max_uniform_buffer_binding_size" => l.max_uniform_buffer_binding_size,
        "max_storage_buffers_per_shader_stage" => l.max_storage_buffers_per_shader_stage as u64,
        "max_compute_workgroup_storage_size" => l.max_compute_workgroup_storage_size as u64,
        "max_compute_invocations_per_workgroup" => l.max_compute_invocations_per_workgroup as u64,
        "max_compute_workgroup_size_x" => l.max_compute_workgroup_size_x as u64,
        "max_compute_workgroups_per_dimension" => l.max_compute_workgroups_per_dimension as u64,
        "min_uniform_buffer_offset_alignment" => l.min_uniform_buffer_offset_alignment as u64,
        "max_bind_groups" => l.max_bind_groups as u64,
        other => unreachable!("no limit {other} in LIMITS"),
    }
}

/// The adapter's name as the page read it from WebGPU's `GPUAdapterInfo` (vendor, architecture), where wgpu gives
/// none: wgpu 30 reads only its description, which browsers leave empty (gfx-rs/wgpu#8819).
static BROWSER_ADAPTER: Mutex<Option<String>> = Mutex::new(None);

/// Names the browser's adapter (see `BROWSER_ADAPTER`).
pub fn name_browser_adapter(name: &str) {
    if let Ok(mut n) = BROWSER_ADAPTER.lock() {
        *n = Some(name.to_string());
    }
}

impl AdapterSummary {
    fn new(index: usize, info: &wgpu::AdapterInfo, features: wgpu::Features, limits: &wgpu::Limits) -> Self {
        let subgroups = if !features.contains(wgpu::Features::SUBGROUP) {
            "none".to_string()
        } else if info.subgroup_min_size == info.subgroup_max_size {
            info.subgroup_min_size.to_string()
        } else {
            format!("{}–{}", info.subgroup_min_size, info.subgroup_max_size)
        };
        let name = match &info.name {
            n if n.is_empty() => BROWSER_ADAPTER.lock().ok().and_then(|n| n.clone()).unwrap_or_default(),
            n => n.clone(),
        };
        AdapterSummary {
            index,
            name,
            vendor: format!("{:#06x}", info.vendor),
            backend: backend_name(info.backend).to_string(),
            device_type: device_type_name(info.device_type).to_string(),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            subgroups,
            device_id: format!("{:#06x}", info.device),
            limits: LIMITS.iter().map(|n| (n.to_string(), limit(limits, n))).collect(),
            features: features.iter_names().map(|(n, _)| n.to_string()).collect(),
        }
    }

    pub fn is_software(&self) -> bool {
        self.device_type == "cpu"
    }

    /// One line: name, backend, type, driver, subgroup widths (and "software adapter" where it is one).
    pub fn line(&self) -> String {
        let soft = if self.is_software() { ", a software adapter (runs on the CPU)" } else { "" };
        format!(
            "{} ({}, {}, driver {} {}, subgroups {}){}",
            self.name, self.backend, self.device_type, self.driver, self.driver_info, self.subgroups, soft
        )
    }

    /// A second line for people comparing vendors: ids, the features the engine cares about and the limits that
    /// bound its kernels (`--json` lists every feature and all of `LIMITS`).
    pub fn details(&self) -> String {
        let has = |f: &str| self.features.iter().any(|n| n == f);
        let wanted = [("TIMESTAMP_QUERY", "timestamps"), ("SUBGROUP", "subgroups"), ("SHADER_F16", "f16")];
        let features: Vec<&str> = wanted.iter().filter(|(f, _)| has(f)).map(|(_, n)| *n).collect();
        let lim = |n: &str| self.limits.get(n).copied().unwrap_or(0);
        format!(
            "vendor {} device {}; features: {}; workgroup storage {} KiB, {} invocations, storage binding {} MiB",
            self.vendor,
            self.device_id,
            if features.is_empty() { "none of timestamps, subgroups, f16".to_string() } else { features.join(", ") },
            lim("max_compute_workgroup_storage_size") / 1024,
            lim("max_compute_invocations_per_workgroup"),
            lim("max_storage_buffer_binding_size") >> 20,
        )
    }
}

pub fn backend_name(b: wgpu::Backend) -> &'static str {
    match b {
        wgpu::Backend::Vulkan => "vulkan",
        wgpu::Backend::Metal => "metal",
        wgpu::Backend::Dx12 => "dx12",
        wgpu::Backend::Gl => "gl",
        wgpu::Backend::BrowserWebGpu => "webgpu",
        _ => "other",
    }
}

fn device_type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete-gpu",
        wgpu::DeviceType::IntegratedGpu => "integrated-gpu",
        wgpu::DeviceType::VirtualGpu => "virtual-gpu",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    }
}

/// Parses `--backend` and `WGPU_BACKEND`: one backend or a comma list (`vulkan,gl`); an unknown name is an error.
pub fn parse_backends(s: &str) -> Result<wgpu::Backends, String> {
    s.split(',')
        .map(|one| parse_backend(one.trim()).map(wgpu::Backends::from))
        .try_fold(wgpu::Backends::empty(), |all, one| Ok(all | one?))
}

/// Parses one backend's name.
pub fn parse_backend(s: &str) -> Result<wgpu::Backend, String> {
    match s.to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Ok(wgpu::Backend::Vulkan),
        "metal" => Ok(wgpu::Backend::Metal),
        "dx12" | "d3d12" => Ok(wgpu::Backend::Dx12),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backend::Gl),
        other => Err(format!("unknown backend `{other}` (expected vulkan, metal, dx12 or gl)")),
    }
}

/// An instance with only `backends`: the GL back end is not even initialized unless asked for (its EGL probe is
/// slow). Without a display session, the Vulkan and EGL back ends' probes for a Wayland display made libwayland print
/// "error: XDG_RUNTIME_DIR is invalid" before anything had gone wrong: see `quiet_wayland_probe`.
fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends
        & (wgpu::Backends::VULKAN
            | wgpu::Backends::METAL
            | wgpu::Backends::DX12
            | wgpu::Backends::GL
            | wgpu::Backends::BROWSER_WEBGPU);
    #[cfg(not(target_arch = "wasm32"))]
    quiet_wayland_probe();
    wgpu::Instance::new(desc)
}

/// Where no display session set `XDG_RUNTIME_DIR` (a container, CI, ssh), gives libwayland a private empty one for
/// its connection attempt, so the probe for a Wayland display fails quietly (the adapters work as before, headless)
/// instead of printing "error: XDG_RUNTIME_DIR is invalid or not set in the environment" twice.
#[cfg(not(target_arch = "wasm32"))]
fn quiet_wayland_probe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("XDG_RUNTIME_DIR").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some() {
            return;
        }
        // One per user (the uid from /proc where there is one), reused by later runs.
        let uid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:").map(|v| v.split_whitespace().next().unwrap_or("").to_string()))
            })
            .unwrap_or_else(|| std::process::id().to_string());
        let dir = std::env::temp_dir().join(format!("gpu-cnn-runtime-{uid}"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            if std::fs::DirBuilder::new().mode(0o700).recursive(true).create(&dir).is_err() {
                return;
            }
        }
        // Called once, before wgpu's back ends (the only readers) start; gpu-cnn reads no environment variable
        // concurrently at this point.
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    });
}

/// Every adapter wgpu finds (of `backends`, where given), in a stable order (as `gpu-cnn adapters` numbers them).
pub async fn enumerate(backends: Option<wgpu::Backends>) -> Vec<(AdapterSummary, wgpu::Adapter)> {
    enumerate_backends(backends.unwrap_or(wgpu::Backends::all())).await
}

/// The adapters the selection's backends (or `WGPU_BACKEND`) allow; where a backend filter matches nothing, an error
/// that says so and names what wgpu does find.
pub async fn enumerate_selected(sel: &AdapterSelection) -> Result<Vec<(AdapterSummary, wgpu::Adapter)>, GpuError> {
    let sel = sel.clone().or_env()?;
    let found = enumerate(sel.backend).await;
    match sel.backend {
        Some(b) if found.is_empty() => Err(no_adapter_of(b).await),
        _ => Ok(found),
    }
}

/// The error for a backend filter `b` that matches no adapter: what wgpu finds on the others.
async fn no_adapter_of(b: wgpu::Backends) -> GpuError {
    let others: Vec<String> = enumerate(None).await.iter().map(|(s, _)| format!("{}: {}", s.index, s.line())).collect();
    let others = if others.is_empty() { "none".to_string() } else { others.join("; ") };
    GpuError::NoAdapterOf { backends: backends_name(b), others }
}

/// `vulkan`, `vulkan, gl`: the backends of a set, as `--backend` takes them.
pub fn backends_name(b: wgpu::Backends) -> String {
    [wgpu::Backend::Vulkan, wgpu::Backend::Metal, wgpu::Backend::Dx12, wgpu::Backend::Gl, wgpu::Backend::BrowserWebGpu]
        .into_iter()
        .filter(|&one| b.contains(wgpu::Backends::from(one)))
        .map(backend_name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every adapter of `backends`, in a stable order. In a browser: the one adapter the page's WebGPU gives.
pub async fn enumerate_backends(backends: wgpu::Backends) -> Vec<(AdapterSummary, wgpu::Adapter)> {
    let inst = instance(backends);
    #[cfg(not(target_arch = "wasm32"))]
    let mut adapters = inst.enumerate_adapters(backends).await;
    #[cfg(target_arch = "wasm32")]
    let mut adapters: Vec<wgpu::Adapter> = inst.request_adapter(&Default::default()).await.into_iter().collect();
    // Stable order: by backend preference, then name.
    adapters.sort_by_key(|a| {
        let i = a.get_info();
        (backend_rank(i.backend), i.name.clone())
    });
    adapters
        .into_iter()
        .enumerate()
        .map(|(i, a)| (AdapterSummary::new(i, &a.get_info(), a.features(), &a.limits()), a))
        .collect()
}

fn backend_rank(b: wgpu::Backend) -> u8 {
    match b {
        wgpu::Backend::Vulkan => 0,
        wgpu::Backend::Metal => 1,
        wgpu::Backend::Dx12 => 2,
        wgpu::Backend::Gl => 3,
        _ => 4,
    }
}

fn type_rank(t: &str, low_power: bool) -> u8 {
    match t {
        "discrete-gpu" => low_power as u8,
        "integrated-gpu" => !low_power as u8,
        "virtual-gpu" => 2,
        "other" => 3,
        _ => 4, // cpu
    }
}

/// `WGPU_POWER_PREF`, as wgpu reads it: `low` puts an integrated GPU before a discrete one; `high` (or unset, or
/// `none`) the other way round.
fn low_power_from_env() -> Result<bool, GpuError> {
    match std::env::var("WGPU_POWER_PREF").unwrap_or_default().to_lowercase().as_str() {
        "" | "high" | "none" => Ok(false),
        "low" => Ok(true),
        other => Err(GpuError::Config {
            variable: "WGPU_POWER_PREF",
            message: format!("`{other}` is not a power preference (low, high or none)"),
        }),
    }
}

/// Picks the adapter the selection names, or the best one: a discrete GPU before an integrated one (the other way
/// round with `WGPU_POWER_PREF=low`) before software, Vulkan/Metal/DX12 before GL.
pub async fn choose(sel: &AdapterSelection) -> Result<(AdapterSummary, wgpu::Adapter), GpuError> {
    let sel = &sel.clone().or_env()?;
    let low_power = low_power_from_env()?;
    // GL is a last resort: probing it is slow and noisy (EGL warnings), so only look there when asked to, when an
    // adapter is named, or when no Vulkan, Metal or DX12 adapter exists.
    let mut all = match (sel.backend, &sel.adapter) {
        (Some(b), _) => enumerate_backends(b).await,
        (None, Some(_)) => enumerate_backends(wgpu::Backends::all()).await,
        (None, None) => enumerate_backends(wgpu::Backends::PRIMARY).await,
    };
    if all.is_empty() && sel.backend.is_none() {
        all = enumerate_backends(wgpu::Backends::all()).await;
    }
    match sel.backend {
        Some(b) if all.is_empty() => return Err(no_adapter_of(b).await),
        None if all.is_empty() => return Err(GpuError::NoAdapter { backend: String::new() }),
        _ => {}
    }
    let choices = all.iter().map(|(s, _)| format!("  {}: {}", s.index, s.line())).collect::<Vec<_>>().join("\n");
    match &sel.adapter {
        None => {
            let best = all
                .into_iter()
                .min_by_key(|(s, a)| {
                    (type_rank(&s.device_type, low_power), backend_rank(a.get_info().backend), s.index)
                })
                .expect("non-empty");
            Ok(best)
        }
        Some(text) => {
            let found = if let Ok(i) = text.parse::<usize>() {
                all.into_iter().find(|(s, _)| s.index == i)
            } else {
                let needle = text.to_lowercase();
                all.into_iter().find(|(s, _)| s.name.to_lowercase().contains(&needle))
            };
            found.ok_or_else(|| GpuError::NoMatch { selection: text.clone(), choices })
        }
    }
}
