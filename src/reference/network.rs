//! Any `model::Arch` on the CPU, built only from the reference ops of this module. The study's network:
//!
//! ```text
//! x [n,1,28,28] → conv1 (1→16, 3×3, pad 1) → ReLU → a1 [n,16,28,28] → maxpool 2×2 → p1 [n,16,14,14]
//!   → conv2 (16→32, 3×3, pad 1) → ReLU → a2 [n,32,14,14] → maxpool 2×2 → p2 [n,32,7,7] = [n,1568] (flattened C,H,W)
//!   → fc1 (1568→128) → ReLU → h [n,128] → fc2 (128→10) → logits [n,10] → softmax cross-entropy (mean over the batch)
//! ```
//!
//! Parameters are one flat vector in the architecture's layout (`Arch::tensors`), and so are the gradients.
//! `forward`/`backward`/`loss_and_grads` are generic (f64 for gradient checks); `train_step` and `evaluate` are the f32
//! "CPU device", which splits a batch over threads without giving up determinism.

use super::{
    argmax, avgpool_backward, avgpool_forward, conv2d_backward_input, conv2d_backward_weight, conv2d_forward,
    dense_backward_input, dense_backward_weight, dense_forward, maxpool_backward, maxpool_forward, relu_backward,
    relu_forward, sgd_step, softmax_cross_entropy_backward, softmax_cross_entropy_forward, Conv2dShape,
};
use crate::model::{Arch, ConvLayer, Layer, Pool, CLASSES};
use num_traits::Float;
use std::ops::Range;

/// What the forward pass keeps for the backward pass: the input and every layer's output. ReLU outputs stand in for
/// pre-activations (ReLU's and max-pool's backward read them), as on the GPU.
#[derive(Clone, Debug)]
pub struct Activations<T> {
    /// The normalized input, `[n, C, H, W]` (`arch.input()`).
    pub x: Vec<T>,
    /// One per layer of the architecture: a convolution's output after ReLU `[n, C, H, W]` (before its pool), a pool's
    /// output, a dense layer's output (after ReLU, but for the last: the logits `[n, 10]`).
    pub outs: Vec<Vec<T>>,
    /// Batch size.
    pub n: usize,
}

impl<T> Activations<T> {
    pub fn logits(&self) -> &[T] {
        self.outs.last().expect("an architecture has layers")
    }
    /// The outputs of the convolutions (after ReLU, before any pool), in order: what the pictures show.
    pub fn conv_maps(&self, arch: &Arch) -> Vec<&[T]> {
        arch.layers()
            .iter()
            .zip(&self.outs)
            .filter(|(l, _)| matches!(l, Layer::Conv { .. }))
            .map(|(_, o)| &o[..])
            .collect()
    }
}

fn zeros<T: Float>(len: usize) -> Vec<T> {
    vec![T::zero(); len]
}

