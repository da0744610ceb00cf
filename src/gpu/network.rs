//! The network on the GPU: its buffers, the pipelines of each layer, and the recorded sequence of dispatches for one
//! training step (forward → loss → backward → SGD) and for evaluation.
//!
//! All state lives on the device: the datasets as u8, the one contiguous parameter buffer with its gradient and
//! momentum twins, every activation, and running sums of loss and accuracy. The host records many steps into one
//! command buffer per submission and reads back only metrics.

use crate::data::Split;
use crate::engine::{Engine, Metrics, Probe};
use crate::model::*;

use super::kernels::{conv2d, dense, Kernel, Kernels, Spec, STEP_BYTES};
use super::{pack_u8, Gpu, GpuError};

/// Most test images `probe` can look at in one call.
pub const PROBE_MAX: usize = 64;

/// Evaluation batch size (a chunk of the test set per forward pass).
pub const EVAL_BATCH: usize = 250;
/// Workgroups per channel block of conv1's weight gradient (conv2d_backward_weight's SPLIT): conv1 has a single block,
/// which would otherwise run on one core.
const CONV1_BW_SPLIT: usize = 8;
/// Threads that build pipelines at start-up.
const PIPELINE_THREADS: usize = 2;
/// Training steps recorded into one command buffer before it is submitted.
pub const STEPS_PER_SUBMIT: usize = 32;

/// How many threads or workgroups one dispatch of an op needs for a batch of n: the sizing functions of
/// `kernels::conv2d` and `kernels::dense` (the ones the parity tests dispatch with), or a count per sample.
enum Size {
    /// `f(n)` threads, rounded up to whole workgroups.
    Threads(Box<dyn Fn(usize) -> u64>),
    /// `f(n)` workgroups.
    Groups(Box<dyn Fn(usize) -> u64>),
}

impl Size {
    fn threads(f: impl Fn(usize) -> u64 + 'static) -> Size {
        Size::Threads(Box::new(f))
    }

    fn groups(f: impl Fn(usize) -> u64 + 'static) -> Size {
        Size::Groups(Box::new(f))
    }

    /// `per_sample` threads per sample of the batch.
    fn per_sample(per_sample: usize) -> Size {
        Size::threads(move |n| (per_sample * n) as u64)
    }

    /// The same number of workgroups whatever the batch.
    fn fixed(groups: u64) -> Size {
        Size::groups(move |_| groups)
    }
}

/// One recorded dispatch: a pipeline, its bind group and its size.
struct Op {
    kernel: Kernel,
    group: wgpu::BindGroup,
    size: Size,
}

