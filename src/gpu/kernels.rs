//! Every WGSL shader, its entry points and the bindings the host gives each one, and the pipelines built from them.
//!
//! `SHADERS` is the single table both the engine and the shader-hygiene test read: the test validates each file with
//! naga and checks that each entry point's bindings (group 0, binding, read-only or read-write) match `bindings` here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

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

/// One shader file: its source, its entry points and their bindings (binding i = `bindings[i]`).
pub struct Shader {
    pub file: &'static str,
    pub source: &'static str,
    pub entry_points: &'static [&'static str],
    pub bindings: &'static [Access],
    /// Threads per workgroup (the shader's `WG`).
    pub workgroup: u32,
    /// Uses subgroup operations: built only on devices with `Gpu::subgroups_of_8`.
    pub subgroups: bool,
}

use Access::*;

macro_rules! shader {
    ($file:literal, [$($entry:literal),+], [$($b:expr),+], $wg:expr) => {
        shader!($file, [$($entry),+], [$($b),+], $wg, false)
    };
    ($file:literal, [$($entry:literal),+], [$($b:expr),+], $wg:expr, $subgroups:expr) => {
        Shader {
            file: $file,
            source: include_str!(concat!("../../shaders/", $file)),
            entry_points: &[$($entry),+],
            bindings: &[$($b),+],
            workgroup: $wg,
            subgroups: $subgroups,
        }
    };
}

pub const SHADERS: &[Shader] = &[
    shader!("load_batch.wgsl", ["load_batch"], [Read, Read, Read, ReadWrite, ReadWrite, Step], 256),
    shader!("conv2d_forward.wgsl", ["conv2d_forward"], [Read, Weights, ReadWrite, Step, ReadWrite], 64),
    shader!(
        "conv2d_forward_subgroup.wgsl",
        ["conv2d_forward_subgroup"],
        [Read, Weights, ReadWrite, Step, ReadWrite],
        64,
        true
    ),
    shader!("conv2d_backward_input.wgsl", ["conv2d_backward_input"], [Read, Weights, ReadWrite, Step], 64),
    shader!(
        "conv2d_backward_weight.wgsl",
        ["conv2d_backward_weight", "conv2d_backward_weight_reduce"],
        [Read, Read, ReadWrite, Step, ReadWrite],
        64
    ),
    shader!(
        "conv2d_backward_weight_subgroup.wgsl",
        ["conv2d_backward_weight_subgroup"],
        [Read, Read, ReadWrite, Step, ReadWrite],
        64,
        true
    ),
    shader!("maxpool_backward.wgsl", ["maxpool_backward"], [Read, Read, ReadWrite, Step], 256),
    shader!("dense_forward.wgsl", ["dense_forward"], [Read, Read, ReadWrite, Step], 8),
    shader!("dense_forward_subgroup.wgsl", ["dense_forward_subgroup"], [Read, Read, ReadWrite, Step], 64, true),
    shader!("dense_backward_input.wgsl", ["dense_backward_input"], [Read, Read, Read, ReadWrite, Step], 8),
    shader!(
        "dense_backward_input_subgroup.wgsl",
        ["dense_backward_input_subgroup"],
        [Read, Read, Read, ReadWrite, Step],
        64,
        true
    ),
    shader!("dense_backward_weight.wgsl", ["dense_backward_weight"], [Read, Read, ReadWrite, Step], 8),
    shader!(
        "dense_backward_weight_subgroup.wgsl",
        ["dense_backward_weight_subgroup"],
        [Read, Read, ReadWrite, Step],
        64,
        true
    ),
    shader!(
        "softmax_cross_entropy.wgsl",
        ["softmax_cross_entropy_forward", "softmax_cross_entropy_backward"],
        [Read, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite, Step],
        256
    ),
    shader!("sgd_step.wgsl", ["sgd_step"], [Read, ReadWrite, ReadWrite, Uniform], 256),
];

pub fn shader_for(entry: &str) -> &'static Shader {
    SHADERS
        .iter()
        .find(|s| s.entry_points.contains(&entry))
        .unwrap_or_else(|| panic!("no shader has entry point {entry}"))
}

/// The thread tiling of the convolution kernels: it mirrors the constants at the top of `conv2d_forward.wgsl` and
/// `conv2d_backward_input.wgsl`, so the host can size their dispatches.
pub mod conv2d {
    /// Pixels of one row per thread (a row segment).
    pub const PX: usize = 16;
    /// Input channels per thread of conv2d_backward_input (one row segment each).
    pub const CO_B: usize = 16;
    /// Output channels per thread of conv2d_forward (two row segments each: rows 2i and 2i + 1).
    pub const FORWARD_CO_B: usize = 8;
    /// conv2d_forward_subgroup: the subgroup width = output channels per block = tiles per workgroup.
    /// conv2d_backward_weight_subgroup: output channels per workgroup.
    pub const SUBGROUP: usize = 8;
    /// Input channels per workgroup of conv2d_backward_weight_subgroup.
    pub const SUBGROUP_CI_B: usize = 4;

