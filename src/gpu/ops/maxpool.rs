//! 2×2, stride-2 max-pool backward (`reference::maxpool`), optionally fused with the ReLU backward before it. The
//! forward pool is fused into conv2d_forward; the tiled family also fuses this backward into the kernel that produces
//! the pooled gradient (`conv2d::backward_input`, `dense::backward_input` with a pooled source), so only the simd
//! family dispatches it. Shader: `maxpool_backward.wgsl`.

use super::plan::{c, f32_bytes, flag, Lowered, Plan};
use crate::gpu::family::Family;
use crate::gpu::shader::{shader, Shader};

/// The simd family's max-pool backward (the tiled family fuses it into the input-gradient kernels).
pub const SHADERS: &[Shader] = &[shader!(
    "maxpool_backward.wgsl" + ["step.wgsl"],
    ["maxpool_backward"],
    [Read, Read, ReadWrite, Step],
    Some(Family::Simd),
    wg WG,
    shared 0
)];

/// Threads per workgroup of maxpool_backward.
pub const WG: u32 = 256;

/// maxpool_backward over [n, C, H, W]: `x` the pool input (with `relu`, a ReLU output), `dy` the pooled gradient,
/// `dx` the gradient of the pool input (of its pre-activation, with `relu`). One thread per window.
pub fn backward(ch: usize, h: usize, w: usize, relu: bool, x: &str, dy: &str, dx: &str) -> Lowered {
    let windows = move |n: usize| n * ch * (h / 2) * (w / 2);
    Lowered::one(
        Plan::new("maxpool_backward", vec![c("C", ch), c("H", h), c("W", w), flag("RELU", relu)], &[x, dy, dx, "step"])
            .threads(WG, move |n| windows(n) as u64)
            .work(|_| 0.0, move |n| f32_bytes(9 * windows(n))),
    )
}
