//! Finite-difference gradient checks of the CPU reference (`gpu_cnn::reference`), in f64.
//!
//! Each backward op is checked against central differences of a random scalar objective of its forward op,
//! `L = Σ r ⊙ y` with fixed random `r` (so `dy = r`), at every entry of every input; softmax cross-entropy, whose
//! backward is by definition the gradient of the mean loss, is checked against that mean. Then a whole network's mean
//! loss is checked with respect to a sample of entries of every parameter tensor and of the input: the study's network
//! and others `--arch` can describe (a convolution without a pool, no convolution, odd channel counts, kernels of
//! other sides and paddings, average pools: LeNet-5).
//!
//! Agreement: `|fd − analytic| ≤ 1e-6 · max(1, |fd|, |analytic|)`. With `eps = 1e-6`, central differences have a
//! truncation error of order `eps²·|L'''|` (≈ 1e-12; zero for the linear ops) and a rounding error of order
//! `1e-16·|L| / eps` (≈ 1e-10), so 1e-6 leaves a wide margin while any real bug (a wrong index, a missing flip, a lost
//! `1/n`) is off by far more; `checker_*` tests prove the comparison does fail on such bugs. The worst error per op is
//! printed (run with `--nocapture`).
//!
//! ReLU and max-pool are only piecewise smooth, so probes stay away from kinks: inputs are resampled until every
//! pre-activation is at least `MARGIN` (`NETWORK_MARGIN` for the whole network) from 0 and every max-pool window's maximum beats its runner-up by `MARGIN`
//! (windows that ReLU zeroed entirely are exempt: they stay zero under a tiny perturbation), and a network probe whose
//! ±eps perturbation changes any ReLU mask or max-pool argmax anyway is skipped and counted.

use gpu_cnn::model::{init_params, Arch, Layer, Pool, CLASSES};
use gpu_cnn::reference::*;
use rand::Rng;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// Finite-difference step.
const EPS: f64 = 1e-6;
/// Allowed `|fd − analytic| / max(1, |fd|, |analytic|)`.
const TOL: f64 = 1e-6;
/// Distance kept from ReLU kinks and max-pool ties in the one-op checks, far above what an `EPS` perturbation moves
/// anything by.
const MARGIN: f64 = 1e-3;
/// The same for the whole network, whose tens of thousands of pre-activations rule out 1e-3 (about one in a thousand
/// lies that close to 0). Perturbing one parameter or pixel by `EPS = 1e-6` moves a pre-activation by about `EPS` times
/// an input (≤ 2.8) times the few weights (≤ 1/3) on its path, well under 1e-5; the pattern check in
/// `network_gradients` catches any probe where that estimate fails.
const NETWORK_MARGIN: f64 = 1e-5;

fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

