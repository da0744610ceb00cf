//! The network on the GPU: the study's layers lowered to op plans (`lower`), their buffers, and the recorded
//! sequence of dispatches for one training step (forward → loss → backward → SGD) and for evaluation.
//!
//! All state lives on the device: the datasets as u8, the one contiguous parameter buffer with its gradient and
//! momentum twins, every activation, and the running sums of loss and accuracy. The host records many steps into one
//! command buffer per submission and reads back only metrics.

use std::collections::HashMap;

use crate::data::Split;
use crate::engine::{Engine, FeatureMaps, Metrics, Probe};
use crate::model::{Arch, ConvLayer, DenseLayer, Normalization, CLASSES};

use super::kernels::{Access, Kernel, Kernels, STEP_BYTES, WEIGHT_WINDOW_BYTES};
use super::ops::conv2d::{self, Conv};
use super::ops::dense::{self, Dense, Source};
use super::ops::softmax_cross_entropy::{self, StatsLayout};
use super::ops::{classifier_head, load_batch, sgd, Caps, Family, Lowered, PerBatch, Plan};
use super::{pack_u8, Gpu, GpuError};

/// Most test images `probe` can look at in one call.
pub const PROBE_MAX: usize = 64;

/// Test images per evaluation chunk: small chunks for the simd family (CPU adapters: the result of every run so far
/// stays bit for bit the same), large ones for GPUs, which a chunk of 250 leaves mostly idle.
pub fn eval_batch(family: Family) -> usize {
    match family {
        Family::Simd => 250,
        Family::Tiled => 2000,
    }
}

/// A split as `lower` sees it: its image count and how its pixels are normalized.
pub type SplitInfo = (usize, Normalization);

/// MNIST's training and test splits, as `lower` sees them.
pub const MNIST_SPLITS: (SplitInfo, SplitInfo) = ((60_000, Normalization::MNIST), (10_000, Normalization::MNIST));

/// Threads that build pipelines at start-up.
const PIPELINE_THREADS: usize = 2;
/// Training steps recorded into one command buffer before it is submitted.
pub const STEPS_PER_SUBMIT: usize = 32;

/// Names of the buffers the lowered network reads and writes: `x` and `y` (the loaded batch), each layer's output
/// (`conv1.out`, `conv1.pooled`, `fc1.out`, …, the last dense layer's is `logits`) and the gradient of each layer's
/// pre-activation (`conv1.dz`, `fc1.dz`, …, `dlogits`).
fn out_name(arch: &Arch, d: &DenseLayer) -> String {
    if d.index == arch.denses().len() {
        "logits".into()
    } else {
        format!("fc{}.out", d.index)
    }
}

fn dz_name(arch: &Arch, d: &DenseLayer) -> String {
    if d.index == arch.denses().len() {
        "dlogits".into()
    } else {
        format!("fc{}.dz", d.index)
    }
}

fn conv_op(c: &ConvLayer) -> Conv {
    Conv { cin: c.cin, cout: c.cout, h: c.h, w: c.w, w_off: c.w_off, b_off: c.b_off }
}

fn dense_op(d: &DenseLayer) -> Dense {
    Dense { inp: d.inp, out: d.out, w_off: d.w_off, b_off: d.b_off }
}

/// What a dense layer reads: the input, the last convolution's output (pooled or not), or the dense layer before.
fn dense_input(arch: &Arch, d: &DenseLayer) -> String {
    match (d.index, arch.convs().last()) {
        (1, None) => "x".into(),
        (1, Some(c)) if c.pool => format!("conv{}.pooled", c.index),
        (1, Some(c)) => format!("conv{}.out", c.index),
        (i, _) => format!("fc{}.out", i - 1),
    }
}

/// The convolution that produced `c`'s input (none for the first).
fn conv_before<'a>(arch: &'a Arch, c: &ConvLayer) -> Option<&'a ConvLayer> {
    c.index.checked_sub(2).map(|i| &arch.convs()[i])
}

