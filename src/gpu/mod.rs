//! The GPU side: instance and adapter choice, the device with its limits, waits that time out, and buffer helpers.
//!
//! `kernels` lists every WGSL shader with its entry points and bindings and builds the pipelines; `network` holds the
//! network's buffers and records the forward, backward and optimizer dispatches.

pub mod kernels;
pub mod limits;
pub mod network;
pub mod ops;

use ops::{Caps, Family};

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use serde::Serialize;
use wgpu::util::DeviceExt;

/// Errors from the GPU side. Each names the adapter where one was chosen.
#[derive(thiserror::Error, Debug)]
pub enum GpuError {
    #[error("no GPU adapter found{backend}. On Debian/Ubuntu, `apt-get install mesa-vulkan-drivers` provides a software Vulkan adapter (lavapipe); or pass `--device cpu`")]
    NoAdapter { backend: String },
    #[error("no adapter matches `{selection}`; available adapters:\n{choices}")]
    NoMatch { selection: String, choices: String },
    #[error("could not open a device on {adapter}: {message}")]
    RequestDevice { adapter: String, message: String },
    #[error("{what} needs {needed} but {adapter} allows at most {limit} ({limit_name}); use a smaller batch size")]
    TooLarge { what: String, needed: u64, limit: u64, limit_name: &'static str, adapter: String },
    #[error("the {family} kernels need {limit_name} ≥ {needed} ({by}) but {adapter} allows {limit}{hint}")]
    Limit {
        family: Family,
        limit_name: &'static str,
        needed: u64,
        by: &'static str,
        limit: u64,
        adapter: String,
        hint: &'static str,
    },
    #[error("the GPU did not finish {what} within {secs} s on {adapter} (a hang or a very slow adapter; set GPU_CNN_TIMEOUT_S to wait longer)")]
    Timeout { what: String, secs: u64, adapter: String },
    #[error("GPU device lost on {adapter}: {reason}")]
    DeviceLost { adapter: String, reason: String },
    #[error("GPU error on {adapter}: {message}")]
    Device { adapter: String, message: String },
    #[error("reading back {what} from {adapter} failed: {message}")]
    Readback { what: String, adapter: String, message: String },
    #[error("{variable}: {message}")]
    Config { variable: &'static str, message: String },
    #[error("--arch {arch}: {message} (--kernels tiled runs any architecture)")]
    Arch { arch: String, message: String },
}

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
#[cfg(target_arch = "wasm32")]
static BROWSER_ADAPTER: Mutex<Option<String>> = Mutex::new(None);

/// Names the browser's adapter (see `BROWSER_ADAPTER`).
#[cfg(target_arch = "wasm32")]
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
        #[cfg(target_arch = "wasm32")]
        let name = match &info.name {
            n if n.is_empty() => BROWSER_ADAPTER.lock().ok().and_then(|n| n.clone()).unwrap_or_default(),
            n => n.clone(),
        };
        #[cfg(not(target_arch = "wasm32"))]
        let name = info.name.clone();
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

/// Runs `subgroup_probe.wgsl` and checks what the subgroup kernels assume: every subgroup 8 invocations wide, made of
/// 8 consecutive invocations with lanes in order, and subgroupShuffle bringing the named lane's value.
pub async fn subgroup_probe(gpu: &Gpu) -> Result<bool, GpuError> {
    const WG: usize = 64;
    let kernels = kernels::Kernels::new();
    let k = kernels.kernel(gpu, "subgroup_probe", &[])?;
    let out = gpu.storage("subgroup probe", 4 * 3 * WG as u64)?;
    let group = k.bind(gpu, &[&out]);
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        k.dispatch_workgroups(&mut pass, &group, None, 1);
    }
    let idx = gpu.queue.submit([enc.finish()]);
    gpu.wait(Some(idx), "the subgroup probe").await?;
    Ok(subgroups_are_8_in_order(&gpu.read_u32(&out, 0, 3 * WG, "the subgroup probe").await?))
}

/// What `subgroup_probe.wgsl` wrote (per invocation of a 64-invocation workgroup: subgroup size, lane, shuffled
/// value) is what the subgroup kernels assume.
pub fn subgroups_are_8_in_order(v: &[u32]) -> bool {
    const WG: usize = 64;
    v.len() == 3 * WG
        && (0..WG).all(|i| {
            let base = i / 8 * 8;
            v[i] == 8 && v[WG + i] as usize == i % 8 && v[2 * WG + i] as usize == 1000 + base + (i % 8 + 3) % 8
        })
}

#[cfg(test)]
mod tests {
    use super::subgroups_are_8_in_order;

