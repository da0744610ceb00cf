//! The whole network on the GPU against the CPU reference: one full training step (forward, loss, backward, SGD) from
//! identical weights on one real MNIST batch, 20 steps of losses, determinism, and checkpoint resume.

mod common;

use common::*;
use gpu_cnn::checkpoint::{self, Checkpoint};
use gpu_cnn::data::{self, Split};
use gpu_cnn::gpu::net::GpuNetwork;
use gpu_cnn::gpu::Gpu;
use gpu_cnn::gpu::{Caps, Family};
use gpu_cnn::model::{self, Arch, ImageShape};
use gpu_cnn::reference::network;
use pollster::FutureExt;

fn study() -> Arch {
    Arch::study()
}

fn mnist() -> data::Mnist {
    data::load(&data::default_data_dir()).expect("data/mnist")
}

fn batch_x(split: &Split, indices: &[u32]) -> (Vec<f32>, Vec<u8>) {
    let mut x = Vec::new();
    let mut y = Vec::new();
    for &i in indices {
        x.extend(split.normalized(i as usize));
        y.push(split.labels[i as usize]);
    }
    (x, y)
}

/// The kernel families to check on this device, each with the device opened for it.
fn families(test: &str) -> Vec<(Caps, Gpu)> {
    let Some(first) = gpu_for_families(test) else { return Vec::new() };
    let mut out = Vec::new();
    let simd_fits = gpu_cnn::gpu::limits::unmet(Family::Simd, false, &first.limits).is_none();
    if first.subgroups_of_8 {
        out.push((Caps::simd(true), gpu_for_families(test).expect("the same adapter")));
    }
    if simd_fits {
        out.push((Caps::simd(false), gpu_for_families(test).expect("the same adapter")));
    }
    let tiled = Caps::tiled().within(&first.limits);
    if tiled.head {
        out.push((Caps::tiled_unfused(), gpu_for_families(test).expect("the same adapter")));
    }
    out.push((tiled, first));
    out
}

/// One full training step from the same weights on one real batch, with each kernel family, against the f64
/// reference: the loss, every gradient, every parameter after SGD.
#[test]
fn one_training_step_matches_reference() {
    for (caps, gpu) in families("one_training_step_matches_reference") {
        one_step_against_reference(gpu, caps);
    }
}

fn one_step_against_reference(gpu: Gpu, caps: Caps) {
    eprintln!("kernels: {}", caps.describe());
    let d = mnist();
    let train = d.train.take(640);
    let params = model::init_params(&study(), 7);
    let batch = 64;
    let mut net = GpuNetwork::with_caps(gpu, caps, &study(), batch, Some(&train), &d.test.take(500), &params).unwrap();
    let order = gpu_cnn::model::epoch_order(7, 0, train.len());
    let (lr, mu) = (0.01f32, 0.9f32);
    net.train_steps_raw(&order, lr, mu, 1).block_on().unwrap();
    let gpu_loss = net.step_losses(1).block_on().unwrap()[0] as f64;
    let gpu_grads = net.grads().block_on().unwrap();
    let gpu_params = net.params().block_on().unwrap();

    let (x, y) = batch_x(&train, &order[..batch]);
    let (ref_loss, ref_grads) = network::loss_and_grads(&study(), &to_f64(&params), &to_f64(&x), &y);
    // The same computation in f32 on the CPU: how far an honest f32 implementation lands from the f64 truth.
    let (_, grads32) = network::loss_and_grads(&study(), &params, &x, &y);
    // The loss is a mean of 64 f32 log-sum-exps over a deep f32 pipeline: 1e-5 relative is ~100 ulps of slack.
    assert!((gpu_loss - ref_loss).abs() <= 1e-5 * ref_loss, "loss: gpu {gpu_loss} vs reference {ref_loss}");
    eprintln!("step loss: gpu {gpu_loss:.8} reference {ref_loss:.8}");
    // Gradients: f32 rounding compounds through five layers, and the weight gradients are long sums that cancel
    // (conv1's: 50,176 terms per weight), so the error scale differs per tensor and per adapter's summation order.
    // Each tensor may be off by 4× what the f32 CPU reference is off, or 2e-6 of its largest gradient, whichever is
    // larger; an indexing or routing mistake is off by the size of a gradient itself.
    for t in study().tensors() {
        let r = &ref_grads[t.range()];
        let scale = r.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let cpu32 = grads32[t.range()].iter().zip(r).map(|(&g, &r)| (g as f64 - r).abs()).fold(0.0, f64::max);
        let worst = gpu_grads[t.range()].iter().zip(r).map(|(&g, &r)| (g as f64 - r).abs()).fold(0.0, f64::max);
        let tol = (4.0 * cpu32).max(2e-6 * scale);
        eprintln!(
            "grad {}: worst |gpu − ref| / max|ref| = {:.2e} (f32 CPU reference {:.2e}, tolerance {:.2e})",
            t.name,
            worst / scale,
            cpu32 / scale,
            tol / scale
        );
        assert!(worst <= tol, "grad {}: worst diff {worst:e} vs tolerance {tol:e} (scale {scale:e})", t.name);
    }
    // SGD from zero momentum: v = g, w ← w − lr·g.
    let mut want = params.clone();
    let mut v = vec![0.0f32; params.len()];
    let g32: Vec<f32> = ref_grads.iter().map(|&g| g as f32).collect();
    gpu_cnn::reference::sgd_step(&mut want, &g32, &mut v, lr, mu);
    assert_close("params after one step", &gpu_params, &to_f64(&want), &|_| 1e-6, 1e-5);
}

