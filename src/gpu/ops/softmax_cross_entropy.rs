//! Softmax cross-entropy over a batch of logits (`reference::softmax_cross_entropy`): the loss, the predictions, the
//! running metrics and, backward, the gradient of the mean loss. Shader: `softmax_cross_entropy.wgsl`.

use super::plan::{c, f32_bytes, Lowered, Plan};
use crate::gpu::shader::{shader, Shader};

/// Most classes the kernel takes (its `MAX_K`).
pub const MAX_CLASSES: usize = 16;

/// Both families' loss, with the fixed-order metrics sum appended.
pub const SHADERS: &[Shader] = &[shader!(
    "softmax_cross_entropy.wgsl" + ["step.wgsl", "metrics_core.wgsl"],
    ["softmax_cross_entropy_forward", "softmax_cross_entropy_backward"],
    [Read, Read, ReadWrite, ReadWrite, Step],
    None,
    wg 256,
    shared 2048
)];

/// The kernel keeps a sample's logits in registers: at most `MAX_CLASSES`.
pub fn check_shape(entry: &str, get: &dyn Fn(&str) -> f64) -> Result<(), String> {
    if get("K") > MAX_CLASSES as f64 {
        return Err(format!("{entry}: K = {} classes, at most {MAX_CLASSES} (the kernel's MAX_K)", get("K")));
    }
    Ok(())
}

/// Where the kernel keeps its results in the `stats` buffer (in 4-byte words): the metrics [Σ loss, correct, count]
/// at 0, each step's mean loss from `losses`, each sample's predicted class from `preds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsLayout {
    pub losses: usize,
    pub preds: usize,
}

impl StatsLayout {
    /// Room for `steps` step losses and `samples` predictions.
    pub fn new(steps: usize) -> StatsLayout {
        StatsLayout { losses: 4, preds: 4 + steps }
    }

    pub fn words(&self, samples: usize) -> usize {
        self.preds + samples
    }
}

/// softmax_cross_entropy_forward (`backward` false: loss, predictions, metrics) or _backward (also `dlogits`) over
/// `classes` classes. One workgroup.
pub fn loss(backward: bool, classes: usize, stats: StatsLayout, logits: &str, y: &str, dlogits: &str) -> Lowered {
    let entry = if backward { "softmax_cross_entropy_backward" } else { "softmax_cross_entropy_forward" };
    let k = vec![c("K", classes), c("LOSSES", stats.losses), c("PREDS", stats.preds)];
    let out = if backward { 1 } else { 0 };
    Lowered::one(
        Plan::new(entry, k, &[logits, y, dlogits, "stats", "step"])
            .work(move |n| 5.0 * (n * classes) as f64, move |n| f32_bytes((1 + out) * n * classes + 2 * n)),
    )
}
