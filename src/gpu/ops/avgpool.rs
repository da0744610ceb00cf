//! 2×2, stride-2 average pool (`reference::avgpool`): forward, and backward optionally fused with the ReLU backward
//! before it. Both kernel families dispatch them after (and before, backward) the convolution, unfused. Shaders:
//! `avgpool_forward.wgsl`, `avgpool_backward.wgsl`.

use super::plan::{c, f32_bytes, flag, Lowered, Plan};
use crate::gpu::shader::{shader, Shader};

/// Both families' average pool.
pub const SHADERS: &[Shader] = &[
    shader!("avgpool_forward.wgsl" + ["step.wgsl"], ["avgpool_forward"], [Read, ReadWrite, Step], None, wg WG, shared 0),
    shader!(
        "avgpool_backward.wgsl" + ["step.wgsl"],
        ["avgpool_backward"],
        [Read, Read, ReadWrite, Step],
        None,
        wg WG,
        shared 0
    ),
];

/// Threads per workgroup of both kernels.
pub const WG: u32 = 256;

/// The kernels read whole windows: even sides only.
pub fn check_shape(entry: &str, get: &dyn Fn(&str) -> f64) -> Result<(), String> {
    let (h, w) = (get("H"), get("W"));
    if !(h as u64).is_multiple_of(2) || !(w as u64).is_multiple_of(2) {
        return Err(format!("{entry}: H = {h} and W = {w} must be even for a 2×2 pool"));
    }
    Ok(())
}

/// avgpool_forward over [n, C, H, W]: `x` → `y` [n, C, H/2, W/2]. One thread per window.
pub fn forward(ch: usize, h: usize, w: usize, x: &str, y: &str) -> Lowered {
    let windows = move |n: usize| n * ch * (h / 2) * (w / 2);
    Lowered::one(
        Plan::new("avgpool_forward", vec![c("C", ch), c("H", h), c("W", w)], &[x, y, "step"])
            .threads(WG, move |n| windows(n) as u64)
            .work(move |n| 4.0 * windows(n) as f64, move |n| f32_bytes(5 * windows(n))),
    )
}

/// avgpool_backward over [n, C, H, W]: `dy` the pooled gradient, `dx` the gradient of the pool input (with `relu`, of
/// the pre-activation of `a`, the ReLU output the pool read). One thread per element of dx.
pub fn backward(ch: usize, h: usize, w: usize, relu: bool, a: &str, dy: &str, dx: &str) -> Lowered {
    let elems = move |n: usize| n * ch * h * w;
    let read_a = if relu { 1 } else { 0 };
    Lowered::one(
        Plan::new("avgpool_backward", vec![c("C", ch), c("H", h), c("W", w), flag("RELU", relu)], &[a, dy, dx, "step"])
            .threads(WG, move |n| elems(n) as u64)
            .work(move |n| elems(n) as f64, move |n| f32_bytes(elems(n) * (1 + read_a) + elems(n) / 4)),
    )
}
