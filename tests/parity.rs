//! Every WGSL entry point against its CPU reference (`gpu_cnn::reference`), on seeded random inputs, with every output
//! buffer poisoned (NaN) before the dispatch so an unwritten element fails. Each op runs as the network runs it: the
//! plans of `gpu::ops` (kernel, override constants, buffers, workgroups), for every kernel family the device can run
//! (simd with and without its 8-lane subgroup kernels, tiled), and for the tiled family with the tiles chosen for the
//! test's batch and for a batch of 1024 (other tile shapes, other splits of K).
//!
//! Tolerance: |gpu − ref| ≤ atol + rtol·|ref|, the reference computed in f64 from the same f32 inputs. A K-term f32 dot
//! product carries a rounding error of at most γ_K·Σ|terms| (γ_K ≈ K·2⁻²⁴), and typically √K·2⁻²⁴·Σ|terms|; we allow
//! atol = 4·√K·2⁻²⁴·Σ|terms| per element (Σ|terms| is the reference run on |inputs|) plus rtol = 1e-5. An indexing
//! mistake moves an element by the size of a whole term, orders of magnitude above that. Max-pool, ReLU and argmax are
//! exact.

mod common;

use std::collections::HashMap;

use common::*;
use gpu_cnn::gpu::kernels::{self, Access, Kernels, WEIGHT_WINDOW_BYTES};
use gpu_cnn::gpu::ops::conv2d::{self, Conv};
use gpu_cnn::gpu::ops::dense::{self, Dense, Source};
use gpu_cnn::gpu::ops::softmax_cross_entropy::{self, StatsLayout};
use gpu_cnn::gpu::ops::{load_batch, maxpool, sgd, Caps, Family, Lowered};
use gpu_cnn::gpu::Gpu;
use gpu_cnn::model::normalize_pixel;
use gpu_cnn::reference::*;
use wgpu::util::DeviceExt;

const EPS32: f64 = 1.0 / (1u64 << 24) as f64;

/// The device and what runs ops on it.
struct Harness {
    gpu: Gpu,
    kernels: Kernels,
    step: wgpu::Buffer,
}

impl Harness {
    fn new(test: &str) -> Option<Harness> {
        let gpu = gpu_for_families(test)?;
        let step = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step"),
            size: 256,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Some(Harness { gpu, kernels: Kernels::new(), step })
    }

    /// The kernel families to check on this device: simd (with its subgroup kernels where the device has verified
    /// 8-lane subgroups, and without), and tiled.
    fn variants(&self) -> Vec<Caps> {
        let mut v = Vec::new();
        if gpu_cnn::gpu::limits::unmet(Family::Simd, false, &self.gpu.limits).is_none() {
            v.push(Caps::simd(false));
        }
        if self.gpu.subgroups_of_8 {
            v.push(Caps::simd(true));
        }
        v.push(Caps::tiled());
        v
    }

    /// The step block (start, n, index, full: conv2d_forward stores the pre-pool output too).
    fn set_step(&self, start: u32, n: u32, index: u32, full: bool) {
        self.gpu.queue.write_buffer(&self.step, 0, bytemuck::cast_slice(&[start, n, index, u32::from(full)]));
    }

    fn buffer_f32(&self, data: &[f32]) -> wgpu::Buffer {
        self.gpu.storage_init("test", bytemuck::cast_slice(data)).expect("buffer")
    }

    fn buffer_u32(&self, data: &[u32]) -> wgpu::Buffer {
        self.gpu.storage_init("test", bytemuck::cast_slice(data)).expect("buffer")
    }

    /// An output buffer of `len` floats, poisoned with NaN.
    fn poisoned(&self, len: usize) -> wgpu::Buffer {
        self.buffer_f32(&vec![f32::NAN; len.max(1)])
    }

    fn uniform(&self, bytes: &[u8]) -> wgpu::Buffer {
        self.gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("uniform"),
            contents: bytes,
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    /// Runs the dispatches of `op` for a batch of n over `bufs` (by the names the plans use; "step" is the harness's
    /// step block), with its temporaries poisoned.
    fn run(&self, op: &Lowered, n: usize, bufs: &[(&str, &wgpu::Buffer)]) {
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
                let k = self.kernels.kernel(&self.gpu, p.entry, &p.constants).expect("pipeline");
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
        self.gpu.wait(Some(idx), "a test dispatch").expect("dispatch");
    }

    fn read(&self, b: &wgpu::Buffer, len: usize) -> Vec<f32> {
        self.gpu.read_f32(b, 0, len, "test output").expect("readback")
    }
}

/// The kernels under test and the batch their tiles were chosen for, for messages.
fn name(caps: Caps, batch: usize) -> String {
    format!("[{} tiles@{batch}]", caps.describe())
}

/// Tile hints: the tiled family chooses its tiles (and splits) for the batch it will run; check those chosen for the
/// test's own n and for a batch of 1024. The simd family has one shape.
fn batches(caps: Caps, n: usize) -> Vec<usize> {
    match caps.family {
        Family::Simd => vec![n],
        Family::Tiled => vec![n, 1024],
    }
}

fn abs(v: &[f32]) -> Vec<f64> {
    v.iter().map(|x| x.abs() as f64).collect()
}

/// Per-element tolerance from an f64 "sum of |terms|" for a K-term reduction.
fn bound(sum_abs: &[f64], k: usize) -> impl Fn(usize) -> f64 + '_ {
    move |i| 4.0 * (k as f64).sqrt() * EPS32 * sum_abs[i] + 1e-30
}