#[test]
fn twenty_steps_track_reference_losses() {
    for (caps, gpu) in families("twenty_steps_track_reference_losses") {
        if caps.family == Family::Simd && !caps.subgroups_of_8 && gpu.subgroups_of_8 {
            continue; // the plain simd kernels are covered by the one-step test
        }
        twenty_steps(gpu, caps);
    }
}

fn twenty_steps(gpu: Gpu, caps: Caps) {
    eprintln!("kernels: {}", caps.describe());
    let d = mnist();
    let batch = 32;
    let train = d.train.take(batch * 20);
    let mut params = model::init_params(&study(), 3);
    let mut net = GpuNetwork::with_caps(gpu, caps, &study(), batch, Some(&train), &d.test.take(250), &params).unwrap();
    let order = gpu_cnn::model::epoch_order(3, 0, train.len());
    let (lr, mu) = (0.01f32, 0.9f32);
    net.train_steps_raw(&order, lr, mu, 20).block_on().unwrap();
    let gpu_losses = net.step_losses(20).block_on().unwrap();
    let mut momentum = vec![0.0f32; params.len()];
    for (s, chunk) in order.chunks(batch).enumerate() {
        let (x, y) = batch_x(&train, chunk);
        let loss = network::train_step(&study(), &mut params, &mut momentum, &x, &y, lr, mu);
        let g = gpu_losses[s];
        eprintln!("step {s}: gpu {g:.6} cpu {loss:.6}");
        // Two f32 trainings drift apart by rounding; over 20 steps they stay within 1e-3 relative.
        assert!(((g - loss) / loss).abs() < 1e-3, "step {s}: gpu {g} vs cpu {loss}");
    }
    let gpu_params = net.params().block_on().unwrap();
    let worst = gpu_params.iter().zip(&params).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    eprintln!("params after 20 steps: worst |gpu − cpu| = {worst:.2e}");
    assert!(worst < 1e-3, "params drifted: {worst}");
}

/// Trains `epochs` epochs on a small split; returns every step loss and the final parameters.
fn run(
    gpu: Gpu,
    caps: Caps,
    train: &Split,
    test: &Split,
    start: Option<&(Checkpoint, Option<Vec<f32>>)>,
    epochs: std::ops::Range<usize>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let params = start.map_or_else(|| model::init_params(&study(), 11), |(c, _)| c.params.clone());
    let mut net = GpuNetwork::with_caps(gpu, caps, &study(), 64, Some(train), test, &params).unwrap();
    if let Some((_, m)) = start {
        net.set_momentum(m.as_ref().expect("the momentum file"));
    }
    let mut losses = Vec::new();
    for e in epochs {
        let order = gpu_cnn::model::epoch_order(11, e, train.len());
        let (_, l) = GpuNetwork::train_epoch(&mut net, &order, 0.01, 0.9, &mut |_, _| true).block_on().unwrap();
        losses.extend(l);
    }
    (losses, net.params().block_on().unwrap(), net.momentum().block_on().unwrap())
}

