//! The network on one GPU: all state lives on the device (the datasets as u8, the one contiguous parameter buffer
//! with its gradient and momentum twins, every activation, the running sums of loss and accuracy), with the pipelines
//! of its lowered program (`net::lower`) bound to them. `net::run` records and submits its work, `net::profile` times
//! it.

use std::collections::HashMap;

use super::lower::{lower, PROBE_MAX};
use crate::data::Split;
use crate::engine::{DeviceInfo, Engine, Metrics, Probe};
use crate::gpu::caps;
use crate::gpu::device::{pack_u8, Gpu};
use crate::gpu::error::GpuError;
use crate::gpu::family::Caps;
use crate::gpu::ops::plan::{Lowered, PerBatch};
use crate::gpu::ops::softmax_cross_entropy::StatsLayout;
use crate::gpu::pipelines::{Kernel, Kernels};
use crate::gpu::shader::{Access, STEP_BYTES, WEIGHT_WINDOW_BYTES};
use crate::model::{Arch, Normalization};

/// Threads that build pipelines at start-up.
const PIPELINE_THREADS: usize = 2;

/// One recorded dispatch: a pipeline, its bind group and its plan (size, work, label).
pub(super) struct Op {
    pub(super) kernel: Kernel,
    group: wgpu::BindGroup,
    groups: PerBatch<u64>,
    pub(super) flops: PerBatch<f64>,
    pub(super) bytes: PerBatch<f64>,
    pub(super) label: String,
    /// The kernel has a per-step uniform block (bound with a dynamic offset).
    stepped: bool,
}

impl Op {
    pub(super) fn record(&self, pass: &mut wgpu::ComputePass, step_offset: u32, n: usize) {
        let off = self.stepped.then_some(step_offset);
        self.kernel.dispatch_workgroups(pass, &self.group, off, (self.groups)(n));
    }
}

/// A dataset on the device: pixels then labels as packed u8 in one buffer, and the sample order.
pub struct DeviceSplit {
    pub len: usize,
    data: wgpu::Buffer,
    pub(super) order: wgpu::Buffer,
}

impl DeviceSplit {
    pub fn upload(gpu: &Gpu, name: &str, split: &Split) -> Result<DeviceSplit, GpuError> {
        let len = split.len();
        let identity: Vec<u32> = (0..len as u32).chain([0]).collect();
        let bytes: Vec<u8> = split.images.iter().chain(&split.labels).copied().collect();
        Ok(DeviceSplit {
            len,
            data: gpu.storage_init(&format!("{name} data"), &pack_u8(&bytes))?,
            order: gpu.storage_init(&format!("{name} order"), bytemuck::cast_slice(&identity))?,
        })
    }
}

/// The per-step uniform block, as `shaders/step.wgsl` declares it.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct StepBlock {
    pub(super) start: u32,
    pub(super) n: u32,
    pub(super) index: u32,
    /// Non-zero where the backward pass (or a probe) needs the pre-pool activations: the forward convolutions then
    /// store them besides the pooled ones.
    pub(super) full: u32,
}

/// SGD's hyperparameters, as `shaders/sgd_step.wgsl` declares them.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Hyper {
    pub(super) lr: f32,
    pub(super) momentum: f32,
    pub(super) count: u32,
    pub(super) _pad: u32,
}

/// A network on one GPU.
pub struct GpuNetwork {
    pub gpu: Gpu,
    pub arch: Arch,
    /// How the test split's pixels are normalized (`data::load` makes it the training split's).
    pub norm: Normalization,
    pub caps: Caps,
    pub batch: usize,
    pub eval_batch: usize,
    pub train: Option<DeviceSplit>,
    pub test: DeviceSplit,
    buffers: HashMap<String, wgpu::Buffer>,
    pub(super) stats_layout: StatsLayout,
    step_stride: u64,
    pub(super) train_steps: usize,
    pub(super) eval_steps: usize,
    pub(super) load_train: Vec<Op>,
    pub(super) load_test: Vec<Op>,
    pub(super) load_probe: Vec<Op>,
    pub(super) train_ops: Vec<Op>,
    pub(super) eval_ops: Vec<Op>,
    /// Seconds spent creating shader modules and pipelines and uploading the data.
    pub pipeline_seconds: f64,
}