/// The forward pass of `n` images `x` `[n, C, H, W]` (normalized), keeping every activation the backward pass needs.
pub fn forward<T: Float>(arch: &Arch, params: &[T], x: &[T], n: usize) -> Activations<T> {
    assert_eq!(x.len(), n * arch.input().pixels(), "input length");
    assert_eq!(params.len(), arch.param_count(), "parameter vector length");
    let (mut convs, mut denses) = (arch.convs().iter(), arch.denses().iter());
    let mut outs: Vec<Vec<T>> = Vec::with_capacity(arch.layers().len());
    // A pool follows a convolution (`Arch::new`): it pools that convolution's output.
    let mut last_conv = None;
    for layer in arch.layers() {
        let input: &[T] = outs.last().map_or(x, |o| &o[..]);
        let out = match layer {
            Layer::Conv { .. } => {
                let c = convs.next().expect("a conv layer");
                let (w, b) = (&params[c.w_off..c.b_off], &params[c.b_off..c.b_off + c.cout]);
                let mut z = zeros(n * c.out_len());
                conv2d_forward(input, w, b, &mut z, &shape(c, n));
                let mut a = zeros(z.len());
                relu_forward(&z, &mut a);
                last_conv = Some(c);
                a
            }
            Layer::Pool(pool) => {
                let c: &ConvLayer = last_conv.expect("a pool follows a convolution");
                let mut p = zeros(n * c.out_len() / 4);
                match pool {
                    Pool::Max => maxpool_forward(input, &mut p, n, c.cout, c.oh, c.ow),
                    Pool::Avg => avgpool_forward(input, &mut p, n, c.cout, c.oh, c.ow),
                }
                p
            }
            Layer::Dense(_) => {
                let d = denses.next().expect("a dense layer");
                let (w, b) = (&params[d.w_off..d.b_off], &params[d.b_off..d.b_off + d.out]);
                let mut z = zeros(n * d.out);
                dense_forward(input, w, b, &mut z, n, d.inp, d.out);
                if d.relu {
                    let mut h = zeros(z.len());
                    relu_forward(&z, &mut h);
                    h
                } else {
                    z
                }
            }
        };
        outs.push(out);
    }
    Activations { x: x.to_vec(), outs, n }
}

/// The shapes of convolution `c` over `n` images.
fn shape(c: &ConvLayer, n: usize) -> Conv2dShape {
    Conv2dShape { n, cin: c.cin, cout: c.cout, h: c.ih, w: c.iw, k: c.k, pad: c.pad }
}

/// The mean over the batch of the per-sample cross-entropy losses (summed in sample order, then divided by `n`).
pub fn mean_loss<T: Float>(acts: &Activations<T>, labels: &[u8]) -> T {
    let n = acts.n;
    let mut losses = zeros(n);
    softmax_cross_entropy_forward(acts.logits(), labels, &mut losses, n, CLASSES);
    losses.iter().fold(T::zero(), |s, &l| s + l) / T::from(n).expect("n fits in T")
}

/// The backward pass: the gradient of the mean loss with respect to every parameter (flat, in the architecture's
/// layout) and with respect to the input `x`. Layer by layer from the last: the weight gradient, then the gradient of
/// the layer's input through the ReLU (and max-pool) that produced it.
pub fn backward<T: Float>(arch: &Arch, params: &[T], acts: &Activations<T>, labels: &[u8]) -> (Vec<T>, Vec<T>) {
    let n = acts.n;
    let mut grads = zeros(arch.param_count());
    let mut dy = zeros(n * CLASSES);
    softmax_cross_entropy_backward(acts.logits(), labels, &mut dy, n, CLASSES);
    let (mut ci, mut di) = (arch.convs().len(), arch.denses().len());
    // `dy`: the gradient of the current layer's output (after its ReLU: the ReLU's backward is done here).
    for (i, layer) in arch.layers().iter().enumerate().rev() {
        let input: &[T] = if i == 0 { &acts.x } else { &acts.outs[i - 1] };
        match layer {
            Layer::Dense(_) => {
                di -= 1;
                let d = arch.denses()[di];
                let dz = if d.relu {
                    let mut dz = zeros(dy.len());
                    relu_backward(&acts.outs[i], &dy, &mut dz);
                    dz
                } else {
                    dy
                };
                let (dw, db) = grads[d.w_off..d.b_off + d.out].split_at_mut(d.b_off - d.w_off);
                dense_backward_weight(input, &dz, dw, db, n, d.inp, d.out);
                let mut dx = zeros(n * d.inp);
                dense_backward_input(&dz, &params[d.w_off..d.b_off], &mut dx, n, d.inp, d.out);
                dy = dx;
            }
            Layer::Pool(pool) => {
                // The convolution before it (the next one this loop reaches) produced its input.
                let c = arch.convs()[ci - 1];
                let mut dx = zeros(n * c.out_len());
                match pool {
                    Pool::Max => maxpool_backward(input, &dy, &mut dx, n, c.cout, c.oh, c.ow),
                    Pool::Avg => avgpool_backward(&dy, &mut dx, n, c.cout, c.oh, c.ow),
                }
                dy = dx;
            }
            Layer::Conv { .. } => {
                ci -= 1;
                let c = arch.convs()[ci];
                let mut dz = zeros(dy.len());
                relu_backward(&acts.outs[i], &dy, &mut dz);
                let (dw, db) = grads[c.w_off..c.b_off + c.cout].split_at_mut(c.b_off - c.w_off);
                conv2d_backward_weight(input, &dz, dw, db, &shape(&c, n));
                let mut dx = zeros(n * c.in_len());
                conv2d_backward_input(&dz, &params[c.w_off..c.b_off], &mut dx, &shape(&c, n));
                dy = dx;
            }
        }
    }
    (grads, dy)
}

