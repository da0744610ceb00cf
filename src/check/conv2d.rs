//! conv2d's kernels against `reference::conv2d`: forward (with bias, ReLU and a max-pool fused or an average pool
//! after it), the input gradient (plain, ReLU-masked, carried back through the previous layer's max- or average pool)
//! and the weight gradient, in every variant asked for, on the networks' shapes and awkward ones: other kernel sides
//! and paddings (the tiled family's), batch 1, odd batches, sizes that are no multiple of a tile or channel block.

use super::harness::{abs, random, to_f64, Harness};
use super::pool::{compare_routed, relu_output, route};
use super::{batches, bound, compare, compare_exact, entry, Rows, RTOL};
use crate::gpu::ops::conv2d::{self, Conv};
use crate::gpu::ops::plan::Source;
use crate::gpu::shader::WEIGHT_WINDOW_BYTES;
use crate::gpu::{Caps, Family};
use crate::model::Pool;
use crate::reference::{self as r, Conv2dShape};

/// One case: n images of cin planes h × h through cout filters k × k with padding `pad`.
#[derive(Clone, Copy)]
struct Case {
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    k: usize,
    pad: usize,
}

impl Case {
    const fn new(n: usize, cin: usize, cout: usize, h: usize, k: usize, pad: usize) -> Case {
        Case { n, cin, cout, h, k, pad }
    }

    fn shape(&self) -> Conv2dShape {
        Conv2dShape { n: self.n, cin: self.cin, cout: self.cout, h: self.h, w: self.h, k: self.k, pad: self.pad }
    }

    fn op(&self, w_off: usize, b_off: usize) -> Conv {
        let (cin, cout, h, k, pad) = (self.cin, self.cout, self.h, self.k, self.pad);
        Conv { cin, cout, h, w: h, k, pad, w_off, b_off }
    }

    fn taps(&self) -> usize {
        self.k * self.k
    }

    /// Whether the variant's kernels take it: the simd family's are 3×3, padding 1, on even widths.
    fn runs_on(&self, caps: Caps) -> bool {
        caps.family == Family::Tiled || (self.k == 3 && self.pad == 1 && self.h.is_multiple_of(2))
    }

    fn describe(&self) -> String {
        let Case { n, cin, cout, h, k, pad } = *self;
        format!("n={n} cin={cin} cout={cout} h={h} k={k} pad={pad}")
    }
}

/// The networks' convolutions at batch 64 (quick: only the study's two), then batch 1, odd batches, sizes that are no
/// multiple of the workgroup size, tiles or channel blocks, and kernels of other sides and paddings, LeNet-5's among
/// them.
fn cases(quick: bool) -> Vec<Case> {
    if quick {
        return vec![Case::new(64, 1, 16, 28, 3, 1), Case::new(64, 16, 32, 14, 3, 1)];
    }
    vec![
        Case::new(1, 1, 16, 28, 3, 1),
        Case::new(3, 1, 16, 28, 3, 1),
        Case::new(1, 16, 32, 14, 3, 1),
        Case::new(5, 16, 32, 14, 3, 1),
        Case::new(3, 3, 5, 6, 3, 1),
        Case::new(2, 17, 19, 10, 3, 1),
        Case::new(3, 1, 6, 28, 5, 2),
        Case::new(3, 6, 16, 14, 5, 0),
        Case::new(2, 3, 5, 9, 5, 1),
        Case::new(2, 2, 3, 8, 7, 3),
        Case::new(3, 3, 4, 6, 4, 2),
        Case::new(2, 5, 3, 7, 1, 0),
    ]
}

/// The 2×2 pools' windows over an output of `planes` planes `oh` × `ow`: the four indices of pooled element i.
fn window(i: usize, oh: usize, ow: usize) -> [usize; 4] {
    let (ph, pw) = (oh / 2, ow / 2);
    let (plane, o) = (i / (ph * pw), i % (ph * pw));
    let base = plane * oh * ow + (o / pw) * 2 * ow + (o % pw) * 2;
    [base, base + 1, base + ow, base + ow + 1]
}

