//! Gathers a batch of images and labels from a dataset kept on the device as u8, normalizing the pixels. Shader:
//! `load_batch.wgsl`.

use super::{c, f32_bytes, Lowered, Plan};
use crate::model::IMAGE_PIXELS;

/// Threads per workgroup of load_batch.
pub const WG: u32 = 256;

/// load_batch from the dataset buffer `data` (pixels of `count` images, then their labels) in the order `indices`
/// into `x` and `y`.
pub fn load(count: usize, data: &str, indices: &str, x: &str, y: &str) -> Lowered {
    Lowered::one(
        Plan::new("load_batch", vec![c("LABELS", count * IMAGE_PIXELS)], &[data, indices, x, y, "step"])
            .threads(WG, |n| (n * IMAGE_PIXELS) as u64)
            .work(|_| 0.0, |n| (n * IMAGE_PIXELS + n) as f64 + f32_bytes(n * IMAGE_PIXELS + 2 * n)),
    )
}
