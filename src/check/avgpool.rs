//! avgpool's kernels (both families') against `reference::avgpool`, exactly: the forward pool, and the backward with
//! and without the ReLU backward fused.

use super::harness::{random, Harness};
use super::pool::relu_output;
use super::{compare_exact, Rows};
use crate::gpu::ops::avgpool;
use crate::reference as r;

/// (n, c, h, w): LeNet-5's two pools at batch 64 (quick: those alone), batch 1, odd channel counts, non-square maps.
fn shapes(quick: bool) -> &'static [(usize, usize, usize, usize)] {
    if quick {
        &[(64, 6, 28, 28), (64, 16, 10, 10)]
    } else {
        &[(1, 6, 28, 28), (3, 16, 10, 10), (5, 3, 6, 8), (2, 7, 2, 14)]
    }
}

pub async fn avgpool_forward(t: &Harness, quick: bool, rows: &mut Rows) {
    for (case, &(n, ch, h, w)) in shapes(quick).iter().enumerate() {
        let x = random(n * ch * h * w, -1.0, 1.0, 1300 + case as u64);
        let mut want = vec![0.0f32; x.len() / 4];
        r::avgpool_forward(&x, &mut want, n, ch, h, w);
        let (xb, yb) = (t.buffer_f32(&x), t.poisoned(want.len()));
        t.set_step(0, n as u32, 0, false);
        t.run(&avgpool::forward(ch, h, w, "x", "y"), n, &[("x", &xb), ("y", &yb)]).await;
        let what = format!("n={n} c={ch} h={h} w={w}");
        rows.add("avgpool_forward", "both", compare_exact(&what, &t.read(&yb, want.len()).await, &want));
    }
}

pub async fn avgpool_backward(t: &Harness, quick: bool, rows: &mut Rows) {
    for (case, &(n, ch, h, w)) in shapes(quick).iter().enumerate() {
        // The pool's input as a ReLU output (zeros and ties included), and its gradient.
        let a = relu_output(n * ch * h * w, 1400 + case as u64);
        let dy = random(a.len() / 4, -1.0, 1.0, 1500 + case as u64);
        let mut pooled = vec![0.0f32; a.len()];
        r::avgpool_backward(&dy, &mut pooled, n, ch, h, w);
        for relu in [false, true] {
            let want = if relu {
                let mut masked = vec![0.0f32; a.len()];
                r::relu_backward(&a, &pooled, &mut masked);
                masked
            } else {
                pooled.clone()
            };
            let (ab, dyb, dxb) = (t.buffer_f32(&a), t.buffer_f32(&dy), t.poisoned(a.len()));
            t.set_step(0, n as u32, 0, false);
            let op = avgpool::backward(ch, h, w, relu, "a", "dy", "dx");
            t.run(&op, n, &[("a", &ab), ("dy", &dyb), ("dx", &dxb)]).await;
            let what = format!("n={n} c={ch} h={h} w={w} relu={relu}");
            rows.add("avgpool_backward", "both", compare_exact(&what, &t.read(&dxb, a.len()).await, &want));
        }
    }
}
