//! SGD with momentum over the one parameter buffer (`reference::sgd`). Shader: `sgd_step.wgsl`.

use super::plan::{f32_bytes, Lowered, Plan};
use crate::gpu::shader::{shader, Shader};

/// Both families' optimizer.
pub const SHADERS: &[Shader] =
    &[shader!("sgd_step.wgsl" + [], ["sgd_step"], [Read, ReadWrite, ReadWrite, Uniform], None, wg WG, shared 0)];

/// Threads per workgroup of sgd_step.
pub const WG: u32 = 256;

/// One update of all `count` parameters: `grads` into `momentum` and `params` (hyperparameters in `hyper`).
pub fn step(count: usize) -> Lowered {
    Lowered::one(
        Plan::new("sgd_step", Vec::new(), &["grads", "params", "momentum", "hyper"])
            .threads(WG, move |_| count as u64)
            .work(move |_| 3.0 * count as f64, move |_| f32_bytes(5 * count)),
    )
}