pub async fn conv2d_forward(t: &Harness, variants: &[Caps], quick: bool, rows: &mut Rows) {
    // The tiled kernel also takes odd widths without the pool.
    let mut shapes = cases(quick);
    if !quick {
        shapes.push(Case::new(3, 2, 3, 7, 3, 1));
    }
    for (case, c) in shapes.iter().enumerate() {
        let (n, cin, cout, s) = (c.n, c.cin, c.cout, c.shape());
        let (oh, ow) = s.out_hw();
        let seed = 100 + case as u64;
        let x = random(s.input_len(), -1.0, 2.0, seed);
        // Weights and bias inside a larger parameter buffer, at offsets, as in the network; at least the uniform
        // window the simd kernels read the weights through.
        let w_off = 7;
        let b_off = w_off + s.weight_len() + 3;
        let mut params = random((b_off + cout + 5).max(WEIGHT_WINDOW_BYTES as usize / 4), -0.5, 0.5, seed + 1);
        params[0] = 1.0;
        let w = params[w_off..w_off + s.weight_len()].to_vec();
        let b = params[b_off..b_off + cout].to_vec();
        let mut reference = vec![0.0f64; s.output_len()];
        r::conv2d_forward(&to_f64(&x), &to_f64(&w), &to_f64(&b), &mut reference, &s);
        let mut sum_abs = vec![0.0f64; reference.len()];
        r::conv2d_forward(&abs(&x), &abs(&w), &abs(&b), &mut sum_abs, &s);
        for relu in [false, true] {
            let want: Vec<f64> = if relu { reference.iter().map(|v| v.max(0.0)).collect() } else { reference.clone() };
            let tol = bound(&sum_abs, cin * c.taps() + 1);
            // The pools of the reference output (their tolerance: the largest of their window's).
            let pooled_len = n * cout * (oh / 2) * (ow / 2);
            let win = |i: usize| window(i, oh, ow);
            let want_max: Vec<f64> =
                (0..pooled_len).map(|i| win(i).iter().map(|&j| want[j]).fold(f64::MIN, f64::max)).collect();
            let want_avg: Vec<f64> =
                (0..pooled_len).map(|i| win(i).iter().map(|&j| want[j]).sum::<f64>() / 4.0).collect();
            let tol_pooled = |i: usize| win(i).iter().map(|&j| tol(j)).fold(0.0, f64::max);
            for &caps in variants.iter().filter(|v| c.runs_on(**v)) {
                for batch in batches(caps, n, quick) {
                    let pools =
                        [(None, true), (Some(Pool::Max), true), (Some(Pool::Max), false), (Some(Pool::Avg), false)];
                    for (pool, full) in pools {
                        if pool.is_some() && (oh % 2 == 1 || ow % 2 == 1) {
                            continue;
                        }
                        let op = conv2d::forward(caps, &c.op(w_off, b_off), batch, relu, pool, "x", "y", "pooled");
                        let (xb, pb, yb) = (t.buffer_f32(&x), t.buffer_f32(&params), t.poisoned(reference.len()));
                        let pooled_b = t.poisoned(pooled_len);
                        t.set_step(0, n as u32, 0, full);
                        t.run(&op, n, &[("x", &xb), ("params", &pb), ("y", &yb), ("pooled", &pooled_b)]).await;
                        let what = format!("{} relu={relu} pool={pool:?} full={full}", c.describe());
                        let (k, v) = (entry(&op), caps.describe());
                        let y = t.read(&yb, want.len()).await;
                        if full || pool != Some(Pool::Max) {
                            rows.add(k, &v, compare(&what, &y, &want, &tol, RTOL));
                        } else {
                            let stored = y.iter().position(|v| !v.is_nan());
                            let mut c = compare_exact(&what, &[], &[]);
                            c.failure = stored
                                .map(|i| format!("{what}: stored the pre-pool output without step.full (element {i})"));
                            rows.add(k, &v, c);
                        }
                        let Some(pool) = pool else { continue };
                        let got = t.read(&pooled_b, pooled_len).await;
                        let want_pooled = if pool == Pool::Max { &want_max } else { &want_avg };
                        rows.add(k, &v, compare(&format!("{what} pooled"), &got, want_pooled, &tol_pooled, RTOL));
                        if full || pool == Pool::Avg {
                            // Exactly the pool of the stored values (the max: ties to the first, as maxpool_backward
                            // assumes; the mean: summed in the reference's order).
                            let mut exact = vec![0.0f32; pooled_len];
                            match pool {
                                Pool::Max => r::maxpool_forward(&y, &mut exact, n, cout, oh, ow),
                                Pool::Avg => r::avgpool_forward(&y, &mut exact, n, cout, oh, ow),
                            }
                            let what = format!("{what} pooled vs its own output");
                            rows.add(k, &v, compare_exact(&what, &got, &exact));
                        }
                    }
                }
            }
        }
    }
}