/// What a convolution reads: the input, or the output of the convolution before (pooled or not).
fn conv_input(arch: &Arch, c: &ConvLayer) -> String {
    match conv_before(arch, c) {
        None => "x".into(),
        Some(b) if b.pool => format!("conv{}.pooled", b.index),
        Some(b) => format!("conv{}.out", b.index),
    }
}

/// The forward pass of `arch`, tiles sized for `batch`: every convolution (with bias, ReLU and its max-pool fused),
/// then every dense layer (ReLU but for the last), from `x` to `logits`; with `head`, the last dense layer is left to
/// the head (`classifier_head`).
pub fn forward(arch: &Arch, caps: Caps, batch: usize, head: bool) -> Lowered {
    let mut l = Lowered::default();
    for cl in arch.convs() {
        let (out, pooled) = (format!("conv{}.out", cl.index), format!("conv{}.pooled", cl.index));
        let op = conv2d::forward(caps, &conv_op(cl), batch, true, cl.pool, &conv_input(arch, cl), &out, &pooled);
        l = l.then(op.layer(&format!("conv{}", cl.index)));
    }
    let denses = arch.denses();
    for d in &denses[..denses.len() - head as usize] {
        let op = dense::forward(caps, &dense_op(d), batch, d.relu, &dense_input(arch, d), &out_name(arch, d));
        l = l.then(op.layer(&format!("fc{}", d.index)));
    }
    l
}

/// The backward pass, from `dlogits` to every gradient in `grads`: layer by layer from the last, its weight gradient,
/// then the gradient of its input through the ReLU (and max-pool) that produced it (none for the first layer); with
/// `head`, from the last dense layer's input gradient, which the head wrote.
pub fn backward(arch: &Arch, caps: Caps, batch: usize, head: bool) -> Lowered {
    let mut l = Lowered::default();
    let denses = arch.denses();
    for d in denses[..denses.len() - head as usize].iter().rev() {
        let (name, dz, x) = (format!("fc{}", d.index), dz_name(arch, d), dense_input(arch, d));
        l = l.then(dense::backward_weight(caps, &dense_op(d), batch, &x, &dz, "grads").layer(&name));
        // Where the input came from: the last convolution (its ReLU output, pooled or not) or the dense layer before.
        let (dx, a, pooled) = match (d.index, arch.convs().last()) {
            (1, None) => continue,
            (1, Some(c)) => (format!("conv{}.dz", c.index), format!("conv{}.out", c.index), c.pool.then(|| c.out_hw())),
            (i, _) => (dz_name(arch, &arch.denses()[i - 2]), format!("fc{}.out", i - 1), None),
        };
        let src = match pooled {
            Some((ph, pw)) => Source::PooledRelu { a: &a, ph, pw },
            None => Source::Relu(&a),
        };
        l = l.then(dense::backward_input(caps, &dense_op(d), batch, &dz, &dx, src).layer(&name));
    }
    for cl in arch.convs().iter().rev() {
        let (name, dz) = (format!("conv{}", cl.index), format!("conv{}.dz", cl.index));
        let op = conv_op(cl);
        l = l.then(conv2d::backward_weight(caps, &op, batch, &conv_input(arch, cl), &dz, "grads", &name).layer(&name));
        if let Some(before) = conv_before(arch, cl) {
            let (dx, a) = (format!("conv{}.dz", before.index), format!("conv{}.out", before.index));
            let src = match before.pool {
                true => Source::PooledRelu { a: &a, ph: cl.h, pw: cl.w },
                false => Source::Relu(&a),
            };
            l = l.then(conv2d::backward_input(caps, &op, batch, &dz, &dx, src).layer(&name));
        }
    }
    l
}

/// The last dense layer and the one before it, where `caps` runs a training step's classifier head as one dispatch:
/// the tiled family with its head, a dense layer (with its ReLU) before the last, and a last layer the head kernel
/// takes (`classifier_head::fits`).
fn fused_head(arch: &Arch, caps: Caps) -> Option<(&DenseLayer, &DenseLayer)> {
    let denses = arch.denses();
    let [.., before, last] = denses else { return None };
    let ok = caps.family == Family::Tiled && caps.head && before.relu && classifier_head::fits(&dense_op(last));
    ok.then_some((last, before))
}

