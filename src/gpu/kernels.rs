//! Every WGSL shader, its entry points and the bindings the host gives each one, and the pipelines built from them.
//!
//! `SHADERS` is the single table both the engine and the shader-hygiene test read: the test validates each file with
//! naga and checks that each entry point's bindings (group 0, binding, read-only or read-write) match `bindings` here.

use std::collections::HashMap;
use std::sync::Mutex;

use super::ops::Family;
use super::{Gpu, GpuError};

/// How a binding is used by a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    ReadWrite,
    /// `var<uniform>` with a dynamic offset: the per-step block (start, n, index).
    Step,
    /// `var<uniform>` without a dynamic offset.
    Uniform,
    /// `var<uniform>` over the first `WEIGHT_WINDOW_BYTES` of the parameter buffer, where the convolutions' weights
    /// and biases sit: on lavapipe a uniform load is a plain gather, about 3× cheaper than a storage load (a loop over
    /// the SIMD lanes).
    Weights,
}

/// Bytes of the parameter buffer the convolution kernels read through their `Weights` binding (their
/// `WEIGHT_VEC4S` × 16): conv1's and conv2's weights and biases, 4,800 floats, come first in the parameter layout.
pub const WEIGHT_WINDOW_BYTES: u64 = 19_200;

/// One shader file: its source, its entry points and their bindings (binding i = `bindings[i]`, the same layout for
/// every entry point of the file), and what it asks of the device (checked against its limits by `gpu::limits`).
pub struct Shader {
    pub file: &'static str,
    /// What is compiled: the file, followed by `appended` where there is one.
    pub source: &'static str,
    /// A file of shared code appended to this one (WGSL has no include): the tiled kernels' `tile_core.wgsl`, the
    /// loss kernels' `metrics_core.wgsl`.
    pub appended: Option<&'static str>,
    pub entry_points: &'static [&'static str],
    pub bindings: &'static [Access],
    /// The kernel family it belongs to; `None`: both families use it.
    pub family: Option<Family>,
    /// Threads per workgroup (the shader's `WG`).
    pub workgroup: u32,
    /// Bytes of workgroup memory it declares (the hygiene test checks this against naga's reflection).
    pub workgroup_bytes: u32,
    /// Uses subgroup operations: built only on devices with `Gpu::subgroups_of_8`.
    pub subgroups: bool,
    /// A fusion its family runs only on devices whose limits take it (`limits::fits`), the unfused kernels elsewhere:
    /// not among the needs that decide whether a device can run the family at all.
    pub optional: bool,
}

use Access::*;
use Family::{Simd, Tiled};

macro_rules! shader {
    // A tiled-family kernel: its file with the shared tile core appended, 64 invocations, the core's workgroup tiles.
    (tiled $file:literal, [$($entry:literal),+], [$($b:expr),+]) => {
        Shader {
            file: $file,
            source: concat!(include_str!(concat!("../../shaders/", $file)), "\n", include_str!("../../shaders/tile_core.wgsl")),
            appended: Some("tile_core.wgsl"),
            entry_points: &[$($entry),+],
            bindings: &[$($b),+],
            family: Some(Tiled),
            workgroup: 64,
            workgroup_bytes: (528 + 1040 + 2080) * 4,
            subgroups: false,
            optional: false,
        }
    };
    ($family:expr, $file:literal, [$($entry:literal),+], [$($b:expr),+], wg $wg:expr, shared $bytes:expr $(, $subgroups:ident)?) => {
        Shader {
            file: $file,
            source: include_str!(concat!("../../shaders/", $file)),
            appended: None,
            entry_points: &[$($entry),+],
            bindings: &[$($b),+],
            family: $family,
            workgroup: $wg,
            workgroup_bytes: $bytes,
            subgroups: shader!(@sub $($subgroups)?),
            optional: false,
        }
    };
    (@sub subgroups) => { true };
    (@sub) => { false };
}

