//! The CPU reference: one plain-Rust function per kernel, forward and backward, in the manner of llm.c's CPU code.
//!
//! This module is the *definition* of what every WGSL kernel must compute. Each file is named after its shaders
//! (`conv2d.rs` ↔ `shaders/conv2d_forward.wgsl`, `shaders/conv2d_backward_input.wgsl`, ...), and each function after its
//! entry point. The conventions shared by all of them:
//!
//! - Every function is generic over `T: num_traits::Float`: `f32` is what the GPU computes, `f64` is what the
//!   finite-difference gradient checks (`tests/gradcheck.rs`) run in.
//! - Tensors are flat slices, NCHW row-major; weights have PyTorch's shapes (conv `[cout, cin, k, k]`, linear
//!   `[out, inp]`). Slice lengths are checked with `assert_eq!`.
//! - Outputs are overwritten, never accumulated into: a function writes every element of its output slices.
//! - Gradients that sum over the batch (weights, biases) are plain sums; the `1/n` of the mean loss enters once, in
//!   `softmax_cross_entropy_backward`.
//!
//! `network` strings the ops together into any `model::Arch` (forward, backward, SGD step, evaluation), built only from
//! the functions below, so the CPU is also a (slow) device to train on.

pub mod avgpool;
pub mod conv2d;
pub mod dense;
pub mod maxpool;
pub mod network;
pub mod relu;
pub mod sgd;
pub mod softmax_cross_entropy;

pub use avgpool::{avgpool_backward, avgpool_forward};
pub use conv2d::{conv2d_backward_input, conv2d_backward_weight, conv2d_forward, Conv2dShape};
pub use dense::{dense_backward_input, dense_backward_weight, dense_forward};
pub use maxpool::{maxpool_backward, maxpool_forward};
pub use network::{backward, evaluate, forward, loss_and_grads, mean_loss, train_step, Activations};
pub use relu::{relu_backward, relu_forward};
pub use sgd::sgd_step;
pub use softmax_cross_entropy::{argmax, softmax_cross_entropy_backward, softmax_cross_entropy_forward};