    /// What the probe reads on a device whose subgroups are `width` wide, lanes in order, `lane_of` numbering them.
    fn probe(width: usize, lane_of: impl Fn(usize) -> usize) -> Vec<u32> {
        let mut v = vec![0u32; 192];
        for i in 0..64 {
            let (base, lane) = (i / width * width, lane_of(i));
            v[i] = width as u32;
            v[64 + i] = lane as u32;
            let src = (0..width).map(|j| base + j).find(|&j| lane_of(j) == (lane + 3) % width).unwrap_or(i);
            v[128 + i] = 1000 + src as u32;
        }
        v
    }

    #[test]
    fn the_probe_accepts_eight_lanes_in_order_only() {
        assert!(subgroups_are_8_in_order(&probe(8, |i| i % 8)));
        // Planted: 4- and 16-wide subgroups (a driver reporting 8 but running another width), lanes numbered in
        // reverse, a shuffle that reads the wrong lane.
        assert!(!subgroups_are_8_in_order(&probe(4, |i| i % 4)));
        assert!(!subgroups_are_8_in_order(&probe(16, |i| i % 16)));
        assert!(!subgroups_are_8_in_order(&probe(8, |i| 7 - i % 8)));
        let mut wrong = probe(8, |i| i % 8);
        wrong[128 + 5] += 1;
        assert!(!subgroups_are_8_in_order(&wrong));
    }
}

/// The naga shader capabilities our shaders may use: subgroup operations (only the `*_subgroup` kernels, built only
/// where the device has `Features::SUBGROUP`) and nothing else beyond core WGSL. The shader-hygiene test validates
/// every shader with exactly this set.
pub fn shader_capabilities() -> naga::valid::Capabilities {
    naga::valid::Capabilities::SUBGROUP
}

/// How to open a device: which kernel family (None: the adapter's default, `Gpu::default_family`), whether the simd
/// family may use its subgroup kernels, whether the tiled family may fuse its classifier head, and whether to hold the
/// device to `wgpu::Limits::downlevel_defaults()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    pub family: Option<Family>,
    pub no_subgroups: bool,
    pub no_head: bool,
    pub downlevel: bool,
}

impl OpenOptions {
    /// From the environment: `GPU_CNN_KERNELS` (`simd`, `tiled` or `auto`), `GPU_CNN_SUBGROUPS=0` (the simd family
    /// without its subgroup kernels), `GPU_CNN_FUSED_HEAD=0` (the tiled family's classifier head as four dispatches),
    /// `GPU_CNN_LIMITS=downlevel`.
    pub fn from_env() -> Result<OpenOptions, GpuError> {
        let family = match std::env::var("GPU_CNN_KERNELS") {
            Ok(v) if !v.is_empty() && v != "auto" => {
                Some(Family::parse(&v).map_err(|message| GpuError::Config { variable: "GPU_CNN_KERNELS", message })?)
            }
            _ => None,
        };
        Ok(OpenOptions {
            family,
            no_subgroups: std::env::var("GPU_CNN_SUBGROUPS").is_ok_and(|v| v == "0"),
            no_head: std::env::var("GPU_CNN_FUSED_HEAD").is_ok_and(|v| v == "0"),
            downlevel: std::env::var("GPU_CNN_LIMITS").is_ok_and(|v| v == "downlevel"),
        })
    }

    pub fn family(self, family: Family) -> OpenOptions {
        OpenOptions { family: Some(family), ..self }
    }
}

