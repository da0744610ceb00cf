//! The classifier head of a training step in one dispatch (`reference::network`'s last dense layer, softmax
//! cross-entropy and their gradients): the tiled family's fusion of four dispatches into one. Shader:
//! `classifier_head.wgsl`.

use super::dense::Dense;
use super::plan::{c, f32_bytes, Lowered, Plan};
use super::softmax_cross_entropy::StatsLayout;
use crate::gpu::family::Family;
use crate::gpu::shader::{shader, Shader};

/// The head's kernel: six storage buffers, where the downlevel floor is four, so it is `optional` (`Caps::within`).
pub const SHADERS: &[Shader] = &[shader!(
    "classifier_head.wgsl" + ["step.wgsl", "metrics_core.wgsl"],
    ["classifier_head"],
    [Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, Step],
    Some(Family::Tiled),
    wg 256,
    shared (1024 + 2048 + 256 + 256) * 4,
    optional
)];

/// The shader's limits: classes (`MAX_K`) and entries of [W | b] it keeps in workgroup memory (`MAX_GRAD`).
pub const MAX_CLASSES: usize = 16;
pub const MAX_GRAD: usize = 2048;

/// Whether the head kernel can take the last dense layer `s` (its classes and its weights and biases fit).
pub fn fits(s: &Dense) -> bool {
    s.out <= MAX_CLASSES && s.out * (s.inp + 1) <= MAX_GRAD
}

/// One training step's head: the logits of `h` (a ReLU's output) through `s`, the loss, predictions and metrics into
/// `stats`, the gradients of `s` into `grads` and the gradient of `h`'s pre-activation into `dh`. One workgroup.
pub fn train(s: &Dense, stats: StatsLayout, h: &str, y: &str, dh: &str) -> Lowered {
    let s = *s;
    assert!(fits(&s), "classifier_head cannot take {s:?}");
    let k = vec![
        c("IN", s.inp),
        c("OUT", s.out),
        c("W_OFF", s.w_off),
        c("B_OFF", s.b_off),
        c("LOSSES", stats.losses),
        c("PREDS", stats.preds),
    ];
    let flops = move |n: usize| 3.0 * s.flops(n) + 5.0 * (n * s.out) as f64;
    let bytes = move |n: usize| f32_bytes(2 * n * s.inp + 2 * s.out * (s.inp + 1) + 2 * n);
    Lowered::one(Plan::new("classifier_head", k, &[h, "params", y, "grads", dh, "stats", "step"]).work(flops, bytes))
}
