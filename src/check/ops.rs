//! Each op's kernels against the CPU reference, in every variant asked for, on the network's shapes and awkward ones.

use super::harness::{abs, random, random_labels, to_f64, Harness};
use super::{compare, compare_exact, Rows};
use crate::gpu::kernels::WEIGHT_WINDOW_BYTES;
use crate::gpu::ops::conv2d::{self, Conv};
use crate::gpu::ops::dense::{self, Dense, Source};
use crate::gpu::ops::softmax_cross_entropy::{self, StatsLayout};
use crate::gpu::ops::{classifier_head, load_batch, maxpool, sgd, Caps, Family};
use crate::model::{ImageShape, Normalization};
use crate::reference as r;

const EPS32: f64 = 1.0 / (1u64 << 24) as f64;
const RTOL: f64 = 1e-5;

/// Per-element tolerance from an f64 "sum of |terms|" for a K-term reduction.
fn bound(sum_abs: &[f64], k: usize) -> impl Fn(usize) -> f64 + '_ {
    move |i| 4.0 * (k as f64).sqrt() * EPS32 * sum_abs[i] + 1e-30
}

/// Tile hints: the tiled family chooses its tiles (and splits) for the batch it will run; check those chosen for the
/// case's own n and for a batch of 1024. The simd family has one shape.
fn batches(caps: Caps, n: usize, quick: bool) -> Vec<usize> {
    match caps.family {
        Family::Tiled if !quick => vec![n, 1024],
        _ => vec![n],
    }
}

/// The kernel a lowered op starts with, for the report.
fn entry(op: &crate::gpu::ops::Lowered) -> &'static str {
    op.plans[0].entry
}

/// (n, cin, cout, h): the network's two convolutions at batch 64, batch 1, odd batches, and sizes that are not
/// multiples of the workgroup size, the tiles or the channel blocks. Widths are even: the simd kernels read rows as
/// pairs. Quick: the network's two.
fn conv_shapes(quick: bool) -> Vec<(usize, usize, usize, usize)> {
    if quick {
        return vec![(64, 1, 16, 28), (64, 16, 32, 14)];
    }
    vec![(1, 1, 16, 28), (3, 1, 16, 28), (1, 16, 32, 14), (5, 16, 32, 14), (3, 3, 5, 6), (2, 17, 19, 10)]
}

fn conv(cin: usize, cout: usize, h: usize, w_off: usize, b_off: usize) -> Conv {
    Conv { cin, cout, h, w: h, w_off, b_off }
}

