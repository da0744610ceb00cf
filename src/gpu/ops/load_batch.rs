//! Gathers a batch of images and labels from a dataset kept on the device as u8, normalizing the pixels. Shader:
//! `load_batch.wgsl`.

use super::plan::{c, f32_bytes, Lowered, Plan};
use crate::gpu::shader::{shader, Shader};
use crate::model::Normalization;

/// Both families' batch loader.
pub const SHADERS: &[Shader] = &[shader!(
    "load_batch.wgsl" + ["step.wgsl"],
    ["load_batch"],
    [Read, Read, ReadWrite, ReadWrite, Step],
    None,
    wg WG,
    shared 0
)];

/// Threads per workgroup of load_batch.
pub const WG: u32 = 256;

/// load_batch from the dataset buffer `data` (`count` images of `pixels` bytes, then their labels) in the order
/// `indices` into `x` (normalized by `norm`) and `y`.
pub fn load(count: usize, pixels: usize, norm: Normalization, data: &str, indices: &str, x: &str, y: &str) -> Lowered {
    let k =
        vec![c("PIXELS", pixels), c("LABELS", count * pixels), ("MEAN", norm.mean as f64), ("STD", norm.std as f64)];
    Lowered::one(
        Plan::new("load_batch", k, &[data, indices, x, y, "step"])
            .threads(WG, move |n| (n * pixels) as u64)
            .work(|_| 0.0, move |n| (n * pixels + n) as f64 + f32_bytes(n * pixels + 2 * n)),
    )
}