/// The mean loss of a batch and its gradient with respect to the parameters; `n` is `labels.len()`.
pub fn loss_and_grads<T: Float>(arch: &Arch, params: &[T], x: &[T], labels: &[u8]) -> (T, Vec<T>) {
    let acts = forward(arch, params, x, labels.len());
    let loss = mean_loss(&acts, labels);
    let (grads, _d_x) = backward(arch, params, &acts, labels);
    (loss, grads)
}

/// Images per chunk when `train_step` splits a batch over threads. Fixed, not derived from the number of cores, so the
/// same batch gives the same gradient, bit for bit, on every machine.
const TRAIN_CHUNK: usize = 8;
/// Images per chunk in `evaluate` (per-image results do not depend on it).
const EVAL_CHUNK: usize = 250;

/// Runs `f` on the ranges `0..chunk`, `chunk..2·chunk`, ... covering `0..n`, spreading them over the available cores
/// (each thread takes a contiguous run of ranges), and returns the results in range order.
fn map_chunks<R: Send>(n: usize, chunk: usize, f: impl Fn(Range<usize>) -> R + Sync) -> Vec<R> {
    let ranges: Vec<Range<usize>> = (0..n).step_by(chunk).map(|start| start..(start + chunk).min(n)).collect();
    if ranges.is_empty() {
        return Vec::new();
    }
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    if cores == 1 || cfg!(target_arch = "wasm32") {
        // One core, or a browser (no threads there): in order, on this thread.
        return ranges.into_iter().map(f).collect();
    }
    let per_thread = ranges.len().div_ceil(cores.min(ranges.len()));
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = ranges
            .chunks(per_thread)
            .map(|run| scope.spawn(move || run.iter().map(|r| f(r.clone())).collect::<Vec<R>>()))
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("CPU worker thread panicked")).collect()
    })
}

/// One SGD-with-momentum step (`crate::reference::sgd_step`) on a batch; returns the batch's mean loss before the
/// update.
///
/// The batch is cut into chunks of `TRAIN_CHUNK` images, run on all cores. Each chunk's `backward` gives the gradient
/// of the chunk's mean loss; the batch gradient is their sum weighted by `chunk_len / n`, added up in chunk order, so
/// the result is deterministic (it differs from an unsplit `loss_and_grads` only by rounding).
pub fn train_step(
    arch: &Arch,
    params: &mut [f32],
    momentum: &mut [f32],
    x: &[f32],
    labels: &[u8],
    lr: f32,
    mu: f32,
) -> f32 {
    train_step_counted(arch, params, momentum, x, labels, lr, mu).0
}