/// Same seed, same adapter: the same losses and parameters bit for bit, and a run saved and resumed equals one that
/// was not interrupted, with the device's own kernels and with the tiled family (its split sums are added in a fixed
/// order: no atomics, no race).
#[test]
fn training_is_bit_identical_and_resumable() {
    let Some(gpu1) = gpu("training_is_bit_identical_and_resumable") else { return };
    let d = mnist();
    let own = gpu1.caps;
    bit_identical_and_resumable(gpu1, own, &d.train.take(64 * 12 + 17), &d.test.take(250));
    if own.family != Family::Tiled {
        let tiled = gpu("training_is_bit_identical_and_resumable, tiled").unwrap();
        bit_identical_and_resumable(tiled, Caps::tiled(), &d.train.take(64 * 2 + 17), &d.test.take(100));
    }
}

fn bit_identical_and_resumable(gpu1: Gpu, caps: Caps, train: &Split, test: &Split) {
    eprintln!("kernels: {}", caps.describe());
    let (train, test) = (train.clone(), test.clone());
    let (losses_a, params_a, _) = run(gpu1, caps, &train, &test, None, 0..2);
    let (losses_b, params_b, _) = run(gpu("second run").unwrap(), caps, &train, &test, None, 0..2);
    assert_eq!(
        losses_a.iter().map(|l| l.to_bits()).collect::<Vec<_>>(),
        losses_b.iter().map(|l| l.to_bits()).collect::<Vec<_>>(),
        "same seed, same adapter: losses differ"
    );
    assert!(params_a.iter().zip(&params_b).all(|(a, b)| a.to_bits() == b.to_bits()), "params differ");

    // Save after epoch 1, reload from the file, train epoch 2: identical to the uninterrupted run.
    let (losses_1, params_1, momentum_1) = run(gpu("first half").unwrap(), caps, &train, &test, None, 0..1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mid.safetensors");
    let meta = [("epochs_done".to_string(), "1".to_string())].into_iter().collect();
    checkpoint::save_training(&path, &Checkpoint { arch: study(), params: params_1, metadata: meta }, &momentum_1)
        .unwrap();
    let loaded = checkpoint::load_training(&path, None).unwrap();
    let (losses_2, params_2, _) = run(gpu("second half").unwrap(), caps, &train, &test, Some(&loaded), 1..2);
    let resumed: Vec<u32> = losses_1.iter().chain(&losses_2).map(|l| l.to_bits()).collect();
    assert_eq!(resumed, losses_a.iter().map(|l| l.to_bits()).collect::<Vec<_>>(), "resumed losses differ");
    assert!(params_2.iter().zip(&params_a).all(|(a, b)| a.to_bits() == b.to_bits()), "resumed params differ");
}

#[test]
fn evaluation_matches_reference() {
    for (caps, gpu) in families("evaluation_matches_reference") {
        if caps.family == Family::Simd && !caps.subgroups_of_8 && gpu.subgroups_of_8 {
            continue;
        }
        evaluation(gpu, caps);
    }
}

fn evaluation(gpu: Gpu, caps: Caps) {
    eprintln!("kernels: {}", caps.describe());
    let d = mnist();
    // More than one evaluation chunk of either family, and a partial last one.
    let test = d.test.take(2777);
    let params = model::init_params(&study(), 5);
    let mut net = GpuNetwork::with_caps(gpu, caps, &study(), 64, None, &test, &params).unwrap();
    let (m, preds) = GpuNetwork::evaluate(&mut net).block_on().unwrap();
    let all: Vec<u32> = (0..test.len() as u32).collect();
    let (x, y) = batch_x(&test, &all);
    let (loss_sum, correct) = network::evaluate(&study(), &params, &x, &y);
    assert_eq!(m.count, test.len());
    assert!((m.loss_sum - loss_sum).abs() <= 1e-5 * loss_sum, "loss sum: gpu {} vs cpu {loss_sum}", m.loss_sum);
    // Random weights give small logit margins; allow a prediction to flip on a near-tie, but not more than one.
    assert!(m.correct.abs_diff(correct) <= 1, "correct: gpu {} vs cpu {correct}", m.correct);
    assert_eq!(preds.len(), test.len());
}

#[test]
fn probe_reads_back_the_forward_activations() {
    for (caps, gpu) in families("probe_reads_back_the_forward_activations") {
        probe(gpu, caps);
    }
}

fn probe(gpu: Gpu, caps: Caps) {
    eprintln!("kernels: {}", caps.describe());
    let d = mnist();
    let test = d.test.take(300);
    let params = model::init_params(&study(), 9);
    let mut net = GpuNetwork::with_caps(gpu, caps, &study(), 64, None, &test, &params).unwrap();
    let samples = [3u32, 299, 0, 42];
    let p = net.probe(&samples).block_on().unwrap();
    let (x, _) = batch_x(&test, &samples);
    let acts = network::forward(&study(), &to_f64(&params), &to_f64(&x), samples.len());
    assert_close("probe x", &p.x, &to_f64(&x), &|_| 1e-6, 1e-6);
    let maps = acts.conv_maps(&study());
    assert_eq!(p.maps.len(), 2);
    for (k, (m, want)) in p.maps.iter().zip(maps).enumerate() {
        assert_close(&format!("probe conv{} maps", k + 1), &m.values, want, &|_| 1e-5, 1e-5);
    }
    assert_close("probe logits", &p.logits, acts.logits(), &|_| 1e-5, 1e-5);
}

/// A random small network `--arch` can describe, from `seed`: on MNIST's images or on 1 to 3 channels of 4 to 20
/// pixels a side (multiples of 4, so that two pools fit), zero to two convolutions of 1 to 9 channels (a pool after
/// each, or none after the last), zero to two hidden dense layers of 1 to 40 features, then the 10 classes.
fn random_arch(seed: u64) -> Arch {
    let mut r = model::rng(seed);
    let mut pick = |n: u32| (model::uniform01(&mut r) * n as f32) as usize;
    let input = match pick(2) {
        0 => ImageShape::MNIST,
        _ => ImageShape { channels: 1 + pick(3), height: 4 * (1 + pick(5)), width: 4 * (1 + pick(5)) },
    };
    let mut layers = Vec::new();
    let convs = pick(3);
    for _ in 0..convs {
        layers.push(model::Layer::Conv { out: 1 + pick(9), k: 3, pad: 1 });
        if pick(2) == 1 {
            layers.push(model::Layer::Pool(model::Pool::Max));
        }
    }
    for _ in 0..pick(3) {
        layers.push(model::Layer::Dense(1 + pick(40)));
    }
    layers.push(model::Layer::Dense(10));
    Arch::new(input, layers).expect("a valid architecture")
}

/// Generated networks on the GPU: one whole training step (loss, every gradient, the parameters after SGD) against the
/// f64 reference, in every kernel family that can run the network (the simd family cannot take some; it says why).
#[test]
fn generated_networks_train_like_the_reference() {
    let Some(gpu) = gpu_for_families("generated_networks_train_like_the_reference") else { return };
    let variants = gpu_cnn::gpu::caps::variants(&gpu, true);
    let h = gpu_cnn::check::Harness::new(gpu);
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..6 {
        let arch = random_arch(1000 + seed);
        if !seen.insert(arch.describe()) {
            continue;
        }
        let rows = gpu_cnn::check::training_steps(&h, &arch, &variants).block_on();
        let runnable = variants.iter().filter(|c| gpu_cnn::gpu::caps::for_arch(&arch, **c).is_ok()).count();
        eprintln!("--arch {arch}: {} rows in {runnable} of {} kernel variants", rows.len(), variants.len());
        assert!(runnable >= 1, "{arch}: the tiled family runs every network");
        assert_eq!(rows.len(), runnable, "{arch}: one row (loss, each gradient, the parameters) per variant");
        for r in &rows {
            assert!(r.passed, "{arch} [{}]: {}", r.variant, r.failure.clone().unwrap_or_default());
        }
    }
    assert!(seen.len() >= 4, "{seen:?}");

    // Average pools after 3×3 convolutions: every family (the pools' own kernels run between the convolutions').
    let arch = Arch::parse("conv4-avgpool-conv6-avgpool-fc12-fc10").unwrap();
    let rows = gpu_cnn::check::training_steps(&h, &arch, &variants).block_on();
    assert_eq!(rows.len(), variants.len(), "every family runs {arch}");
    for r in &rows {
        assert!(r.passed, "{arch} [{}]: {}", r.variant, r.failure.clone().unwrap_or_default());
    }

    // Ones the simd kernels cannot run (a convolution on 7×7: odd rows; conv2's weights past the uniform window; a
    // convolution right after another; LeNet-5's 5×5 kernels): the tiled family does, and `for_arch` says why the
    // simd one does not.
    for (desc, why) in [
        ("conv4-pool-conv4-pool-conv4-fc10", "must be even"),
        ("conv32-pool-conv32-fc10", "uniform window"),
        ("conv4-conv6-pool-fc10", "without a pool"),
        ("conv3k5-avgpool-conv4k5p0-avgpool-fc12-fc8-fc10", "3×3 with padding 1"),
    ] {
        let arch = Arch::parse(desc).unwrap();
        let err = gpu_cnn::gpu::caps::for_arch(&arch, Caps::simd(false)).unwrap_err();
        assert!(err.contains(why), "{desc}: {err}");
        let rows = gpu_cnn::check::training_steps(&h, &arch, &variants).block_on();
        let tiled: Vec<String> = variants.iter().filter(|c| c.family == Family::Tiled).map(|c| c.describe()).collect();
        assert_eq!(rows.iter().map(|r| r.variant.clone()).collect::<Vec<_>>(), tiled, "{desc}");
        for r in &rows {
            assert!(r.passed, "{desc} [{}]: {}", r.variant, r.failure.clone().unwrap_or_default());
        }
    }
}

/// Colour images (3×32×32): one whole training step in every kernel family against the f64 reference, then a few
/// epochs on the default kernels that learn the generated classes (chance is 10 %).
#[test]
fn colour_images_train_like_the_reference_and_learn() {
    let Some(gpu) = gpu_for_families("colour_images_train_like_the_reference_and_learn") else { return };
    let (train, test) = (gpu_cnn::check::coloured(640, 1), gpu_cnn::check::coloured(200, 2));
    let arch = Arch::parse("conv8-pool-conv16-pool-fc32-fc10").unwrap().with_input(train.shape).unwrap();
    assert_eq!(arch.describe(), "3x32x32:conv8-pool-conv16-pool-fc32-fc10");
    let variants = gpu_cnn::gpu::caps::variants(&gpu, true);
    let h = gpu_cnn::check::Harness::new(gpu);
    let rows = gpu_cnn::check::training_steps(&h, &arch, &variants).block_on();
    assert_eq!(rows.len(), variants.len(), "every family runs {arch}");
    for r in &rows {
        assert!(r.passed, "{arch} [{}]: {}", r.variant, r.failure.clone().unwrap_or_default());
    }

    let params = model::init_params(&arch, 3);
    let mut net = GpuNetwork::new(h.gpu.reopen().block_on().unwrap(), &arch, 32, Some(&train), &test, &params).unwrap();
    let (before, _) = net.evaluate().block_on().unwrap();
    for epoch in 0..4 {
        let order = gpu_cnn::model::epoch_order(3, epoch, train.len());
        net.train_epoch(&order, 0.02, 0.9, &mut |_, _| true).block_on().unwrap();
    }
    let (after, _) = net.evaluate().block_on().unwrap();
    eprintln!("{arch}: test accuracy {:.1} % → {:.1} %", 100.0 * before.accuracy(), 100.0 * after.accuracy());
    assert!(before.accuracy() < 0.3, "random weights: {}", before.accuracy());
    assert!(after.accuracy() > 0.9, "after 4 epochs: {}", after.accuracy());
}

/// A network the device's kernels cannot run falls back to the tiled family with the fused head as the device was
/// opened: `GPU_CNN_FUSED_HEAD=0` (here `OpenOptions::no_head`) holds on that path too, and where the head is allowed
/// and the limits take it, it is fused.
#[test]
fn the_tiled_fallback_keeps_the_head_setting() {
    let Some(probe) = gpu("the_tiled_fallback_keeps_the_head_setting") else { return };
    let opts = gpu_cnn::gpu::OpenOptions::from_env().expect("GPU_CNN_* settings");
    let (train, test) = (gpu_cnn::check::synthetic(64, 1), gpu_cnn::check::synthetic(64, 2));
    // LeNet-5's 5×5 convolutions: the simd family cannot run them.
    let arch = Arch::parse("lenet5").unwrap();
    let params = model::init_params(&arch, 1);
    let head_fits = gpu_cnn::gpu::limits::fits("classifier_head", &probe.limits);
    for no_head in [true, false] {
        let o = gpu_cnn::gpu::OpenOptions { no_head, ..opts };
        let g = Gpu::open_with(&gpu_cnn::gpu::AdapterSelection::default(), o).block_on().unwrap();
        let net = GpuNetwork::new(g, &arch, 64, Some(&train), &test, &params).unwrap();
        assert_eq!(net.caps.family, Family::Tiled);
        assert_eq!(net.caps.head, !no_head && head_fits, "no_head = {no_head}: {}", net.caps.describe());
    }
}