impl Op {
    /// The entry point and its shape constants, e.g. `conv2d_forward CIN=16 COUT=32 H=14`.
    fn label(&self) -> String {
        let shape: Vec<String> = self
            .kernel
            .constants
            .iter()
            .filter(|(k, _)| !k.ends_with("_OFF"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{} {}", self.kernel.entry, shape.join(" ")).trim().to_string()
    }

    /// FLOPs of one dispatch for a batch of n, from the kernel's shape constants.
    fn flops(&self, n: usize) -> f64 {
        let get = |k: &str| self.kernel.constants.iter().find(|(name, _)| name == k).map_or(0.0, |c| c.1);
        let n = n as f64;
        // A subgroup variant does the same work as its plain twin.
        match self.kernel.entry.trim_end_matches("_subgroup") {
            "conv2d_forward" | "conv2d_backward_input" | "conv2d_backward_weight" => {
                2.0 * n * get("CIN") * get("COUT") * 9.0 * get("H") * get("W")
            }
            "dense_forward" | "dense_backward_input" | "dense_backward_weight" => 2.0 * n * get("IN") * get("OUT"),
            _ => 0.0,
        }
    }

    fn record(&self, pass: &mut wgpu::ComputePass, step_offset: Option<u32>, n: usize) {
        match &self.size {
            Size::Threads(f) => self.kernel.dispatch(pass, &self.group, step_offset, f(n)),
            Size::Groups(f) => self.kernel.dispatch_workgroups(pass, &self.group, step_offset, f(n)),
        }
    }
}

/// One op's time per dispatch, from `GpuNetwork::profile`.
#[derive(Clone, Debug)]
pub struct OpTime {
    pub name: String,
    pub seconds: f64,
    /// Multiply-add FLOPs of one dispatch (0 for ops that only move data).
    pub flops: f64,
}

/// A dataset on the device: images and labels as packed u8, and the sample order.
pub struct DeviceSplit {
    pub len: usize,
    images: wgpu::Buffer,
    labels: wgpu::Buffer,
    indices: wgpu::Buffer,
}

impl DeviceSplit {
    pub fn upload(gpu: &Gpu, name: &str, split: &Split) -> Result<DeviceSplit, GpuError> {
        let len = split.len();
        let identity: Vec<u32> = (0..len as u32).collect();
        Ok(DeviceSplit {
            len,
            images: gpu.storage_init(&format!("{name} images"), &pack_u8(&split.images))?,
            labels: gpu.storage_init(&format!("{name} labels"), &pack_u8(&split.labels))?,
            indices: gpu.storage_init(
                &format!("{name} order"),
                bytemuck::cast_slice(&identity.iter().copied().chain([0]).collect::<Vec<_>>()),
            )?,
        })
    }
}

/// The activations and gradients of one batch.
struct Activations {
    x: wgpu::Buffer,
    y: wgpu::Buffer,
    a1: wgpu::Buffer,
    p1: wgpu::Buffer,
    a2: wgpu::Buffer,
    p2: wgpu::Buffer,
    h: wgpu::Buffer,
    logits: wgpu::Buffer,
    dlogits: wgpu::Buffer,
    dh: wgpu::Buffer,
    dp2: wgpu::Buffer,
    dz2: wgpu::Buffer,
    dp1: wgpu::Buffer,
    dz1: wgpu::Buffer,
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
    pub batch: usize,
    pub train: Option<DeviceSplit>,
    pub test: DeviceSplit,
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    momentum: wgpu::Buffer,
    hyper: wgpu::Buffer,
    steps: wgpu::Buffer,
    step_stride: u64,
    train_steps: usize,
    eval_steps: usize,
    metrics: wgpu::Buffer,
    step_loss: wgpu::Buffer,
    preds: wgpu::Buffer,
    acts: Activations,
    load_train: Option<Op>,
    load_test: Op,
    /// Gathers chosen test images (`probe_indices`) for `probe`.
    load_probe: Op,
    probe_indices: wgpu::Buffer,
    forward: Vec<Op>,
    loss_backward: Op,
    loss_forward: Op,
    backward: Vec<Op>,
    sgd: Op,
    /// Seconds spent creating shader modules and pipelines.
    pub pipeline_seconds: f64,
}

impl GpuNetwork {
    /// Uploads the data, creates every buffer and pipeline, and sets the parameters.
    pub fn new(
        gpu: Gpu,
        batch: usize,
        train: Option<&Split>,
        test: &Split,
        params: &[f32],
    ) -> Result<GpuNetwork, GpuError> {
        assert_eq!(params.len(), PARAM_COUNT);
        assert!(batch > 0);
        let cap = batch.max(EVAL_BATCH);
        let f32b = |n: usize| (n * 4) as u64;
        // The largest activation decides whether the batch fits the adapter's binding limit: say so up front.
        let largest = f32b(cap * C1 * H1 * H1);
        if largest > gpu.limits.max_storage_buffer_binding_size {
            return Err(GpuError::TooLarge {
                what: format!("batch size {batch} (conv1 activations: {cap} × 16 × 28 × 28 floats)"),
                needed: largest,
                limit: gpu.limits.max_storage_buffer_binding_size,
                limit_name: "max_storage_buffer_binding_size",
                adapter: gpu.adapter.line(),
            });
        }

        let t0 = std::time::Instant::now();
        let kernels = Kernels::new(&gpu)?;
        let train = train.map(|s| DeviceSplit::upload(&gpu, "train", s)).transpose()?;
        let test = DeviceSplit::upload(&gpu, "test", test)?;
        let st = |label: &str, n: usize| gpu.storage(label, f32b(n));
        let acts = Activations {
            x: st("x", cap * IMAGE_PIXELS)?,
            y: st("labels", cap)?,
            a1: st("a1", cap * C1 * H1 * H1)?,
            p1: st("p1", cap * C1 * P1 * P1)?,
            a2: st("a2", cap * C2 * P1 * P1)?,
            p2: st("p2", cap * FLAT)?,
            h: st("h", cap * HIDDEN)?,
            logits: st("logits", cap * CLASSES)?,
            dlogits: st("dlogits", cap * CLASSES)?,
            dh: st("dh", cap * HIDDEN)?,
            dp2: st("dp2", cap * FLAT)?,
            dz2: st("dz2", cap * C2 * P1 * P1)?,
            dp1: st("dp1", cap * C1 * P1 * P1)?,
            dz1: st("dz1", cap * C1 * H1 * H1)?,
        };
        let params_buf = gpu.storage_init("params", bytemuck::cast_slice(params))?;
        let grads = st("grads", PARAM_COUNT)?;
        let partials = st("conv1 weight-gradient parts", conv2d::partials_len(1, C1, CONV1_BW_SPLIT))?;
        let momentum = st("momentum", PARAM_COUNT)?;
        let hyper = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("hyper"),
            size: std::mem::size_of::<Hyper>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let train_len = train.as_ref().map_or(0, |t| t.len);
        let train_steps = train_len.div_ceil(batch);
        let eval_steps = test.len.max(train_len).div_ceil(EVAL_BATCH);
        let step_stride = (gpu.limits.min_uniform_buffer_offset_alignment as u64).max(STEP_BYTES);
        let entries = train_steps + eval_steps;
        let steps = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("steps"),
            size: step_stride * entries as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let metrics = st("metrics", 4)?;
        let step_loss = st("step loss", entries)?;
        let preds_buf = gpu.storage("predictions", 4 * test.len.max(train_len).max(1) as u64)?;

        let c = |name: &'static str, v: usize| (name, v as f64);
        let relu = |on: bool| ("RELU", if on { 1.0 } else { 0.0 });
        let a = &acts;
        let op = |kernel: Kernel, bufs: &[&wgpu::Buffer], size: Size| {
            let group = kernel.bind(&gpu, bufs);
            Op { kernel, group, size }
        };

        let load = |split: &DeviceSplit| -> Result<Op, GpuError> {
            let k = kernels.kernel(&gpu, "load_batch", &[])?;
            Ok(op(
                k,
                &[&split.images, &split.labels, &split.indices, &a.x, &a.y, &steps],
                Size::per_sample(IMAGE_PIXELS),
            ))
        };
        let load_train = train.as_ref().map(load).transpose()?;
        let load_test = load(&test)?;
        let probe_indices = gpu.storage("probe order", 4 * PROBE_MAX as u64)?;
        let load_probe = op(
            kernels.kernel(&gpu, "load_batch", &[])?,
            &[&test.images, &test.labels, &probe_indices, &a.x, &a.y, &steps],
            Size::per_sample(IMAGE_PIXELS),
        );

        // The forward convolution and the weight gradient: the subgroup kernels where the adapter has subgroups of 8
        // (lavapipe), else the plain ones.
        let conv_entry = if gpu.subgroups_of_8 { "conv2d_forward_subgroup" } else { "conv2d_forward" };
        let bw_entry = if gpu.subgroups_of_8 { "conv2d_backward_weight_subgroup" } else { "conv2d_backward_weight" };
        let dense_entry = if gpu.subgroups_of_8 { "dense_forward_subgroup" } else { "dense_forward" };
        // The gradients' subgroup kernels read dy as vec4s: fc1 (128 outputs) takes them, fc2 (10) the plain ones.
        let grad_subgroup =
            |inp: usize, out: usize| gpu.subgroups_of_8 && inp.is_multiple_of(4) && out.is_multiple_of(4);
        // Threads of a dense forward (`out` features) or input-gradient (`out` = the layer's inputs) kernel.
        let dense_size = |subgroup: bool, out: usize| {
            if subgroup {
                Size::threads(move |n| dense::subgroup_threads(n, out))
            } else {
                Size::threads(move |n| dense::threads(n, out))
            }
        };
        let bw_groups = |cin: usize, cout: usize| {
            if gpu.subgroups_of_8 {
                conv2d::backward_weight_subgroup_groups(cin, cout)
            } else {
                conv2d::backward_weight_groups(cin, cout)
            }
        };
        // The pipelines of the big unrolled kernels, built ahead on two threads (costliest first), then taken below.
        let conv_spec = |cin, cout, h, w_off, b_off| -> Spec {
            let k = vec![c("CIN", cin), c("COUT", cout), c("H", h), c("W", h), c("W_OFF", w_off), c("B_OFF", b_off)];
            (conv_entry, k.into_iter().chain([relu(true), ("POOL", 1.0)]).collect())
        };
        let dense_spec = |inp, out, w_off, b_off, r| -> Spec {
            (dense_entry, vec![c("IN", inp), c("OUT", out), c("W_OFF", w_off), c("B_OFF", b_off), relu(r)])
        };
        let dense_bw_spec = |inp: usize, out: usize, w_off, b_off| -> Spec {
            let entry =
                if grad_subgroup(inp, out) { "dense_backward_weight_subgroup" } else { "dense_backward_weight" };
            (entry, vec![c("IN", inp), c("OUT", out), c("W_OFF", w_off), c("B_OFF", b_off)])
        };
        let dense_bi_spec = |inp: usize, out: usize, w_off, r| -> Spec {
            let entry = if grad_subgroup(inp, out) { "dense_backward_input_subgroup" } else { "dense_backward_input" };
            (entry, vec![c("IN", inp), c("OUT", out), c("W_OFF", w_off), relu(r)])
        };
        let conv_bw_spec = |entry, cin, cout, h, w_off, b_off, split| -> Spec {
            let k = [c("CIN", cin), c("COUT", cout), c("H", h), c("W", h), c("W_OFF", w_off), c("B_OFF", b_off)];
            (entry, k.into_iter().chain([c("SPLIT", split)]).collect())
        };
        let conv_bi_spec = |cin, cout, h, w_off| -> Spec {
            ("conv2d_backward_input", vec![c("CIN", cin), c("COUT", cout), c("H", h), c("W", h), c("W_OFF", w_off)])
        };
        let ahead = vec![
            conv_bw_spec(bw_entry, C1, C2, P1, CONV2_W, CONV2_B, 1),
            dense_bw_spec(FLAT, HIDDEN, FC1_W, FC1_B),
            dense_bw_spec(HIDDEN, CLASSES, FC2_W, FC2_B),
            conv_spec(1, C1, H1, CONV1_W, CONV1_B),
            dense_spec(FLAT, HIDDEN, FC1_W, FC1_B, true),
            conv_bw_spec(bw_entry, 1, C1, H1, CONV1_W, CONV1_B, CONV1_BW_SPLIT),
            dense_bi_spec(HIDDEN, CLASSES, FC2_W, true),
            dense_bi_spec(FLAT, HIDDEN, FC1_W, false),
            dense_spec(HIDDEN, CLASSES, FC2_W, FC2_B, false),
            conv_spec(C1, C2, P1, CONV2_W, CONV2_B),
            conv_bi_spec(C1, C2, P1, CONV2_W),
        ];
        kernels.prepare(&gpu, &ahead, PIPELINE_THREADS)?;
        let take = |(entry, k): Spec| kernels.kernel(&gpu, entry, &k);

        let conv = |cin, cout, h, w_off, b_off| take(conv_spec(cin, cout, h, w_off, b_off));
        let conv_fwd_size = |cout: usize, h: usize| {
            if gpu.subgroups_of_8 {
                Size::groups(move |n| conv2d::forward_subgroup_groups(n, cout, h, h))
            } else {
                Size::groups(move |n| conv2d::forward_groups(n, cout, h, h))
            }
        };
        let dense = |inp, out, w_off, b_off, r| take(dense_spec(inp, out, w_off, b_off, r));
        let forward = vec![
            // Convolution, bias, ReLU and max-pool in one kernel each.
            op(conv(1, C1, H1, CONV1_W, CONV1_B)?, &[&a.x, &params_buf, &a.a1, &steps, &a.p1], conv_fwd_size(C1, H1)),
            op(conv(C1, C2, P1, CONV2_W, CONV2_B)?, &[&a.p1, &params_buf, &a.a2, &steps, &a.p2], conv_fwd_size(C2, P1)),
            op(
                dense(FLAT, HIDDEN, FC1_W, FC1_B, true)?,
                &[&a.p2, &params_buf, &a.h, &steps],
                dense_size(gpu.subgroups_of_8, HIDDEN),
            ),
            op(
                dense(HIDDEN, CLASSES, FC2_W, FC2_B, false)?,
                &[&a.h, &params_buf, &a.logits, &steps],
                dense_size(gpu.subgroups_of_8, CLASSES),
            ),
        ];
        let loss_bufs = [&a.logits, &a.y, &a.dlogits, &preds_buf, &metrics, &step_loss, &steps];
        let loss_backward =
            op(kernels.kernel(&gpu, "softmax_cross_entropy_backward", &[c("K", CLASSES)])?, &loss_bufs, Size::fixed(1));
        let loss_forward =
            op(kernels.kernel(&gpu, "softmax_cross_entropy_forward", &[c("K", CLASSES)])?, &loss_bufs, Size::fixed(1));

        let dense_bw = |inp, out, w_off, b_off| take(dense_bw_spec(inp, out, w_off, b_off));
        let dense_bi = |inp, out, w_off, r| take(dense_bi_spec(inp, out, w_off, r));
        let pool_b = |ch, h| kernels.kernel(&gpu, "maxpool_backward", &[c("C", ch), c("H", h), c("W", h), relu(true)]);
        let conv_bw =
            |entry, cin, cout, h, w_off, b_off, split| take(conv_bw_spec(entry, cin, cout, h, w_off, b_off, split));
        let conv_bi = |cin, cout, h, w_off| take(conv_bi_spec(cin, cout, h, w_off));
        let dw_size = |inp: usize, out: usize| {
            if grad_subgroup(inp, out) {
                Size::fixed(dense::backward_weight_subgroup_groups(inp, out))
            } else {
                let threads = dense::backward_weight_threads(inp, out);
                Size::threads(move |_| threads)
            }
        };
        let backward = vec![
            op(dense_bw(HIDDEN, CLASSES, FC2_W, FC2_B)?, &[&a.h, &a.dlogits, &grads, &steps], dw_size(HIDDEN, CLASSES)),
            op(
                dense_bi(HIDDEN, CLASSES, FC2_W, true)?,
                &[&a.dlogits, &params_buf, &a.h, &a.dh, &steps],
                dense_size(grad_subgroup(HIDDEN, CLASSES), HIDDEN),
            ),
            op(dense_bw(FLAT, HIDDEN, FC1_W, FC1_B)?, &[&a.p2, &a.dh, &grads, &steps], dw_size(FLAT, HIDDEN)),
            op(
                dense_bi(FLAT, HIDDEN, FC1_W, false)?,
                &[&a.dh, &params_buf, &a.p2, &a.dp2, &steps],
                dense_size(grad_subgroup(FLAT, HIDDEN), FLAT),
            ),
            op(pool_b(C2, P1)?, &[&a.a2, &a.dp2, &a.dz2, &steps], Size::per_sample(C2 * P2 * P2)),
            op(
                conv_bw(bw_entry, C1, C2, P1, CONV2_W, CONV2_B, 1)?,
                &[&a.p1, &a.dz2, &grads, &steps, &partials],
                Size::fixed(bw_groups(C1, C2)),
            ),
            op(
                conv_bi(C1, C2, P1, CONV2_W)?,
                &[&a.dz2, &params_buf, &a.dp1, &steps],
                Size::groups(|n| conv2d::groups(n, C1, P1, P1)),
            ),
            op(pool_b(C1, H1)?, &[&a.a1, &a.dp1, &a.dz1, &steps], Size::per_sample(C1 * P1 * P1)),
            op(
                conv_bw(bw_entry, 1, C1, H1, CONV1_W, CONV1_B, CONV1_BW_SPLIT)?,
                &[&a.x, &a.dz1, &grads, &steps, &partials],
                Size::fixed(bw_groups(1, C1) * CONV1_BW_SPLIT as u64),
            ),
            op(
                conv_bw("conv2d_backward_weight_reduce", 1, C1, H1, CONV1_W, CONV1_B, CONV1_BW_SPLIT)?,
                &[&a.x, &a.dz1, &grads, &steps, &partials],
                Size::fixed(conv2d::backward_weight_reduce_groups(1, C1)),
            ),
        ];
        let sgd = op(
            kernels.kernel(&gpu, "sgd_step", &[])?,
            &[&grads, &params_buf, &momentum, &hyper],
            Size::fixed(PARAM_COUNT.div_ceil(256) as u64),
        );

        debug_assert_eq!(kernels.unused_prepared(), 0, "a pipeline built ahead was never used");

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
            put(&mut blocks, train_steps + c, c * EVAL_BATCH, EVAL_BATCH);
        }
        gpu.queue.write_buffer(&steps, 0, &blocks);
        gpu.wait(Some(gpu.queue.submit([])), "uploading the data")?;
        let pipeline_seconds = t0.elapsed().as_secs_f64();

        Ok(GpuNetwork {
            gpu,
            batch,
            train,
            test,
            params: params_buf,
            grads,
            momentum,
            hyper,
            steps,
            step_stride,
            train_steps,
            eval_steps,
            metrics,
            step_loss,
            preds: preds_buf,
            acts,
            load_train,
            load_test,
            load_probe,
            probe_indices,
            forward,
            loss_backward,
            loss_forward,
            backward,
            sgd,
            pipeline_seconds,
        })
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.train_steps
    }

    pub fn set_params(&self, params: &[f32]) {
        assert_eq!(params.len(), PARAM_COUNT);
        self.gpu.queue.write_buffer(&self.params, 0, bytemuck::cast_slice(params));
    }

    pub fn set_momentum(&self, momentum: &[f32]) {
        assert_eq!(momentum.len(), PARAM_COUNT);
        self.gpu.queue.write_buffer(&self.momentum, 0, bytemuck::cast_slice(momentum));
    }

    pub fn params(&self) -> Result<Vec<f32>, GpuError> {
        self.gpu.read_f32(&self.params, 0, PARAM_COUNT, "the parameters")
    }

    pub fn momentum(&self) -> Result<Vec<f32>, GpuError> {
        self.gpu.read_f32(&self.momentum, 0, PARAM_COUNT, "the momentum")
    }

    pub fn grads(&self) -> Result<Vec<f32>, GpuError> {
        self.gpu.read_f32(&self.grads, 0, PARAM_COUNT, "the gradients")
    }

    fn offset(&self, entry: usize) -> u32 {
        (entry as u64 * self.step_stride) as u32
    }

    fn clear_metrics(&self) {
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        enc.clear_buffer(&self.metrics, 0, None);
        self.gpu.queue.submit([enc.finish()]);
    }

    pub fn read_metrics(&self) -> Result<Metrics, GpuError> {
        let m = self.gpu.read_f32(&self.metrics, 0, 3, "the metrics")?;
        Ok(Metrics { loss_sum: m[0] as f64, correct: m[1] as usize, count: m[2] as usize })
    }

    /// Trains one epoch over the training set in `order` (a permutation of its indices). `progress(steps_done,
    /// running_metrics)` is called after each submission completes; returning `false` from it stops after that
    /// submission (Ctrl-C). Returns the epoch's metrics and each step's mean loss.
    pub fn train_epoch(
        &mut self,
        order: &[u32],
        lr: f32,
        momentum: f32,
        progress: &mut dyn FnMut(usize, &Metrics) -> bool,
    ) -> Result<(Metrics, Vec<f32>), GpuError> {
        self.begin_epoch(order, lr, momentum);
        let mut done = 0;
        let mut pending: Option<(wgpu::SubmissionIndex, usize)> = None;
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
            let idx = self.gpu.queue.submit([enc.finish()]);
            // Keep one submission in flight: wait for the previous one, then report progress.
            if let Some((prev, prev_end)) = pending.replace((idx, end)) {
                self.gpu.wait(Some(prev), "a chunk of training steps")?;
                let m = self.read_metrics()?;
                if !progress(prev_end, &m) {
                    self.gpu.wait(pending.map(|p| p.0), "a chunk of training steps")?;
                    return self.finish_epoch(end);
                }
            }
            done = end;
        }
        if let Some((idx, end)) = pending {
            self.gpu.wait(Some(idx), "the last training steps")?;
            progress(end, &self.read_metrics()?);
        }
        self.finish_epoch(self.train_steps)
    }

