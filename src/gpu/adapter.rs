//! Finding adapters: what `gpu-cnn adapters` lists, the best one or the one the user named (`--adapter`, `--backend`,
//! wgpu's `WGPU_*` environment variables), in a stable order.

use std::sync::Mutex;

use serde::Serialize;

use super::error::GpuError;

/// What the user asked for with `--adapter` and `--backend`.
#[derive(Clone, Debug, Default)]
pub struct AdapterSelection {
    /// An index into `gpu-cnn adapters`, or a case-insensitive substring of the adapter name.
    pub adapter: Option<String>,
    pub backend: Option<wgpu::Backend>,
}

impl AdapterSelection {
    /// Fills what was not chosen from wgpu's usual environment variables: `WGPU_BACKEND` (vulkan, metal, dx12, gl)
    /// and `WGPU_ADAPTER_NAME` (a substring of the adapter's name). Command-line options take precedence.
    pub fn or_env(mut self) -> Result<AdapterSelection, GpuError> {
        if self.backend.is_none() {
            if let Ok(v) = std::env::var("WGPU_BACKEND") {
                if !v.is_empty() {
                    let b =
                        parse_backend(&v).map_err(|message| GpuError::Config { variable: "WGPU_BACKEND", message })?;
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
    fn new(index: usize, info: &wgpu::AdapterInfo, features: wgpu::Features) -> Self {
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

/// Parses `--backend`.
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

/// Every adapter wgpu finds, in a stable order (as `gpu-cnn adapters` numbers them).
pub async fn enumerate(backend: Option<wgpu::Backend>) -> Vec<(AdapterSummary, wgpu::Adapter)> {
    enumerate_backends(match backend {
        Some(b) => wgpu::Backends::from(b),
        None => wgpu::Backends::all(),
    })
    .await
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
    adapters.into_iter().enumerate().map(|(i, a)| (AdapterSummary::new(i, &a.get_info(), a.features()), a)).collect()
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
        (Some(b), _) => enumerate_backends(b.into()).await,
        (None, Some(_)) => enumerate_backends(wgpu::Backends::all()).await,
        (None, None) => enumerate_backends(wgpu::Backends::PRIMARY).await,
    };
    if all.is_empty() && sel.backend.is_none() {
        all = enumerate_backends(wgpu::Backends::all()).await;
    }
    if all.is_empty() {
        let backend = sel.backend.map(|b| format!(" for backend {}", backend_name(b))).unwrap_or_default();
        return Err(GpuError::NoAdapter { backend });
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