pub async fn conv2d_backward_input(t: &Harness, variants: &[Caps], quick: bool, rows: &mut Rows) {
    for (case, c) in cases(quick).iter().enumerate() {
        let (n, cin, s) = (c.n, c.cin, c.shape());
        let seed = 200 + case as u64;
        let dy = random(s.output_len(), -1.0, 1.0, seed);
        let w_off = 11;
        let params = random((w_off + s.weight_len() + 4).max(WEIGHT_WINDOW_BYTES as usize / 4), -0.5, 0.5, seed + 1);
        let w = params[w_off..w_off + s.weight_len()].to_vec();
        let mut reference = vec![0.0f64; s.input_len()];
        r::conv2d_backward_input(&to_f64(&dy), &to_f64(&w), &mut reference, &s);
        let mut sum_abs = vec![0.0f64; reference.len()];
        r::conv2d_backward_input(&abs(&dy), &abs(&w), &mut sum_abs, &s);
        let tol = bound(&sum_abs, c.cout * c.taps());
        // The layer's input as the pool of a ReLU output a [n, cin, 2h, 2w], for the routed variants.
        let a = relu_output(4 * s.input_len(), seed + 2);
        for &caps in variants.iter().filter(|v| c.runs_on(**v)) {
            for batch in batches(caps, n, quick) {
                let op_shape = c.op(w_off, 0);
                let (dyb, pb, ab) = (t.buffer_f32(&dy), t.buffer_f32(&params), t.buffer_f32(&a));
                t.set_step(0, n as u32, 0, false);
                let what = c.describe();
                let dxb = t.poisoned(reference.len());
                let op = conv2d::backward_input(caps, &op_shape, batch, "dy", "dx", Source::Plain);
                t.run(&op, n, &[("dy", &dyb), ("params", &pb), ("dx", &dxb)]).await;
                let got = t.read(&dxb, reference.len()).await;
                rows.add(entry(&op), &caps.describe(), compare(&what, &got, &reference, &tol, RTOL));
                if caps.family == Family::Tiled {
                    // Masked by the previous convolution's ReLU output (no pool between; the simd family has no such
                    // kernel). `a`'s first n·cin·h·w values serve as that output.
                    let relu_in = &a[..reference.len()];
                    let mut want = vec![0.0f64; reference.len()];
                    r::relu_backward(&to_f64(relu_in), &reference, &mut want);
                    let (xb, dzb) = (t.buffer_f32(relu_in), t.poisoned(reference.len()));
                    let op = conv2d::backward_input(caps, &op_shape, batch, "dy", "dz", Source::Relu("x"));
                    t.run(&op, n, &[("dy", &dyb), ("params", &pb), ("dz", &dzb), ("x", &xb)]).await;
                    let got = t.read(&dzb, reference.len()).await;
                    let c = compare(&format!("{what} relu"), &got, &want, &tol, RTOL);
                    rows.add(&format!("{} (ReLU)", entry(&op)), &caps.describe(), c);
                }
                // Carried back through the previous layer's pool and ReLU.
                for pool in [Pool::Max, Pool::Avg] {
                    let via = route(pool, &a, n, cin, c.h, c.h);
                    let dzb = t.poisoned(a.len());
                    let source = Source::PooledRelu { a: "a", ph: c.h, pw: c.h, pool };
                    let op = conv2d::backward_input(caps, &op_shape, batch, "dy", "dz", source);
                    t.run(&op, n, &[("dy", &dyb), ("params", &pb), ("dz", &dzb), ("a", &ab)]).await;
                    let got = t.read(&dzb, a.len()).await;
                    let cmp = compare_routed(&format!("{what} through {pool:?}"), &got, &via, &reference, &tol);
                    rows.add(&format!("{} (through {pool:?} pool)", entry(&op)), &caps.describe(), cmp);
                }
            }
        }
    }
}

pub async fn conv2d_backward_weight(t: &Harness, variants: &[Caps], quick: bool, rows: &mut Rows) {
    let mut shapes = cases(quick);
    if !quick {
        shapes.push(Case::new(64, 16, 32, 14, 3, 1));
    }
    for (case, c) in shapes.iter().enumerate() {
        let (n, cout, s) = (c.n, c.cout, c.shape());
        let (oh, ow) = s.out_hw();
        let seed = 300 + case as u64;
        let x = random(s.input_len(), -1.0, 2.0, seed);
        let dy = random(s.output_len(), -1.0, 1.0, seed + 1);
        let w_off = 5;
        let b_off = w_off + s.weight_len() + 2;
        let len = b_off + cout + 3;
        let (mut dw, mut db) = (vec![0.0f64; s.weight_len()], vec![0.0f64; cout]);
        r::conv2d_backward_weight(&to_f64(&x), &to_f64(&dy), &mut dw, &mut db, &s);
        let (mut dw_abs, mut db_abs) = (vec![0.0f64; dw.len()], vec![0.0f64; cout]);
        r::conv2d_backward_weight(&abs(&x), &abs(&dy), &mut dw_abs, &mut db_abs, &s);
        // Layers with few channel blocks (simd) and the tiled kernel split the reduction over several workgroups and
        // add the parts in a second dispatch: both paths run here.
        for &caps in variants.iter().filter(|v| c.runs_on(**v)) {
            for batch in batches(caps, n, quick) {
                let op = conv2d::backward_weight(caps, &c.op(w_off, b_off), batch, "x", "dy", "grads", "l");
                let (xb, dyb, gb) = (t.buffer_f32(&x), t.buffer_f32(&dy), t.poisoned(len));
                t.set_step(0, n as u32, 0, false);
                t.run(&op, n, &[("x", &xb), ("dy", &dyb), ("grads", &gb)]).await;
                let got = t.read(&gb, len).await;
                let split = op.plans[0].constant("SPLIT");
                let what = format!("{} split={split}", c.describe());
                let (k, v) = (entry(&op), caps.describe());
                let k_terms = n * oh * ow;
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
