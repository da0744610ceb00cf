//! The study's CNN on the CPU, built only from the reference ops of this module:
//!
//! ```text
//! x [n,1,28,28] → conv1 (1→16, 3×3, pad 1) → ReLU → a1 [n,16,28,28] → maxpool 2×2 → p1 [n,16,14,14]
//!   → conv2 (16→32, 3×3, pad 1) → ReLU → a2 [n,32,14,14] → maxpool 2×2 → p2 [n,32,7,7] = [n,1568] (flattened C,H,W)
//!   → fc1 (1568→128) → ReLU → h [n,128] → fc2 (128→10) → logits [n,10] → softmax cross-entropy (mean over the batch)
//! ```
//!
//! Parameters are one flat vector in the layout of `crate::model` (`PARAM_TENSORS`), and so are the gradients.
//! `forward`/`backward`/`loss_and_grads` are generic (f64 for gradient checks); `train_step` and `evaluate` are the f32
//! "CPU device", which splits a batch over threads without giving up determinism.

use super::{
    argmax, conv2d_backward_input, conv2d_backward_weight, conv2d_forward, dense_backward_input, dense_backward_weight,
    dense_forward, maxpool_backward, maxpool_forward, relu_backward, relu_forward, sgd_step,
    softmax_cross_entropy_backward, softmax_cross_entropy_forward,
};
use crate::model::{C1, C2, CLASSES, FLAT, H1, HIDDEN, IMAGE_PIXELS, P1, P2, PARAM_COUNT, PARAM_TENSORS};
use num_traits::Float;
use std::ops::Range;

/// What the forward pass keeps for the backward pass. ReLU outputs stand in for pre-activations (ReLU's and max-pool's
/// backward read them), as on the GPU.
#[derive(Clone, Debug)]
pub struct Activations<T> {
    /// The normalized input, `[n, 1, 28, 28]`.
    pub x: Vec<T>,
    /// conv1 + ReLU, `[n, 16, 28, 28]`.
    pub a1: Vec<T>,
    /// First max-pool, `[n, 16, 14, 14]`.
    pub p1: Vec<T>,
    /// conv2 + ReLU, `[n, 32, 14, 14]`.
    pub a2: Vec<T>,
    /// Second max-pool, `[n, 32, 7, 7]`, i.e. the flattened `[n, 1568]` that fc1 reads.
    pub p2: Vec<T>,
    /// fc1 + ReLU, `[n, 128]`.
    pub h: Vec<T>,
    /// fc2, `[n, 10]`.
    pub logits: Vec<T>,
    /// Batch size.
    pub n: usize,
}

fn zeros<T: Float>(len: usize) -> Vec<T> {
    vec![T::zero(); len]
}

/// The eight tensors of a flat parameter vector, in `PARAM_TENSORS` order
/// (conv1.weight, conv1.bias, conv2.weight, conv2.bias, fc1.weight, fc1.bias, fc2.weight, fc2.bias).
fn split_params<T>(flat: &[T]) -> [&[T]; 8] {
    assert_eq!(flat.len(), PARAM_COUNT, "parameter vector length");
    PARAM_TENSORS.map(|t| &flat[t.range()])
}

/// The same, mutable (for filling the gradient vector).
fn split_params_mut<T>(flat: &mut [T]) -> [&mut [T]; 8] {
    assert_eq!(flat.len(), PARAM_COUNT, "parameter vector length");
    let mut rest = flat;
    PARAM_TENSORS.map(|t| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(t.len());
        rest = tail;
        head
    })
}