impl GpuNetwork {
    /// Uploads the data, creates every buffer and pipeline, and sets the parameters. The kernels are the device's
    /// (`gpu.caps`), or the tiled family where the simd kernels cannot take `arch` (said in a warning).
    pub fn new(
        gpu: Gpu,
        arch: &Arch,
        batch: usize,
        train: Option<&Split>,
        test: &Split,
        params: &[f32],
    ) -> Result<GpuNetwork, GpuError> {
        let caps = caps::for_network(arch, &gpu);
        Self::with_caps(gpu, caps, arch, batch, train, test, params)
    }

    /// The same with the kernels of `caps` (tests compare families on one device; a simd `caps` with subgroups needs
    /// a device opened for them).
    pub fn with_caps(
        gpu: Gpu,
        caps: Caps,
        arch: &Arch,
        batch: usize,
        train: Option<&Split>,
        test: &Split,
        params: &[f32],
    ) -> Result<GpuNetwork, GpuError> {
        assert_eq!(params.len(), arch.param_count());
        assert!(batch > 0);
        assert!(!caps.subgroups_of_8 || gpu.subgroups_of_8, "subgroup kernels on a device without them");
        let caps = caps.within(&gpu.limits);
        caps::for_arch(arch, caps).map_err(|message| GpuError::Arch { arch: arch.describe(), message })?;
        for s in train.iter().chain([&test]) {
            if s.shape != arch.input() {
                let message = format!("the data's images are {}, the network reads {}", s.shape, arch.input());
                return Err(GpuError::Arch { arch: arch.describe(), message });
            }
        }
        let train_len = train.map_or(0, |s| s.len());
        let norm = test.norm;
        let program = lower(arch, caps, batch, (train_len, train.map_or(norm, |t| t.norm)), (test.len(), norm));
        let f32b = |n: usize| (n * 4) as u64;
        // The largest activation decides whether the batch fits the adapter's binding limit: say so up front.
        let tensors = program.tensors();
        if let Some((name, floats)) = tensors.iter().max_by_key(|(_, f)| *f) {
            if f32b(*floats) > gpu.limits.max_storage_buffer_binding_size {
                return Err(GpuError::TooLarge {
                    what: format!("batch size {batch} (tensor `{name}`: {floats} floats)"),
                    needed: f32b(*floats),
                    limit: gpu.limits.max_storage_buffer_binding_size,
                    limit_name: "max_storage_buffer_binding_size",
                    adapter: gpu.adapter.line(),
                });
            }
        }

        let t0 = web_time::Instant::now();
        let train = train.map(|s| DeviceSplit::upload(&gpu, "train", s)).transpose()?;
        let test = DeviceSplit::upload(&gpu, "test", test)?;
        let mut buffers: HashMap<String, wgpu::Buffer> = HashMap::new();
        // A temporary of the training step and of evaluation may share a name (sized for each batch): the larger.
        let mut sizes: Vec<(String, usize)> = Vec::new();
        for (name, floats) in &tensors {
            match sizes.iter_mut().find(|(n, _)| n == name) {
                Some(e) => e.1 = e.1.max(*floats),
                None => sizes.push((name.clone(), *floats)),
            }
        }
        for (name, floats) in &sizes {
            buffers.insert(name.clone(), gpu.storage(name, f32b(*floats))?);
        }
        // At least the simd convolutions' uniform weight window, zero-padded (a small network is smaller).
        let mut padded = params.to_vec();
        padded.resize(params.len().max(WEIGHT_WINDOW_BYTES as usize / 4), 0.0);
        buffers.insert("params".into(), gpu.storage_init("params", bytemuck::cast_slice(&padded))?);
        buffers.insert("probe.order".into(), gpu.storage("probe order", 4 * PROBE_MAX as u64)?);
        buffers.insert("test.data".into(), test.data.clone());
        buffers.insert("test.order".into(), test.order.clone());
        if let Some(t) = &train {
            buffers.insert("train.data".into(), t.data.clone());
            buffers.insert("train.order".into(), t.order.clone());
        }
        // Training steps record the predictions of their samples too (at their index in the training set).
        let stats_words = program.stats.words(test.len.max(train_len));
        buffers.insert("stats".into(), gpu.storage("stats", 4 * stats_words as u64)?);
        buffers.insert(
            "hyper".into(),
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("hyper"),
                size: std::mem::size_of::<Hyper>() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        );
        let train_steps = train_len.div_ceil(batch);
        let eval_steps = test.len.div_ceil(program.eval_batch);
        let step_stride = (gpu.limits.min_uniform_buffer_offset_alignment as u64).max(STEP_BYTES);
        let entries = train_steps + eval_steps;
        buffers.insert(
            "step".into(),
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("steps"),
                size: step_stride * entries as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        );

        // Every pipeline, built ahead on two threads (lavapipe compiles on the creating thread), then bound.
        let kernels = Kernels::new();
        let mut specs: Vec<(&'static str, Vec<(&'static str, f64)>)> = Vec::new();
        for p in program.plans() {
            if !specs.iter().any(|(e, k)| *e == p.entry && *k == p.constants) {
                specs.push((p.entry, p.constants.clone()));
            }
        }
        kernels.prepare(&gpu, &specs, PIPELINE_THREADS)?;
        let bind = |lowered: &Lowered| -> Result<Vec<Op>, GpuError> {
            lowered
                .plans
                .iter()
                .map(|p| {
                    let kernel = kernels.kernel(&gpu, p.entry, &p.constants)?;
                    let bufs: Vec<&wgpu::Buffer> = p
                        .args
                        .iter()
                        .map(|a| buffers.get(a).unwrap_or_else(|| panic!("{}: no buffer named `{a}`", p.entry)))
                        .collect();
                    let group = kernel.bind(&gpu, &bufs);
                    Ok(Op {
                        stepped: kernel.bindings.contains(&Access::Step),
                        kernel,
                        group,
                        groups: p.groups.clone(),
                        flops: p.flops.clone(),
                        bytes: p.bytes.clone(),
                        label: p.label.clone(),
                    })
                })
                .collect()
        };
        let load_train = match &program.load_train {
            Some(l) => bind(l)?,
            None => Vec::new(),
        };
        let (load_test, load_probe) = (bind(&program.load_test)?, bind(&program.load_probe)?);
        let train_ops = match program.training() {
            Some(l) => bind(l)?,
            None => Vec::new(),
        };
        let eval_ops = bind(&program.eval)?;
        gpu.check()?;