/// `train_step`, also returning how many of the batch's samples the parameters before the update classified right
/// (the training accuracy the GPU's loss kernel counts too).
pub fn train_step_counted(
    arch: &Arch,
    params: &mut [f32],
    momentum: &mut [f32],
    x: &[f32],
    labels: &[u8],
    lr: f32,
    mu: f32,
) -> (f32, usize) {
    let n = labels.len();
    assert!(n > 0, "train_step: empty batch");
    let px = arch.input().pixels();
    assert_eq!(x.len(), n * px, "train_step: input length");
    let frozen: &[f32] = params;
    let chunks = map_chunks(n, TRAIN_CHUNK, |r| {
        let acts = forward(arch, frozen, &x[r.start * px..r.end * px], r.len());
        let mut losses = vec![0.0f32; r.len()];
        softmax_cross_entropy_forward(acts.logits(), &labels[r.clone()], &mut losses, r.len(), CLASSES);
        let correct =
            acts.logits().chunks(CLASSES).zip(&labels[r.clone()]).filter(|(row, &l)| argmax(row) == l as usize).count();
        let (grads, _d_x) = backward(arch, frozen, &acts, &labels[r]);
        (losses, grads, correct)
    });

    let mut grads = vec![0.0f32; arch.param_count()];
    let mut loss_sum = 0.0f32;
    let correct = chunks.iter().map(|c| c.2).sum();
    for (losses, chunk_grads, _) in &chunks {
        let share = losses.len() as f32 / n as f32;
        for (g, &cg) in grads.iter_mut().zip(chunk_grads) {
            *g += share * cg;
        }
        // Per-sample losses in sample order, as `mean_loss` sums them.
        loss_sum = losses.iter().fold(loss_sum, |s, &l| s + l);
    }
    sgd_step(params, &grads, momentum, lr, mu);
    (loss_sum / n as f32, correct)
}