/// The forward pass of `n` images `x` `[n, 1, 28, 28]` (normalized), keeping every activation the backward pass needs.
pub fn forward<T: Float>(params: &[T], x: &[T], n: usize) -> Activations<T> {
    assert_eq!(x.len(), n * IMAGE_PIXELS, "input length");
    let [conv1_w, conv1_b, conv2_w, conv2_b, fc1_w, fc1_b, fc2_w, fc2_b] = split_params(params);

    let mut z1 = zeros(n * C1 * H1 * H1);
    conv2d_forward(x, conv1_w, conv1_b, &mut z1, n, 1, C1, H1, H1);
    let mut a1 = zeros(z1.len());
    relu_forward(&z1, &mut a1);
    let mut p1 = zeros(n * C1 * P1 * P1);
    maxpool_forward(&a1, &mut p1, n, C1, H1, H1);

    let mut z2 = zeros(n * C2 * P1 * P1);
    conv2d_forward(&p1, conv2_w, conv2_b, &mut z2, n, C1, C2, P1, P1);
    let mut a2 = zeros(z2.len());
    relu_forward(&z2, &mut a2);
    let mut p2 = zeros(n * C2 * P2 * P2);
    maxpool_forward(&a2, &mut p2, n, C2, P1, P1);

    let mut zh = zeros(n * HIDDEN);
    dense_forward(&p2, fc1_w, fc1_b, &mut zh, n, FLAT, HIDDEN);
    let mut h = zeros(zh.len());
    relu_forward(&zh, &mut h);
    let mut logits = zeros(n * CLASSES);
    dense_forward(&h, fc2_w, fc2_b, &mut logits, n, HIDDEN, CLASSES);

    Activations { x: x.to_vec(), a1, p1, a2, p2, h, logits, n }
}

/// The mean over the batch of the per-sample cross-entropy losses (summed in sample order, then divided by `n`).
pub fn mean_loss<T: Float>(acts: &Activations<T>, labels: &[u8]) -> T {
    let n = acts.n;
    let mut losses = zeros(n);
    softmax_cross_entropy_forward(&acts.logits, labels, &mut losses, n, CLASSES);
    losses.iter().fold(T::zero(), |s, &l| s + l) / T::from(n).expect("n fits in T")
}

/// The backward pass: the gradient of the mean loss with respect to every parameter (flat, `PARAM_COUNT`, in the
/// layout of `crate::model`) and with respect to the input `x`.
pub fn backward<T: Float>(params: &[T], acts: &Activations<T>, labels: &[u8]) -> (Vec<T>, Vec<T>) {
    let n = acts.n;
    let [conv1_w, _, conv2_w, _, fc1_w, _, fc2_w, _] = split_params(params);
    let mut grads = zeros(PARAM_COUNT);
    let [d_conv1_w, d_conv1_b, d_conv2_w, d_conv2_b, d_fc1_w, d_fc1_b, d_fc2_w, d_fc2_b] = split_params_mut(&mut grads);

    let mut d_logits = zeros(n * CLASSES);
    softmax_cross_entropy_backward(&acts.logits, labels, &mut d_logits, n, CLASSES);

    // fc2
    dense_backward_weight(&acts.h, &d_logits, d_fc2_w, d_fc2_b, n, HIDDEN, CLASSES);
    let mut d_h = zeros(n * HIDDEN);
    dense_backward_input(&d_logits, fc2_w, &mut d_h, n, HIDDEN, CLASSES);

    // fc1 + ReLU
    let mut d_zh = zeros(d_h.len());
    relu_backward(&acts.h, &d_h, &mut d_zh);
    dense_backward_weight(&acts.p2, &d_zh, d_fc1_w, d_fc1_b, n, FLAT, HIDDEN);
    let mut d_p2 = zeros(n * FLAT);
    dense_backward_input(&d_zh, fc1_w, &mut d_p2, n, FLAT, HIDDEN);

    // second max-pool, conv2 + ReLU
    let mut d_a2 = zeros(acts.a2.len());
    maxpool_backward(&acts.a2, &d_p2, &mut d_a2, n, C2, P1, P1);
    let mut d_z2 = zeros(d_a2.len());
    relu_backward(&acts.a2, &d_a2, &mut d_z2);
    conv2d_backward_weight(&acts.p1, &d_z2, d_conv2_w, d_conv2_b, n, C1, C2, P1, P1);
    let mut d_p1 = zeros(acts.p1.len());
    conv2d_backward_input(&d_z2, conv2_w, &mut d_p1, n, C1, C2, P1, P1);

    // first max-pool, conv1 + ReLU
    let mut d_a1 = zeros(acts.a1.len());
    maxpool_backward(&acts.a1, &d_p1, &mut d_a1, n, C1, H1, H1);
    let mut d_z1 = zeros(d_a1.len());
    relu_backward(&acts.a1, &d_a1, &mut d_z1);
    conv2d_backward_weight(&acts.x, &d_z1, d_conv1_w, d_conv1_b, n, 1, C1, H1, H1);
    let mut d_x = zeros(acts.x.len());
    conv2d_backward_input(&d_z1, conv1_w, &mut d_x, n, 1, C1, H1, H1);

    (grads, d_x)
}