        // Step blocks: the training batches of an epoch, then the evaluation chunks.
        let mut blocks = vec![0u8; (step_stride * entries as u64) as usize];
        let put = |blocks: &mut Vec<u8>, e: usize, start: usize, n: usize| {
            let full = u32::from(e < train_steps);
            let b = StepBlock { start: start as u32, n: n as u32, index: e as u32, full };
            let o = e * step_stride as usize;
            blocks[o..o + STEP_BYTES as usize].copy_from_slice(bytemuck::bytes_of(&b));
        };
        for s in 0..train_steps {
            put(&mut blocks, s, s * batch, batch.min(train_len - s * batch));
        }
        for c in 0..eval_steps {
            put(&mut blocks, train_steps + c, c * program.eval_batch, program.eval_batch);
        }
        gpu.queue.write_buffer(&buffers["step"], 0, &blocks);
        // Natively the upload is waited for, so that `pipeline_seconds` includes it; a browser cannot block here, and
        // the first submission queues behind the upload anyway.
        #[cfg(not(target_arch = "wasm32"))]
        pollster::block_on(gpu.wait(Some(gpu.queue.submit([])), "uploading the data"))?;
        let pipeline_seconds = t0.elapsed().as_secs_f64();

        Ok(GpuNetwork {
            gpu,
            arch: arch.clone(),
            norm,
            caps,
            batch,
            eval_batch: program.eval_batch,
            train,
            test,
            buffers,
            stats_layout: program.stats,
            step_stride,
            train_steps,
            eval_steps,
            load_train,
            load_test,
            load_probe,
            train_ops,
            eval_ops,
            pipeline_seconds,
        })
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.train_steps
    }

    pub(super) fn buffer(&self, name: &str) -> &wgpu::Buffer {
        &self.buffers[name]
    }

    pub fn set_params(&self, params: &[f32]) {
        assert_eq!(params.len(), self.arch.param_count());
        self.gpu.queue.write_buffer(self.buffer("params"), 0, bytemuck::cast_slice(params));
    }

    pub fn set_momentum(&self, momentum: &[f32]) {
        assert_eq!(momentum.len(), self.arch.param_count());
        self.gpu.queue.write_buffer(self.buffer("momentum"), 0, bytemuck::cast_slice(momentum));
    }

    pub async fn params(&self) -> Result<Vec<f32>, GpuError> {
        self.gpu.read_f32(self.buffer("params"), 0, self.arch.param_count(), "the parameters").await
    }

    pub async fn momentum(&self) -> Result<Vec<f32>, GpuError> {
        self.gpu.read_f32(self.buffer("momentum"), 0, self.arch.param_count(), "the momentum").await
    }

    pub async fn grads(&self) -> Result<Vec<f32>, GpuError> {
        self.gpu.read_f32(self.buffer("grads"), 0, self.arch.param_count(), "the gradients").await
    }

    pub(super) fn offset(&self, entry: usize) -> u32 {
        (entry as u64 * self.step_stride) as u32
    }

    pub(super) fn clear_metrics(&self) {
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        enc.clear_buffer(self.buffer("stats"), 0, Some(16));
        self.gpu.queue.submit([enc.finish()]);
    }

    pub async fn read_metrics(&self) -> Result<Metrics, GpuError> {
        let m = self.gpu.read_f32(self.buffer("stats"), 0, 3, "the metrics").await?;
        Ok(Metrics { loss_sum: m[0] as f64, correct: m[1] as usize, count: m[2] as usize })
    }
}