/// The family a device runs unless told otherwise: simd on software adapters (lavapipe and other CPU rasterizers),
/// tiled on GPUs and in browsers (whose shader compilers the simd kernels, unrolled for lavapipe's, overwhelm: see
/// tests/browser.rs).
pub fn default_family(adapter: &AdapterSummary) -> Family {
    if adapter.is_software() && adapter.backend != backend_name(wgpu::Backend::BrowserWebGpu) {
        Family::Simd
    } else {
        Family::Tiled
    }
}

/// An open device on one adapter.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The kernels this device runs: the family, and whether its 8-lane subgroup kernels passed `subgroup_probe`.
    pub caps: Caps,
    /// The device was opened with subgroups and they are 8 wide as the subgroup kernels need (`subgroup_probe`).
    pub subgroups_of_8: bool,
    /// Held to the downlevel limits (`OpenOptions::downlevel`).
    pub downlevel: bool,
    /// How long `wait` waits natively (a browser's WebGPU has no timed wait).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    timeout: Duration,
    errors: Arc<Mutex<Vec<String>>>,
    lost: Arc<Mutex<Option<String>>>,
}

/// The default wait limit for one GPU submission; `GPU_CNN_TIMEOUT_S` overrides it.
pub const DEFAULT_TIMEOUT_S: u64 = 300;

impl Gpu {
    /// Opens the selected (or best) adapter with the options from the environment (`OpenOptions::from_env`).
    pub async fn open(sel: &AdapterSelection) -> Result<Gpu, GpuError> {
        Self::open_with(sel, OpenOptions::from_env()?).await
    }

    pub async fn open_with(sel: &AdapterSelection, opts: OpenOptions) -> Result<Gpu, GpuError> {
        let (summary, adapter) = choose(sel).await?;
        Self::open_adapter(summary, adapter, opts).await
    }