pub const SHADERS: &[Shader] = &[
    // Both families.
    shader!(None, "load_batch.wgsl", ["load_batch"], [Read, Read, ReadWrite, ReadWrite, Step], wg 256, shared 0),
    Shader {
        file: "softmax_cross_entropy.wgsl",
        source: concat!(
            include_str!("../../shaders/softmax_cross_entropy.wgsl"),
            "\n",
            include_str!("../../shaders/metrics_core.wgsl")
        ),
        appended: Some("metrics_core.wgsl"),
        entry_points: &["softmax_cross_entropy_forward", "softmax_cross_entropy_backward"],
        bindings: &[Read, Read, ReadWrite, ReadWrite, Step],
        family: None,
        workgroup: 256,
        workgroup_bytes: 2048,
        subgroups: false,
        optional: false,
    },
    shader!(None, "sgd_step.wgsl", ["sgd_step"], [Read, ReadWrite, ReadWrite, Uniform], wg 256, shared 0),
    // The simd family (CPU adapters).
    shader!(
        Some(Simd),
        "conv2d_forward.wgsl",
        ["conv2d_forward"],
        [Read, Weights, ReadWrite, Step, ReadWrite],
        wg 64,
        shared 0
    ),
    shader!(
        Some(Simd),
        "conv2d_forward_subgroup.wgsl",
        ["conv2d_forward_subgroup"],
        [Read, Weights, ReadWrite, Step, ReadWrite],
        wg 64,
        shared 0,
        subgroups
    ),
    shader!(
        Some(Simd),
        "conv2d_backward_input.wgsl",
        ["conv2d_backward_input"],
        [Read, Weights, ReadWrite, Step],
        wg 64,
        shared 0
    ),
    shader!(
        Some(Simd),
        "conv2d_backward_weight.wgsl",
        ["conv2d_backward_weight", "conv2d_backward_weight_reduce"],
        [Read, Read, ReadWrite, Step, ReadWrite],
        wg 64,
        shared 10240
    ),
    shader!(
        Some(Simd),
        "conv2d_backward_weight_subgroup.wgsl",
        ["conv2d_backward_weight_subgroup"],
        [Read, Read, ReadWrite, Step, ReadWrite],
        wg 64,
        shared 10240,
        subgroups
    ),
    shader!(Some(Simd), "maxpool_backward.wgsl", ["maxpool_backward"], [Read, Read, ReadWrite, Step], wg 256, shared 0),
    shader!(Some(Simd), "dense_forward.wgsl", ["dense_forward"], [Read, Read, ReadWrite, Step], wg 8, shared 0),
    shader!(
        Some(Simd),
        "dense_forward_subgroup.wgsl",
        ["dense_forward_subgroup"],
        [Read, Read, ReadWrite, Step],
        wg 64,
        shared 0,
        subgroups
    ),
    shader!(
        Some(Simd),
        "dense_backward_input.wgsl",
        ["dense_backward_input"],
        [Read, Read, Read, ReadWrite, Step],
        wg 8,
        shared 0
    ),
    shader!(
        Some(Simd),
        "dense_backward_input_subgroup.wgsl",
        ["dense_backward_input_subgroup"],
        [Read, Read, Read, ReadWrite, Step],
        wg 64,
        shared 0,
        subgroups
    ),
    shader!(
        Some(Simd),
        "dense_backward_weight.wgsl",
        ["dense_backward_weight"],
        [Read, Read, ReadWrite, Step],
        wg 8,
        shared 0
    ),
    shader!(
        Some(Simd),
        "dense_backward_weight_subgroup.wgsl",
        ["dense_backward_weight_subgroup"],
        [Read, Read, ReadWrite, Step],
        wg 64,
        shared 0,
        subgroups
    ),
    // The tiled family (GPUs).
    shader!(
        tiled "conv2d_forward_tiled.wgsl",
        ["conv2d_forward_tiled"],
        [Read, Read, ReadWrite, Step, ReadWrite]
    ),
    shader!(
        tiled "conv2d_backward_input_tiled.wgsl",
        ["conv2d_backward_input_tiled"],
        [Read, Read, ReadWrite, Step, Read]
    ),
    shader!(
        tiled "conv2d_backward_weight_tiled.wgsl",
        ["conv2d_backward_weight_tiled", "conv2d_backward_weight_tiled_reduce"],
        [Read, Read, ReadWrite, Step, ReadWrite]
    ),
    shader!(
        tiled "dense_forward_tiled.wgsl",
        ["dense_forward_tiled", "dense_forward_tiled_reduce"],
        [Read, Read, ReadWrite, Step, ReadWrite]
    ),
    shader!(
        tiled "dense_backward_input_tiled.wgsl",
        ["dense_backward_input_tiled"],
        [Read, Read, Read, ReadWrite, Step]
    ),
    shader!(
        tiled "dense_backward_weight_tiled.wgsl",
        ["dense_backward_weight_tiled"],
        [Read, Read, ReadWrite, Step]
    ),
    // The classifier head of a training step in one dispatch where the device takes its 6 storage buffers (the
    // downlevel floor is 4).
    Shader {
        file: "classifier_head.wgsl",
        source: concat!(
            include_str!("../../shaders/classifier_head.wgsl"),
            "\n",
            include_str!("../../shaders/metrics_core.wgsl")
        ),
        appended: Some("metrics_core.wgsl"),
        entry_points: &["classifier_head"],
        bindings: &[Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, Step],
        family: Some(Tiled),
        workgroup: 256,
        workgroup_bytes: (1024 + 2048 + 256 + 256) * 4,
        subgroups: false,
        optional: true,
    },
    // Measures the adapter (`gpu-cnn peak`).
    shader!(None, "peak.wgsl", ["peak_fma", "peak_copy", "peak_touch"], [Read, ReadWrite], wg 256, shared 0),
    // Checks a device's subgroups before the simd family's subgroup kernels rely on them (`gpu::subgroup_probe`).
    shader!(Some(Simd), "subgroup_probe.wgsl", ["subgroup_probe"], [ReadWrite], wg 64, shared 0, subgroups),
];

