//! The network lowered to op plans, with no GPU needed: every layer of an `Arch` becomes the ops that run it on a
//! device of some `Caps` (forward, loss, backward, SGD; evaluation; batch loads), over buffers named after the
//! network's tensors, with the size of each. `net::network` creates those buffers and pipelines; the tests build
//! every pipeline the engine can create from `all_pipeline_specs`.

use crate::gpu::caps;
use crate::gpu::family::Caps;
use crate::gpu::ops::conv2d::{self, Conv};
use crate::gpu::ops::dense::{self, Dense};
use crate::gpu::ops::plan::{Lowered, Plan, Source};
use crate::gpu::ops::softmax_cross_entropy::{self, StatsLayout};
use crate::gpu::ops::{self, classifier_head, load_batch, sgd};
use crate::model::{Arch, ConvLayer, DenseLayer, Normalization, Pool, CLASSES};

/// Most test images `probe` can look at in one call.
pub const PROBE_MAX: usize = 64;
/// A split as `lower` sees it: its image count and how its pixels are normalized.
pub type SplitInfo = (usize, Normalization);

/// MNIST's training and test splits, as `lower` sees them.
pub const MNIST_SPLITS: (SplitInfo, SplitInfo) = ((60_000, Normalization::MNIST), (10_000, Normalization::MNIST));

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
    Conv { cin: c.cin, cout: c.cout, h: c.ih, w: c.iw, k: c.k, pad: c.pad, w_off: c.w_off, b_off: c.b_off }
}

fn dense_op(d: &DenseLayer) -> Dense {
    Dense { inp: d.inp, out: d.out, w_off: d.w_off, b_off: d.b_off }
}

/// What a dense layer reads: the input, the last convolution's output (pooled or not), or the dense layer before.
fn dense_input(arch: &Arch, d: &DenseLayer) -> String {
    match (d.index, arch.convs().last()) {
        (1, None) => "x".into(),
        (1, Some(c)) if c.pool.is_some() => format!("conv{}.pooled", c.index),
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
        Some(b) if b.pool.is_some() => format!("conv{}.pooled", b.index),
        Some(b) => format!("conv{}.out", b.index),
    }
}

/// The forward pass of `arch`, tiles sized for `batch`: every convolution (with bias, ReLU and its pool),
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
/// then the gradient of its input through the ReLU (and pool) that produced it (none for the first layer); with
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
            (1, Some(c)) => {
                let pooled = c.pool.map(|pool| (c.out_hw(), pool));
                (format!("conv{}.dz", c.index), format!("conv{}.out", c.index), pooled)
            }
            (i, _) => (dz_name(arch, &arch.denses()[i - 2]), format!("fc{}.out", i - 1), None),
        };
        let src = match pooled {
            Some(((ph, pw), pool)) => Source::PooledRelu { a: &a, ph, pw, pool },
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
                Some(pool) => Source::PooledRelu { a: &a, ph: cl.ih, pw: cl.iw, pool },
                None => Source::Relu(&a),
            };
            l = l.then(conv2d::backward_input(caps, &op, batch, &dz, &dx, src).layer(&name));
        }
    }
    l
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
    let eval_batch = caps::eval_batch(caps.family);
    let steps = train_len.div_ceil(batch) + test_len.div_ceil(eval_batch);
    let stats = StatsLayout::new(steps);
    let loss = |backward| softmax_cross_entropy::loss(backward, CLASSES, stats, "logits", "y", "dlogits");
    let px = arch.input().pixels();
    let load = |count, norm, data, order| load_batch::load(count, px, norm, data, order, "x", "y");
    let head = caps::fused_head(arch, caps);
    let train = match arch.denses() {
        [.., before, last] if head => {
            let (h, dh) = (out_name(arch, before), dz_name(arch, before));
            let op = classifier_head::train(&dense_op(last), stats, &h, "y", &dh);
            forward(arch, caps, batch, true).then(op.layer(&format!("fc{}", last.index)))
        }
        _ => forward(arch, caps, batch, false).then(loss(true)),
    };
    let train = train.then(backward(arch, caps, batch, head)).then(sgd::step(arch.param_count()));
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
    /// The training step, where there is a training split to take it from.
    pub fn training(&self) -> Option<&Lowered> {
        self.load_train.as_ref().map(|_| &self.train)
    }

    /// Every plan a network of this program dispatches, each once per place it is dispatched from (the training step's
    /// only with a training split).
    pub fn plans(&self) -> impl Iterator<Item = &Plan> {
        let loads = self.load_train.iter().chain([&self.load_test, &self.load_probe]);
        loads.chain(self.training()).chain([&self.eval]).flat_map(|l| l.plans.iter())
    }

    /// Floats of each named tensor (and temporary) the program uses; `train_len`, `test_len` as given to `lower`.
    pub fn tensors(&self) -> Vec<(String, usize)> {
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
            // A max-pooled convolution stores its pre-pool output only for training and the probe (the pool is fused).
            let stored = if c.pool == Some(Pool::Max) { probe } else { cap.max(PROBE_MAX) };
            t.push((format!("conv{}.out", c.index), stored * maps));
            t.push((format!("conv{}.pooled", c.index), if c.pool.is_some() { cap * maps / 4 } else { 1 }));
            t.push((format!("conv{}.dz", c.index), b * maps));
        }
        for d in arch.denses() {
            t.push((out_name(arch, d), cap * d.out));
            t.push((dz_name(arch, d), b * d.out));
        }
        for l in self.load_train.iter().chain([&self.load_test]).chain(self.training()).chain([&self.eval]) {
            t.extend(l.temps.iter().map(|tmp| (tmp.name.clone(), tmp.floats)));
        }
        t
    }
}
/// One pipeline the engine can create: its shader, entry point and override constants.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineSpec {
    pub file: &'static str,
    pub entry: &'static str,
    pub constants: Vec<(&'static str, f64)>,
}