    /// Workgroups of conv2d_backward_weight_subgroup with SPLIT = 1 (one per block of SUBGROUP output channels and
    /// SUBGROUP_CI_B input channels); with SPLIT = s it takes s times as many.
    pub fn backward_weight_subgroup_groups(cin: usize, cout: usize) -> u64 {
        (cout.div_ceil(SUBGROUP) * cin.div_ceil(SUBGROUP_CI_B)) as u64
    }

    /// Workgroups of conv2d_forward_subgroup for a batch of n: per block of SUBGROUP output channels, one workgroup
    /// per SUBGROUP tiles (pairs of rows × segments).
    pub fn forward_subgroup_groups(n: usize, cout: usize, h: usize, w: usize) -> u64 {
        cout.div_ceil(SUBGROUP) as u64 * (n as u64 * forward_tiles_per_sample(h, w)).div_ceil(SUBGROUP as u64)
    }

    /// Threads per sample of conv2d_forward on an `h`×`w` plane: one per pair of rows and segment.
    pub fn forward_tiles_per_sample(h: usize, w: usize) -> u64 {
        (h.div_ceil(2) * w.div_ceil(PX)) as u64
    }

    /// Workgroups of conv2d_forward for a batch of n: per block of FORWARD_CO_B output channels, enough workgroups
    /// for its threads.
    pub fn forward_groups(n: usize, cout: usize, h: usize, w: usize) -> u64 {
        cout.div_ceil(FORWARD_CO_B) as u64 * (n as u64 * forward_tiles_per_sample(h, w)).div_ceil(WG as u64)
    }

    /// Workgroups of conv2d_backward_weight with SPLIT = 1 (one per block of CO_B output channels and pair of input
    /// channels); with SPLIT = s it takes s times as many.
    pub fn backward_weight_groups(cin: usize, cout: usize) -> u64 {
        (cout.div_ceil(CO_B) * cin.div_ceil(2)) as u64
    }

    /// Floats of conv2d_backward_weight's `partials` buffer for SPLIT = `split` (at least one, for SPLIT = 1 where it
    /// is bound but unused).
    pub fn partials_len(cin: usize, cout: usize, split: usize) -> usize {
        if split > 1 {
            split * cout * cin * 10
        } else {
            1
        }
    }

    /// Workgroups of conv2d_backward_weight_reduce: one thread per sum (COUT·CIN·10).
    pub fn backward_weight_reduce_groups(cin: usize, cout: usize) -> u64 {
        (cout * cin * 10).div_ceil(WG) as u64
    }

    /// Threads per workgroup of conv2d_forward and conv2d_backward_input (their `WG`).
    pub const WG: usize = 64;

    /// Row segments per sample of an `h`×`w` plane (each thread of conv2d_backward_input computes one segment of PX
    /// pixels × CO_B channels).
    pub fn tiles_per_sample(h: usize, w: usize) -> u64 {
        (h * w.div_ceil(PX)) as u64
    }

    /// Workgroups of conv2d_backward_input (`channels` = input channels) for a batch of n: per block of CO_B
    /// channels, enough workgroups for the n·h row segments.
    pub fn groups(n: usize, channels: usize, h: usize, w: usize) -> u64 {
        channels.div_ceil(CO_B) as u64 * (n as u64 * tiles_per_sample(h, w)).div_ceil(WG as u64)
    }
}

/// The thread tiling of the dense kernels: each thread computes a `T`×`T` tile (mirrors `T` in `dense_*.wgsl`).
pub mod dense {
    pub const T: usize = 16;

    /// Threads of dense_forward (`out` features) or dense_backward_input (`out` = the layer's inputs) for a batch of n.
    pub fn threads(n: usize, out: usize) -> u64 {
        (n.div_ceil(T) * out.div_ceil(T)) as u64
    }

    /// Threads of dense_backward_weight: one per T×T tile of the [OUT, IN + 1] gradient (column IN is the bias).
    pub fn backward_weight_threads(inp: usize, out: usize) -> u64 {
        ((inp + 1).div_ceil(T) * out.div_ceil(T)) as u64
    }