/// A testing aid that shows the checks can fail: `GPU_CNN_BREAK_KERNEL="FILE:FROM=>TO"` replaces the first FROM in
/// shader FILE by TO before it is compiled (a missing FROM is an error, so a typo cannot pass silently).
fn planted_fault(file: &str) -> Option<(String, String)> {
    let spec = std::env::var("GPU_CNN_BREAK_KERNEL").ok()?;
    let (target, change) = spec.split_once(':')?;
    let (from, to) = change.split_once("=>")?;
    (target == file).then(|| (from.to_string(), to.to_string()))
}

/// The checks wgpu builds into the shaders: bounds checks always; the counters it adds to every loop to stop infinite
/// ones are left out (every loop of these shaders is bounded by override constants or the batch length), as they cost
/// 25–35 % of a training step on an H200 (BENCHMARKS.md). `GPU_CNN_SHADER_CHECKS=all` puts them back.
fn runtime_checks() -> Option<wgpu::ShaderRuntimeChecks> {
    match std::env::var("GPU_CNN_SHADER_CHECKS").as_deref() {
        Ok("all") => None,
        _ => Some(wgpu::ShaderRuntimeChecks { force_loop_bounding: false, ..wgpu::ShaderRuntimeChecks::checked() }),
    }
}

/// The source as naga (wgpu's native WGSL compiler) takes it: naga 30 does not yet accept the `enable subgroups;`
/// directive that the WGSL spec requires before subgroup built-ins (gfx-rs/wgpu#5555) but allows the built-ins
/// without it, so the directive becomes a comment (the line count stays, so error positions still match the file).
/// Browsers (Tint) get the file as it is.
pub fn wgsl_for_naga(source: &str) -> std::borrow::Cow<'_, str> {
    const DIRECTIVE: &str = "enable subgroups;";
    if source.lines().any(|l| l.trim() == DIRECTIVE) {
        let lines: Vec<&str> = source
            .lines()
            .map(|l| if l.trim() == DIRECTIVE { "// enable subgroups; (see wgsl_for_naga)" } else { l })
            .collect();
        std::borrow::Cow::Owned(lines.join("\n") + "\n")
    } else {
        std::borrow::Cow::Borrowed(source)
    }
}

pub fn shader_for(entry: &str) -> &'static Shader {
    SHADERS
        .iter()
        .find(|s| s.entry_points.contains(&entry))
        .unwrap_or_else(|| panic!("no shader has entry point {entry}"))
}

/// Size in bytes of the per-step uniform block (`struct Step { start, n, index, full }`: `full` tells the forward
/// convolutions to store their pre-pool output; the other kernels call that word `_pad`).
pub const STEP_BYTES: u64 = 16;

/// A compute pipeline for one entry point with one set of override constants, and its bind group layout.
#[derive(Clone)]
pub struct Kernel {
    pub entry: &'static str,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub bindings: &'static [Access],
    pub workgroup: u32,
    /// The override constants it was built with (for labels and FLOP counts).
    pub constants: Vec<(String, f64)>,
}

/// One pipeline to build: an entry point and its override constants.
pub type Spec = (&'static str, Vec<(&'static str, f64)>);

/// Creates shader modules once (on first use) and pipelines on demand (or ahead, in parallel, with `prepare`).
pub struct Kernels {
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    /// Pipelines built so far, by `spec_key`.
    built: Mutex<HashMap<String, Kernel>>,
}

fn spec_key(entry: &str, constants: &[(&str, f64)]) -> String {
    format!("{entry} {constants:?}")
}

impl Default for Kernels {
    fn default() -> Self {
        Self::new()
    }
}