/// Evaluates `x` `[n, C, H, W]` (normalized) against `labels`: the sum of the per-sample losses (accumulated in f64,
/// in sample order) and the number of samples whose `argmax` logit is the label. Runs on all cores.
pub fn evaluate(arch: &Arch, params: &[f32], x: &[f32], labels: &[u8]) -> (f64, usize) {
    let n = labels.len();
    let px = arch.input().pixels();
    assert_eq!(x.len(), n * px, "evaluate: input length");
    let chunks = map_chunks(n, EVAL_CHUNK, |r| {
        let acts = forward(arch, params, &x[r.start * px..r.end * px], r.len());
        let mut losses = vec![0.0f32; r.len()];
        softmax_cross_entropy_forward(acts.logits(), &labels[r.clone()], &mut losses, r.len(), CLASSES);
        let correct =
            acts.logits().chunks(CLASSES).zip(&labels[r]).filter(|(row, &l)| argmax(row) == l as usize).count();
        (losses, correct)
    });
    let loss_sum = chunks.iter().flat_map(|(losses, _)| losses).fold(0.0f64, |s, &l| s + l as f64);
    (loss_sum, chunks.iter().map(|(_, correct)| correct).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{init_params, rng, uniform01};

    fn study() -> Arch {
        Arch::study()
    }

    /// `n` random "normalized images" in MNIST's normalized range, and labels.
    fn batch(n: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
        let mut r = rng(seed);
        let x = (0..n * 784).map(|_| 3.0 * uniform01(&mut r) - 0.5).collect();
        let labels = (0..n).map(|_| (uniform01(&mut r) * CLASSES as f32) as u8).collect();
        (x, labels)
    }

    #[test]
    fn forward_shapes() {
        let (x, _) = batch(3, 1);
        let arch = study();
        let acts = forward(&arch, &init_params(&arch, 1), &x, 3);
        assert_eq!(acts.x.len(), 3 * 784);
        let lens: Vec<usize> = acts.outs.iter().map(|o| o.len() / 3).collect();
        assert_eq!(lens, [16 * 28 * 28, 16 * 14 * 14, 32 * 14 * 14, 1568, 128, CLASSES]);
        assert!(acts.logits().iter().all(|v| v.is_finite()));
        assert!(acts.outs[..5].iter().flatten().all(|&v| v >= 0.0));
    }

    #[test]
    fn train_step_is_loss_and_grads_then_sgd_and_is_deterministic() {
        let (x, labels) = batch(20, 2); // 20 = two full chunks and a partial one
        let arch = study();
        let params = init_params(&arch, 3);
        let (loss, grads) = loss_and_grads(&arch, &params, &x, &labels);

        let (lr, mu) = (0.5f32, 0.9f32);
        let run = || {
            let (mut p, mut v) = (params.clone(), vec![0.0f32; arch.param_count()]);
            let step_loss = train_step(&arch, &mut p, &mut v, &x, &labels, lr, mu);
            (step_loss, p, v)
        };
        let (step_loss, p, v) = run();
        assert_eq!(step_loss, loss, "per-sample losses do not depend on chunking");
        // From zero momentum, v is the gradient and w moved by −lr·g, up to the rounding of the chunked sum.
        let gmax = grads.iter().fold(0.0f32, |m, g| m.max(g.abs()));
        for i in 0..arch.param_count() {
            assert!((v[i] - grads[i]).abs() <= 1e-5 * gmax, "v[{i}] = {} vs g = {}", v[i], grads[i]);
            assert!((params[i] - lr * grads[i] - p[i]).abs() <= 1e-5 * gmax + 1e-7, "w[{i}]");
        }
        let again = run();
        assert!(again.0.to_bits() == step_loss.to_bits() && again.1 == p && again.2 == v, "not deterministic");
    }

    #[test]
    fn a_few_steps_fit_a_small_batch() {
        let (x, labels) = batch(16, 4);
        let arch = study();
        let (mut p, mut v) = (init_params(&arch, 5), vec![0.0f32; arch.param_count()]);
        let first = train_step(&arch, &mut p, &mut v, &x, &labels, 0.05, 0.9);
        let mut last = first;
        for _ in 0..15 {
            last = train_step(&arch, &mut p, &mut v, &x, &labels, 0.05, 0.9);
        }
        assert!(last < 0.5 * first, "loss {first} → {last}");
    }

    #[test]
    fn evaluate_agrees_with_forward() {
        let (x, labels) = batch(260, 6); // two evaluation chunks, the second partial
        let arch = study();
        let params = init_params(&arch, 7);
        let (loss_sum, correct) = evaluate(&arch, &params, &x, &labels);
        let acts = forward(&arch, &params, &x, 260);
        let mean = mean_loss(&acts, &labels) as f64;
        assert!((loss_sum / 260.0 - mean).abs() < 1e-5 * mean, "{loss_sum} / 260 vs {mean}");
        let expected = acts.logits().chunks(CLASSES).zip(&labels).filter(|(row, &l)| argmax(row) == l as usize).count();
        assert_eq!(correct, expected);
    }

    /// Timing of the CPU device, not a check: `cargo test --release --lib reference::network::tests::cpu_timing --
    /// --ignored --nocapture`.
    #[test]
    #[ignore]
    fn cpu_timing() {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let (x, labels) = batch(64, 8);
        let arch = study();
        let (mut p, mut v) = (init_params(&arch, 9), vec![0.0f32; arch.param_count()]);
        train_step(&arch, &mut p, &mut v, &x, &labels, 0.01, 0.9);
        let reps = 10;
        let start = std::time::Instant::now();
        for _ in 0..reps {
            train_step(&arch, &mut p, &mut v, &x, &labels, 0.01, 0.9);
        }
        let step = start.elapsed().as_secs_f64() / reps as f64;
        eprintln!(
            "train_step, batch 64, {cores} cores: {:.1} ms ({:.0} images/s; a 60k epoch ≈ {:.0} s)",
            step * 1e3,
            64.0 / step,
            60_000.0 / 64.0 * step
        );
        let (x, labels) = batch(10_000, 10);
        let start = std::time::Instant::now();
        let (loss_sum, correct) = evaluate(&arch, &p, &x, &labels);
        let t = start.elapsed().as_secs_f64();
        eprintln!(
            "evaluate, 10k images, {cores} cores: {:.2} s ({:.0} images/s); loss {:.3}, {correct} correct",
            t,
            1e4 / t,
            loss_sum / 1e4
        );
    }
}