    /// Opens `adapter` with the limits this engine needs: the adapter's own (so large datasets and batches fit where
    /// the adapter allows; sizes are checked against them up front), or with `opts.downlevel` the adapter's cut down to
    /// the downlevel defaults. The family's needs are checked first: a family the adapter cannot run is refused with
    /// the limit named if it was asked for, and replaced by the other family if it was the default.
    pub async fn open_adapter(
        summary: AdapterSummary,
        adapter: wgpu::Adapter,
        opts: OpenOptions,
    ) -> Result<Gpu, GpuError> {
        let limits = if opts.downlevel { limits::downlevel(&adapter.limits()) } else { adapter.limits() };
        let info = adapter.get_info();
        let eight_lanes = adapter.features().contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size == 8
            && info.subgroup_max_size == 8;
        let refuse = |family: Family, need: limits::Need, have: u64, hint: &'static str| GpuError::Limit {
            family,
            limit_name: need.limit,
            needed: need.needed,
            by: need.by,
            limit: have,
            adapter: summary.line(),
            hint,
        };
        let mut family = opts.family.unwrap_or_else(|| default_family(&summary));
        let mut subgroups = family == Family::Simd && eight_lanes && !opts.no_subgroups;
        if let Some((need, have)) = limits::unmet(family, subgroups, &limits) {
            if opts.family.is_some() || family == Family::Tiled {
                let hint =
                    if family == Family::Simd { "; the tiled kernels (GPU_CNN_KERNELS=tiled) need less" } else { "" };
                return Err(refuse(family, need, have, hint));
            }
            family = Family::Tiled;
            subgroups = false;
            if let Some((need, have)) = limits::unmet(family, false, &limits) {
                return Err(refuse(family, need, have, ""));
            }
        }
        let mut features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        if subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        let desc = wgpu::DeviceDescriptor {
            label: Some("gpu-cnn"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = adapter
            .request_device(&desc)
            .await
            .map_err(|e| GpuError::RequestDevice { adapter: summary.line(), message: e.to_string() })?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let lost = Arc::new(Mutex::new(None));
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut l) = lost_sink.lock() {
                *l = Some(format!("{reason:?}: {message}"));
            }
        });
        let secs = std::env::var("GPU_CNN_TIMEOUT_S").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_TIMEOUT_S);
        let caps =
            Caps { family, subgroups_of_8: false, head: family == Family::Tiled && !opts.no_head }.within(&limits);
        let mut gpu = Gpu {
            device,
            queue,
            adapter: summary,
            limits,
            features,
            caps,
            subgroups_of_8: subgroups,
            downlevel: opts.downlevel,
            timeout: Duration::from_secs(secs),
            errors,
            lost,
        };
        if subgroups {
            // Trust, but verify: some drivers report one width and run another.
            let ok = subgroup_probe(&gpu).await?;
            gpu.subgroups_of_8 = ok;
            gpu.caps.subgroups_of_8 = ok;
        }
        Ok(gpu)
    }

    /// Another device on the same adapter, opened the same way (a network owns its device; checks build several).
    pub async fn reopen(&self) -> Result<Gpu, GpuError> {
        let all = enumerate(Some(self.adapter_backend())).await;
        let (summary, adapter) = all
            .into_iter()
            .find(|(s, _)| s.name == self.adapter.name && s.backend == self.adapter.backend)
            .ok_or_else(|| GpuError::NoAdapter { backend: format!(" named {}", self.adapter.name) })?;
        let opts = OpenOptions {
            family: Some(self.caps.family),
            no_subgroups: !self.subgroups_of_8,
            no_head: !self.caps.head,
            downlevel: self.downlevel,
        };
        Gpu::open_adapter(summary, adapter, opts).await
    }

    fn adapter_backend(&self) -> wgpu::Backend {
        if self.adapter.backend == backend_name(wgpu::Backend::BrowserWebGpu) {
            return wgpu::Backend::BrowserWebGpu; // not a `--backend` choice: the page's own
        }
        parse_backend(&self.adapter.backend).unwrap_or(wgpu::Backend::Vulkan)
    }

    /// Fails with the first error the device reported since the last check (validation, out of memory, device loss).
    pub fn check(&self) -> Result<(), GpuError> {
        if let Some(reason) = self.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(GpuError::DeviceLost { adapter: self.adapter.line(), reason });
        }
        let first = self.errors.lock().ok().and_then(|mut v| if v.is_empty() { None } else { Some(v.remove(0)) });
        match first {
            Some(message) => Err(GpuError::Device { adapter: self.adapter.line(), message }),
            None => Ok(()),
        }
    }

    /// Waits for a submission, at most the timeout; `what` names the work in the error. Natively this polls the
    /// device (blocking); in a browser it awaits the queue, and the page's event loop runs meanwhile.
    pub async fn wait(&self, index: Option<wgpu::SubmissionIndex>, what: &str) -> Result<(), GpuError> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let r = self.device.poll(wgpu::PollType::Wait { submission_index: index, timeout: Some(self.timeout) });
            if let Err(e) = r {
                self.check()?;
                return Err(match e {
                    wgpu::PollError::Timeout => GpuError::Timeout {
                        what: what.to_string(),
                        secs: self.timeout.as_secs(),
                        adapter: self.adapter.line(),
                    },
                    other => GpuError::Device { adapter: self.adapter.line(), message: other.to_string() },
                });
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = (index, what); // WebGPU waits for all work submitted so far
            let (done, finished) = handoff();
            self.queue.on_submitted_work_done(move || done(()));
            finished.await;
        }
        self.check()
    }

    /// A storage buffer initialized from `data` (also copyable both ways, and bindable as a uniform window: see
    /// `kernels::Access::Weights`).
    pub fn storage_init(&self, label: &str, data: &[u8]) -> Result<wgpu::Buffer, GpuError> {
        self.check_size(label, data.len() as u64)?;
        Ok(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: data,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        }))
    }

    /// A zeroed storage buffer of `bytes` bytes.
    pub fn storage(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        let bytes = bytes.max(4).next_multiple_of(4);
        self.check_size(label, bytes)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// Refuses a buffer larger than the adapter's binding limit, with the limit, the size and the adapter named.
    pub fn check_size(&self, what: &str, bytes: u64) -> Result<(), GpuError> {
        let limit = self.limits.max_storage_buffer_binding_size;
        if bytes > limit {
            return Err(GpuError::TooLarge {
                what: format!("buffer `{what}`"),
                needed: bytes,
                limit,
                limit_name: "max_storage_buffer_binding_size",
                adapter: self.adapter.line(),
            });
        }
        Ok(())
    }

    /// Copies `bytes` bytes from `offset` in `buffer` back to the host (waits, with the timeout).
    pub async fn read_bytes(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
        what: &str,
    ) -> Result<Vec<u8>, GpuError> {
        let staging = self.staging("readback", bytes);
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buffer, offset, &staging, 0, bytes);
        let idx = self.queue.submit([enc.finish()]);
        self.map_read(&staging, bytes, idx, what).await
    }

    /// A small buffer the host can map, for reads recorded into a command buffer (`read_recorded`).
    pub fn staging(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Reads `staging`, which submission `after` filled (a copy recorded in it), once that submission is done: no new
    /// submission, so work queued behind it keeps the GPU busy meanwhile.
    pub async fn read_recorded(
        &self,
        staging: &wgpu::Buffer,
        after: wgpu::SubmissionIndex,
        what: &str,
    ) -> Result<Vec<u8>, GpuError> {
        self.map_read(staging, staging.size(), after, what).await
    }

    /// Maps the first `bytes` of `staging` once submission `after` is done, copies them out and unmaps.
    async fn map_read(
        &self,
        staging: &wgpu::Buffer,
        bytes: u64,
        after: wgpu::SubmissionIndex,
        what: &str,
    ) -> Result<Vec<u8>, GpuError> {
        let err =
            |message: String| GpuError::Readback { what: what.to_string(), adapter: self.adapter.line(), message };
        let slice = staging.slice(..bytes);
        let (mapped, result) = handoff();
        slice.map_async(wgpu::MapMode::Read, mapped);
        self.wait(Some(after), what).await?;
        // Natively the device poll in `wait` has run the callback; in a browser it comes when the page gets to it.
        #[cfg(not(target_arch = "wasm32"))]
        let result = result.now().ok_or_else(|| err("the buffer was not mapped after the work was done".into()))?;
        #[cfg(target_arch = "wasm32")]
        let result = result.await;
        result.map_err(|e| err(e.to_string()))?;
        let out = slice.get_mapped_range().map_err(|e| err(e.to_string()))?.to_vec();
        staging.unmap();
        Ok(out)
    }

    pub async fn read_f32(
        &self,
        buffer: &wgpu::Buffer,
        offset_elems: usize,
        len: usize,
        what: &str,
    ) -> Result<Vec<f32>, GpuError> {
        let bytes = self.read_bytes(buffer, offset_elems as u64 * 4, len as u64 * 4, what).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    pub async fn read_u32(
        &self,
        buffer: &wgpu::Buffer,
        offset_elems: usize,
        len: usize,
        what: &str,
    ) -> Result<Vec<u32>, GpuError> {
        let bytes = self.read_bytes(buffer, offset_elems as u64 * 4, len as u64 * 4, what).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}

/// Packs bytes four to a u32 (little-endian), as the shaders read u8 data.
pub fn pack_u8(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.resize(bytes.len().next_multiple_of(4).max(4), 0);
    v
}

/// A value a wgpu callback hands over (a buffer mapped, the queue done) to the code awaiting it: the sending half is
/// the callback, the receiving half a future.
fn handoff<T: Send + 'static>() -> (impl FnOnce(T) + Send + 'static, Handoff<T>) {
    let shared: Arc<Mutex<(Option<T>, Option<Waker>)>> = Arc::new(Mutex::new((None, None)));
    let sender = shared.clone();
    let send = move |value: T| {
        let waker = sender.lock().ok().and_then(|mut s| {
            s.0 = Some(value);
            s.1.take()
        });
        if let Some(w) = waker {
            w.wake();
        }
    };
    (send, Handoff(shared))
}

struct Handoff<T>(Arc<Mutex<(Option<T>, Option<Waker>)>>);

impl<T> Handoff<T> {
    /// The value if the callback has run.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    fn now(&self) -> Option<T> {
        self.0.lock().ok().and_then(|mut s| s.0.take())
    }
}

impl<T> Future for Handoff<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Ok(mut s) = self.0.lock() else { return Poll::Pending };
        match s.0.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
