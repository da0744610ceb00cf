//! The network described once: its input (`input`), its layers and what follows from them (`arch`), its parameters
//! and the run's seeded randomness (`params`). Everything else (the CPU reference, the GPU's op list, checkpoints,
//! pictures) is derived from an `Arch`.

mod arch;
mod input;
mod params;

pub use arch::{Arch, ConvLayer, DenseLayer, Layer, ParamTensor, Pool, MAX_KERNEL, PRESETS};
pub use input::{ImageShape, Normalization, CLASSES};
pub use params::{epoch_order, init_params, rng, shuffled_indices, uniform01, Rng, DEFAULT_SEED};
