//! gpu-cnn: a GPU-first CNN engine. Every kernel, forward and backward, is a hand-written WGSL compute shader under
//! `shaders/`; the host (wgpu) owns buffers, pipelines, bind groups and dispatches. A plain-Rust CPU reference of every
//! op (`reference`) defines what each kernel must compute.
//!
//! Data flows one way, bottom to top:
//!
//! - `model` (the network described once: input, layers, parameters), `atomic` (files never half-written);
//! - `data` (IDX files), `checkpoint` (safetensors), `reference` (the CPU truth of each op), `engine` (what trains and
//!   evaluates, and the plain description of what it ran on);
//! - `cpu` (the reference as an engine) and `gpu` (adapters, devices, the ops and their kernels, the network lowered,
//!   run and profiled);
//! - `check` (every kernel against the reference) and `measure` (bench, peak);
//! - `viz` (pictures), `run` (the commands as library calls: forward-only, eval, train) and `report`.
//!
//! The command line (`src/main.rs`) parses arguments, calls `run`, `check` or `measure`, and prints; the page (`web/`)
//! calls the same with the same options (`run::Options`). The host's waits and read-backs are `async` (a browser's
//! WebGPU cannot block); natively any executor runs them, e.g. pollster's `block_on`:
//!
//! ```no_run
//! use gpu_cnn::run::{self, DeviceChoice, TrainOptions};
//! let data = run::load_data(None)?; // data/mnist, or GPU_CNN_DATA
//! let outcome = pollster::block_on(run::train(&DeviceChoice::default(), &data, &TrainOptions::default(), &mut ()))?;
//! println!("{:.2} % on {}", 100.0 * outcome.test_accuracy, outcome.adapter.line());
//! # anyhow::Ok(())
//! ```

pub mod atomic;
pub mod check;
pub mod checkpoint;
pub mod cpu;
pub mod data;
pub mod engine;
pub mod gpu;
pub mod measure;
pub mod model;
pub mod reference;
pub mod report;
pub mod run;
pub mod viz;