    fn finish_epoch(&self, steps: usize) -> Result<(Metrics, Vec<f32>), GpuError> {
        let m = self.read_metrics()?;
        let losses = self.gpu.read_f32(&self.step_loss, 0, steps, "the step losses")?;
        Ok((m, losses))
    }

    /// Uploads the epoch's sample order and the SGD hyperparameters, and zeroes the running metrics.
    fn begin_epoch(&self, order: &[u32], lr: f32, momentum: f32) {
        let train = self.train.as_ref().expect("GpuNetwork was built without a training set");
        assert_eq!(order.len(), train.len);
        let hyper = Hyper { lr, momentum, count: PARAM_COUNT as u32, _pad: 0 };
        self.gpu.queue.write_buffer(&self.hyper, 0, bytemuck::bytes_of(&hyper));
        self.gpu.queue.write_buffer(&train.indices, 0, bytemuck::cast_slice(order));
        self.clear_metrics();
    }

    /// Records one full training step (batch `s` of the epoch) into `pass`.
    fn record_train_step(&self, pass: &mut wgpu::ComputePass, s: usize) {
        let n = self.batch.min(self.train.as_ref().map_or(0, |t| t.len) - s * self.batch);
        let off = Some(self.offset(s));
        self.load_train.as_ref().expect("training set").record(pass, off, n);
        for op in &self.forward {
            op.record(pass, off, n);
        }
        self.loss_backward.record(pass, off, n);
        for op in &self.backward {
            op.record(pass, off, n);
        }
        self.sgd.record(pass, None, PARAM_COUNT);
    }