impl Kernels {
    pub fn new() -> Kernels {
        Kernels { modules: Mutex::new(HashMap::new()), built: Mutex::new(HashMap::new()) }
    }

    /// The shader module of `shader`, created on first use. Subgroup shaders need a device opened with
    /// `Features::SUBGROUP` (`Gpu::subgroups_of_8`).
    fn module(&self, gpu: &Gpu, shader: &'static Shader) -> Result<wgpu::ShaderModule, GpuError> {
        assert!(!shader.subgroups || gpu.subgroups_of_8, "{}: the device has no 8-lane subgroups", shader.file);
        let mut modules = self.modules.lock().expect("shader modules");
        if let Some(m) = modules.get(shader.file) {
            return Ok(m.clone());
        }
        let source = match planted_fault(shader.file) {
            Some((from, to)) => {
                assert!(shader.source.contains(&from), "GPU_CNN_BREAK_KERNEL: `{from}` is not in {}", shader.file);
                std::borrow::Cow::Owned(wgsl_for_naga(&shader.source.replacen(&from, &to, 1)).into_owned())
            }
            None => wgsl_for_naga(shader.source),
        };
        let desc = wgpu::ShaderModuleDescriptor { label: Some(shader.file), source: wgpu::ShaderSource::Wgsl(source) };
        let module = match runtime_checks() {
            // SAFETY: every loop in these shaders ends (its bound is an override constant or the batch length); only
            // the loop-bounding counters wgpu would add are left out, bounds checks stay.
            Some(checks) => unsafe { gpu.device.create_shader_module_trusted(desc, checks) },
            None => gpu.device.create_shader_module(desc),
        };
        gpu.check()?;
        modules.insert(shader.file, module.clone());
        Ok(module)
    }

    /// Builds the pipelines of `specs`, one after the other, for `kernel` to return later (in a browser, where wgpu's
    /// objects stay on the thread that made them).
    #[cfg(target_arch = "wasm32")]
    pub fn prepare(&self, gpu: &Gpu, specs: &[Spec], _threads: usize) -> Result<(), GpuError> {
        specs.iter().try_for_each(|(entry, constants)| self.kernel(gpu, entry, constants).map(drop))
    }

    /// Builds the pipelines of `specs` on `threads` threads (lavapipe compiles a pipeline on the thread that creates
    /// it, and the big unrolled kernels take 0.1–0.5 s each), for `kernel` to return later.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn prepare(&self, gpu: &Gpu, specs: &[Spec], threads: usize) -> Result<(), GpuError> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let next = AtomicUsize::new(0);
        let results: Vec<Result<(), GpuError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    scope.spawn(|| loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((entry, constants)) = specs.get(i) else { return Ok(()) };
                        self.kernel(gpu, entry, constants)?;
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("pipeline thread")).collect()
        });
        results.into_iter().collect()
    }

    /// The pipeline for `entry` with the given override constants, built on first request.
    pub fn kernel(&self, gpu: &Gpu, entry: &'static str, constants: &[(&str, f64)]) -> Result<Kernel, GpuError> {
        let key = spec_key(entry, constants);
        if let Some(k) = self.built.lock().expect("pipelines").get(&key) {
            return Ok(k.clone());
        }
        let k = self.build(gpu, entry, constants)?;
        self.built.lock().expect("pipelines").insert(key, k.clone());
        Ok(k)
    }

    fn build(&self, gpu: &Gpu, entry: &'static str, constants: &[(&str, f64)]) -> Result<Kernel, GpuError> {
        let shader = shader_for(entry);
        if let Err(e) = check_shape(entry, constants) {
            panic!("{e}"); // a shape the network never asks for: a programming error
        }
        let entries: Vec<wgpu::BindGroupLayoutEntry> = shader
            .bindings
            .iter()
            .enumerate()
            .map(|(i, a)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match a {
                    Read | ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: *a == Read },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Step => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: wgpu::BufferSize::new(STEP_BYTES),
                    },
                    Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Weights => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: wgpu::BufferSize::new(WEIGHT_WINDOW_BYTES),
                    },
                },
                count: None,
            })
            .collect();
        let layout = gpu
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(entry), entries: &entries });
        let pipeline_layout = gpu.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&pipeline_layout),
            module: &self.module(gpu, shader)?,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        gpu.check()?;
        Ok(Kernel {
            entry,
            pipeline,
            layout,
            bindings: shader.bindings,
            workgroup: shader.workgroup,
            constants: constants.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        })
    }
}

