//! gpu-cnn: a GPU-first CNN engine. Every kernel, forward and backward, is a hand-written WGSL compute shader under
//! `shaders/`; the host (wgpu) owns buffers, pipelines, bind groups and dispatches. A plain-Rust CPU reference of every
//! op (`reference`) defines what each kernel must compute.
//!
//! Data flows one way: `data` (IDX files) → `model` (shapes, parameters) → an engine (`gpu` or the CPU `reference`) →
//! `train` (epochs, metrics) → pictures and reports, with the CLI (`src/main.rs`) on top.

pub mod atomic;
pub mod bench;
pub mod check;
pub mod checkpoint;
pub mod cpu;
pub mod data;
pub mod engine;
pub mod gpu;
pub mod model;
pub mod peak;
pub mod reference;
pub mod report;
pub mod train;
pub mod viz;
