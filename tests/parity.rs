//! Every WGSL entry point against its CPU reference (`gpu_cnn::reference`), on seeded random inputs, with every output
//! buffer poisoned (NaN) before the dispatch so an unwritten element fails.
//!
//! Tolerance: |gpu − ref| ≤ atol + rtol·|ref|, the reference computed in f64 from the same f32 inputs. A K-term f32 dot
//! product carries a rounding error of at most γ_K·Σ|terms| (γ_K ≈ K·2⁻²⁴), and typically √K·2⁻²⁴·Σ|terms|; we allow
//! atol = 4·√K·2⁻²⁴·Σ|terms| per element (Σ|terms| is the reference run on |inputs|) plus rtol = 1e-5. An indexing
//! mistake moves an element by the size of a whole term, orders of magnitude above that. Max-pool, ReLU and argmax are
//! exact.

mod common;

use common::*;
use gpu_cnn::gpu::kernels::{self, conv2d, dense, Kernel, Kernels, STEP_BYTES, WEIGHT_WINDOW_BYTES};
use gpu_cnn::gpu::Gpu;
use gpu_cnn::model::normalize_pixel;
use gpu_cnn::reference::*;
use wgpu::util::DeviceExt;

const EPS32: f64 = 1.0 / (1u64 << 24) as f64;

/// A kernel under test with its input and output buffers.
struct Harness {
    gpu: Gpu,
    kernels: Kernels,
    step: wgpu::Buffer,
}

impl Harness {
    fn new(test: &str) -> Option<Harness> {
        let gpu = gpu(test)?;
        let kernels = Kernels::new(&gpu).expect("shader modules");
        let step = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step"),
            size: 256,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Some(Harness { gpu, kernels, step })
    }

    fn set_step(&self, start: u32, n: u32, index: u32) {
        self.set_step_full(start, n, index, false);
    }

    /// The step block with its `full` flag (conv2d_forward: store the pre-pool output too).
    fn set_step_full(&self, start: u32, n: u32, index: u32, full: bool) {
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
        self.buffer_f32(&vec![f32::NAN; len])
    }

    fn uniform(&self, bytes: &[u8]) -> wgpu::Buffer {
        self.gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("uniform"),
            contents: bytes,
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    fn kernel(&self, entry: &'static str, constants: &[(&str, f64)]) -> Kernel {
        self.kernels.kernel(&self.gpu, entry, constants).expect("pipeline")
    }

    /// Binds `buffers` (the step block stands in for a `Step` binding) and dispatches `groups` workgroups.
    fn run(&self, k: &Kernel, buffers: &[&wgpu::Buffer], groups: u64, dynamic: bool) {
        let group = k.bind(&self.gpu, buffers);
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            k.dispatch_workgroups(&mut pass, &group, dynamic.then_some(0), groups);
        }
        let idx = self.gpu.queue.submit([enc.finish()]);
        self.gpu.wait(Some(idx), "a test dispatch").expect("dispatch");
    }

    fn read(&self, b: &wgpu::Buffer, len: usize) -> Vec<f32> {
        self.gpu.read_f32(b, 0, len, "test output").expect("readback")
    }
}

fn c(name: &'static str, v: usize) -> (&'static str, f64) {
    (name, v as f64)
}

fn flag(name: &'static str, on: bool) -> (&'static str, f64) {
    (name, if on { 1.0 } else { 0.0 })
}

fn groups(threads: usize, wg: u32) -> u64 {
    (threads as u64).div_ceil(wg as u64)
}