impl Engine for GpuNetwork {
    fn device(&self) -> DeviceInfo {
        self.gpu.info(&self.caps)
    }
    fn arch(&self) -> &Arch {
        &self.arch
    }
    async fn train_epoch(
        &mut self,
        order: &[u32],
        lr: f32,
        momentum: f32,
        progress: &mut dyn FnMut(usize, &Metrics) -> bool,
    ) -> anyhow::Result<(Metrics, Vec<f32>)> {
        Ok(GpuNetwork::train_epoch(self, order, lr, momentum, progress).await?)
    }
    async fn evaluate(&mut self) -> anyhow::Result<(Metrics, Vec<u32>)> {
        Ok(GpuNetwork::evaluate(self).await?)
    }
    async fn probe(&mut self, samples: &[u32]) -> anyhow::Result<Probe> {
        Ok(GpuNetwork::probe(self, samples).await?)
    }
    fn steps_per_epoch(&self) -> usize {
        self.train_steps
    }
    async fn params(&self) -> anyhow::Result<Vec<f32>> {
        Ok(GpuNetwork::params(self).await?)
    }
    fn set_params(&mut self, params: &[f32]) -> anyhow::Result<()> {
        GpuNetwork::set_params(self, params);
        Ok(())
    }
    async fn momentum(&self) -> anyhow::Result<Vec<f32>> {
        Ok(GpuNetwork::momentum(self).await?)
    }
    fn set_momentum(&mut self, momentum: &[f32]) -> anyhow::Result<()> {
        GpuNetwork::set_momentum(self, momentum);
        Ok(())
    }
}