const RTOL: f64 = 1e-5;

/// (n, cin, cout, h): the network's two convolutions, batch 1, an odd batch, and sizes that are not multiples of the
/// workgroup size, the tiles or the channel blocks. Widths are even: the simd kernels read rows as pairs
/// (`kernels_refuse_shapes_they_cannot_take`).
const CONV_SHAPES: &[(usize, usize, usize, usize)] =
    &[(1, 1, 16, 28), (3, 1, 16, 28), (1, 16, 32, 14), (5, 16, 32, 14), (3, 3, 5, 6), (2, 17, 19, 10)];

fn conv(cin: usize, cout: usize, h: usize, w_off: usize, b_off: usize) -> Conv {
    Conv { cin, cout, h, w: h, w_off, b_off }
}

#[test]
fn kernels_refuse_shapes_they_cannot_take() {
    for entry in ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight"] {
        let err = kernels::check_shape(entry, &[("CIN", 3.0), ("COUT", 5.0), ("H", 5.0), ("W", 5.0)]).unwrap_err();
        assert!(err.contains("W = 5 must be even"), "{err}");
        assert!(kernels::check_shape(entry, &[("H", 6.0), ("W", 6.0)]).is_ok());
    }
    // The tiled convolutions take any width, but a fused 2×2 max-pool needs even sides.
    assert!(kernels::check_shape("conv2d_backward_input_tiled", &[("H", 5.0), ("W", 5.0)]).is_ok());
    assert!(kernels::check_shape("conv2d_forward_tiled", &[("H", 5.0), ("W", 5.0), ("POOL", 0.0)]).is_ok());
    let err = kernels::check_shape("conv2d_forward_tiled", &[("H", 5.0), ("W", 6.0), ("POOL", 1.0)]).unwrap_err();
    assert!(err.contains("must be even for the fused 2×2 max-pool"), "{err}");
    assert!(kernels::check_shape("dense_forward", &[("IN", 13.0), ("W_OFF", 3.0)]).is_ok());
    // The subgroup dense kernel reads vec4s.
    let err = kernels::check_shape("dense_forward_subgroup", &[("IN", 13.0), ("W_OFF", 4.0)]).unwrap_err();
    assert!(err.contains("IN = 13 must be a multiple of 4"), "{err}");
    let err = kernels::check_shape("dense_forward_subgroup", &[("IN", 12.0), ("W_OFF", 3.0)]).unwrap_err();
    assert!(err.contains("W_OFF = 3 must be a multiple of 4"), "{err}");
    assert!(kernels::check_shape("dense_forward_subgroup", &[("IN", 1568.0), ("W_OFF", 4800.0)]).is_ok());
    let bi = |out: f64| {
        kernels::check_shape("dense_backward_input_subgroup", &[("IN", 128.0), ("OUT", out), ("W_OFF", 8.0)])
    };
    assert!(bi(10.0).unwrap_err().contains("OUT = 10 must be a multiple of 4"));
    assert!(bi(12.0).is_ok());
    let bw = |b_off: f64| {
        kernels::check_shape(
            "dense_backward_weight_subgroup",
            &[("IN", 128.0), ("OUT", 12.0), ("W_OFF", 4.0), ("B_OFF", b_off)],
        )
    };
    assert!(bw(1542.0).unwrap_err().contains("B_OFF = 1542 must be a multiple of 4"));
    assert!(bw(1544.0).is_ok());
}