    /// Runs training steps `0..steps` of an epoch in `order` without reading anything back (for benchmarks and tests).
    pub fn train_steps_raw(&mut self, order: &[u32], lr: f32, momentum: f32, steps: usize) -> Result<(), GpuError> {
        self.begin_epoch(order, lr, momentum);
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for s in 0..steps.min(self.train_steps) {
                self.record_train_step(&mut pass, s);
            }
        }
        let idx = self.gpu.queue.submit([enc.finish()]);
        self.gpu.wait(Some(idx), "training steps")
    }

    /// The step losses of the last epoch's first `steps` steps.
    pub fn step_losses(&self, steps: usize) -> Result<Vec<f32>, GpuError> {
        self.gpu.read_f32(&self.step_loss, 0, steps, "the step losses")
    }

    /// Evaluates the current parameters on the test set (or the training set): summed loss, correct count and
    /// every sample's predicted class.
    pub fn evaluate(&mut self, on_train: bool) -> Result<(Metrics, Vec<u32>), GpuError> {
        let (split, load) = if on_train {
            (self.train.as_ref().expect("training set"), self.load_train.as_ref().expect("training set"))
        } else {
            (&self.test, &self.load_test)
        };
        if on_train {
            // The training order buffer holds the last epoch's permutation: evaluate in index order instead.
            let identity: Vec<u32> = (0..split.len as u32).collect();
            self.gpu.queue.write_buffer(&split.indices, 0, bytemuck::cast_slice(&identity));
        }
        self.clear_metrics();
        let chunks = split.len.div_ceil(EVAL_BATCH);
        let mut enc = self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("eval") });
        {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("eval"), timestamp_writes: None });
            for ch in 0..chunks {
                let n = EVAL_BATCH.min(split.len - ch * EVAL_BATCH);
                let e = self.train_steps + ch;
                self.write_step(e, ch * EVAL_BATCH, n, false);
                let off = Some(self.offset(e));
                load.record(&mut pass, off, n);
                for op in &self.forward {
                    op.record(&mut pass, off, n);
                }
                self.loss_forward.record(&mut pass, off, n);
            }
        }
        let idx = self.gpu.queue.submit([enc.finish()]);
        self.gpu.wait(Some(idx), "evaluation")?;
        let m = self.read_metrics()?;
        let preds = self.gpu.read_u32(&self.preds, 0, split.len, "the predictions")?;
        Ok((m, preds))
    }

    /// Per-dispatch time of every op of a training step: the median of `reps` passes of one dispatch each, timed with
    /// GPU timestamp queries where the adapter has them (readings validated: non-zero, end after start), else by the
    /// wall clock of a submit-and-wait per pass. Returns the timer used and (op name, seconds, FLOPs per dispatch).
    pub fn profile(&mut self, reps: usize) -> Result<(String, Vec<OpTime>), GpuError> {
        let reps = reps.max(1);
        let train_len = self.train.as_ref().map_or(0, |t| t.len);
        let n = self.batch.min(train_len);
        let order: Vec<u32> = (0..train_len as u32).collect();
        self.train_steps_raw(&order, 0.0, 0.0, 1)?; // fills every buffer with real values
        let off = Some(self.offset(0));
        let mut ops: Vec<(&Op, Option<u32>, usize)> = vec![(self.load_train.as_ref().expect("training set"), off, n)];
        ops.extend(self.forward.iter().map(|o| (o, off, n)));
        ops.push((&self.loss_backward, off, n));
        ops.extend(self.backward.iter().map(|o| (o, off, n)));
        ops.push((&self.sgd, None, PARAM_COUNT));
        let timestamps = self.gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY);
        let mut all_valid = timestamps;
        let mut out = Vec::new();
        for (op, off, n) in ops {
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
                let raw = self.gpu.read_bytes(&resolve, 0, 8 * count as u64, "timestamps")?;
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
                    let t0 = std::time::Instant::now();
                    let mut enc = self.gpu.device.create_command_encoder(&Default::default());
                    {
                        let mut pass = enc.begin_compute_pass(&Default::default());
                        op.record(&mut pass, off, n);
                    }
                    let idx = self.gpu.queue.submit([enc.finish()]);
                    self.gpu.wait(Some(idx), "profiling")?;
                    times.push(t0.elapsed().as_secs_f64());
                }
            }
            times.sort_by(|a, b| a.total_cmp(b));
            out.push(OpTime { name: op.label(), seconds: times[times.len() / 2], flops: op.flops(n) });
        }
        Ok((if all_valid { "gpu timestamps" } else { "wall clock" }.to_string(), out))
    }

    /// Runs the forward pass on the chosen test images and reads back their activations and logits.
    pub fn probe(&mut self, samples: &[u32]) -> Result<Probe, GpuError> {
        let n = samples.len();
        assert!(n > 0 && n <= PROBE_MAX && samples.iter().all(|&s| (s as usize) < self.test.len));
        self.gpu.queue.write_buffer(&self.probe_indices, 0, bytemuck::cast_slice(samples));
        let e = self.train_steps;
        self.write_step(e, 0, n, true);
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            let off = Some(self.offset(e));
            self.load_probe.record(&mut pass, off, n);
            for op in &self.forward {
                op.record(&mut pass, off, n);
            }
        }
        let idx = self.gpu.queue.submit([enc.finish()]);
        self.gpu.wait(Some(idx), "the probe forward pass")?;
        let a = &self.acts;
        Ok(Probe {
            x: self.gpu.read_f32(&a.x, 0, n * IMAGE_PIXELS, "probe inputs")?,
            a1: self.gpu.read_f32(&a.a1, 0, n * C1 * H1 * H1, "conv1 activations")?,
            a2: self.gpu.read_f32(&a.a2, 0, n * C2 * P1 * P1, "conv2 activations")?,
            logits: self.gpu.read_f32(&a.logits, 0, n * CLASSES, "logits")?,
        })
    }

    /// Writes step block `e`; `full`: conv2d_forward also stores the pre-pool activations.
    fn write_step(&self, e: usize, start: usize, n: usize, full: bool) {
        assert!(e < self.train_steps + self.eval_steps);
        let b = StepBlock { start: start as u32, n: n as u32, index: e as u32, full: u32::from(full) };
        self.gpu.queue.write_buffer(&self.steps, self.offset(e) as u64, bytemuck::bytes_of(&b));
    }
}