/// Everything a `GpuNetwork` dispatches, as plans over named buffers.
pub struct Program {
    pub arch: Arch,
    pub caps: Caps,
    pub batch: usize,
    pub eval_batch: usize,
    pub stats: StatsLayout,
    /// Loads a training batch (absent without a training set), a test chunk, and the probe's chosen test images.
    pub load_train: Option<Lowered>,
    pub load_test: Lowered,
    pub load_probe: Lowered,
    /// One training step after the load: forward, loss and its gradient, backward, SGD.
    pub train: Lowered,
    /// One evaluation chunk after the load: forward and loss.
    pub eval: Lowered,
}

/// Lowers `arch` for a device of `caps`, training batches of `batch` from `train` (image count, 0: no training, and
/// the normalization of its pixels) and evaluation over `test` (the same).
pub fn lower(arch: &Arch, caps: Caps, batch: usize, train: SplitInfo, test: SplitInfo) -> Program {
    let ((train_len, train_norm), (test_len, test_norm)) = (train, test);
    let eval_batch = eval_batch(caps.family);
    let steps = train_len.div_ceil(batch) + test_len.div_ceil(eval_batch);
    let stats = StatsLayout::new(steps);
    let loss = |backward| softmax_cross_entropy::loss(backward, CLASSES, stats, "logits", "y", "dlogits");
    let px = arch.input().pixels();
    let load = |count, norm, data, order| load_batch::load(count, px, norm, data, order, "x", "y");
    let head = fused_head(arch, caps);
    let train = match head {
        Some((last, before)) => {
            let (h, dh) = (out_name(arch, before), dz_name(arch, before));
            let op = classifier_head::train(&dense_op(last), stats, &h, "y", &dh);
            forward(arch, caps, batch, true).then(op.layer(&format!("fc{}", last.index)))
        }
        None => forward(arch, caps, batch, false).then(loss(true)),
    };
    let train = train.then(backward(arch, caps, batch, head.is_some())).then(sgd::step(arch.param_count()));
    Program {
        arch: arch.clone(),
        caps,
        batch,
        eval_batch,
        stats,
        load_train: (train_len > 0).then(|| load(train_len, train_norm, "train.data", "train.order")),
        load_test: load(test_len, test_norm, "test.data", "test.order"),
        load_probe: load(test_len, test_norm, "test.data", "probe.order"),
        train,
        eval: forward(arch, caps, eval_batch, false).then(loss(false)),
    }
}

impl Program {
    /// Every plan, each once per place it is dispatched from.
    pub fn plans(&self) -> impl Iterator<Item = &Plan> {
        let loads = self.load_train.iter().chain([&self.load_test, &self.load_probe]);
        loads.chain([&self.train, &self.eval]).flat_map(|l| l.plans.iter())
    }

    /// Floats of each named tensor (and temporary) the program uses; `train_len`, `test_len` as given to `lower`.
    fn tensors(&self) -> Vec<(String, usize)> {
        let (b, cap) = (self.batch, self.batch.max(self.eval_batch));
        let probe = b.max(PROBE_MAX);
        let arch = &self.arch;
        let count = arch.param_count();
        let mut t: Vec<(String, usize)> = vec![
            ("x".into(), cap.max(PROBE_MAX) * arch.input().pixels()),
            ("y".into(), cap),
            ("grads".into(), count),
            ("momentum".into(), count),
        ];
        for c in arch.convs() {
            let maps = c.out_len();
            // A pooled convolution stores its pre-pool output only for training and the probe.
            let stored = if c.pool { probe } else { cap.max(PROBE_MAX) };
            t.push((format!("conv{}.out", c.index), stored * maps));
            t.push((format!("conv{}.pooled", c.index), if c.pool { cap * maps / 4 } else { 1 }));
            t.push((format!("conv{}.dz", c.index), b * maps));
        }
        for d in arch.denses() {
            t.push((out_name(arch, d), cap * d.out));
            t.push((dz_name(arch, d), b * d.out));
        }
        for l in self.load_train.iter().chain([&self.load_test, &self.train, &self.eval]) {
            t.extend(l.temps.iter().map(|tmp| (tmp.name.clone(), tmp.floats)));
        }
        t
    }
}