#[test]
fn conv2d_forward_matches_reference() {
    let Some(t) = Harness::new("conv2d_forward") else { return };
    // The tiled kernel also takes odd widths without the pool.
    let odd = [(3usize, 2usize, 3usize, 7usize)];
    for (case, &(n, cin, cout, h)) in CONV_SHAPES.iter().chain(&odd).enumerate() {
        let seed = 100 + case as u64;
        let x = random(n * cin * h * h, -1.0, 2.0, seed);
        // Weights and bias inside a larger parameter buffer, at offsets, as in the network; at least the uniform
        // window the simd kernels read the weights through.
        let w_off = 7;
        let b_off = w_off + cout * cin * 9 + 3;
        let mut params = random((b_off + cout + 5).max(WEIGHT_WINDOW_BYTES as usize / 4), -0.5, 0.5, seed + 1);
        params[0] = 1.0;
        let w = params[w_off..w_off + cout * cin * 9].to_vec();
        let b = params[b_off..b_off + cout].to_vec();
        let mut reference = vec![0.0f64; n * cout * h * h];
        conv2d_forward(&to_f64(&x), &to_f64(&w), &to_f64(&b), &mut reference, n, cin, cout, h, h);
        let mut sum_abs = vec![0.0f64; reference.len()];
        conv2d_forward(&abs(&x), &abs(&w), &abs(&b), &mut sum_abs, n, cin, cout, h, h);
        for relu in [false, true] {
            let want: Vec<f64> = if relu { reference.iter().map(|v| v.max(0.0)).collect() } else { reference.clone() };
            let tol = bound(&sum_abs, cin * 9 + 1);
            // The fused 2×2 max-pool of the reference output (its tolerance: the largest of its window's).
            let (ph, pooled_len) = (h / 2, n * cout * (h / 2) * (h / 2));
            let window = |i: usize| {
                let (plane, o) = (i / (ph * ph), i % (ph * ph));
                let base = plane * h * h + (o / ph) * 2 * h + (o % ph) * 2;
                [base, base + 1, base + h, base + h + 1]
            };
            let want_pooled: Vec<f64> =
                (0..pooled_len).map(|i| window(i).iter().map(|&j| want[j]).fold(f64::MIN, f64::max)).collect();
            let tol_pooled = |i: usize| window(i).iter().map(|&j| tol(j)).fold(0.0, f64::max);
            for caps in t.variants() {
                if h % 2 == 1 && caps.family == Family::Simd {
                    continue;
                }
                for batch in batches(caps, n) {
                    for (pool, full) in [(false, true), (true, true), (true, false)] {
                        if pool && h % 2 == 1 {
                            continue;
                        }
                        let op = conv2d::forward(
                            caps,
                            &conv(cin, cout, h, w_off, b_off),
                            batch,
                            relu,
                            pool,
                            "x",
                            "y",
                            "pooled",
                        );
                        let (xb, pb, yb) = (t.buffer_f32(&x), t.buffer_f32(&params), t.poisoned(reference.len()));
                        let pooled_b = t.poisoned(pooled_len);
                        t.set_step(0, n as u32, 0, full);
                        t.run(&op, n, &[("x", &xb), ("params", &pb), ("y", &yb), ("pooled", &pooled_b)]);
                        let what = format!(
                            "{} {} n={n} cin={cin} cout={cout} h={h} relu={relu} pool={pool} full={full}",
                            op.plans[0].entry,
                            name(caps, batch)
                        );
                        let y = t.read(&yb, want.len());
                        if full || !pool {
                            assert_close(&what, &y, &want, &tol, RTOL);
                        } else {
                            assert!(
                                y.iter().all(|v| v.is_nan()),
                                "{what}: stored the pre-pool output without step.full"
                            );
                        }
                        if pool {
                            let got = t.read(&pooled_b, pooled_len);
                            assert_close(&format!("{what} (pooled)"), &got, &want_pooled, &tol_pooled, RTOL);
                            if full {
                                // Exactly the max of the stored values, ties to the first (as maxpool_backward assumes).
                                let mut exact = vec![0.0f32; pooled_len];
                                maxpool_forward(&y, &mut exact, n, cout, h, h);
                                assert_exact(&format!("{what} (pooled vs its own output)"), &got, &exact);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The gradient of a pool input `a` [n, c, 2h, 2w] (a ReLU output) given the gradient `dp` of the pooled output, and
/// where each element's value came from (its index in `dp`, or None for an exact 0), as maxpool_backward and
/// relu_backward define it.
fn route(a: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<Option<usize>> {
    let ones = vec![1.0f32; n * c * h * w];
    let idx: Vec<f32> = (0..n * c * h * w).map(|i| i as f32).collect();
    let mut via = vec![0.0f32; a.len()];
    maxpool_backward(a, &ones, &mut via, n, c, 2 * h, 2 * w);
    let mut relu = vec![0.0f32; a.len()];
    relu_backward(a, &via, &mut relu);
    let mut src = vec![0.0f32; a.len()];
    maxpool_backward(a, &idx, &mut src, n, c, 2 * h, 2 * w);
    relu.iter().zip(&src).map(|(&m, &s)| (m != 0.0).then_some(s as usize)).collect()
}

/// A ReLU output with ties: a quarter of the values 0, some windows with two equal maxima.
fn relu_output(len: usize, seed: u64) -> Vec<f32> {
    let mut a: Vec<f32> = random(len, -0.5, 1.5, seed).iter().map(|v| v.max(0.0)).collect();
    for i in (0..len.saturating_sub(1)).step_by(7) {
        a[i + 1] = a[i];
    }
    a
}

/// Checks a routed gradient against the reference dx through `via`: routed elements within dx's tolerance, the rest
/// exactly 0.
fn assert_routed(what: &str, got: &[f32], via: &[Option<usize>], want: &[f64], tol: &dyn Fn(usize) -> f64) {
    let reference: Vec<f64> = via.iter().map(|v| v.map_or(0.0, |i| want[i])).collect();
    assert_close(what, got, &reference, &|j| via[j].map_or(0.0, tol), RTOL);
}

#[test]
fn conv2d_backward_input_matches_reference() {
    let Some(t) = Harness::new("conv2d_backward_input") else { return };
    for (case, &(n, cin, cout, h)) in CONV_SHAPES.iter().enumerate() {
        let seed = 200 + case as u64;
        let dy = random(n * cout * h * h, -1.0, 1.0, seed);
        let w_off = 11;
        let params = random((w_off + cout * cin * 9 + 4).max(WEIGHT_WINDOW_BYTES as usize / 4), -0.5, 0.5, seed + 1);
        let w = params[w_off..w_off + cout * cin * 9].to_vec();
        let mut reference = vec![0.0f64; n * cin * h * h];
        conv2d_backward_input(&to_f64(&dy), &to_f64(&w), &mut reference, n, cin, cout, h, h);
        let mut sum_abs = vec![0.0f64; reference.len()];
        conv2d_backward_input(&abs(&dy), &abs(&w), &mut sum_abs, n, cin, cout, h, h);
        let tol = bound(&sum_abs, cout * 9);
        // The layer's input as the pool of a ReLU output a [n, cin, 2h, 2w], for the routed variant.
        let a = relu_output(n * cin * 4 * h * h, seed + 2);
        let via = route(&a, n, cin, h, h);
        for caps in t.variants() {
            for batch in batches(caps, n) {
                let s = conv(cin, cout, h, w_off, 0);
                let (dyb, pb, ab) = (t.buffer_f32(&dy), t.buffer_f32(&params), t.buffer_f32(&a));
                t.set_step(0, n as u32, 0, false);
                let what = format!("conv2d_backward_input {} n={n} cin={cin} cout={cout} h={h}", name(caps, batch));
                let dxb = t.poisoned(reference.len());
                let op = conv2d::backward_input(caps, &s, batch, "dy", "dx", None);
                t.run(&op, n, &[("dy", &dyb), ("params", &pb), ("dx", &dxb)]);
                assert_close(&what, &t.read(&dxb, reference.len()), &reference, &tol, RTOL);
                // Routed through the previous layer's max-pool and ReLU.
                let dzb = t.poisoned(a.len());
                let op = conv2d::backward_input(caps, &s, batch, "dy", "dz", Some("a"));
                t.run(&op, n, &[("dy", &dyb), ("params", &pb), ("dz", &dzb), ("a", &ab)]);
                assert_routed(&format!("{what} routed"), &t.read(&dzb, a.len()), &via, &reference, &tol);
            }
        }
    }
}

#[test]
fn conv2d_backward_weight_matches_reference() {
    let Some(t) = Harness::new("conv2d_backward_weight") else { return };
    for (case, &(n, cin, cout, h)) in CONV_SHAPES.iter().chain(&[(64, 16, 32, 14)]).enumerate() {
        let seed = 300 + case as u64;
        let x = random(n * cin * h * h, -1.0, 2.0, seed);
        let dy = random(n * cout * h * h, -1.0, 1.0, seed + 1);
        let w_off = 5;
        let b_off = w_off + cout * cin * 9 + 2;
        let len = b_off + cout + 3;
        let (mut dw, mut db) = (vec![0.0f64; cout * cin * 9], vec![0.0f64; cout]);
        conv2d_backward_weight(&to_f64(&x), &to_f64(&dy), &mut dw, &mut db, n, cin, cout, h, h);
        let (mut dw_abs, mut db_abs) = (vec![0.0f64; dw.len()], vec![0.0f64; cout]);
        conv2d_backward_weight(&abs(&x), &abs(&dy), &mut dw_abs, &mut db_abs, n, cin, cout, h, h);
        // Layers with few channel blocks (simd) and the tiled kernel for large batches split the reduction over
        // several workgroups and add the parts in a second dispatch: both paths run here.
        for caps in t.variants() {
            for batch in batches(caps, n) {
                let op =
                    conv2d::backward_weight(caps, &conv(cin, cout, h, w_off, b_off), batch, "x", "dy", "grads", "l");
                let (xb, dyb, gb) = (t.buffer_f32(&x), t.buffer_f32(&dy), t.poisoned(len));
                t.set_step(0, n as u32, 0, false);
                t.run(&op, n, &[("x", &xb), ("dy", &dyb), ("grads", &gb)]);
                let got = t.read(&gb, len);
                let split = op.plans[0].constant("SPLIT");
                let what = format!(
                    "{} {} n={n} cin={cin} cout={cout} h={h} split={split}",
                    op.plans[0].entry,
                    name(caps, batch)
                );
                let k_terms = n * h * h;
                assert_close(&format!("{what} dw"), &got[w_off..w_off + dw.len()], &dw, &bound(&dw_abs, k_terms), RTOL);
                assert_close(&format!("{what} db"), &got[b_off..b_off + cout], &db, &bound(&db_abs, k_terms), RTOL);
                // Nothing outside the two tensors is written.
                assert!(
                    got[..w_off]
                        .iter()
                        .chain(&got[w_off + dw.len()..b_off])
                        .chain(&got[b_off + cout..])
                        .all(|v| v.is_nan()),
                    "{what}: wrote outside its tensors"
                );
            }
        }
    }
}

/// (n, c, h): the network's pools, batch 1, odd batch, odd sizes.
const POOL_SHAPES: &[(usize, usize, usize)] = &[(1, 16, 28), (3, 16, 28), (5, 32, 14), (3, 3, 6), (2, 5, 10)];

#[test]
fn maxpool_backward_matches_reference_exactly() {
    let Some(t) = Harness::new("maxpool_backward") else { return };
    for (case, &(n, ch, h)) in POOL_SHAPES.iter().enumerate() {
        for relu in [false, true] {
            let mut x = random(n * ch * h * h, -1.0, 1.0, 500 + case as u64);
            if relu {
                x.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            let dy = random(n * ch * (h / 2) * (h / 2), -1.0, 1.0, 600 + case as u64);
            let mut want = vec![0.0f32; x.len()];
            maxpool_backward(&x, &dy, &mut want, n, ch, h, h);
            if relu {
                // The fused kernel is relu_backward ∘ maxpool_backward.
                let pooled = want.clone();
                relu_backward(&x, &pooled, &mut want);
            }
            let op = maxpool::backward(ch, h, h, relu, "x", "dy", "dx");
            let (xb, dyb, dxb) = (t.buffer_f32(&x), t.buffer_f32(&dy), t.poisoned(x.len()));
            t.set_step(0, n as u32, 0, false);
            t.run(&op, n, &[("x", &xb), ("dy", &dyb), ("dx", &dxb)]);
            assert_exact(&format!("maxpool_backward n={n} c={ch} h={h} relu={relu}"), &t.read(&dxb, x.len()), &want);
        }
    }
}

/// (n, inp, out): fc1, fc2, batch 1, odd batch, odd sizes.
const DENSE_SHAPES: &[(usize, usize, usize)] = &[
    (1, 1568, 128),
    (3, 1568, 128),
    (64, 1568, 128),
    (5, 128, 10),
    (64, 128, 10),
    (250, 128, 10),
    (17, 20, 37),
    (7, 13, 6),
    (2, 3, 1),
];

#[test]
fn dense_forward_matches_reference() {
    let Some(t) = Harness::new("dense_forward") else { return };
    for (case, &(n, inp, out)) in DENSE_SHAPES.iter().enumerate() {
        let seed = 700 + case as u64;
        let x = random(n * inp, -1.0, 2.0, seed);
        for caps in t.variants() {
            for batch in batches(caps, n) {
                // Weights at an offset that is a multiple of 4 where the subgroup kernel could take it, else odd.
                let w_off = if inp % 4 == 0 { 4 } else { 3 };
                let b_off = w_off + out * inp + 1;
                let params = random(b_off + out + 2, -0.3, 0.3, seed + 1);
                let (w, b) = (&params[w_off..w_off + out * inp], &params[b_off..b_off + out]);
                let mut reference = vec![0.0f64; n * out];
                dense_forward(&to_f64(&x), &to_f64(w), &to_f64(b), &mut reference, n, inp, out);
                let mut sum_abs = vec![0.0f64; n * out];
                dense_forward(&abs(&x), &abs(w), &abs(b), &mut sum_abs, n, inp, out);
                for relu in [false, true] {
                    let op = dense::forward(caps, &Dense { inp, out, w_off, b_off }, batch, relu, "x", "y");
                    let (xb, pb, yb) = (t.buffer_f32(&x), t.buffer_f32(&params), t.poisoned(n * out));
                    t.set_step(0, n as u32, 0, false);
                    t.run(&op, n, &[("x", &xb), ("params", &pb), ("y", &yb)]);
                    let want: Vec<f64> =
                        if relu { reference.iter().map(|v| v.max(0.0)).collect() } else { reference.clone() };
                    let what =
                        format!("{} {} n={n} in={inp} out={out} relu={relu}", op.plans[0].entry, name(caps, batch));
                    assert_close(&what, &t.read(&yb, n * out), &want, &bound(&sum_abs, inp + 1), RTOL);
                }
            }
        }
    }
}

#[test]
fn dense_backward_input_matches_reference() {
    let Some(t) = Harness::new("dense_backward_input") else { return };
    // The routed variant needs IN = C·ph·pw: fc1's 32·7·7 and a small odd one.
    let pooled: &[(usize, usize, usize)] = &[(3, 32 * 7 * 7, 128), (64, 32 * 7 * 7, 128), (5, 3 * 3 * 3, 7)];
    for (case, &(n, inp, out)) in DENSE_SHAPES.iter().chain(pooled).enumerate() {
        let seed = 800 + case as u64;
        let dy = random(n * out, -1.0, 1.0, seed);
        // The layer's input, as a ReLU output (zeros included) for the fused mask.
        let x: Vec<f32> = random(n * inp, -1.0, 1.0, seed + 2).iter().map(|v| v.max(0.0)).collect();
        let w_off = if inp % 4 == 0 && out % 4 == 0 { 8 } else { 2 };
        let params = random(w_off + out * inp + 3, -0.3, 0.3, seed + 1);
        let w = &params[w_off..w_off + out * inp];
        let mut reference = vec![0.0f64; n * inp];
        dense_backward_input(&to_f64(&dy), &to_f64(w), &mut reference, n, inp, out);
        let mut sum_abs = vec![0.0f64; n * inp];
        dense_backward_input(&abs(&dy), &abs(w), &mut sum_abs, n, inp, out);
        let tol = bound(&sum_abs, out);
        let side = if inp == 32 * 49 {
            Some((32, 7))
        } else if inp == 27 {
            Some((3, 3))
        } else {
            None
        };
        for caps in t.variants() {
            for batch in batches(caps, n) {
                let s = Dense { inp, out, w_off, b_off: 0 };
                let (dyb, pb, xb) = (t.buffer_f32(&dy), t.buffer_f32(&params), t.buffer_f32(&x));
                t.set_step(0, n as u32, 0, false);
                for relu in [false, true] {
                    let source = if relu { Source::Relu("x") } else { Source::Plain };
                    let op = dense::backward_input(caps, &s, batch, "dy", "dx", source);
                    let dxb = t.poisoned(n * inp);
                    t.run(&op, n, &[("dy", &dyb), ("params", &pb), ("x", &xb), ("dx", &dxb)]);
                    let want: Vec<f64> = if relu {
                        let mut masked = vec![0.0f64; reference.len()];
                        relu_backward(&to_f64(&x), &reference, &mut masked);
                        masked
                    } else {
                        reference.clone()
                    };
                    let what =
                        format!("{} {} n={n} in={inp} out={out} relu={relu}", op.plans[0].entry, name(caps, batch));
                    assert_close(&what, &t.read(&dxb, n * inp), &want, &tol, RTOL);
                }
                if let Some((c, side)) = side {
                    // Routed through the max-pool and ReLU that produced the input (a [n, c, 2·side, 2·side]).
                    let a = relu_output(n * inp * 4, seed + 3);
                    let via = route(&a, n, c, side, side);
                    let (ab, dzb) = (t.buffer_f32(&a), t.poisoned(a.len()));
                    let op = dense::backward_input(
                        caps,
                        &s,
                        batch,
                        "dy",
                        "dz",
                        Source::PooledRelu { a: "a", ph: side, pw: side },
                    );
                    t.run(&op, n, &[("dy", &dyb), ("params", &pb), ("a", &ab), ("dz", &dzb)]);
                    let what = format!("{} {} n={n} in={inp} out={out} routed", op.plans[0].entry, name(caps, batch));
                    assert_routed(&what, &t.read(&dzb, a.len()), &via, &reference, &tol);
                }
            }
        }
    }
}

#[test]
fn dense_backward_weight_matches_reference() {
    let Some(t) = Harness::new("dense_backward_weight") else { return };
    for (case, &(n, inp, out)) in DENSE_SHAPES.iter().enumerate() {
        let seed = 900 + case as u64;
        let x = random(n * inp, -1.0, 2.0, seed);
        let dy = random(n * out, -1.0, 1.0, seed + 1);
        let (mut dw, mut db) = (vec![0.0f64; out * inp], vec![0.0f64; out]);
        dense_backward_weight(&to_f64(&x), &to_f64(&dy), &mut dw, &mut db, n, inp, out);
        let (mut dw_abs, mut db_abs) = (vec![0.0f64; out * inp], vec![0.0f64; out]);
        dense_backward_weight(&abs(&x), &abs(&dy), &mut dw_abs, &mut db_abs, n, inp, out);
        // The bias at an offset that is a multiple of 4 where the subgroup kernel could take it, else unaligned.
        let w_off = 4;
        let b_off = w_off + out * inp + if (inp * out) % 4 == 0 { 4 } else { 2 };
        let len = b_off + out + 1;
        for caps in t.variants() {
            for batch in batches(caps, n) {
                let op = dense::backward_weight(caps, &Dense { inp, out, w_off, b_off }, batch, "x", "dy", "grads");
                let (xb, dyb, gb) = (t.buffer_f32(&x), t.buffer_f32(&dy), t.poisoned(len));
                t.set_step(0, n as u32, 0, false);
                t.run(&op, n, &[("x", &xb), ("dy", &dyb), ("grads", &gb)]);
                let got = t.read(&gb, len);
                let what = format!("{} {} n={n} in={inp} out={out}", op.plans[0].entry, name(caps, batch));
                assert_close(&format!("{what} dw"), &got[w_off..w_off + dw.len()], &dw, &bound(&dw_abs, n), RTOL);
                assert_close(&format!("{what} db"), &got[b_off..b_off + out], &db, &bound(&db_abs, n), RTOL);
                assert!(
                    got[..w_off]
                        .iter()
                        .chain(&got[w_off + dw.len()..b_off])
                        .chain(&got[b_off + out..])
                        .all(|v| v.is_nan()),
                    "{what}: wrote outside its tensors"
                );
            }
        }
    }
}

#[test]
fn softmax_cross_entropy_matches_reference() {
    let Some(t) = Harness::new("softmax_cross_entropy") else { return };
    let k_classes = 10;
    for (case, &n) in [1usize, 3, 64, 300].iter().enumerate() {
        let seed = 1000 + case as u64;
        let logits = random(n * k_classes, -4.0, 4.0, seed);
        let labels = random_labels(n, k_classes as u32, seed + 1);
        let mut losses = vec![0.0f64; n];
        softmax_cross_entropy_forward(&to_f64(&logits), &labels, &mut losses, n, k_classes);
        let mut dlogits = vec![0.0f64; n * k_classes];
        softmax_cross_entropy_backward(&to_f64(&logits), &labels, &mut dlogits, n, k_classes);
        let preds: Vec<u32> = logits.chunks(k_classes).map(|r| argmax(r) as u32).collect();
        let correct = preds.iter().zip(&labels).filter(|(p, l)| **p == **l as u32).count();
        let loss_sum: f64 = losses.iter().sum();
        let layout = StatsLayout::new(4);
        let start = 5u32; // predictions land at start + b
        for backward in [true, false] {
            let op = softmax_cross_entropy::loss(backward, k_classes, layout, "logits", "y", "dlogits");
            let entry = op.plans[0].entry;
            let lb = t.buffer_u32(&labels.iter().map(|&l| l as u32).collect::<Vec<_>>());
            let (xb, db) = (t.buffer_f32(&logits), t.poisoned(n * k_classes));
            // The metrics are running totals the kernel adds to; the rest of the stats poisoned.
            let mut stats = vec![u32::MAX; layout.words(n + start as usize)];
            stats[..4].copy_from_slice(&[1.5f32.to_bits(), 2.0f32.to_bits(), 3.0f32.to_bits(), 0]);
            let sb = t.buffer_u32(&stats);
            t.set_step(start, n as u32, 2, false);
            t.run(&op, n, &[("logits", &xb), ("y", &lb), ("dlogits", &db), ("stats", &sb)]);
            let got_stats = t.gpu.read_u32(&sb, 0, stats.len(), "stats").unwrap();
            let m: Vec<f32> = got_stats[..3].iter().map(|&b| f32::from_bits(b)).collect();
            let loss_tol = 1e-6 * loss_sum.abs() + 1e-5;
            assert!(
                (m[0] as f64 - 1.5 - loss_sum).abs() <= loss_tol,
                "{entry} n={n}: loss sum {} vs {}",
                m[0] - 1.5,
                loss_sum
            );
            assert_eq!(m[1] as usize, 2 + correct, "{entry} n={n}: correct count");
            assert_eq!(m[2] as usize, 3 + n, "{entry} n={n}: count");
            let step_loss = f32::from_bits(got_stats[layout.losses + 2]) as f64;
            assert!((step_loss - loss_sum / n as f64).abs() <= 1e-5, "{entry} n={n}: step loss");
            let first = layout.preds + start as usize;
            assert_eq!(&got_stats[first..first + n], &preds[..], "{entry} n={n}: predictions");
            assert!(got_stats[layout.preds..first].iter().all(|&v| v == u32::MAX), "{entry}: wrote before start");
            let got = t.read(&db, n * k_classes);
            if backward {
                // Each gradient element is (softmax − onehot)/n: a ratio of exp sums, rtol a few ulps of 1/n.
                assert_close(&format!("{entry} n={n} dlogits"), &got, &dlogits, &|_| 4e-7 / n as f64, 1e-5);
            } else {
                assert!(got.iter().all(|v| v.is_nan()), "{entry} must not write dlogits");
            }
        }
    }
}

#[test]
fn sgd_step_matches_reference() {
    let Some(t) = Harness::new("sgd_step") else { return };
    for (case, &len) in [1usize, 255, 257, 206_922].iter().enumerate() {
        let seed = 1100 + case as u64;
        let (w, g, v) =
            (random(len, -1.0, 1.0, seed), random(len, -1.0, 1.0, seed + 1), random(len, -1.0, 1.0, seed + 2));
        let (lr, mu) = (0.01f32, 0.9f32);
        let (mut w_ref, mut v_ref) = (w.clone(), v.clone());
        sgd_step(&mut w_ref, &g, &mut v_ref, lr, mu);
        let (gb, wb, vb) = (t.buffer_f32(&g), t.buffer_f32(&w), t.buffer_f32(&v));
        let hyper = t.uniform(bytemuck::cast_slice(&[lr.to_bits(), mu.to_bits(), len as u32, 0]));
        t.run(&sgd::step(len), len, &[("grads", &gb), ("params", &wb), ("momentum", &vb), ("hyper", &hyper)]);
        // v = μ·v + g and w − lr·v, two roundings each in the f32 reference; a device may fuse the multiply-add (one
        // rounding): the results may differ by a rounding of each term, |μ·v| + |g| and |w| + |lr·v| (plus what
        // the difference in v moves w by).
        let tv: Vec<f64> = (0..len).map(|i| 2.0 * EPS32 * ((mu * v[i]).abs() + g[i].abs()) as f64).collect();
        let tw: Vec<f64> =
            (0..len).map(|i| 2.0 * EPS32 * (w[i].abs() + (lr * v_ref[i]).abs()) as f64 + lr as f64 * tv[i]).collect();
        assert_close(&format!("sgd_step len={len} momentum"), &t.read(&vb, len), &to_f64(&v_ref), &|i| tv[i], 0.0);
        assert_close(&format!("sgd_step len={len} params"), &t.read(&wb, len), &to_f64(&w_ref), &|i| tw[i], 0.0);
    }
}

#[test]
fn load_batch_gathers_and_normalizes() {
    let Some(t) = Harness::new("load_batch") else { return };
    let count = 37;
    let images: Vec<u8> = (0..count * 784).map(|i| ((i * 7919 + 13) % 256) as u8).collect();
    let labels: Vec<u8> = (0..count).map(|i| (i * 3 % 10) as u8).collect();
    let order: Vec<u32> = (0..count as u32).rev().collect();
    let data: Vec<u8> = images.iter().chain(&labels).copied().collect();
    let db = t.gpu.storage_init("data", &gpu_cnn::gpu::pack_u8(&data)).unwrap();
    let ob = t.buffer_u32(&order);
    let op = load_batch::load(count, "data", "order", "x", "y");
    for (start, n) in [(0usize, 1usize), (3, 5), (30, 7)] {
        let (xb, yb) = (t.poisoned(n * 784), t.buffer_u32(&vec![u32::MAX; n]));
        t.set_step(start as u32, n as u32, 0, false);
        t.run(&op, n, &[("data", &db), ("order", &ob), ("x", &xb), ("y", &yb)]);
        let mut want_x = Vec::new();
        let mut want_y = Vec::new();
        for b in 0..n {
            let s = order[start + b] as usize;
            want_x.extend(images[s * 784..(s + 1) * 784].iter().map(|&p| normalize_pixel(p) as f64));
            want_y.push(labels[s] as u32);
        }
        // Two f32 operations (a division by 255 and by the std): within a few ulps.
        assert_close(&format!("load_batch start={start} n={n}"), &t.read(&xb, n * 784), &want_x, &|_| 1e-6, 1e-6);
        assert_eq!(t.gpu.read_u32(&yb, 0, n, "labels").unwrap(), want_y);
    }
}