impl Kernel {
    /// A bind group over `buffers` in binding order; a `Step` binding is the step buffer's first `STEP_BYTES`.
    pub fn bind(&self, gpu: &Gpu, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        assert_eq!(buffers.len(), self.bindings.len(), "{}: wrong number of buffers", self.entry);
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .zip(self.bindings)
            .enumerate()
            .map(|(i, (b, a))| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: match a {
                    Step => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: b,
                        offset: 0,
                        size: wgpu::BufferSize::new(STEP_BYTES),
                    }),
                    Weights => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: b,
                        offset: 0,
                        size: wgpu::BufferSize::new(WEIGHT_WINDOW_BYTES),
                    }),
                    _ => b.as_entire_binding(),
                },
            })
            .collect();
        gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.entry),
            layout: &self.layout,
            entries: &entries,
        })
    }

    /// Records one dispatch of `threads` threads (split over x and y to stay under 65,535 workgroups per dimension).
    /// `step_offset` is the dynamic offset of this dispatch's step block, for kernels that have one.
    pub fn dispatch(
        &self,
        pass: &mut wgpu::ComputePass,
        group: &wgpu::BindGroup,
        step_offset: Option<u32>,
        threads: u64,
    ) {
        let groups = threads.div_ceil(self.workgroup as u64).max(1);
        self.dispatch_workgroups(pass, group, step_offset, groups);
    }

    /// Records one dispatch of exactly `groups` workgroups.
    pub fn dispatch_workgroups(
        &self,
        pass: &mut wgpu::ComputePass,
        group: &wgpu::BindGroup,
        step_offset: Option<u32>,
        groups: u64,
    ) {
        pass.set_pipeline(&self.pipeline);
        match step_offset {
            Some(o) => pass.set_bind_group(0, group, &[o]),
            None => pass.set_bind_group(0, group, &[]),
        }
        let (x, y) = split_groups(groups);
        pass.dispatch_workgroups(x, y, 1);
    }
}

/// Shapes a kernel cannot take: the simd convolutions read their rows as aligned pairs, so W must be even (the
/// network's are 28 and 14), as must H and W where a 2×2 max-pool is fused; dense_forward_subgroup reads vec4s, so IN
/// and W_OFF must be multiples of 4 (1568, 128; 4800, 205632), and dense_backward_input_subgroup and
/// dense_backward_weight_subgroup OUT as well (and B_OFF, the latter) (fc1's 128; fc2's 10 is not, so fc2 takes the
/// plain ones).
pub fn check_shape(entry: &str, constants: &[(&str, f64)]) -> Result<(), String> {
    let get = |name: &str| constants.iter().find(|(k, _)| *k == name).map_or(0.0, |c| c.1);
    if entry.starts_with("conv2d_") && !entry.contains("_tiled") {
        let w = get("W");
        if !(w as u64).is_multiple_of(2) {
            return Err(format!("{entry}: W = {w} must be even (the kernel reads its rows as pairs)"));
        }
    }
    if entry == "conv2d_forward_tiled" && get("POOL") != 0.0 {
        let (h, w) = (get("H"), get("W"));
        if !(h as u64).is_multiple_of(2) || !(w as u64).is_multiple_of(2) {
            return Err(format!("{entry}: H = {h} and W = {w} must be even for the fused 2×2 max-pool"));
        }
    }
    if entry.starts_with("softmax_cross_entropy") && get("K") > 16.0 {
        return Err(format!("{entry}: K = {} classes, at most 16 (the kernel's MAX_K)", get("K")));
    }
    let vec4_constants: &[&str] = match entry {
        "dense_forward_subgroup" => &["IN", "W_OFF"],
        "dense_backward_input_subgroup" => &["IN", "OUT", "W_OFF"],
        "dense_backward_weight_subgroup" => &["IN", "OUT", "W_OFF", "B_OFF"],
        _ => &[],
    };
    for &name in vec4_constants {
        let v = constants.iter().find(|(k, _)| *k == name).map_or(0.0, |c| c.1);
        if !(v as u64).is_multiple_of(4) {
            return Err(format!("{entry}: {name} = {v} must be a multiple of 4 (the kernel reads vec4s)"));
        }
    }
    Ok(())
}

/// Splits a workgroup count into (x, y) with x ≤ 65,535; the shaders compute their index as gid.x + gid.y·nwg.x·WG, so
/// the few extra threads of the last row exit on their bounds check.
pub fn split_groups(groups: u64) -> (u32, u32) {
    const MAX: u64 = 65_535;
    if groups <= MAX {
        (groups as u32, 1)
    } else {
        let y = groups.div_ceil(MAX);
        let x = groups.div_ceil(y);
        (x as u32, y as u32)
    }
}
