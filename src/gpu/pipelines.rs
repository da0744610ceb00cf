//! Pipelines: shader modules created once per device, a compute pipeline per (entry point, override constants) built
//! on demand or ahead on several threads, bind groups in the table's binding order, and dispatches.

use std::collections::HashMap;
use std::sync::Mutex;

use super::device::Gpu;
use super::error::GpuError;
use super::ops;
use super::shader::{wgsl_for_naga, Access, Shader, STEP_BYTES, WEIGHT_WINDOW_BYTES};

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
/// a large share of a training step on a GPU (BENCHMARKS.md). `GPU_CNN_SHADER_CHECKS=all` puts them back.
fn runtime_checks() -> Option<wgpu::ShaderRuntimeChecks> {
    match std::env::var("GPU_CNN_SHADER_CHECKS").as_deref() {
        Ok("all") => None,
        _ => Some(wgpu::ShaderRuntimeChecks { force_loop_bounding: false, ..wgpu::ShaderRuntimeChecks::checked() }),
    }
}

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
        let shader = ops::shader_for(entry);
        if let Err(e) = ops::check_shape(entry, constants) {
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
                    Access::Read | Access::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: *a == Access::Read },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Access::Step => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: wgpu::BufferSize::new(STEP_BYTES),
                    },
                    Access::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Access::Weights => wgpu::BindingType::Buffer {
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
                    Access::Step => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: b,
                        offset: 0,
                        size: wgpu::BufferSize::new(STEP_BYTES),
                    }),
                    Access::Weights => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
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