impl Engine for GpuNetwork {
    fn train_epoch(
        &mut self,
        order: &[u32],
        lr: f32,
        momentum: f32,
        progress: &mut dyn FnMut(usize, &Metrics) -> bool,
    ) -> anyhow::Result<(Metrics, Vec<f32>)> {
        Ok(GpuNetwork::train_epoch(self, order, lr, momentum, progress)?)
    }
    fn evaluate(&mut self) -> anyhow::Result<(Metrics, Vec<u32>)> {
        Ok(GpuNetwork::evaluate(self, false)?)
    }
    fn probe(&mut self, samples: &[u32]) -> anyhow::Result<Probe> {
        Ok(GpuNetwork::probe(self, samples)?)
    }
    fn steps_per_epoch(&self) -> usize {
        self.train_steps
    }
    fn params(&self) -> anyhow::Result<Vec<f32>> {
        Ok(GpuNetwork::params(self)?)
    }
    fn set_params(&mut self, params: &[f32]) -> anyhow::Result<()> {
        GpuNetwork::set_params(self, params);
        Ok(())
    }
    fn momentum(&self) -> anyhow::Result<Vec<f32>> {
        Ok(GpuNetwork::momentum(self)?)
    }
    fn set_momentum(&mut self, momentum: &[f32]) -> anyhow::Result<()> {
        GpuNetwork::set_momentum(self, momentum);
        Ok(())
    }
}