    /// dense_forward_subgroup: subgroup width, and the samples × output features of one subgroup's tile.
    pub const SUBGROUP: usize = 8;
    pub const SUBGROUP_SAMPLES: usize = 16;
    pub const SUBGROUP_OUTPUTS: usize = 32;

    /// Workgroups of dense_backward_weight_subgroup: one subgroup per tile of SUBGROUP_SAMPLES outputs ×
    /// SUBGROUP_OUTPUTS columns of [weight | bias], SUBGROUP tiles per workgroup.
    pub fn backward_weight_subgroup_groups(inp: usize, out: usize) -> u64 {
        ((inp + 1).div_ceil(SUBGROUP_OUTPUTS) * out.div_ceil(SUBGROUP_SAMPLES)).div_ceil(SUBGROUP) as u64
    }

    /// Threads of dense_forward_subgroup (`out` features) or dense_backward_input_subgroup (`out` = the layer's
    /// inputs) for a batch of n: one subgroup per tile.
    pub fn subgroup_threads(n: usize, out: usize) -> u64 {
        (n.div_ceil(SUBGROUP_SAMPLES) * out.div_ceil(SUBGROUP_OUTPUTS) * SUBGROUP) as u64
    }
}

/// Size in bytes of the per-step uniform block (`struct Step { start, n, index, _pad }`).
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

/// Creates shader modules once and pipelines on demand (or ahead, in parallel, with `prepare`).
pub struct Kernels {
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    /// Pipelines built by `prepare`, by `spec_key`, until `kernel` takes them.
    prepared: Mutex<HashMap<String, Kernel>>,
}

fn spec_key(entry: &str, constants: &[(&str, f64)]) -> String {
    format!("{entry} {constants:?}")
}

impl Kernels {
    pub fn new(gpu: &Gpu) -> Result<Kernels, GpuError> {
        let mut modules = HashMap::new();
        for s in SHADERS.iter().filter(|s| !s.subgroups || gpu.subgroups_of_8) {
            let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(s.file),
                source: wgpu::ShaderSource::Wgsl(s.source.into()),
            });
            modules.insert(s.file, module);
        }
        gpu.check()?;
        Ok(Kernels { modules, prepared: Mutex::new(HashMap::new()) })
    }

    /// Builds the pipelines of `specs` on `threads` threads (lavapipe compiles a pipeline on the thread that creates
    /// it, and the big unrolled kernels take 0.1–0.5 s each), for `kernel` to take later. Give the costliest first.
    pub fn prepare(&self, gpu: &Gpu, specs: &[Spec], threads: usize) -> Result<(), GpuError> {
        let next = AtomicUsize::new(0);
        let results: Vec<Result<(), GpuError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    scope.spawn(|| loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((entry, constants)) = specs.get(i) else { return Ok(()) };
                        let k = self.build(gpu, entry, constants)?;
                        self.prepared.lock().expect("prepared pipelines").insert(spec_key(entry, constants), k);
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("pipeline thread")).collect()
        });
        results.into_iter().collect()
    }

    /// Pipelines built by `prepare` that `kernel` has not taken (0 once the network is built: a spec that never
    /// matches would be built twice).
    pub fn unused_prepared(&self) -> usize {
        self.prepared.lock().map_or(0, |p| p.len())
    }

    /// A pipeline for `entry` with the given override constants (taken from `prepare`'s if it built it).
    pub fn kernel(&self, gpu: &Gpu, entry: &'static str, constants: &[(&str, f64)]) -> Result<Kernel, GpuError> {
        if let Some(k) = self.prepared.lock().ok().and_then(|mut p| p.remove(&spec_key(entry, constants))) {
            return Ok(k);
        }
        self.build(gpu, entry, constants)
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
            module: &self.modules[shader.file],
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

/// Shapes a kernel cannot take: the convolutions read their rows as aligned pairs, so W must be even (the network's
/// are 28 and 14); dense_forward_subgroup reads vec4s, so IN and W_OFF must be multiples of 4 (1568, 128; 4800,
/// 205632), and dense_backward_input_subgroup and dense_backward_weight_subgroup OUT as well (and B_OFF, the latter)
/// (fc1's 128; fc2's 10 is not, so fc2 takes the plain ones).
pub fn check_shape(entry: &str, constants: &[(&str, f64)]) -> Result<(), String> {
    if entry.starts_with("conv2d_") {
        let w = constants.iter().find(|(k, _)| *k == "W").map_or(0.0, |c| c.1);
        if !(w as u64).is_multiple_of(2) {
            return Err(format!("{entry}: W = {w} must be even (the kernel reads its rows as pairs)"));
        }
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
