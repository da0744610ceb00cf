//! maxpool's backward (the simd family's kernel; the tiled family fuses it) against `reference::maxpool`, exactly.

use super::harness::{random, Harness};
use super::{compare_exact, Rows};
use crate::gpu::ops::maxpool;
use crate::gpu::Caps;
use crate::reference as r;

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
