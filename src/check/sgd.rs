//! sgd_step against `reference::sgd`.

use super::harness::{random, to_f64, Harness};
use super::{compare, Rows, EPS32};
use crate::gpu::ops::sgd;
use crate::reference as r;

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