/// Workgroups for `threads` threads of `entry`, by its workgroup size in the kernel table.
fn groups_of(entry: &str, threads: u64) -> u64 {
    groups(threads as usize, kernels::shader_for(entry).workgroup)
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
/// workgroup size or of the channel blocks. Widths are even: the kernels read rows as pairs (`kernels_refuse_shapes_they_cannot_take`).
const CONV_SHAPES: &[(usize, usize, usize, usize)] =
    &[(1, 1, 16, 28), (3, 1, 16, 28), (1, 16, 32, 14), (5, 16, 32, 14), (3, 3, 5, 6), (2, 17, 19, 10)];

#[test]
fn kernels_refuse_shapes_they_cannot_take() {
    for entry in ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight"] {
        let err = kernels::check_shape(entry, &[("CIN", 3.0), ("COUT", 5.0), ("H", 5.0), ("W", 5.0)]).unwrap_err();
        assert!(err.contains("W = 5 must be even"), "{err}");
        assert!(kernels::check_shape(entry, &[("H", 6.0), ("W", 6.0)]).is_ok());
    }
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
    for (case, &(n, cin, cout, h)) in CONV_SHAPES.iter().enumerate() {
        let seed = 100 + case as u64;
        let x = random(n * cin * h * h, -1.0, 2.0, seed);
        // Weights and bias inside a larger parameter buffer, at offsets, as in the network.
        let w_off = 7;
        let b_off = w_off + cout * cin * 9 + 3;
        // At least the uniform window the kernel reads the weights through (as in the network's parameter buffer).
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
            for (pool, full) in [(false, true), (true, true), (true, false)] {
                let constants = [
                    c("CIN", cin),
                    c("COUT", cout),
                    c("H", h),
                    c("W", h),
                    c("W_OFF", w_off),
                    c("B_OFF", b_off),
                    flag("RELU", relu),
                    flag("POOL", pool),
                ];
                // The plain kernel, and the subgroup one where the adapter runs it (lavapipe does).
                let mut variants = vec![("conv2d_forward", conv2d::forward_groups(n, cout, h, h))];
                if t.gpu.subgroups_of_8 {
                    variants.push(("conv2d_forward_subgroup", conv2d::forward_subgroup_groups(n, cout, h, h)));
                }
                for (entry, groups) in variants {
                    let k = t.kernel(entry, &constants);
                    let (xb, pb, yb) = (t.buffer_f32(&x), t.buffer_f32(&params), t.poisoned(reference.len()));
                    let pooled_b = t.poisoned(pooled_len.max(1));
                    t.set_step_full(0, n as u32, 0, full);
                    t.run(&k, &[&xb, &pb, &yb, &t.step, &pooled_b], groups, true);
                    let what = format!("{entry} n={n} cin={cin} cout={cout} h={h} relu={relu} pool={pool} full={full}");
                    let y = t.read(&yb, want.len());
                    if full {
                        assert_close(&what, &y, &want, &tol, RTOL);
                    } else {
                        assert!(y.iter().all(|v| v.is_nan()), "{what}: stored the pre-pool output without step.full");
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
        let k = t.kernel(
            "conv2d_backward_input",
            &[c("CIN", cin), c("COUT", cout), c("H", h), c("W", h), c("W_OFF", w_off)],
        );
        let (dyb, pb, dxb) = (t.buffer_f32(&dy), t.buffer_f32(&params), t.poisoned(reference.len()));
        t.set_step(0, n as u32, 0);
        t.run(&k, &[&dyb, &pb, &dxb, &t.step], conv2d::groups(n, cin, h, h), true);
        let what = format!("conv2d_backward_input n={n} cin={cin} cout={cout} h={h}");
        assert_close(&what, &t.read(&dxb, reference.len()), &reference, &bound(&sum_abs, cout * 9), RTOL);
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
        // SPLIT = 1 writes grads directly; SPLIT = 3 writes three parts that conv2d_backward_weight_reduce adds up.
        for split in [1, 3] {
            let consts = [
                c("CIN", cin),
                c("COUT", cout),
                c("H", h),
                c("W", h),
                c("W_OFF", w_off),
                c("B_OFF", b_off),
                c("SPLIT", split),
            ];
            // The plain kernel, and the subgroup one where the adapter runs it (lavapipe does).
            let mut variants = vec![("conv2d_backward_weight", conv2d::backward_weight_groups(cin, cout))];
            if t.gpu.subgroups_of_8 {
                variants.push(("conv2d_backward_weight_subgroup", conv2d::backward_weight_subgroup_groups(cin, cout)));
            }
            for (entry, groups) in variants {
                let k = t.kernel(entry, &consts);
                let (xb, dyb, gb) = (t.buffer_f32(&x), t.buffer_f32(&dy), t.poisoned(len));
                let pb = t.poisoned(conv2d::partials_len(cin, cout, split));
                t.set_step(0, n as u32, 0);
                let bufs = [&xb, &dyb, &gb, &t.step, &pb];
                t.run(&k, &bufs, groups * split as u64, true);
                if split > 1 {
                    let r = t.kernel("conv2d_backward_weight_reduce", &consts);
                    t.run(&r, &bufs, conv2d::backward_weight_reduce_groups(cin, cout), true);
                }
                let got = t.read(&gb, len);
                let what = format!("{entry} n={n} cin={cin} cout={cout} h={h} split={split}");
                let k_terms = n * h * h;
                assert_close(&format!("{what} dw"), &got[w_off..w_off + dw.len()], &dw, &bound(&dw_abs, k_terms), RTOL);
                assert_close(&format!("{what} db"), &got[b_off..b_off + cout], &db, &bound(&db_abs, k_terms), RTOL);
                // Nothing outside the two tensors is written.
                assert!(
                    got[..w_off].iter().chain(&got[b_off + cout..]).all(|v| v.is_nan()),
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
            let k = t.kernel("maxpool_backward", &[c("C", ch), c("H", h), c("W", h), flag("RELU", relu)]);
            let (xb, dyb, dxb) = (t.buffer_f32(&x), t.buffer_f32(&dy), t.poisoned(x.len()));
            t.set_step(0, n as u32, 0);
            t.run(&k, &[&xb, &dyb, &dxb, &t.step], groups(dy.len(), k.workgroup), true); // one thread per window
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
        // The plain kernel (weights at an odd offset), and the subgroup one where the adapter runs it (lavapipe
        // does) and the shape suits it (it reads vec4s: inputs and weight offset multiples of 4).
        let mut variants = vec![("dense_forward", 3, groups_of("dense_forward", dense::threads(n, out)))];
        if t.gpu.subgroups_of_8 && inp % 4 == 0 {
            let g = groups_of("dense_forward_subgroup", dense::subgroup_threads(n, out));
            variants.push(("dense_forward_subgroup", 4, g));
        }
        for (entry, w_off, groups) in variants {
            let b_off = w_off + out * inp + 1;
            let params = random(b_off + out + 2, -0.3, 0.3, seed + 1);
            let (w, b) = (&params[w_off..w_off + out * inp], &params[b_off..b_off + out]);
            let mut reference = vec![0.0f64; n * out];
            dense_forward(&to_f64(&x), &to_f64(w), &to_f64(b), &mut reference, n, inp, out);
            let mut sum_abs = vec![0.0f64; n * out];
            dense_forward(&abs(&x), &abs(w), &abs(b), &mut sum_abs, n, inp, out);
            for relu in [false, true] {
                let k = t.kernel(
                    entry,
                    &[c("IN", inp), c("OUT", out), c("W_OFF", w_off), c("B_OFF", b_off), flag("RELU", relu)],
                );
                let (xb, pb, yb) = (t.buffer_f32(&x), t.buffer_f32(&params), t.poisoned(n * out));
                t.set_step(0, n as u32, 0);
                t.run(&k, &[&xb, &pb, &yb, &t.step], groups, true);
                let want: Vec<f64> =
                    if relu { reference.iter().map(|v| v.max(0.0)).collect() } else { reference.clone() };
                let what = format!("{entry} n={n} in={inp} out={out} relu={relu}");
                assert_close(&what, &t.read(&yb, n * out), &want, &bound(&sum_abs, inp + 1), RTOL);
            }
        }
    }
}

#[test]
fn dense_backward_input_matches_reference() {
    let Some(t) = Harness::new("dense_backward_input") else { return };
    for (case, &(n, inp, out)) in DENSE_SHAPES.iter().enumerate() {
        let seed = 800 + case as u64;
        let dy = random(n * out, -1.0, 1.0, seed);
        // The layer's input, as a ReLU output (zeros included) for the fused mask.
        let x: Vec<f32> = random(n * inp, -1.0, 1.0, seed + 2).iter().map(|v| v.max(0.0)).collect();
        // The plain kernel (weights at an even, unaligned offset), and the subgroup one where the adapter runs it and
        // the shape suits it (vec4s: inputs, outputs and the weight offset multiples of 4).
        let mut variants = vec![("dense_backward_input", 2, groups_of("dense_backward_input", dense::threads(n, inp)))];
        if t.gpu.subgroups_of_8 && inp % 4 == 0 && out % 4 == 0 {
            let g = groups_of("dense_backward_input_subgroup", dense::subgroup_threads(n, inp));
            variants.push(("dense_backward_input_subgroup", 8, g));
        }
        for (entry, w_off, groups) in variants {
            let params = random(w_off + out * inp + 3, -0.3, 0.3, seed + 1);
            let w = &params[w_off..w_off + out * inp];
            let mut reference = vec![0.0f64; n * inp];
            dense_backward_input(&to_f64(&dy), &to_f64(w), &mut reference, n, inp, out);
            let mut sum_abs = vec![0.0f64; n * inp];
            dense_backward_input(&abs(&dy), &abs(w), &mut sum_abs, n, inp, out);
            for relu in [false, true] {
                let k = t.kernel(entry, &[c("IN", inp), c("OUT", out), c("W_OFF", w_off), flag("RELU", relu)]);
                let (dyb, pb, xb, dxb) =
                    (t.buffer_f32(&dy), t.buffer_f32(&params), t.buffer_f32(&x), t.poisoned(n * inp));
                t.set_step(0, n as u32, 0);
                t.run(&k, &[&dyb, &pb, &xb, &dxb, &t.step], groups, true);
                let want: Vec<f64> = if relu {
                    let mut masked = vec![0.0f64; reference.len()];
                    relu_backward(&to_f64(&x), &reference, &mut masked);
                    masked
                } else {
                    reference.clone()
                };
                let what = format!("{entry} n={n} in={inp} out={out} relu={relu}");
                assert_close(&what, &t.read(&dxb, n * inp), &want, &bound(&sum_abs, out), RTOL);
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
        // The plain kernel (bias at an unaligned offset), and the subgroup one where the adapter runs it and the
        // shape suits it (vec4s: inputs, outputs and both offsets multiples of 4).
        let w_off = 4;
        let mut variants = vec![(
            "dense_backward_weight",
            w_off + out * inp + 2,
            groups_of("dense_backward_weight", dense::backward_weight_threads(inp, out)),
        )];
        if t.gpu.subgroups_of_8 && inp % 4 == 0 && out % 4 == 0 {
            let groups = dense::backward_weight_subgroup_groups(inp, out);
            variants.push(("dense_backward_weight_subgroup", w_off + out * inp + 4, groups));
        }
        for (entry, b_off, groups) in variants {
            let len = b_off + out + 1;
            let k = t.kernel(entry, &[c("IN", inp), c("OUT", out), c("W_OFF", w_off), c("B_OFF", b_off)]);
            let (xb, dyb, gb) = (t.buffer_f32(&x), t.buffer_f32(&dy), t.poisoned(len));
            t.set_step(0, n as u32, 0);
            t.run(&k, &[&xb, &dyb, &gb, &t.step], groups, true);
            let got = t.read(&gb, len);
            let what = format!("{entry} n={n} in={inp} out={out}");
            assert_close(&format!("{what} dw"), &got[w_off..w_off + dw.len()], &dw, &bound(&dw_abs, n), RTOL);
            assert_close(&format!("{what} db"), &got[b_off..b_off + out], &db, &bound(&db_abs, n), RTOL);
            assert!(
                got[..w_off].iter().chain(&got[w_off + dw.len()..b_off]).chain(&got[b_off + out..]).all(|v| v.is_nan()),
                "{what}: wrote outside its tensors"
            );
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
        for backward in [true, false] {
            let entry = if backward { "softmax_cross_entropy_backward" } else { "softmax_cross_entropy_forward" };
            let kernel = t.kernel(entry, &[c("K", k_classes)]);
            let start = 5u32; // predictions land at start + b
            let lb = t.buffer_u32(&labels.iter().map(|&l| l as u32).collect::<Vec<_>>());
            let (xb, db) = (t.buffer_f32(&logits), t.poisoned(n * k_classes));
            let pb = t.buffer_u32(&vec![u32::MAX; n + start as usize]);
            let mb = t.buffer_f32(&[1.5, 2.0, 3.0, 0.0]); // running totals: the kernel adds to them
            let sb = t.poisoned(4);
            t.set_step(start, n as u32, 2);
            t.run(&kernel, &[&xb, &lb, &db, &pb, &mb, &sb, &t.step], 1, true);
            let m = t.read(&mb, 3);
            let loss_tol = 1e-6 * loss_sum.abs() + 1e-5;
            assert!(
                (m[0] as f64 - 1.5 - loss_sum).abs() <= loss_tol,
                "{entry} n={n}: loss sum {} vs {}",
                m[0] - 1.5,
                loss_sum
            );
            assert_eq!(m[1] as usize, 2 + correct, "{entry} n={n}: correct count");
            assert_eq!(m[2] as usize, 3 + n, "{entry} n={n}: count");
            let step_loss = t.read(&sb, 4)[2] as f64;
            assert!((step_loss - loss_sum / n as f64).abs() <= 1e-5, "{entry} n={n}: step loss");
            let got_preds = t.gpu.read_u32(&pb, 0, n + start as usize, "preds").unwrap();
            assert_eq!(&got_preds[start as usize..], &preds[..], "{entry} n={n}: predictions");
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
        let k = t.kernel("sgd_step", &[]);
        let (gb, wb, vb) = (t.buffer_f32(&g), t.buffer_f32(&w), t.buffer_f32(&v));
        let hyper = t.uniform(bytemuck::cast_slice(&[lr.to_bits(), mu.to_bits(), len as u32, 0]));
        t.run(&k, &[&gb, &wb, &vb, &hyper], groups(len, k.workgroup), false);
        // Two f32 operations each: within one rounding of the f32 reference (fused multiply-add allowed).
        let tol = |r: &[f32]| r.iter().map(|x| 2.0 * x.abs() as f64 * EPS32 + 1e-9).collect::<Vec<_>>();
        let (tv, tw) = (tol(&v_ref), tol(&w_ref));
        assert_close(&format!("sgd_step len={len} momentum"), &t.read(&vb, len), &to_f64(&v_ref), &|i| tv[i], 0.0);
        assert_close(
            &format!("sgd_step len={len} params"),
            &t.read(&wb, len),
            &to_f64(&w_ref),
            &|i| tw[i] + 2.0 * EPS32,
            0.0,
        );
    }
}

#[test]
fn load_batch_gathers_and_normalizes() {
    let Some(t) = Harness::new("load_batch") else { return };
    let count = 37;
    let images: Vec<u8> = (0..count * 784).map(|i| ((i * 7919 + 13) % 256) as u8).collect();
    let labels: Vec<u8> = (0..count).map(|i| (i * 3 % 10) as u8).collect();
    let order: Vec<u32> = (0..count as u32).rev().collect();
    let k = t.kernel("load_batch", &[]);
    let ib = t.gpu.storage_init("images", &gpu_cnn::gpu::pack_u8(&images)).unwrap();
    let lb = t.gpu.storage_init("labels", &gpu_cnn::gpu::pack_u8(&labels)).unwrap();
    let ob = t.buffer_u32(&order);
    for (start, n) in [(0usize, 1usize), (3, 5), (30, 7)] {
        let (xb, yb) = (t.poisoned(n * 784), t.buffer_u32(&vec![u32::MAX; n]));
        t.set_step(start as u32, n as u32, 0);
        t.run(&k, &[&ib, &lb, &ob, &xb, &yb, &t.step], groups(n * 784, k.workgroup), true);
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
    let _ = STEP_BYTES;
}
