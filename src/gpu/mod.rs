//! The GPU side, bottom to top:
//!
//! - `family`: the kernel families and a device's kernel set (`Caps`), as data; `error`: what can go wrong.
//! - `adapter`: finding adapters and choosing one; `device`: an open device, its buffers, waits and read-backs.
//! - `shader`: one row of the shader table; `ops`: the ops, each with its shader rows, shape rules, sizing and
//!   dispatch plans, and the registry that lists them; `limits`: what the shaders ask of a device.
//! - `pipelines`: shader modules and compute pipelines built from the table, bind groups, dispatches.
//! - `caps`: every decision about which kernels run (family, subgroups, fused head, fallbacks, what a family can run
//!   of a network), and opening a device accordingly.
//! - `net`: the network lowered to op plans (no GPU needed), run (training, evaluation, the probe) and profiled.

pub mod adapter;
pub mod caps;
pub mod device;
pub mod error;
pub mod family;
pub mod limits;
pub mod net;
pub mod ops;
pub mod pipelines;
pub mod shader;

pub use adapter::{enumerate, enumerate_selected, parse_backend, parse_backends, AdapterSelection, AdapterSummary};
pub use device::Gpu;
pub use error::GpuError;
pub use family::{Caps, Family, OpenOptions};