/// Whether the kernels of `caps` can run `arch`: the simd family reads rows as pairs (even sides only) and the
/// convolutions' weights through a uniform window of `WEIGHT_WINDOW_BYTES` at the start of the parameters.
pub fn fits(arch: &Arch, caps: Caps) -> Result<(), String> {
    if caps.family != Family::Simd {
        return Ok(());
    }
    for c in arch.convs() {
        conv2d::check_shape(&conv_op(c)).map_err(|e| format!("the simd kernels cannot run conv{}: {e}", c.index))?;
        if let Some(b) = conv_before(arch, c).filter(|b| !b.pool) {
            return Err(format!(
                "the simd kernels cannot run conv{} right after conv{} without a pool (they carry ReLU's gradient back only through a pool)",
                c.index, b.index
            ));
        }
        let end = 4 * (c.b_off + c.cout) as u64;
        if end > WEIGHT_WINDOW_BYTES {
            return Err(format!(
                "the simd kernels cannot run conv{}: its weights end at byte {end} of the parameters, past the {WEIGHT_WINDOW_BYTES}-byte uniform window they read them through",
                c.index
            ));
        }
    }
    Ok(())
}

/// One pipeline the engine can create: its shader, entry point and override constants.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineSpec {
    pub file: &'static str,
    pub entry: &'static str,
    pub constants: Vec<(&'static str, f64)>,
}

/// Every pipeline the engine creates for the study's network, in every kernel family (the simd family with and
/// without its subgroup kernels), for training at batch 64 and 1024 with the full MNIST and for evaluation, plus the
/// subgroup probe and the peak kernels: what the compile-time, cross-compiler and browser tests build.
pub fn all_pipeline_specs() -> Vec<PipelineSpec> {
    let mut out: Vec<PipelineSpec> = Vec::new();
    let mut add = |entry: &'static str, constants: Vec<(&'static str, f64)>| {
        let spec = PipelineSpec { file: super::kernels::shader_for(entry).file, entry, constants };
        if !out.contains(&spec) {
            out.push(spec);
        }
    };
    for caps in [Caps::simd(true), Caps::simd(false), Caps::tiled(), Caps::tiled_unfused()] {
        for batch in [64, 1024] {
            for p in lower(&Arch::study(), caps, batch, MNIST_SPLITS.0, MNIST_SPLITS.1).plans() {
                add(p.entry, p.constants.clone());
            }
        }
    }
    add("subgroup_probe", Vec::new());
    for e in ["peak_fma", "peak_copy", "peak_touch"] {
        add(e, Vec::new());
    }
    out
}

/// One recorded dispatch: a pipeline, its bind group and its plan (size, work, label).
struct Op {
    kernel: Kernel,
    group: wgpu::BindGroup,
    groups: PerBatch<u64>,
    flops: PerBatch<f64>,
    bytes: PerBatch<f64>,
    label: String,
    /// The kernel has a per-step uniform block (bound with a dynamic offset).
    stepped: bool,
}

impl Op {
    fn record(&self, pass: &mut wgpu::ComputePass, step_offset: u32, n: usize) {
        let off = self.stepped.then_some(step_offset);
        self.kernel.dispatch_workgroups(pass, &self.group, off, (self.groups)(n));
    }
}

/// One op's time per dispatch, from `GpuNetwork::profile`.
#[derive(Clone, Debug)]
pub struct OpTime {
    pub name: String,
    pub seconds: f64,
    /// FLOPs of one dispatch (0 for ops that only move data).
    pub flops: f64,
    /// The fewest bytes one dispatch moves.
    pub bytes: f64,
}

