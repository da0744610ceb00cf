//! dense's kernels against `reference::dense`: forward (optionally with ReLU, split-K where the tiled family splits),
//! the input gradient (plain, ReLU-masked, routed through a max-pool) and the weight gradient.

use super::harness::{abs, random, to_f64, Harness};
use super::pool::{compare_routed, relu_output, route};
use super::{batches, bound, compare, compare_exact, entry, Rows, RTOL};
use crate::gpu::ops::dense::{self, Dense};
use crate::gpu::ops::plan::Source;
use crate::gpu::Caps;
use crate::model::Pool;
use crate::reference as r;

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
    // The pooled variants need IN = C·ph·pw: fc1's 32·7·7, LeNet-5's 16·5·5 and a small odd one.
    let mut shapes = dense_shapes(quick);
    if !quick {
        shapes.extend([(3, 32 * 7 * 7, 128), (3, 16 * 5 * 5, 120), (5, 3 * 3 * 3, 7)]);
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
            400 => Some((16, 5)),
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
                let Some((c, side)) = side else { continue };
                // Carried back through the pool and ReLU that produced the input (a [n, c, 2·side, 2·side]).
                let a = relu_output(n * inp * 4, seed + 3);
                for pool in [Pool::Max, Pool::Avg] {
                    let via = route(pool, &a, n, c, side, side);
                    let (ab, dzb) = (t.buffer_f32(&a), t.poisoned(a.len()));
                    let source = Source::PooledRelu { a: "a", ph: side, pw: side, pool };
                    let op = dense::backward_input(caps, &s, batch, "dy", "dz", source);
                    t.run(&op, n, &[("dy", &dyb), ("params", &pb), ("a", &ab), ("dz", &dzb)]).await;
                    let what = format!("n={n} in={inp} out={out} through {pool:?}");
                    let cmp = compare_routed(&what, &t.read(&dzb, a.len()).await, &via, &reference, &tol);
                    rows.add(&format!("{} (through {pool:?} pool)", entry(&op)), &caps.describe(), cmp);
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