/// Every pipeline the engine creates for the study's network and LeNet-5, in every kernel family that runs them (the
/// simd family with and without its subgroup kernels), for training at batch 64 and 1024 with the full MNIST and for
/// evaluation, plus the subgroup probe and the peak kernels: what the compile-time, cross-compiler and browser tests
/// build.
pub fn all_pipeline_specs() -> Vec<PipelineSpec> {
    let mut out: Vec<PipelineSpec> = Vec::new();
    let mut add = |entry: &'static str, constants: Vec<(&'static str, f64)>| {
        let spec = PipelineSpec { file: ops::shader_for(entry).file, entry, constants };
        if !out.contains(&spec) {
            out.push(spec);
        }
    };
    let archs = [Arch::study(), Arch::parse("lenet5").expect("a preset")];
    for caps in [Caps::simd(true), Caps::simd(false), Caps::tiled(), Caps::tiled_unfused()] {
        for arch in archs.iter().filter(|a| caps::for_arch(a, caps).is_ok()) {
            for batch in [64, 1024] {
                for p in lower(arch, caps, batch, MNIST_SPLITS.0, MNIST_SPLITS.1).plans() {
                    add(p.entry, p.constants.clone());
                }
            }
        }
    }
    add("subgroup_probe", Vec::new());
    for e in ["peak_fma", "peak_copy", "peak_touch"] {
        add(e, Vec::new());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::ops::tiles::{MAX_STEPS, TARGET_GROUPS};

    /// The occupancy and serial depth of every tiled product over 1 MFLOP of a training step and of evaluation, as
    /// the network dispatches them (`Plan::groups`, `Plan::steps`): no GPU needed. The classifier head is one
    /// workgroup by design (`caps::fused_head` decides where it runs).
    fn tiled_dispatches(arch: &Arch, batch: usize) -> Vec<(String, f64, u64, u64)> {
        let program = lower(arch, Caps::tiled(), batch, MNIST_SPLITS.0, MNIST_SPLITS.1);
        let eval = program.eval.plans.iter().map(|p| (p, program.eval_batch));
        program
            .train
            .plans
            .iter()
            .map(|p| (p, batch))
            .chain(eval)
            .filter(|(p, n)| (p.flops)(*n) > 1e6 && p.entry.ends_with("_tiled"))
            .map(|(p, n)| (format!("{} (n = {n})", p.label), (p.flops)(n), (p.groups)(n), (p.steps)(n)))
            .collect()
    }

    /// What a dispatch misses on a big GPU (132 multiprocessors, as the H100 and H200): fewer than two workgroups per
    /// multiprocessor (`TARGET_GROUPS`), or more than `MAX_STEPS` steps through K in one workgroup.
    fn misses(label: &str, flops: f64, groups: u64, steps: u64) -> Option<String> {
        let what = format!("{label}: {:.1} MFLOP in {groups} workgroups of {steps} steps", flops / 1e6);
        (groups < TARGET_GROUPS || steps > MAX_STEPS || steps == 0).then_some(what)
    }

    /// On a big GPU the tiled family keeps every multiprocessor busy and every workgroup's chain short: at batch 16,
    /// 64, 256 and 1024, each dispatch of a training step and of evaluation that does more than 1 MFLOP launches at
    /// least two workgroups per multiprocessor of a 132-multiprocessor GPU and takes at most `MAX_STEPS` steps
    /// through K in each. Checked from the sizing functions the network dispatches with.
    #[test]
    fn every_batch_fills_a_132_multiprocessor_gpu_in_short_chains() {
        const { assert!(TARGET_GROUPS >= 2 * 132) };
        for batch in [16, 64, 256, 1024] {
            let dispatches = tiled_dispatches(&Arch::study(), batch);
            for (label, flops, groups, steps) in &dispatches {
                eprintln!("{label:<48} {:>9.2} MFLOP {groups:>6} workgroups {steps:>4} steps", flops / 1e6);
            }
            let missed: Vec<String> = dispatches.iter().filter_map(|d| misses(&d.0, d.1, d.2, d.3)).collect();
            assert!(missed.is_empty(), "batch {batch}:\n{}", missed.join("\n"));
            assert!(dispatches.len() >= 8, "batch {batch}: {} dispatches over 1 MFLOP", dispatches.len());
        }
        // The checker fails where a kernel would not fill the GPU (the simd family's fc1 forward launches 32
        // workgroups of 8 threads) and where a chain is long (conv2's weight gradient at batch 1024 split to fill
        // the GPU only, as before the chain was capped: 53 pieces of 237 steps).
        let simd = lower(&Arch::study(), Caps::simd(false), 64, MNIST_SPLITS.0, MNIST_SPLITS.1);
        let fc1 = simd.train.plans.iter().find(|p| p.label == "dense_forward fc1").expect("fc1");
        assert!(misses(&fc1.label, (fc1.flops)(64), (fc1.groups)(64), 1).is_some());
        let (t, split) = (crate::gpu::ops::tiles::Tiles::new(8, 4, 1), 53);
        let old = crate::gpu::ops::tiles::steps(t, 1024 * 196, split);
        assert_eq!(old, 237);
        assert!(misses("conv2d_backward_weight_tiled conv2", 1.9e9, 5 * split as u64, old).is_some());
    }
}