/// A dataset on the device: pixels then labels as packed u8 in one buffer, and the sample order.
pub struct DeviceSplit {
    pub len: usize,
    data: wgpu::Buffer,
    order: wgpu::Buffer,
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

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct StepBlock {
    start: u32,
    n: u32,
    index: u32,
    /// Non-zero where the backward pass (or a probe) needs the pre-pool activations: conv2d_forward then stores them
    /// besides the pooled ones.
    full: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Hyper {
    lr: f32,
    momentum: f32,
    count: u32,
    _pad: u32,
}

/// The study's network on one GPU.
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
    stats_layout: StatsLayout,
    step_stride: u64,
    train_steps: usize,
    eval_steps: usize,
    load_train: Vec<Op>,
    load_test: Vec<Op>,
    load_probe: Vec<Op>,
    train_ops: Vec<Op>,
    eval_ops: Vec<Op>,
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
        let mut caps = gpu.caps;
        if let Err(why) = fits(arch, caps) {
            log::warn!("{why}; running the tiled kernels instead");
            caps = Caps::tiled();
        }
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
        fits(arch, caps).map_err(|message| GpuError::Arch { arch: arch.describe(), message })?;
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
        let (train_ops, eval_ops) = (bind(&program.train)?, bind(&program.eval)?);
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

    fn buffer(&self, name: &str) -> &wgpu::Buffer {
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

    fn offset(&self, entry: usize) -> u32 {
        (entry as u64 * self.step_stride) as u32
    }

    fn clear_metrics(&self) {
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        enc.clear_buffer(self.buffer("stats"), 0, Some(16));
        self.gpu.queue.submit([enc.finish()]);
    }

    pub async fn read_metrics(&self) -> Result<Metrics, GpuError> {
        let m = self.gpu.read_f32(self.buffer("stats"), 0, 3, "the metrics").await?;
        Ok(Metrics { loss_sum: m[0] as f64, correct: m[1] as usize, count: m[2] as usize })
    }

    /// Trains one epoch over the training set in `order` (a permutation of its indices). `progress(steps_done,
    /// running_metrics)` is called after each submission completes; returning `false` from it stops after that
    /// submission (Ctrl-C). Returns the epoch's metrics and each step's mean loss.
    pub async fn train_epoch(
        &mut self,
        order: &[u32],
        lr: f32,
        momentum: f32,
        progress: &mut dyn FnMut(usize, &Metrics) -> bool,
    ) -> Result<(Metrics, Vec<f32>), GpuError> {
        self.begin_epoch(order, lr, momentum);
        // Each chunk's command buffer ends by copying the running metrics into one of two staging buffers; chunk
        // k − 1's are read while chunk k runs, without a submission of their own (which would queue behind chunk k).
        let staging = [self.gpu.staging("metrics a", 16), self.gpu.staging("metrics b", 16)];
        let metrics = |bytes: Vec<u8>| {
            let m: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
            Metrics { loss_sum: m[0] as f64, correct: m[1] as usize, count: m[2] as usize }
        };
        let mut done = 0;
        let mut pending: Option<(wgpu::SubmissionIndex, usize, usize)> = None;
        let mut chunk = 0;
        while done < self.train_steps {
            let end = (done + STEPS_PER_SUBMIT).min(self.train_steps);
            let mut enc =
                self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("train") });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("train steps"),
                    timestamp_writes: None,
                });
                for s in done..end {
                    self.record_train_step(&mut pass, s);
                }
            }
            enc.copy_buffer_to_buffer(self.buffer("stats"), 0, &staging[chunk % 2], 0, 16);
            let idx = self.gpu.queue.submit([enc.finish()]);
            if let Some((prev, prev_end, prev_chunk)) = pending.replace((idx, end, chunk)) {
                let m = metrics(self.gpu.read_recorded(&staging[prev_chunk % 2], prev, "the running metrics").await?);
                if !progress(prev_end, &m) {
                    self.gpu.wait(pending.map(|p| p.0), "a chunk of training steps").await?;
                    return self.finish_epoch(end).await;
                }
            }
            done = end;
            chunk += 1;
        }
        if let Some((idx, end, last)) = pending {
            progress(end, &metrics(self.gpu.read_recorded(&staging[last % 2], idx, "the running metrics").await?));
        }
        self.finish_epoch(self.train_steps).await
    }

    async fn finish_epoch(&self, steps: usize) -> Result<(Metrics, Vec<f32>), GpuError> {
        let m = self.read_metrics().await?;
        Ok((m, self.step_losses(steps).await?))
    }

    /// Uploads the epoch's sample order and the SGD hyperparameters, and zeroes the running metrics.
    fn begin_epoch(&self, order: &[u32], lr: f32, momentum: f32) {
        let train = self.train.as_ref().expect("GpuNetwork was built without a training set");
        assert_eq!(order.len(), train.len);
        let hyper = Hyper { lr, momentum, count: self.arch.param_count() as u32, _pad: 0 };
        self.gpu.queue.write_buffer(self.buffer("hyper"), 0, bytemuck::bytes_of(&hyper));
        self.gpu.queue.write_buffer(&train.order, 0, bytemuck::cast_slice(order));
        self.clear_metrics();
    }

    /// Records one full training step (batch `s` of the epoch) into `pass`.
    fn record_train_step(&self, pass: &mut wgpu::ComputePass, s: usize) {
        let n = self.batch.min(self.train.as_ref().map_or(0, |t| t.len) - s * self.batch);
        let off = self.offset(s);
        for op in self.load_train.iter().chain(&self.train_ops) {
            op.record(pass, off, n);
        }
    }

    /// Runs `steps` training steps in `order` without reading anything back (for benchmarks and tests): steps
    /// 0, 1, ... of the epoch, wrapping round to its first batch again after the last, submitted in chunks.
    pub async fn train_steps_raw(
        &mut self,
        order: &[u32],
        lr: f32,
        momentum: f32,
        steps: usize,
    ) -> Result<(), GpuError> {
        self.begin_epoch(order, lr, momentum);
        let mut last = None;
        let mut done = 0;
        while done < steps {
            let end = (done + 8 * STEPS_PER_SUBMIT).min(steps);
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                for s in done..end {
                    self.record_train_step(&mut pass, s % self.train_steps);
                }
            }
            last = Some(self.gpu.queue.submit([enc.finish()]));
            done = end;
        }
        self.gpu.wait(last, "training steps").await
    }

    /// Runs `passes` forward passes over the whole test set (load, forward, loss), in one submission, and returns the
    /// number of images evaluated, reading nothing else back: inference throughput for `bench`.
    pub async fn evaluate_raw(&mut self, passes: usize) -> Result<usize, GpuError> {
        self.clear_metrics();
        let chunks = self.test.len.div_ceil(self.eval_batch);
        for ch in 0..chunks {
            let n = self.eval_batch.min(self.test.len - ch * self.eval_batch);
            self.write_step(self.train_steps + ch, ch * self.eval_batch, n, false);
        }
        // One submission per pass, all queued before the first wait: the GPU never idles, and each wait's timeout
        // covers one pass.
        let mut submitted = Vec::new();
        for _ in 0..passes {
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                for ch in 0..chunks {
                    let n = self.eval_batch.min(self.test.len - ch * self.eval_batch);
                    for op in self.load_test.iter().chain(&self.eval_ops) {
                        op.record(&mut pass, self.offset(self.train_steps + ch), n);
                    }
                }
            }
            submitted.push(self.gpu.queue.submit([enc.finish()]));
        }
        for idx in submitted {
            self.gpu.wait(Some(idx), "evaluation").await?;
        }
        Ok(self.read_metrics().await?.count)
    }

    /// The step losses of the last epoch's first `steps` steps.
    pub async fn step_losses(&self, steps: usize) -> Result<Vec<f32>, GpuError> {
        self.gpu.read_f32(self.buffer("stats"), self.stats_layout.losses, steps, "the step losses").await
    }

    /// Evaluates the current parameters on the test set: summed loss, correct count and every sample's predicted class.
    pub async fn evaluate(&mut self) -> Result<(Metrics, Vec<u32>), GpuError> {
        let (split, load) = (&self.test, &self.load_test);
        self.clear_metrics();
        let chunks = split.len.div_ceil(self.eval_batch);
        // One submission per chunk, all queued before the first wait: the GPU never idles, and each wait's timeout
        // covers one chunk (a big network on a software adapter takes minutes for the whole test set).
        let mut submitted = Vec::new();
        for ch in 0..chunks {
            let n = self.eval_batch.min(split.len - ch * self.eval_batch);
            let e = self.train_steps + ch;
            self.write_step(e, ch * self.eval_batch, n, false);
            let mut enc =
                self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("eval") });
            {
                let mut pass = enc
                    .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("eval"), timestamp_writes: None });
                for op in load.iter().chain(&self.eval_ops) {
                    op.record(&mut pass, self.offset(e), n);
                }
            }
            submitted.push(self.gpu.queue.submit([enc.finish()]));
        }
        for idx in submitted {
            self.gpu.wait(Some(idx), "evaluation").await?;
        }
        let m = self.read_metrics().await?;
        let preds =
            self.gpu.read_u32(self.buffer("stats"), self.stats_layout.preds, split.len, "the predictions").await?;
        Ok((m, preds))
    }

    /// Per-dispatch time of every op of a training step: the median of `reps` passes of one dispatch each, timed with
    /// GPU timestamp queries where the adapter has them (readings validated: non-zero, end after start), else by the
    /// wall clock of a submit-and-wait per pass. Returns the timer used and each op's time and work.
    pub async fn profile(&mut self, reps: usize) -> Result<(String, Vec<OpTime>), GpuError> {
        let reps = reps.max(1);
        let train_len = self.train.as_ref().map_or(0, |t| t.len);
        let n = self.batch.min(train_len);
        let order: Vec<u32> = (0..train_len as u32).collect();
        self.train_steps_raw(&order, 0.0, 0.0, 1).await?; // fills every buffer with real values
        let off = self.offset(0);
        let timestamps = self.gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY);
        let mut all_valid = timestamps;
        let mut out = Vec::new();
        for op in self.load_train.iter().chain(&self.train_ops) {
            let mut times = Vec::with_capacity(reps);
            if timestamps {
                let count = 2 * reps as u32;
                let qs = self.gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count,
                });
                let resolve = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timestamps"),
                    size: 8 * count as u64,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                let mut enc = self.gpu.device.create_command_encoder(&Default::default());
                for r in 0..reps as u32 {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(op.kernel.entry),
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: &qs,
                            beginning_of_pass_write_index: Some(2 * r),
                            end_of_pass_write_index: Some(2 * r + 1),
                        }),
                    });
                    op.record(&mut pass, off, n);
                }
                enc.resolve_query_set(&qs, 0..count, &resolve, 0);
                self.gpu.queue.submit([enc.finish()]);
                let raw = self.gpu.read_bytes(&resolve, 0, 8 * count as u64, "timestamps").await?;
                let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&raw);
                let period = self.gpu.queue.get_timestamp_period() as f64;
                for r in 0..reps {
                    let (a, b) = (ticks[2 * r], ticks[2 * r + 1]);
                    if a == 0 || b <= a {
                        all_valid = false;
                    }
                    times.push(b.saturating_sub(a) as f64 * period * 1e-9);
                }
            }
            if !all_valid {
                times.clear();
                for _ in 0..reps {
                    let t0 = web_time::Instant::now();
                    let mut enc = self.gpu.device.create_command_encoder(&Default::default());
                    {
                        let mut pass = enc.begin_compute_pass(&Default::default());
                        op.record(&mut pass, off, n);
                    }
                    let idx = self.gpu.queue.submit([enc.finish()]);
                    self.gpu.wait(Some(idx), "profiling").await?;
                    times.push(t0.elapsed().as_secs_f64());
                }
            }
            times.sort_by(|a, b| a.total_cmp(b));
            out.push(OpTime {
                name: op.label.clone(),
                seconds: times[times.len() / 2],
                flops: (op.flops)(n),
                bytes: (op.bytes)(n),
            });
        }
        Ok((if all_valid { "gpu timestamps" } else { "wall clock" }.to_string(), out))
    }

    /// Dispatches of one training step (load included).
    pub fn dispatches_per_step(&self) -> usize {
        self.load_train.len() + self.train_ops.len()
    }

    /// Runs the forward pass on the chosen test images and reads back their activations and logits.
    pub async fn probe(&mut self, samples: &[u32]) -> Result<Probe, GpuError> {
        let n = samples.len();
        assert!(n > 0 && n <= PROBE_MAX && samples.iter().all(|&s| (s as usize) < self.test.len));
        self.gpu.queue.write_buffer(self.buffer("probe.order"), 0, bytemuck::cast_slice(samples));
        let e = self.train_steps;
        self.write_step(e, 0, n, true);
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            let eval_forward = &self.eval_ops[..self.eval_ops.len() - 1]; // without the loss
            for op in self.load_probe.iter().chain(eval_forward) {
                op.record(&mut pass, self.offset(e), n);
            }
        }
        let idx = self.gpu.queue.submit([enc.finish()]);
        self.gpu.wait(Some(idx), "the probe forward pass").await?;
        let mut maps = Vec::new();
        for c in self.arch.convs() {
            let what = format!("conv{} activations", c.index);
            let values =
                self.gpu.read_f32(self.buffer(&format!("conv{}.out", c.index)), 0, n * c.out_len(), &what).await?;
            maps.push(FeatureMaps { channels: c.cout, height: c.h, width: c.w, values });
        }
        let input = self.arch.input();
        Ok(Probe {
            x: self.gpu.read_f32(self.buffer("x"), 0, n * input.pixels(), "probe inputs").await?,
            input,
            norm: self.norm,
            maps,
            logits: self.gpu.read_f32(self.buffer("logits"), 0, n * CLASSES, "logits").await?,
        })
    }

    /// Writes step block `e`; `full`: conv2d_forward also stores the pre-pool activations.
    fn write_step(&self, e: usize, start: usize, n: usize, full: bool) {
        assert!(e < self.train_steps + self.eval_steps);
        let b = StepBlock { start: start as u32, n: n as u32, index: e as u32, full: u32::from(full) };
        self.gpu.queue.write_buffer(self.buffer("step"), self.offset(e) as u64, bytemuck::bytes_of(&b));
    }
}

