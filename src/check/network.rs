//! One whole training step and one evaluation of the network on the device against the f64 reference, on synthetic
//! digits (no dataset needed): the loss, every gradient, every parameter after SGD; the loss sum and accuracy.

use super::harness::{random, to_f64, Harness};
use super::{compare, Rows};
use crate::data::Split;
use crate::gpu::net::GpuNetwork;
use crate::gpu::Caps;
use crate::model::{self, Arch, ImageShape};
use crate::reference::network;

/// `n` MNIST-shaped images that look a little like digits to the network: mostly background, some ink; labels 0..9.
pub fn synthetic(n: usize, seed: u64) -> Split {
    synthetic_shaped(n, ImageShape::MNIST, seed)
}

/// `n` images of `shape`, as [`synthetic`] makes them, normalized by their own mean and std.
pub fn synthetic_shaped(n: usize, shape: ImageShape, seed: u64) -> Split {
    let noise = random(n * shape.pixels(), 0.0, 1.0, seed);
    let images = noise.iter().map(|&v| if v < 0.8 { 0 } else { ((v - 0.8) * 5.0 * 255.0) as u8 }).collect();
    let labels = super::harness::random_labels(n, 10, seed + 1);
    Split::new(images, labels, shape)
}

/// `n` colour images 3×32×32 that a small network learns in a few epochs: dim noise, and for class k an 8×8 square at
/// one of twelve places (k's), bright in channel k mod 3 and faint in the others; labels 0..9.
pub fn coloured(n: usize, seed: u64) -> Split {
    let shape = ImageShape { channels: 3, height: 32, width: 32 };
    let noise = random(n * shape.pixels(), 0.0, 60.0, seed);
    let mut images: Vec<u8> = noise.iter().map(|&v| v as u8).collect();
    let labels = super::harness::random_labels(n, 10, seed + 1);
    for (i, &k) in labels.iter().enumerate() {
        let (top, left) = (8 * (k as usize / 4), 8 * (k as usize % 4));
        for ch in 0..3 {
            let value = if ch == k as usize % 3 { 230 } else { 90 };
            for r in top..top + 8 {
                let row = (i * 3 + ch) * 1024 + r * 32;
                images[row + left..row + left + 8].fill(value);
            }
        }
    }
    Split::new(images, labels, shape)
}

fn batch(split: &Split, indices: &[u32]) -> (Vec<f32>, Vec<u8>) {
    let mut x = Vec::new();
    let mut y = Vec::new();
    for &i in indices {
        x.extend(split.normalized(i as usize));
        y.push(split.labels[i as usize]);
    }
    (x, y)
}

/// The network on another device of the harness's adapter, with `caps` (a network owns its device).
async fn network(h: &Harness, caps: Caps, arch: &Arch, train: &Split, test: &Split, params: &[f32]) -> GpuNetwork {
    let gpu = h.gpu.reopen().await;
    match gpu.and_then(|g| GpuNetwork::with_caps(g, caps, arch, 64, Some(train), test, params)) {
        Ok(net) => net,
        Err(e) => panic!("the network on {}: {e}", h.gpu.adapter.line()),
    }
}

/// One full training step of `arch` from the same weights on one batch of 64: the loss within 1e-5, each gradient
/// tensor within 4× what the f32 CPU reference is off (or 2e-6 of its largest gradient), the parameters after SGD
/// within 1e-6. The rows are "training step" (the study's network) or "training step <arch>".
pub async fn training_step(h: &Harness, caps: Caps, arch: &Arch, rows: &mut Rows) {
    let variant = caps.describe();
    let kernel = if *arch == Arch::study() { "training step".to_string() } else { format!("training step {arch}") };
    let (train, test) = (synthetic_shaped(640, arch.input(), 21), synthetic_shaped(100, arch.input(), 22));
    let params = model::init_params(arch, 7);
    let order = model::epoch_order(7, 0, train.len());
    let (lr, mu) = (0.01f32, 0.9f32);
    let (x, y) = batch(&train, &order[..64]);
    let (ref_loss, ref_grads) = network::loss_and_grads(arch, &to_f64(&params), &to_f64(&x), &y);
    let (_, grads32) = network::loss_and_grads(arch, &params, &x, &y);
    let mut net = network(h, caps, arch, &train, &test, &params).await;
    {
        net.train_steps_raw(&order, lr, mu, 1).await.expect("a training step");
        let loss = net.step_losses(1).await.expect("the step loss")[0];
        let grads = net.grads().await.expect("the gradients");
        let after = net.params().await.expect("the parameters");
        rows.add(&kernel, &variant, compare("loss", &[loss], &[ref_loss], &|_| 0.0, 1e-5));
        for t in arch.tensors() {
            let r = &ref_grads[t.range()];
            let scale = r.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let cpu32 = grads32[t.range()].iter().zip(r).map(|(&g, &r)| (g as f64 - r).abs()).fold(0.0, f64::max);
            let tol = (4.0 * cpu32).max(2e-6 * scale);
            let c = compare(&format!("grad {}", t.name), &grads[t.range()], r, &|_| tol, 0.0);
            rows.add(&kernel, &variant, c);
        }
        let mut want = params.clone();
        let mut v = vec![0.0f32; params.len()];
        let g32: Vec<f32> = ref_grads.iter().map(|&g| g as f32).collect();
        crate::reference::sgd_step(&mut want, &g32, &mut v, lr, mu);
        rows.add(&kernel, &variant, compare("params after SGD", &after, &to_f64(&want), &|_| 1e-6, 1e-5));
    }
}

/// The random-initialized network over a test set of 2,777 synthetic images (several evaluation chunks and a short
/// last one): the loss sum within 1e-5, the correct count within one (a near-tie may flip).
pub async fn evaluation(h: &Harness, caps: Caps, rows: &mut Rows) {
    let variant = caps.describe();
    let (train, test) = (synthetic(64, 23), synthetic(2777, 24));
    let arch = Arch::study();
    let params = model::init_params(&arch, 5);
    let all: Vec<u32> = (0..test.len() as u32).collect();
    let (x, y) = batch(&test, &all);
    let (loss_sum, correct) = network::evaluate(&arch, &params, &x, &y);
    let mut net = network(h, caps, &arch, &train, &test, &params).await;
    {
        let (m, _) = net.evaluate().await.expect("an evaluation");
        rows.add("evaluation", &variant, compare("loss sum", &[m.loss_sum as f32], &[loss_sum], &|_| 0.0, 1e-5));
        let c = compare("correct", &[m.correct as f32], &[correct as f64], &|_| 1.0, 0.0);
        rows.add("evaluation", &variant, c);
    }
}