pub async fn conv2d_forward(t: &Harness, variants: &[Caps], quick: bool, rows: &mut Rows) {
    // The tiled kernel also takes odd widths without the pool.
    let mut shapes = conv_shapes(quick);
    if !quick {
        shapes.push((3, 2, 3, 7));
    }
    for (case, &(n, cin, cout, h)) in shapes.iter().enumerate() {
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
        r::conv2d_forward(&to_f64(&x), &to_f64(&w), &to_f64(&b), &mut reference, n, cin, cout, h, h);
        let mut sum_abs = vec![0.0f64; reference.len()];
        r::conv2d_forward(&abs(&x), &abs(&w), &abs(&b), &mut sum_abs, n, cin, cout, h, h);
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
            for &caps in variants {
                if h % 2 == 1 && caps.family == Family::Simd {
                    continue;
                }
                for batch in batches(caps, n, quick) {
                    for (pool, full) in [(false, true), (true, true), (true, false)] {
                        if pool && h % 2 == 1 {
                            continue;
                        }
                        let s = conv(cin, cout, h, w_off, b_off);
                        let op = conv2d::forward(caps, &s, batch, relu, pool, "x", "y", "pooled");
                        let (xb, pb, yb) = (t.buffer_f32(&x), t.buffer_f32(&params), t.poisoned(reference.len()));
                        let pooled_b = t.poisoned(pooled_len);
                        t.set_step(0, n as u32, 0, full);
                        t.run(&op, n, &[("x", &xb), ("params", &pb), ("y", &yb), ("pooled", &pooled_b)]).await;
                        let what = format!("n={n} cin={cin} cout={cout} h={h} relu={relu} pool={pool} full={full}");
                        let (k, v) = (entry(&op), caps.describe());
                        let y = t.read(&yb, want.len()).await;
                        if full || !pool {
                            rows.add(k, &v, compare(&what, &y, &want, &tol, RTOL));
                        } else {
                            let stored = y.iter().position(|v| !v.is_nan());
                            let mut c = compare_exact(&what, &[], &[]);
                            c.failure = stored
                                .map(|i| format!("{what}: stored the pre-pool output without step.full (element {i})"));
                            rows.add(k, &v, c);
                        }
                        if pool {
                            let got = t.read(&pooled_b, pooled_len).await;
                            rows.add(k, &v, compare(&format!("{what} pooled"), &got, &want_pooled, &tol_pooled, RTOL));
                            if full {
                                // Exactly the max of the stored values, ties to the first (as maxpool_backward assumes).
                                let mut exact = vec![0.0f32; pooled_len];
                                r::maxpool_forward(&y, &mut exact, n, cout, h, h);
                                rows.add(
                                    k,
                                    &v,
                                    compare_exact(&format!("{what} pooled vs its own output"), &got, &exact),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Where each element of the gradient of a pool input `a` [n, c, 2h, 2w] (a ReLU output) comes from, given the
/// pooled gradient: its index in it, or None for an exact 0, as maxpool_backward and relu_backward define it.
fn route(a: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<Option<usize>> {
    let ones = vec![1.0f32; n * c * h * w];
    let idx: Vec<f32> = (0..n * c * h * w).map(|i| i as f32).collect();
    let mut via = vec![0.0f32; a.len()];
    r::maxpool_backward(a, &ones, &mut via, n, c, 2 * h, 2 * w);
    let mut relu = vec![0.0f32; a.len()];
    r::relu_backward(a, &via, &mut relu);
    let mut src = vec![0.0f32; a.len()];
    r::maxpool_backward(a, &idx, &mut src, n, c, 2 * h, 2 * w);
    relu.iter().zip(&src).map(|(&m, &s)| (m != 0.0).then_some(s as usize)).collect()
}

/// A ReLU output with ties: about a quarter of the values 0, and neighbours made equal every 7 values.
fn relu_output(len: usize, seed: u64) -> Vec<f32> {
    let mut a: Vec<f32> = random(len, -0.5, 1.5, seed).iter().map(|v| v.max(0.0)).collect();
    for i in (0..len.saturating_sub(1)).step_by(7) {
        a[i + 1] = a[i];
    }
    a
}

/// A routed gradient against the reference dx through `via`: routed elements within dx's tolerance, the rest exactly 0.
fn compare_routed(
    what: &str,
    got: &[f32],
    via: &[Option<usize>],
    want: &[f64],
    tol: &dyn Fn(usize) -> f64,
) -> super::Comparison {
    let reference: Vec<f64> = via.iter().map(|v| v.map_or(0.0, |i| want[i])).collect();
    compare(what, got, &reference, &|j| via[j].map_or(0.0, tol), RTOL)
}

pub async fn conv2d_backward_input(t: &Harness, variants: &[Caps], quick: bool, rows: &mut Rows) {
    for (case, &(n, cin, cout, h)) in conv_shapes(quick).iter().enumerate() {
        let seed = 200 + case as u64;
        let dy = random(n * cout * h * h, -1.0, 1.0, seed);
        let w_off = 11;
        let params = random((w_off + cout * cin * 9 + 4).max(WEIGHT_WINDOW_BYTES as usize / 4), -0.5, 0.5, seed + 1);
        let w = params[w_off..w_off + cout * cin * 9].to_vec();
        let mut reference = vec![0.0f64; n * cin * h * h];
        r::conv2d_backward_input(&to_f64(&dy), &to_f64(&w), &mut reference, n, cin, cout, h, h);
        let mut sum_abs = vec![0.0f64; reference.len()];
        r::conv2d_backward_input(&abs(&dy), &abs(&w), &mut sum_abs, n, cin, cout, h, h);
        let tol = bound(&sum_abs, cout * 9);
        // The layer's input as the pool of a ReLU output a [n, cin, 2h, 2w], for the routed variant.
        let a = relu_output(n * cin * 4 * h * h, seed + 2);
        let via = route(&a, n, cin, h, h);
        for &caps in variants {
            for batch in batches(caps, n, quick) {
                let s = conv(cin, cout, h, w_off, 0);
                let (dyb, pb, ab) = (t.buffer_f32(&dy), t.buffer_f32(&params), t.buffer_f32(&a));
                t.set_step(0, n as u32, 0, false);
                let what = format!("n={n} cin={cin} cout={cout} h={h}");
                let dxb = t.poisoned(reference.len());
                let op = conv2d::backward_input(caps, &s, batch, "dy", "dx", Source::Plain);
                t.run(&op, n, &[("dy", &dyb), ("params", &pb), ("dx", &dxb)]).await;
                let got = t.read(&dxb, reference.len()).await;
                rows.add(entry(&op), &caps.describe(), compare(&what, &got, &reference, &tol, RTOL));
                if caps.family == Family::Tiled {
                    // Masked by the previous convolution's ReLU output (no pool between; the simd family has no such
                    // kernel). `a`'s first n·cin·h·h values serve as that output.
                    let relu_in = &a[..reference.len()];
                    let mut want = vec![0.0f64; reference.len()];
                    r::relu_backward(&to_f64(relu_in), &reference, &mut want);
                    let (xb, dzb) = (t.buffer_f32(relu_in), t.poisoned(reference.len()));
                    let op = conv2d::backward_input(caps, &s, batch, "dy", "dz", Source::Relu("x"));
                    t.run(&op, n, &[("dy", &dyb), ("params", &pb), ("dz", &dzb), ("x", &xb)]).await;
                    let got = t.read(&dzb, reference.len()).await;
                    let c = compare(&format!("{what} relu"), &got, &want, &tol, RTOL);
                    rows.add(&format!("{} (ReLU)", entry(&op)), &caps.describe(), c);
                }
                // Routed through the previous layer's max-pool and ReLU.
                let dzb = t.poisoned(a.len());
                let op =
                    conv2d::backward_input(caps, &s, batch, "dy", "dz", Source::PooledRelu { a: "a", ph: h, pw: h });
                t.run(&op, n, &[("dy", &dyb), ("params", &pb), ("dz", &dzb), ("a", &ab)]).await;
                let got = t.read(&dzb, a.len()).await;
                let c = compare_routed(&format!("{what} routed"), &got, &via, &reference, &tol);
                rows.add(&format!("{} (routed)", entry(&op)), &caps.describe(), c);
            }
        }
    }
}

pub async fn conv2d_backward_weight(t: &Harness, variants: &[Caps], quick: bool, rows: &mut Rows) {
    let mut shapes = conv_shapes(quick);
    if !quick {
        shapes.push((64, 16, 32, 14));
    }
    for (case, &(n, cin, cout, h)) in shapes.iter().enumerate() {
        let seed = 300 + case as u64;
        let x = random(n * cin * h * h, -1.0, 2.0, seed);
        let dy = random(n * cout * h * h, -1.0, 1.0, seed + 1);
        let w_off = 5;
        let b_off = w_off + cout * cin * 9 + 2;
        let len = b_off + cout + 3;
        let (mut dw, mut db) = (vec![0.0f64; cout * cin * 9], vec![0.0f64; cout]);
        r::conv2d_backward_weight(&to_f64(&x), &to_f64(&dy), &mut dw, &mut db, n, cin, cout, h, h);
        let (mut dw_abs, mut db_abs) = (vec![0.0f64; dw.len()], vec![0.0f64; cout]);
        r::conv2d_backward_weight(&abs(&x), &abs(&dy), &mut dw_abs, &mut db_abs, n, cin, cout, h, h);
        // Layers with few channel blocks (simd) and the tiled kernel split the reduction over several workgroups and
        // add the parts in a second dispatch: both paths run here.
        for &caps in variants {
            for batch in batches(caps, n, quick) {
                let s = conv(cin, cout, h, w_off, b_off);
                let op = conv2d::backward_weight(caps, &s, batch, "x", "dy", "grads", "l");
                let (xb, dyb, gb) = (t.buffer_f32(&x), t.buffer_f32(&dy), t.poisoned(len));
                t.set_step(0, n as u32, 0, false);
                t.run(&op, n, &[("x", &xb), ("dy", &dyb), ("grads", &gb)]).await;
                let got = t.read(&gb, len).await;
                let split = op.plans[0].constant("SPLIT");
                let what = format!("n={n} cin={cin} cout={cout} h={h} split={split}");
                let (k, v) = (entry(&op), caps.describe());
                let k_terms = n * h * h;
                let gw = &got[w_off..w_off + dw.len()];
                rows.add(k, &v, compare(&format!("{what} dw"), gw, &dw, &bound(&dw_abs, k_terms), RTOL));
                let gbias = &got[b_off..b_off + cout];
                rows.add(k, &v, compare(&format!("{what} db"), gbias, &db, &bound(&db_abs, k_terms), RTOL));
                // Nothing outside the two tensors is written.
                let outside = got[..w_off].iter().chain(&got[w_off + dw.len()..b_off]).chain(&got[b_off + cout..]);
                let mut c = compare_exact(&what, &[], &[]);
                if outside.clone().any(|v| !v.is_nan()) {
                    c.failure = Some(format!("{what}: wrote outside its tensors"));
                }
                rows.add(k, &v, c);
            }
        }
    }
}

pub async fn maxpool_backward(t: &Harness, variants: &[Caps], quick: bool, rows: &mut Rows) {
    if !super::has_kernels("maxpool_backward", variants) {
        return;
    }
    let shapes: &[(usize, usize, usize)] = if quick {
        &[(64, 16, 28), (64, 32, 14)]
    } else {
        &[(1, 16, 28), (3, 16, 28), (5, 32, 14), (3, 3, 6), (2, 5, 10)]
    };
    for (case, &(n, ch, h)) in shapes.iter().enumerate() {
        for relu in [false, true] {
            let mut x = random(n * ch * h * h, -1.0, 1.0, 500 + case as u64);
            if relu {
                x.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            let dy = random(n * ch * (h / 2) * (h / 2), -1.0, 1.0, 600 + case as u64);
            let mut want = vec![0.0f32; x.len()];
            r::maxpool_backward(&x, &dy, &mut want, n, ch, h, h);
            if relu {
                // The fused kernel is relu_backward ∘ maxpool_backward.
                let pooled = want.clone();
                r::relu_backward(&x, &pooled, &mut want);
            }
            let op = maxpool::backward(ch, h, h, relu, "x", "dy", "dx");
            let (xb, dyb, dxb) = (t.buffer_f32(&x), t.buffer_f32(&dy), t.poisoned(x.len()));
            t.set_step(0, n as u32, 0, false);
            t.run(&op, n, &[("x", &xb), ("dy", &dyb), ("dx", &dxb)]).await;
            let what = format!("n={n} c={ch} h={h} relu={relu}");
            rows.add("maxpool_backward", "simd", compare_exact(&what, &t.read(&dxb, x.len()).await, &want));
        }
    }
}

/// (n, inp, out): fc1 and fc2 at batch 64, batch 1, odd batches, odd sizes. Quick: fc1 and fc2 at 64.
fn dense_shapes(quick: bool) -> Vec<(usize, usize, usize)> {
    if quick {
        return vec![(64, 1568, 128), (64, 128, 10)];
    }
    vec![
        (1, 1568, 128),
        (3, 1568, 128),
        (64, 1568, 128),
        (5, 128, 10),
        (64, 128, 10),
        (250, 128, 10),
        (17, 20, 37),
        (7, 13, 6),
        (2, 3, 1),
    ]
}

pub async fn dense_forward(t: &Harness, variants: &[Caps], quick: bool, rows: &mut Rows) {
    for (case, &(n, inp, out)) in dense_shapes(quick).iter().enumerate() {
        let seed = 700 + case as u64;
        let x = random(n * inp, -1.0, 2.0, seed);
        for &caps in variants {
            for batch in batches(caps, n, quick) {
                // Weights at an offset that is a multiple of 4 where the subgroup kernel could take it, else odd.
                let w_off = if inp % 4 == 0 { 4 } else { 3 };
                let b_off = w_off + out * inp + 1;
                let params = random(b_off + out + 2, -0.3, 0.3, seed + 1);
                let (w, b) = (&params[w_off..w_off + out * inp], &params[b_off..b_off + out]);
                let mut reference = vec![0.0f64; n * out];
                r::dense_forward(&to_f64(&x), &to_f64(w), &to_f64(b), &mut reference, n, inp, out);
                let mut sum_abs = vec![0.0f64; n * out];
                r::dense_forward(&abs(&x), &abs(w), &abs(b), &mut sum_abs, n, inp, out);
                for relu in [false, true] {
                    let op = dense::forward(caps, &Dense { inp, out, w_off, b_off }, batch, relu, "x", "y");
                    let (xb, pb, yb) = (t.buffer_f32(&x), t.buffer_f32(&params), t.poisoned(n * out));
                    t.set_step(0, n as u32, 0, false);
                    t.run(&op, n, &[("x", &xb), ("params", &pb), ("y", &yb)]).await;
                    let want: Vec<f64> =
                        if relu { reference.iter().map(|v| v.max(0.0)).collect() } else { reference.clone() };
                    let what = format!("n={n} in={inp} out={out} relu={relu} split={}", op.plans[0].constant("SPLIT"));
                    let c = compare(&what, &t.read(&yb, n * out).await, &want, &bound(&sum_abs, inp + 1), RTOL);
                    rows.add(entry(&op), &caps.describe(), c);
                }
            }
        }
    }
}

pub async fn dense_backward_input(t: &Harness, variants: &[Caps], quick: bool, rows: &mut Rows) {
    // The routed variant needs IN = C·ph·pw: fc1's 32·7·7 and a small odd one.
    let mut shapes = dense_shapes(quick);
    if !quick {
        shapes.extend([(3, 32 * 7 * 7, 128), (5, 3 * 3 * 3, 7)]);
    }
    for (case, &(n, inp, out)) in shapes.iter().enumerate() {
        let seed = 800 + case as u64;
        let dy = random(n * out, -1.0, 1.0, seed);
        // The layer's input, as a ReLU output (zeros included) for the fused mask.
        let x: Vec<f32> = random(n * inp, -1.0, 1.0, seed + 2).iter().map(|v| v.max(0.0)).collect();
        let w_off = if inp % 4 == 0 && out % 4 == 0 { 8 } else { 2 };
        let params = random(w_off + out * inp + 3, -0.3, 0.3, seed + 1);
        let w = &params[w_off..w_off + out * inp];
        let mut reference = vec![0.0f64; n * inp];
        r::dense_backward_input(&to_f64(&dy), &to_f64(w), &mut reference, n, inp, out);
        let mut sum_abs = vec![0.0f64; n * inp];
        r::dense_backward_input(&abs(&dy), &abs(w), &mut sum_abs, n, inp, out);
        let tol = bound(&sum_abs, out);
        let side = match inp {
            1568 => Some((32, 7)),
            27 => Some((3, 3)),
            _ => None,
        };
        for &caps in variants {
            for batch in batches(caps, n, quick) {
                let s = Dense { inp, out, w_off, b_off: 0 };
                let (dyb, pb, xb) = (t.buffer_f32(&dy), t.buffer_f32(&params), t.buffer_f32(&x));
                t.set_step(0, n as u32, 0, false);
                for relu in [false, true] {
                    let source = if relu { Source::Relu("x") } else { Source::Plain };
                    let op = dense::backward_input(caps, &s, batch, "dy", "dx", source);
                    let dxb = t.poisoned(n * inp);
                    t.run(&op, n, &[("dy", &dyb), ("params", &pb), ("x", &xb), ("dx", &dxb)]).await;
                    let want: Vec<f64> = if relu {
                        let mut masked = vec![0.0f64; reference.len()];
                        r::relu_backward(&to_f64(&x), &reference, &mut masked);
                        masked
                    } else {
                        reference.clone()
                    };
                    let what = format!("n={n} in={inp} out={out} relu={relu}");
                    rows.add(
                        entry(&op),
                        &caps.describe(),
                        compare(&what, &t.read(&dxb, n * inp).await, &want, &tol, RTOL),
                    );
                }
                if let Some((c, side)) = side {
                    // Routed through the max-pool and ReLU that produced the input (a [n, c, 2·side, 2·side]).
                    let a = relu_output(n * inp * 4, seed + 3);
                    let via = route(&a, n, c, side, side);
                    let (ab, dzb) = (t.buffer_f32(&a), t.poisoned(a.len()));
                    let source = Source::PooledRelu { a: "a", ph: side, pw: side };
                    let op = dense::backward_input(caps, &s, batch, "dy", "dz", source);
                    t.run(&op, n, &[("dy", &dyb), ("params", &pb), ("a", &ab), ("dz", &dzb)]).await;
                    let what = format!("n={n} in={inp} out={out} routed");
                    let cmp = compare_routed(&what, &t.read(&dzb, a.len()).await, &via, &reference, &tol);
                    rows.add(&format!("{} (routed)", entry(&op)), &caps.describe(), cmp);
                }
            }
        }
    }
}

pub async fn dense_backward_weight(t: &Harness, variants: &[Caps], quick: bool, rows: &mut Rows) {
    for (case, &(n, inp, out)) in dense_shapes(quick).iter().enumerate() {
        let seed = 900 + case as u64;
        let x = random(n * inp, -1.0, 2.0, seed);
        let dy = random(n * out, -1.0, 1.0, seed + 1);
        let (mut dw, mut db) = (vec![0.0f64; out * inp], vec![0.0f64; out]);
        r::dense_backward_weight(&to_f64(&x), &to_f64(&dy), &mut dw, &mut db, n, inp, out);
        let (mut dw_abs, mut db_abs) = (vec![0.0f64; out * inp], vec![0.0f64; out]);
        r::dense_backward_weight(&abs(&x), &abs(&dy), &mut dw_abs, &mut db_abs, n, inp, out);
        // The bias at an offset that is a multiple of 4 where the subgroup kernel could take it, else unaligned.
        let w_off = 4;
        let b_off = w_off + out * inp + if (inp * out) % 4 == 0 { 4 } else { 2 };
        let len = b_off + out + 1;
        for &caps in variants {
            for batch in batches(caps, n, quick) {
                let op = dense::backward_weight(caps, &Dense { inp, out, w_off, b_off }, batch, "x", "dy", "grads");
                let (xb, dyb, gb) = (t.buffer_f32(&x), t.buffer_f32(&dy), t.poisoned(len));
                t.set_step(0, n as u32, 0, false);
                t.run(&op, n, &[("x", &xb), ("dy", &dyb), ("grads", &gb)]).await;
                let got = t.read(&gb, len).await;
                let what = format!("n={n} in={inp} out={out}");
                let (k, v) = (entry(&op), caps.describe());
                let gw = &got[w_off..w_off + dw.len()];
                rows.add(k, &v, compare(&format!("{what} dw"), gw, &dw, &bound(&dw_abs, n), RTOL));
                let gbias = &got[b_off..b_off + out];
                rows.add(k, &v, compare(&format!("{what} db"), gbias, &db, &bound(&db_abs, n), RTOL));
                let outside = got[..w_off].iter().chain(&got[w_off + dw.len()..b_off]).chain(&got[b_off + out..]);
                let mut c = compare_exact(&what, &[], &[]);
                if outside.clone().any(|v| !v.is_nan()) {
                    c.failure = Some(format!("{what}: wrote outside its tensors"));
                }
                rows.add(k, &v, c);
            }
        }
    }
}

pub async fn softmax_cross_entropy(t: &Harness, quick: bool, rows: &mut Rows) {
    let k_classes = 10;
    let batches: &[usize] = if quick { &[64] } else { &[1, 3, 64, 300] };
    for (case, &n) in batches.iter().enumerate() {
        let seed = 1000 + case as u64;
        let logits = random(n * k_classes, -4.0, 4.0, seed);
        let labels = random_labels(n, k_classes as u32, seed + 1);
        let mut losses = vec![0.0f64; n];
        r::softmax_cross_entropy_forward(&to_f64(&logits), &labels, &mut losses, n, k_classes);
        let mut dlogits = vec![0.0f64; n * k_classes];
        r::softmax_cross_entropy_backward(&to_f64(&logits), &labels, &mut dlogits, n, k_classes);
        let preds: Vec<u32> = logits.chunks(k_classes).map(|r| r::argmax(r) as u32).collect();
        let correct = preds.iter().zip(&labels).filter(|(p, l)| **p == **l as u32).count();
        let loss_sum: f64 = losses.iter().sum();
        let layout = StatsLayout::new(4);
        let start = 5u32; // predictions land at start + b
        for backward in [true, false] {
            let op = softmax_cross_entropy::loss(backward, k_classes, layout, "logits", "y", "dlogits");
            let kernel = entry(&op);
            let lb = t.buffer_u32(&labels.iter().map(|&l| l as u32).collect::<Vec<_>>());
            let (xb, db) = (t.buffer_f32(&logits), t.poisoned(n * k_classes));
            // The metrics are running totals the kernel adds to; the rest of the stats poisoned.
            let mut stats = vec![u32::MAX; layout.words(n + start as usize)];
            stats[..4].copy_from_slice(&[1.5f32.to_bits(), 2.0f32.to_bits(), 3.0f32.to_bits(), 0]);
            let sb = t.buffer_u32(&stats);
            t.set_step(start, n as u32, 2, false);
            t.run(&op, n, &[("logits", &xb), ("y", &lb), ("dlogits", &db), ("stats", &sb)]).await;
            let got = t.read_u32(&sb, stats.len()).await;
            let f = |i: usize| f32::from_bits(got[i]);
            let what = format!("n={n}");
            // The running totals: loss within 1e-6 relative, counts exact.
            let loss_tol = 1e-6 * loss_sum.abs() + 1e-5;
            let c = compare(&format!("{what} loss sum"), &[f(0) - 1.5], &[loss_sum], &|_| loss_tol, 0.0);
            rows.add(kernel, "both", c);
            let counts = [f(1), f(2)];
            let want_counts = [(2 + correct) as f32, (3 + n) as f32];
            rows.add(kernel, "both", compare_exact(&format!("{what} correct and count"), &counts, &want_counts));
            let step_loss = f(layout.losses + 2);
            let c = compare(&format!("{what} step loss"), &[step_loss], &[loss_sum / n as f64], &|_| 1e-5, 0.0);
            rows.add(kernel, "both", c);
            let first = layout.preds + start as usize;
            let mut c = compare_exact(&format!("{what} predictions"), &[], &[]);
            if got[first..first + n] != preds[..] {
                c.failure = Some(format!("{what}: predictions differ from the reference's argmax"));
            } else if got[layout.preds..first].iter().any(|&v| v != u32::MAX) {
                c.failure = Some(format!("{what}: wrote predictions before `start`"));
            }
            rows.add(kernel, "both", c);
            let grad = t.read(&db, n * k_classes).await;
            if backward {
                // Each gradient element is (softmax − onehot)/n: a ratio of exp sums, rtol a few ulps of 1/n.
                rows.add(
                    kernel,
                    "both",
                    compare(&format!("{what} dlogits"), &grad, &dlogits, &|_| 4e-7 / n as f64, 1e-5),
                );
            } else {
                let mut c = compare_exact(&format!("{what} dlogits untouched"), &[], &[]);
                if grad.iter().any(|v| !v.is_nan()) {
                    c.failure = Some(format!("{kernel} must not write dlogits"));
                }
                rows.add(kernel, "both", c);
            }
        }
    }
}

/// The fused classifier head (tiled family, where the device takes it) against the reference's dense forward, softmax
/// cross-entropy, dense weight and input gradients and ReLU backward, composed: the metrics, predictions, the
/// gradients of the layer and of its input. Batches of one, of one chunk, across chunks (the kernel walks the batch
/// in chunks of 64) and an awkward layer.
pub async fn classifier_head(t: &Harness, variants: &[Caps], quick: bool, rows: &mut Rows) {
    let shapes: &[(usize, usize, usize)] =
        if quick { &[(64, 128, 10)] } else { &[(1, 128, 10), (64, 128, 10), (300, 128, 10), (70, 37, 7)] };
    for (case, &(n, inp, out)) in shapes.iter().enumerate() {
        let seed = 1200 + case as u64;
        let h = relu_output(n * inp, seed);
        let (w_off, b_off) = (3, 5 + out * inp);
        let params = random(b_off + out + 2, -0.3, 0.3, seed + 1);
        let labels = random_labels(n, out as u32, seed + 2);
        let (w, b) = (to_f64(&params[w_off..w_off + out * inp]), to_f64(&params[b_off..b_off + out]));
        let mut logits = vec![0.0f64; n * out];
        r::dense_forward(&to_f64(&h), &w, &b, &mut logits, n, inp, out);
        let mut losses = vec![0.0f64; n];
        r::softmax_cross_entropy_forward(&logits, &labels, &mut losses, n, out);
        let mut dz = vec![0.0f64; n * out];
        r::softmax_cross_entropy_backward(&logits, &labels, &mut dz, n, out);
        let (mut dw, mut db) = (vec![0.0f64; out * inp], vec![0.0f64; out]);
        r::dense_backward_weight(&to_f64(&h), &dz, &mut dw, &mut db, n, inp, out);
        let mut dh_pre = vec![0.0f64; n * inp];
        r::dense_backward_input(&dz, &w, &mut dh_pre, n, inp, out);
        let mut dh = vec![0.0f64; n * inp];
        r::relu_backward(&to_f64(&h), &dh_pre, &mut dh);
        // Bounds from sums of |terms|, with room for dz's own rounding (a few ulps of each element).
        let dz_abs: Vec<f32> = dz.iter().map(|v| v.abs() as f32).collect();
        let (mut dw_abs, mut db_abs) = (vec![0.0f64; out * inp], vec![0.0f64; out]);
        r::dense_backward_weight(&abs(&h), &to_f64(&dz_abs), &mut dw_abs, &mut db_abs, n, inp, out);
        let mut dh_abs = vec![0.0f64; n * inp];
        r::dense_backward_input(
            &to_f64(&dz_abs),
            &w.iter().map(|v| v.abs()).collect::<Vec<_>>(),
            &mut dh_abs,
            n,
            inp,
            out,
        );
        let tol = |sum_abs: &[f64], k: usize| {
            let sum_abs = sum_abs.to_vec();
            move |i: usize| (4.0 * (k as f64).sqrt() + 16.0) * EPS32 * sum_abs[i] + 1e-30
        };
        let preds: Vec<u32> = logits.chunks(out).map(|r| r::argmax(r) as u32).collect();
        let correct = preds.iter().zip(&labels).filter(|(p, l)| **p == **l as u32).count();
        let loss_sum: f64 = losses.iter().sum();
        let layout = StatsLayout::new(4);
        let start = 5u32;
        for caps in variants.iter().filter(|c| c.head) {
            let s = Dense { inp, out, w_off, b_off };
            let op = classifier_head::train(&s, layout, "h", "y", "dh");
            let (k, v) = (entry(&op), caps.describe());
            let (hb, pb) = (t.buffer_f32(&h), t.buffer_f32(&params));
            let lb = t.buffer_u32(&labels.iter().map(|&l| l as u32).collect::<Vec<_>>());
            let (gb, dhb) = (t.poisoned(params.len()), t.poisoned(n * inp));
            let mut stats = vec![u32::MAX; layout.words(n + start as usize)];
            stats[..4].copy_from_slice(&[1.5f32.to_bits(), 2.0f32.to_bits(), 3.0f32.to_bits(), 0]);
            let sb = t.buffer_u32(&stats);
            t.set_step(start, n as u32, 2, false);
            let bufs = [("h", &hb), ("params", &pb), ("y", &lb), ("grads", &gb), ("dh", &dhb), ("stats", &sb)];
            t.run(&op, n, &bufs).await;
            let what = format!("n={n} in={inp} out={out}");
            let got = t.read_u32(&sb, stats.len()).await;
            let f = |i: usize| f32::from_bits(got[i]);
            let loss_tol = 1e-6 * loss_sum.abs() + 1e-5;
            rows.add(k, &v, compare(&format!("{what} loss sum"), &[f(0) - 1.5], &[loss_sum], &|_| loss_tol, 0.0));
            let want_counts = [(2 + correct) as f32, (3 + n) as f32];
            rows.add(k, &v, compare_exact(&format!("{what} correct and count"), &[f(1), f(2)], &want_counts));
            let step_loss = [f(layout.losses + 2)];
            rows.add(k, &v, compare(&format!("{what} step loss"), &step_loss, &[loss_sum / n as f64], &|_| 1e-5, 0.0));
            let first = layout.preds + start as usize;
            let mut c = compare_exact(&format!("{what} predictions"), &[], &[]);
            if got[first..first + n] != preds[..] {
                c.failure = Some(format!("{what}: predictions differ from the reference's argmax"));
            }
            rows.add(k, &v, c);
            let grads = t.read(&gb, params.len()).await;
            let gw = &grads[w_off..w_off + out * inp];
            rows.add(k, &v, compare(&format!("{what} dw"), gw, &dw, &tol(&dw_abs, n), RTOL));
            let gbias = &grads[b_off..b_off + out];
            rows.add(k, &v, compare(&format!("{what} db"), gbias, &db, &tol(&db_abs, n), RTOL));
            let mut c = compare_exact(&what, &[], &[]);
            let outside = grads[..w_off].iter().chain(&grads[w_off + out * inp..b_off]).chain(&grads[b_off + out..]);
            if outside.clone().any(|v| !v.is_nan()) {
                c.failure = Some(format!("{what}: wrote outside its gradients"));
            }
            rows.add(k, &v, c);
            let got_dh = t.read(&dhb, n * inp).await;
            rows.add(k, &v, compare(&format!("{what} dh"), &got_dh, &dh, &tol(&dh_abs, out), RTOL));
        }
    }
}

pub async fn sgd_step(t: &Harness, quick: bool, rows: &mut Rows) {
    let lens: &[usize] = if quick { &[206_922] } else { &[1, 255, 257, 206_922] };
    for (case, &len) in lens.iter().enumerate() {
        let seed = 1100 + case as u64;
        let (w, g, v) =
            (random(len, -1.0, 1.0, seed), random(len, -1.0, 1.0, seed + 1), random(len, -1.0, 1.0, seed + 2));
        let (lr, mu) = (0.01f32, 0.9f32);
        let (mut w_ref, mut v_ref) = (w.clone(), v.clone());
        r::sgd_step(&mut w_ref, &g, &mut v_ref, lr, mu);
        let (gb, wb, vb) = (t.buffer_f32(&g), t.buffer_f32(&w), t.buffer_f32(&v));
        let hyper = t.uniform(bytemuck::cast_slice(&[lr.to_bits(), mu.to_bits(), len as u32, 0]));
        t.run(&sgd::step(len), len, &[("grads", &gb), ("params", &wb), ("momentum", &vb), ("hyper", &hyper)]).await;
        // v = μ·v + g and w − lr·v, two roundings each in the f32 reference; a device may fuse the multiply-add (one
        // rounding). With u = 2⁻²⁴ the two differ by at most u·|a·b| + u·|a·b + c| + u·|result| ≤ 3u·(|a·b| + |c|)
        // (measured on an H200: up to 2u); allow 4u, plus what the difference in v moves w by.
        let tv: Vec<f64> = (0..len).map(|i| 4.0 * EPS32 * ((mu * v[i]).abs() + g[i].abs()) as f64).collect();
        let tw: Vec<f64> =
            (0..len).map(|i| 4.0 * EPS32 * (w[i].abs() + (lr * v_ref[i]).abs()) as f64 + lr as f64 * tv[i]).collect();
        let what = format!("len={len}");
        rows.add(
            "sgd_step",
            "both",
            compare(&format!("{what} momentum"), &t.read(&vb, len).await, &to_f64(&v_ref), &|i| tv[i], 0.0),
        );
        rows.add(
            "sgd_step",
            "both",
            compare(&format!("{what} params"), &t.read(&wb, len).await, &to_f64(&w_ref), &|i| tw[i], 0.0),
        );
    }
}

pub async fn load_batch(t: &Harness, rows: &mut Rows) {
    let count = 37;
    // MNIST's images and normalization, and a three-channel shape whose byte counts are not multiples of 4.
    let odd = ImageShape { channels: 3, height: 5, width: 7 };
    for (shape, norm) in [(ImageShape::MNIST, Normalization::MNIST), (odd, Normalization { mean: 0.2, std: 0.7 })] {
        let px = shape.pixels();
        let images: Vec<u8> = (0..count * px).map(|i| ((i * 7919 + 13) % 256) as u8).collect();
        let labels: Vec<u8> = (0..count).map(|i| (i * 3 % 10) as u8).collect();
        let order: Vec<u32> = (0..count as u32).rev().collect();
        let data: Vec<u8> = images.iter().chain(&labels).copied().collect();
        let db = t.gpu.storage_init("data", &crate::gpu::pack_u8(&data)).expect("a check buffer");
        let ob = t.buffer_u32(&order);
        let op = load_batch::load(count, px, norm, "data", "order", "x", "y");
        for (start, n) in [(0usize, 1usize), (3, 5), (30, 7)] {
            let (xb, yb) = (t.poisoned(n * px), t.buffer_u32(&vec![u32::MAX; n]));
            t.set_step(start as u32, n as u32, 0, false);
            t.run(&op, n, &[("data", &db), ("order", &ob), ("x", &xb), ("y", &yb)]).await;
            let mut want_x = Vec::new();
            let mut want_y = Vec::new();
            for b in 0..n {
                let s = order[start + b] as usize;
                want_x.extend(images[s * px..(s + 1) * px].iter().map(|&p| norm.apply(p) as f64));
                want_y.push(labels[s] as f32);
            }
            let what = format!("{shape} start={start} n={n}");
            // Two f32 operations (a division by 255 and by the std): within a few ulps.
            let x = compare(&format!("{what} x"), &t.read(&xb, n * px).await, &want_x, &|_| 1e-6, 1e-6);
            rows.add("load_batch", "both", x);
            let got_y: Vec<f32> = t.read_u32(&yb, n).await.iter().map(|&v| v as f32).collect();
            rows.add("load_batch", "both", compare_exact(&format!("{what} labels"), &got_y, &want_y));
        }
    }
}