impl Engine for GpuNetwork {
    fn device(&self) -> crate::device::DeviceInfo {
        crate::device::DeviceInfo::of(&self.gpu.adapter, &self.caps)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::ops::tiles::TARGET_GROUPS;

    /// On a big GPU the tiled family keeps every multiprocessor busy: at batch 64, each dispatch of a training step
    /// that does more than 1 MFLOP launches at least two waves of one workgroup per multiprocessor on a
    /// 132-multiprocessor GPU (264 workgroups; the tiles aim for 8 per multiprocessor, `TARGET_GROUPS`). Checked from
    /// the sizing functions the network dispatches with: no GPU needed.
    #[test]
    fn a_batch_of_64_fills_a_132_multiprocessor_gpu() {
        let program = lower(&Arch::study(), Caps::tiled(), 64, MNIST_SPLITS.0, MNIST_SPLITS.1);
        let mut checked = 0;
        for p in &program.train.plans {
            let (flops, groups) = ((p.flops)(64), (p.groups)(64));
            eprintln!("{:<50} {:>8.2} MFLOP {:>6} workgroups", p.label, flops / 1e6, groups);
            if flops > 1e6 {
                assert!(groups >= 2 * 132, "{}: {groups} workgroups for {:.1} MFLOP", p.label, flops / 1e6);
                checked += 1;
            }
        }
        assert_eq!(
            checked, 8,
            "dispatches over 1 MFLOP: 2 conv forward, fc1 forward, its two gradients, 3 conv gradients"
        );
        const { assert!(TARGET_GROUPS >= 2 * 132) };
        // The checker fails where a kernel would not fill the GPU: the simd family's fc1 forward launches 32
        // workgroups of 8 threads.
        let simd = lower(&Arch::study(), Caps::simd(false), 64, MNIST_SPLITS.0, MNIST_SPLITS.1);
        let fc1 = simd.train.plans.iter().find(|p| p.label == "dense_forward fc1").expect("fc1");
        assert!((fc1.groups)(64) < 2 * 132);
    }
}
