//! gpu-cnn: a GPU-first CNN engine. Every kernel, forward and backward, is a hand-written WGSL compute shader under
//! `shaders/`; the host (wgpu) owns buffers, pipelines, bind groups and dispatches. A plain-Rust CPU reference of every
//! op (`reference`) defines what each kernel must compute.
//!
//! Data flows one way: `data` (IDX files) → `model` (shapes, parameters) → an engine (`gpu` or the CPU `reference`,
//! behind `engine::Engine`) → `train` (epochs, metrics) → pictures (`viz`) and reports (`report`). `study` puts these
//! together as the commands do (forward-only, eval, train with checkpoints and pictures); `bench`, `check` and `peak`
//! measure and verify an adapter; `device::DeviceInfo` describes what ran in every output. The CLI (`src/main.rs`)
//! only parses arguments and prints; `examples/train.rs` trains the network in a few lines. The host's waits and
//! read-backs are `async` (a browser's WebGPU cannot block; `web/` is the engine in a page); natively any executor
//! runs them, e.g. pollster's `block_on`:
//!
//! ```no_run
//! use gpu_cnn::study::{self, DeviceChoice, TrainOptions};
//! let data = study::load_data(None)?; // data/mnist, or GPU_CNN_DATA
//! let run = pollster::block_on(study::train(&DeviceChoice::default(), &data, &TrainOptions::default(), &mut ()))?;
//! println!("{:.2} % on {}", 100.0 * run.test_accuracy, run.adapter.line());
//! # anyhow::Ok(())
//! ```

pub mod atomic;
pub mod bench;
pub mod check;
pub mod checkpoint;
pub mod cpu;
pub mod data;
pub mod device;
pub mod engine;
pub mod gpu;
pub mod model;
pub mod peak;
pub mod reference;
pub mod report;
pub mod study;
pub mod train;
pub mod viz;
