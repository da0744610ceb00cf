//! The network on the GPU: `lower` turns an `Arch` into op plans over named buffers (no GPU needed), `network`
//! creates the buffers and pipelines on a device, `run` trains, evaluates and probes, `profile` times each kernel.

pub mod lower;
pub mod network;
pub mod profile;
pub mod run;

pub use network::GpuNetwork;