fn uniform(rng: &mut Xoshiro256PlusPlus, len: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `(f(p + eps·e_i) − f(p − eps·e_i)) / (2·eps)`, dividing by the step actually taken after rounding.
fn central_difference(point: &mut [f64], i: usize, f: &impl Fn(&[f64]) -> f64) -> f64 {
    let original = point[i];
    let (up, down) = (original + EPS, original - EPS);
    point[i] = up;
    let plus = f(point);
    point[i] = down;
    let minus = f(point);
    point[i] = original;
    (plus - minus) / (up - down)
}

/// Central differences of `f` at every entry of `point`.
fn numerical_gradient(point: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut p = point.to_vec();
    (0..p.len()).map(|i| central_difference(&mut p, i, &f)).collect()
}

/// The worst `|fd − analytic| / max(1, |fd|, |analytic|)`.
fn worst_error(fd: &[f64], analytic: &[f64]) -> f64 {
    assert_eq!(fd.len(), analytic.len());
    fd.iter().zip(analytic).map(|(&f, &a)| (f - a).abs() / 1f64.max(f.abs()).max(a.abs())).fold(0.0, f64::max)
}

/// Prints the worst error for `op` and asserts it is within `TOL`.
fn check(op: &str, fd: &[f64], analytic: &[f64]) {
    let worst = worst_error(fd, analytic);
    let largest = analytic.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    // For the record only: the plain relative error, over entries large enough for it to mean something.
    let plain = fd
        .iter()
        .zip(analytic)
        .filter(|(f, a)| f.abs().max(a.abs()) >= 1e-6)
        .map(|(f, a)| (f - a).abs() / f.abs().max(a.abs()))
        .fold(0.0, f64::max);
    eprintln!("{op:<42} worst rel err {worst:.1e} (plain {plain:.1e}), {} entries, max |grad| {largest:.1e}", fd.len());
    assert!(worst <= TOL, "{op}: finite differences disagree, worst relative error {worst:e}");
    assert!(largest > 0.0, "{op}: an all-zero gradient checks nothing");
}

/// Values in `[lo, hi)` at least `MARGIN` from 0 (ReLU's kink).
fn away_from_zero(rng: &mut Xoshiro256PlusPlus, len: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..len)
        .map(|_| loop {
            let v = rng.random_range(lo..hi);
            if v.abs() >= MARGIN {
                break v;
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------------
// One op at a time.

#[test]
fn conv2d_gradients() {
    // Non-square maps and distinct channel counts, so a swapped index cannot pass; the study's 3×3 with padding 1, then
    // kernels of other sides and paddings (LeNet-5's 5×5, padded and not; 1×1; an even side).
    for (seed, k, pad) in [(1, 3, 1), (11, 5, 2), (12, 5, 0), (13, 1, 0), (14, 4, 1), (15, 3, 0)] {
        let s = Conv2dShape { n: 2, cin: 3, cout: 4, h: 6, w: 7, k, pad };
        let mut r = rng(seed);
        let x = uniform(&mut r, s.input_len(), -1.0, 1.0);
        let w = uniform(&mut r, s.weight_len(), -1.0, 1.0);
        let b = uniform(&mut r, s.cout, -1.0, 1.0);
        let dy = uniform(&mut r, s.output_len(), -1.0, 1.0);
        let objective = |x: &[f64], w: &[f64], b: &[f64]| {
            let mut y = vec![0.0; s.output_len()];
            conv2d_forward(x, w, b, &mut y, &s);
            dot(&dy, &y)
        };

        let mut dx = vec![f64::NAN; x.len()];
        conv2d_backward_input(&dy, &w, &mut dx, &s);
        let (mut dw, mut db) = (vec![f64::NAN; w.len()], vec![f64::NAN; b.len()]);
        conv2d_backward_weight(&x, &dy, &mut dw, &mut db, &s);

        let op = format!("conv2d {k}×{k} pad {pad}");
        check(&format!("{op} backward_input"), &numerical_gradient(&x, |x| objective(x, &w, &b)), &dx);
        check(&format!("{op} backward_weight (w)"), &numerical_gradient(&w, |w| objective(&x, w, &b)), &dw);
        check(&format!("{op} backward_weight (b)"), &numerical_gradient(&b, |b| objective(&x, &w, b)), &db);
    }
}

#[test]
fn avgpool_gradient() {
    let (n, c, h, wd) = (2, 3, 4, 6);
    let mut r = rng(16);
    let x = uniform(&mut r, n * c * h * wd, -1.0, 1.0);
    let dy = uniform(&mut r, n * c * (h / 2) * (wd / 2), -1.0, 1.0);
    let mut dx = vec![f64::NAN; x.len()];
    avgpool_backward(&dy, &mut dx, n, c, h, wd);
    let fd = numerical_gradient(&x, |x| {
        let mut y = vec![0.0; dy.len()];
        avgpool_forward(x, &mut y, n, c, h, wd);
        dot(&dy, &y)
    });
    check("avgpool_backward", &fd, &dx);
}

#[test]
fn maxpool_gradient() {
    let (n, c, h, wd) = (2, 3, 4, 6);
    let mut r = rng(2);
    // Resample until every window's maximum beats its runner-up by MARGIN: no ties within reach of EPS.
    let x = loop {
        let x = uniform(&mut r, n * c * h * wd, -1.0, 1.0);
        if window_gaps(&x, n * c, h, wd).all(|(_, gap)| gap >= MARGIN) {
            break x;
        }
    };
    let dy = uniform(&mut r, n * c * (h / 2) * (wd / 2), -1.0, 1.0);
    let mut dx = vec![f64::NAN; x.len()];
    maxpool_backward(&x, &dy, &mut dx, n, c, h, wd);
    let fd = numerical_gradient(&x, |x| {
        let mut y = vec![0.0; dy.len()];
        maxpool_forward(x, &mut y, n, c, h, wd);
        dot(&dy, &y)
    });
    check("maxpool_backward", &fd, &dx);
}

#[test]
fn relu_gradient() {
    let mut r = rng(3);
    let x = away_from_zero(&mut r, 50, -1.0, 1.0);
    let dy = uniform(&mut r, 50, -1.0, 1.0);
    let mut y = vec![f64::NAN; 50];
    relu_forward(&x, &mut y);
    let mut dx = vec![f64::NAN; 50];
    relu_backward(&y, &dy, &mut dx);
    let fd = numerical_gradient(&x, |x| {
        let mut y = vec![0.0; 50];
        relu_forward(x, &mut y);
        dot(&dy, &y)
    });
    check("relu_backward", &fd, &dx);
}

#[test]
fn dense_gradients() {
    let (n, inp, out) = (3, 7, 5);
    let mut r = rng(4);
    let x = uniform(&mut r, n * inp, -1.0, 1.0);
    let w = uniform(&mut r, out * inp, -1.0, 1.0);
    let b = uniform(&mut r, out, -1.0, 1.0);
    let dy = uniform(&mut r, n * out, -1.0, 1.0);
    let objective = |x: &[f64], w: &[f64], b: &[f64]| {
        let mut y = vec![0.0; n * out];
        dense_forward(x, w, b, &mut y, n, inp, out);
        dot(&dy, &y)
    };

    let mut dx = vec![f64::NAN; x.len()];
    dense_backward_input(&dy, &w, &mut dx, n, inp, out);
    let (mut dw, mut db) = (vec![f64::NAN; w.len()], vec![f64::NAN; b.len()]);
    dense_backward_weight(&x, &dy, &mut dw, &mut db, n, inp, out);

    check("dense_backward_input", &numerical_gradient(&x, |x| objective(x, &w, &b)), &dx);
    check("dense_backward_weight (weight)", &numerical_gradient(&w, |w| objective(&x, w, &b)), &dw);
    check("dense_backward_weight (bias)", &numerical_gradient(&b, |b| objective(&x, &w, b)), &db);
}

#[test]
fn softmax_cross_entropy_gradient() {
    let (n, k) = (4, 10);
    let mut r = rng(5);
    let logits = uniform(&mut r, n * k, -3.0, 3.0);
    let labels: Vec<u8> = (0..n).map(|_| r.random_range(0..k as u8)).collect();
    let mut d = vec![f64::NAN; n * k];
    softmax_cross_entropy_backward(&logits, &labels, &mut d, n, k);
    // The backward is the gradient of the MEAN loss.
    let fd = numerical_gradient(&logits, |z| {
        let mut losses = vec![0.0; n];
        softmax_cross_entropy_forward(z, &labels, &mut losses, n, k);
        losses.iter().sum::<f64>() / n as f64
    });
    check("softmax_cross_entropy_backward", &fd, &d);
}

// ---------------------------------------------------------------------------------------------------------------------
// The whole network.

/// For each 2×2 window of `planes` planes of `h×wd`: (its maximum, its maximum minus the runner-up).
fn window_gaps(x: &[f64], planes: usize, h: usize, wd: usize) -> impl Iterator<Item = (f64, f64)> + '_ {
    (0..planes * (h / 2) * (wd / 2)).map(move |win| {
        let (plane, py, px) = (win / ((h / 2) * (wd / 2)), win / (wd / 2) % (h / 2), win % (wd / 2));
        let top_left = plane * h * wd + 2 * py * wd + 2 * px;
        let mut v = [x[top_left], x[top_left + 1], x[top_left + wd], x[top_left + wd + 1]];
        v.sort_by(|a, b| b.total_cmp(a));
        (v[0], v[0] - v[1])
    })
}

/// A pooled convolution's output (after ReLU) with its planes (n × channels), height and width.
type Pooled = (Vec<f64>, usize, usize, usize);

/// Every ReLU's input (pre-activation) in `arch`'s forward pass, and each pooled convolution's output, recomputed from
/// the kept activations.
fn pre_activations(arch: &Arch, params: &[f64], acts: &Activations<f64>) -> (Vec<f64>, Vec<Pooled>) {
    let n = acts.n;
    let (mut zs, mut pooled) = (Vec::new(), Vec::new());
    let (mut convs, mut denses) = (arch.convs().iter(), arch.denses().iter());
    for (i, layer) in arch.layers().iter().enumerate() {
        let input = if i == 0 { &acts.x } else { &acts.outs[i - 1] };
        match layer {
            Layer::Conv { .. } => {
                let c = convs.next().unwrap();
                let mut z = vec![0.0; acts.outs[i].len()];
                let (w, b) = (&params[c.w_off..c.b_off], &params[c.b_off..c.b_off + c.cout]);
                let s = Conv2dShape { n, cin: c.cin, cout: c.cout, h: c.ih, w: c.iw, k: c.k, pad: c.pad };
                conv2d_forward(input, w, b, &mut z, &s);
                zs.extend(&z);
                if c.pool == Some(Pool::Max) {
                    pooled.push((acts.outs[i].clone(), n * c.cout, c.oh, c.ow));
                }
            }
            Layer::Pool(_) => {}
            Layer::Dense(_) => {
                let d = denses.next().unwrap();
                if d.relu {
                    let mut z = vec![0.0; acts.outs[i].len()];
                    let (w, b) = (&params[d.w_off..d.b_off], &params[d.b_off..d.b_off + d.out]);
                    dense_forward(input, w, b, &mut z, n, d.inp, d.out);
                    zs.extend(&z);
                }
            }
        }
    }
    (zs, pooled)
}

/// True when every ReLU input is at least `NETWORK_MARGIN` from 0 and every max-pool window with a positive maximum has
/// a gap of at least `NETWORK_MARGIN` (a window of ReLU-zeroed values is a tie, but one that a tiny perturbation cannot break).
fn away_from_kinks_and_ties(arch: &Arch, params: &[f64], acts: &Activations<f64>) -> bool {
    let (zs, pooled) = pre_activations(arch, params, acts);
    zs.iter().all(|z| z.abs() >= NETWORK_MARGIN)
        && pooled.iter().all(|(a, planes, h, w)| {
            window_gaps(a, *planes, *h, *w).all(|(max, gap)| max <= 0.0 || gap >= NETWORK_MARGIN)
        })
}

/// The network's piecewise pattern: every ReLU mask and where each max-pool routes its gradient.
fn pattern(arch: &Arch, acts: &Activations<f64>) -> Vec<bool> {
    let mut out = Vec::new();
    let (mut convs, mut denses) = (arch.convs().iter(), arch.denses().iter());
    for (i, layer) in arch.layers().iter().enumerate() {
        let a = &acts.outs[i];
        match layer {
            Layer::Conv { .. } => {
                let c = convs.next().unwrap();
                out.extend(a.iter().map(|&e| e > 0.0));
                if c.pool == Some(Pool::Max) {
                    let mut dx = vec![0.0; a.len()];
                    maxpool_backward(a, &vec![1.0; a.len() / 4], &mut dx, acts.n, c.cout, c.oh, c.ow);
                    out.extend(dx.iter().map(|&e| e > 0.0));
                }
            }
            Layer::Pool(_) => {}
            Layer::Dense(_) => {
                if denses.next().unwrap().relu {
                    out.extend(a.iter().map(|&e| e > 0.0));
                }
            }
        }
    }
    out
}

/// A network, a batch of `n` inputs and labels with no ReLU kink or max-pool tie within `NETWORK_MARGIN`, from `seed`
/// (or the next seed that gives one).
fn smooth_point(arch: &Arch, seed: u64, n: usize) -> (Vec<f64>, Vec<f64>, Vec<u8>) {
    for attempt in 0..1000 {
        let mut r = rng(seed + attempt);
        let params: Vec<f64> = init_params(arch, seed + attempt).iter().map(|&p| p as f64).collect();
        // Inputs spread over MNIST's normalized range [−0.42, 2.82].
        let x = uniform(&mut r, n * arch.input().pixels(), -0.5, 2.8);
        let labels = (0..n).map(|_| r.random_range(0..CLASSES as u8)).collect();
        if away_from_kinks_and_ties(arch, &params, &forward(arch, &params, &x, n)) {
            eprintln!("network point: seed {}", seed + attempt);
            return (params, x, labels);
        }
    }
    panic!("no point away from kinks and ties in 1000 attempts");
}

#[test]
fn network_gradients() {
    network_gradients_of(&Arch::study(), 100);
}

/// Other networks `--arch` describes: a convolution feeding a dense layer without a pool, odd channel counts, two
/// dense layers after a pooled pair, no convolution at all; three-channel, non-square inputs (an odd width after the
/// pool); two convolutions with no pool between; LeNet-5's kind (5×5 kernels padded and not, average pools, three
/// dense layers) on a small image, and other kernel sides.
#[test]
fn network_gradients_of_other_architectures() {
    for (desc, seed) in [
        ("conv3-pool-conv5-fc12-fc10", 200),
        ("conv4-fc10", 300),
        ("fc24-fc16-fc10", 400),
        ("3x12x10:conv3-pool-conv4-fc10", 500),
        ("2x8x6:conv3-conv4-pool-fc10", 600),
        ("1x16x16:conv3k5-avgpool-conv4k5p0-avgpool-fc12-fc8-fc10", 700),
        ("1x12x12:conv3k1-avgpool-conv2k3p0-pool-fc10", 800),
        ("2x9x9:conv3k4p1-conv2k7-avgpool-fc10", 900),
    ] {
        eprintln!("--arch {desc}");
        network_gradients_of(&Arch::parse(desc).unwrap(), seed);
    }
}

fn network_gradients_of(arch: &Arch, seed: u64) {
    let n = 2;
    let (params, x, labels) = smooth_point(arch, seed, n);
    let loss = |p: &[f64], x: &[f64]| mean_loss(&forward(arch, p, x, n), &labels);
    let base = pattern(arch, &forward(arch, &params, &x, n));
    let same_pattern = |p: &[f64], x: &[f64]| pattern(arch, &forward(arch, p, x, n)) == base;

    let acts = forward(arch, &params, &x, n);
    let (grads, dx) = backward(arch, &params, &acts, &labels);
    assert_eq!(grads.len(), arch.param_count());
    assert_eq!(dx.len(), x.len());

    let mut r = rng(7);
    let mut skipped = 0;
    // Probes `count` entries of `range` within `point` (preferring entries with a non-zero gradient, which say more).
    let mut probe = |name: &str,
                     point: &[f64],
                     range: std::ops::Range<usize>,
                     analytic: &[f64],
                     count: usize,
                     f: &dyn Fn(&[f64]) -> f64,
                     smooth: &dyn Fn(&[f64]) -> bool| {
        let mut candidates: Vec<usize> = range.clone().filter(|&i| analytic[i] != 0.0).collect();
        if candidates.len() < count {
            candidates = range.collect();
        }
        let (mut fd, mut an) = (Vec::new(), Vec::new());
        let mut p = point.to_vec();
        let count = count.min(candidates.len());
        while fd.len() < count && !candidates.is_empty() {
            let i = candidates.swap_remove(r.random_range(0..candidates.len()));
            let original = p[i];
            p[i] = original + EPS;
            let up_ok = smooth(&p);
            p[i] = original - EPS;
            let down_ok = smooth(&p);
            p[i] = original;
            if !(up_ok && down_ok) {
                skipped += 1;
                continue;
            }
            fd.push(central_difference(&mut p, i, &f));
            an.push(analytic[i]);
        }
        check(&format!("network d(mean loss)/d {name}"), &fd, &an);
    };

    for t in arch.tensors() {
        probe(&t.name, &params, t.range(), &grads, 16, &|p| loss(p, &x), &|p| same_pattern(p, &x));
    }
    probe("x (input)", &x, 0..x.len(), &dx, 32, &|x| loss(&params, x), &|x| same_pattern(&params, x));
    eprintln!("network probes skipped because ±eps changed a ReLU mask or max-pool argmax: {skipped}");
    assert!(skipped <= 4, "too many probes near kinks: {skipped}");
}

// ---------------------------------------------------------------------------------------------------------------------
// The checker checks: it must reject wrong gradients.

#[test]
fn checker_rejects_a_slightly_wrong_gradient() {
    let (n, inp, out) = (3, 7, 5);
    let mut r = rng(8);
    let x = uniform(&mut r, n * inp, -1.0, 1.0);
    let b = uniform(&mut r, out, -1.0, 1.0);
    let w = uniform(&mut r, out * inp, -1.0, 1.0);
    let dy = uniform(&mut r, n * out, -1.0, 1.0);
    let (mut dw, mut db) = (vec![0.0; w.len()], vec![0.0; out]);
    dense_backward_weight(&x, &dy, &mut dw, &mut db, n, inp, out);
    let fd = numerical_gradient(&w, |w| {
        let mut y = vec![0.0; n * out];
        dense_forward(&x, w, &b, &mut y, n, inp, out);
        dot(&dy, &y)
    });
    assert!(worst_error(&fd, &dw) <= TOL);
    // One entry off by 1e-5 (ten times the tolerance) must be caught.
    dw[17] += 1e-5;
    assert!(worst_error(&fd, &dw) > TOL, "the checker missed a perturbed gradient");
}

#[test]
fn checker_rejects_conv_backward_input_without_the_kernel_flip() {
    // conv2d_backward_input is a forward convolution of dy with the kernel transposed in channels and flipped in space:
    // w'[ci, co, ky, kx] = w[co, ci, 2 − ky, 2 − kx]. Forgetting the flip is the classic bug; the checker must reject it.
    let (n, cin, cout, h, wd) = (2, 3, 4, 5, 6);
    let mut r = rng(9);
    let x = uniform(&mut r, n * cin * h * wd, -1.0, 1.0);
    let w = uniform(&mut r, cout * cin * 9, -1.0, 1.0);
    let dy = uniform(&mut r, n * cout * h * wd, -1.0, 1.0);
    let s = Conv2dShape { n, cin, cout, h, w: wd, k: 3, pad: 1 };
    let back = Conv2dShape { cin: cout, cout: cin, ..s };
    let transposed = |flip: bool| {
        let mut t = vec![0.0; w.len()];
        for co in 0..cout {
            for ci in 0..cin {
                for k in 0..9 {
                    let src = if flip { 8 - k } else { k };
                    t[(ci * cout + co) * 9 + k] = w[(co * cin + ci) * 9 + src];
                }
            }
        }
        t
    };
    let via_forward = |kernel: &[f64]| {
        let mut dx = vec![0.0; x.len()];
        conv2d_forward(&dy, kernel, &vec![0.0; cin], &mut dx, &back);
        dx
    };
    let fd = numerical_gradient(&x, |x| {
        let mut y = vec![0.0; dy.len()];
        conv2d_forward(x, &w, &vec![0.0; cout], &mut y, &s);
        dot(&dy, &y)
    });

    let mut dx = vec![0.0; x.len()];
    conv2d_backward_input(&dy, &w, &mut dx, &s);
    let flipped = via_forward(&transposed(true));
    assert!(worst_error(&dx, &flipped) <= 1e-14, "backward input ≠ forward with the flipped kernel");
    assert!(worst_error(&fd, &flipped) <= TOL);
    let unflipped_error = worst_error(&fd, &via_forward(&transposed(false)));
    assert!(unflipped_error > 100.0 * TOL, "the checker missed the missing flip ({unflipped_error:e})");
}
