//! The device side of the checks: buffers (inputs from seeded random data, outputs poisoned with NaN) and the dispatch
//! of an op's plans over them.

use std::collections::HashMap;

use wgpu::util::DeviceExt;

use crate::gpu::ops::Lowered;
use crate::gpu::pipelines::Kernels;
use crate::gpu::shader::Access;
use crate::gpu::Gpu;
use crate::model::{rng, uniform01, Rng};

/// The device, its pipelines and a step block.
pub struct Harness {
    pub gpu: Gpu,
    kernels: Kernels,
    step: wgpu::Buffer,
}

impl Harness {
    pub fn new(gpu: Gpu) -> Harness {
        let step = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step"),
            size: 256,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Harness { gpu, kernels: Kernels::new(), step }
    }

    /// The step block (start, n, index, full: conv2d_forward stores the pre-pool output too).
    pub fn set_step(&self, start: u32, n: u32, index: u32, full: bool) {
        self.gpu.queue.write_buffer(&self.step, 0, bytemuck::cast_slice(&[start, n, index, u32::from(full)]));
    }

    pub fn buffer_f32(&self, data: &[f32]) -> wgpu::Buffer {
        self.gpu.storage_init("check input", bytemuck::cast_slice(data)).expect("a check buffer")
    }

    pub fn buffer_u32(&self, data: &[u32]) -> wgpu::Buffer {
        self.gpu.storage_init("check input", bytemuck::cast_slice(data)).expect("a check buffer")
    }

    /// An output buffer of `len` floats, poisoned with NaN.
    pub fn poisoned(&self, len: usize) -> wgpu::Buffer {
        self.buffer_f32(&vec![f32::NAN; len.max(1)])
    }

    pub fn uniform(&self, bytes: &[u8]) -> wgpu::Buffer {
        self.gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("check uniform"),
            contents: bytes,
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    /// Runs the dispatches of `op` for a batch of n over `bufs` (by the names its plans use; "step" is the harness's
    /// step block), with its temporaries poisoned.
    pub async fn run(&self, op: &Lowered, n: usize, bufs: &[(&str, &wgpu::Buffer)]) {
        let temps: Vec<(String, wgpu::Buffer)> =
            op.temps.iter().map(|t| (t.name.clone(), self.poisoned(t.floats))).collect();
        let mut named: HashMap<&str, &wgpu::Buffer> = bufs.iter().copied().collect();
        named.insert("step", &self.step);
        for (name, b) in &temps {
            named.insert(name, b);
        }
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for p in &op.plans {
                let k = self.kernels.kernel(&self.gpu, p.entry, &p.constants).expect("a pipeline");
                let args: Vec<&wgpu::Buffer> = p
                    .args
                    .iter()
                    .map(|a| *named.get(a.as_str()).unwrap_or_else(|| panic!("{}: no buffer `{a}`", p.entry)))
                    .collect();
                let group = k.bind(&self.gpu, &args);
                let stepped = k.bindings.contains(&Access::Step);
                k.dispatch_workgroups(&mut pass, &group, stepped.then_some(0), (p.groups)(n));
            }
        }
        let idx = self.gpu.queue.submit([enc.finish()]);
        self.gpu.wait(Some(idx), "a check dispatch").await.expect("a check dispatch");
    }

    pub async fn read(&self, b: &wgpu::Buffer, len: usize) -> Vec<f32> {
        self.gpu.read_f32(b, 0, len, "a check output").await.expect("a check readback")
    }

    pub async fn read_u32(&self, b: &wgpu::Buffer, len: usize) -> Vec<u32> {
        self.gpu.read_u32(b, 0, len, "a check output").await.expect("a check readback")
    }
}

/// `len` values uniform in [lo, hi) from `seed` (never all zeros).
pub fn random(len: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
    let mut r: Rng = rng(seed);
    (0..len).map(|_| lo + (hi - lo) * uniform01(&mut r)).collect()
}

/// `len` labels in 0..classes from `seed`.
pub fn random_labels(len: usize, classes: u32, seed: u64) -> Vec<u8> {
    let mut r: Rng = rng(seed);
    (0..len).map(|_| ((uniform01(&mut r) * classes as f32) as u32).min(classes - 1) as u8).collect()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn abs(v: &[f32]) -> Vec<f64> {
    v.iter().map(|x| x.abs() as f64).collect()
}