/// The mean loss of a batch and its gradient with respect to the parameters; `n` is `labels.len()`.
pub fn loss_and_grads<T: Float>(params: &[T], x: &[T], labels: &[u8]) -> (T, Vec<T>) {
    let acts = forward(params, x, labels.len());
    let loss = mean_loss(&acts, labels);
    let (grads, _d_x) = backward(params, &acts, labels);
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
pub fn train_step(params: &mut [f32], momentum: &mut [f32], x: &[f32], labels: &[u8], lr: f32, mu: f32) -> f32 {
    train_step_counted(params, momentum, x, labels, lr, mu).0
}

/// `train_step`, also returning how many of the batch's samples the parameters before the update classified right
/// (the training accuracy the GPU's loss kernel counts too).
pub fn train_step_counted(
    params: &mut [f32],
    momentum: &mut [f32],
    x: &[f32],
    labels: &[u8],
    lr: f32,
    mu: f32,
) -> (f32, usize) {
    let n = labels.len();
    assert!(n > 0, "train_step: empty batch");
    assert_eq!(x.len(), n * IMAGE_PIXELS, "train_step: input length");
    let frozen: &[f32] = params;
    let chunks = map_chunks(n, TRAIN_CHUNK, |r| {
        let acts = forward(frozen, &x[r.start * IMAGE_PIXELS..r.end * IMAGE_PIXELS], r.len());
        let mut losses = vec![0.0f32; r.len()];
        softmax_cross_entropy_forward(&acts.logits, &labels[r.clone()], &mut losses, r.len(), CLASSES);
        let correct =
            acts.logits.chunks(CLASSES).zip(&labels[r.clone()]).filter(|(row, &l)| argmax(row) == l as usize).count();
        let (grads, _d_x) = backward(frozen, &acts, &labels[r]);
        (losses, grads, correct)
    });

    let mut grads = vec![0.0f32; PARAM_COUNT];
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

/// Evaluates `x` `[n, 1, 28, 28]` (normalized) against `labels`: the sum of the per-sample losses (accumulated in f64,
/// in sample order) and the number of samples whose `argmax` logit is the label. Runs on all cores.
pub fn evaluate(params: &[f32], x: &[f32], labels: &[u8]) -> (f64, usize) {
    let n = labels.len();
    assert_eq!(x.len(), n * IMAGE_PIXELS, "evaluate: input length");
    let chunks = map_chunks(n, EVAL_CHUNK, |r| {
        let acts = forward(params, &x[r.start * IMAGE_PIXELS..r.end * IMAGE_PIXELS], r.len());
        let mut losses = vec![0.0f32; r.len()];
        softmax_cross_entropy_forward(&acts.logits, &labels[r.clone()], &mut losses, r.len(), CLASSES);
        let correct = acts.logits.chunks(CLASSES).zip(&labels[r]).filter(|(row, &l)| argmax(row) == l as usize).count();
        (losses, correct)
    });
    let loss_sum = chunks.iter().flat_map(|(losses, _)| losses).fold(0.0f64, |s, &l| s + l as f64);
    (loss_sum, chunks.iter().map(|(_, correct)| correct).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{init_params, rng, uniform01};

    /// `n` random "normalized images" in MNIST's normalized range, and labels.
    fn batch(n: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
        let mut r = rng(seed);
        let x = (0..n * IMAGE_PIXELS).map(|_| 3.0 * uniform01(&mut r) - 0.5).collect();
        let labels = (0..n).map(|_| (uniform01(&mut r) * CLASSES as f32) as u8).collect();
        (x, labels)
    }

    #[test]
    fn forward_shapes() {
        let (x, _) = batch(3, 1);
        let acts = forward(&init_params(1), &x, 3);
        assert_eq!(acts.x.len(), 3 * IMAGE_PIXELS);
        assert_eq!(acts.a1.len(), 3 * C1 * H1 * H1);
        assert_eq!(acts.p1.len(), 3 * C1 * P1 * P1);
        assert_eq!(acts.a2.len(), 3 * C2 * P1 * P1);
        assert_eq!(acts.p2.len(), 3 * FLAT);
        assert_eq!(acts.h.len(), 3 * HIDDEN);
        assert_eq!(acts.logits.len(), 3 * CLASSES);
        assert!(acts.logits.iter().all(|v| v.is_finite()));
        assert!(acts.a1.iter().chain(&acts.a2).chain(&acts.h).all(|&v| v >= 0.0));
    }

    #[test]
    fn train_step_is_loss_and_grads_then_sgd_and_is_deterministic() {
        let (x, labels) = batch(20, 2); // 20 = two full chunks and a partial one
        let params = init_params(3);
        let (loss, grads) = loss_and_grads(&params, &x, &labels);

        let (lr, mu) = (0.5f32, 0.9f32);
        let run = || {
            let (mut p, mut v) = (params.clone(), vec![0.0f32; PARAM_COUNT]);
            let step_loss = train_step(&mut p, &mut v, &x, &labels, lr, mu);
            (step_loss, p, v)
        };
        let (step_loss, p, v) = run();
        assert_eq!(step_loss, loss, "per-sample losses do not depend on chunking");
        // From zero momentum, v is the gradient and w moved by −lr·g, up to the rounding of the chunked sum.
        let gmax = grads.iter().fold(0.0f32, |m, g| m.max(g.abs()));
        for i in 0..PARAM_COUNT {
            assert!((v[i] - grads[i]).abs() <= 1e-5 * gmax, "v[{i}] = {} vs g = {}", v[i], grads[i]);
            assert!((params[i] - lr * grads[i] - p[i]).abs() <= 1e-5 * gmax + 1e-7, "w[{i}]");
        }
        let again = run();
        assert!(again.0.to_bits() == step_loss.to_bits() && again.1 == p && again.2 == v, "not deterministic");
    }

    #[test]
    fn a_few_steps_fit_a_small_batch() {
        let (x, labels) = batch(16, 4);
        let (mut p, mut v) = (init_params(5), vec![0.0f32; PARAM_COUNT]);
        let first = train_step(&mut p, &mut v, &x, &labels, 0.05, 0.9);
        let mut last = first;
        for _ in 0..15 {
            last = train_step(&mut p, &mut v, &x, &labels, 0.05, 0.9);
        }
        assert!(last < 0.5 * first, "loss {first} → {last}");
    }

    #[test]
    fn evaluate_agrees_with_forward() {
        let (x, labels) = batch(260, 6); // two evaluation chunks, the second partial
        let params = init_params(7);
        let (loss_sum, correct) = evaluate(&params, &x, &labels);
        let acts = forward(&params, &x, 260);
        let mean = mean_loss(&acts, &labels) as f64;
        assert!((loss_sum / 260.0 - mean).abs() < 1e-5 * mean, "{loss_sum} / 260 vs {mean}");
        let expected = acts.logits.chunks(CLASSES).zip(&labels).filter(|(row, &l)| argmax(row) == l as usize).count();
        assert_eq!(correct, expected);
    }

    /// Timing of the CPU device, not a check: `cargo test --release --lib reference::network::tests::cpu_timing --
    /// --ignored --nocapture`.
    #[test]
    #[ignore]
    fn cpu_timing() {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let (x, labels) = batch(64, 8);
        let (mut p, mut v) = (init_params(9), vec![0.0f32; PARAM_COUNT]);
        train_step(&mut p, &mut v, &x, &labels, 0.01, 0.9);
        let reps = 10;
        let start = std::time::Instant::now();
        for _ in 0..reps {
            train_step(&mut p, &mut v, &x, &labels, 0.01, 0.9);
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
        let (loss_sum, correct) = evaluate(&p, &x, &labels);
        let t = start.elapsed().as_secs_f64();
        eprintln!(
            "evaluate, 10k images, {cores} cores: {:.2} s ({:.0} images/s); loss {:.3}, {correct} correct",
            t,
            1e4 / t,
            loss_sum / 1e4
        );
    }
}
