//! The study's runs as library calls, everything the `gpu-cnn` commands do short of parsing arguments and printing:
//! `evaluate::forward_only` (random weights), `evaluate::evaluate_checkpoint`, `train::train` (epochs, checkpoints
//! after each, resume, Ctrl-C through `Progress`, pictures and logs); `report` turns a training run into `compare`'s
//! `report.md` and `report.json`. `examples/train.rs` uses them on their own. They are async, for the browser (`web/`);
//! natively `pollster::block_on` runs them to the end.
//!
//! ```no_run
//! use gpu_cnn::run::{self, DeviceChoice, TrainOptions};
//! let data = run::load_data(None)?;
//! let opts = TrainOptions { epochs: 1, ..Default::default() };
//! let outcome = pollster::block_on(run::train(&DeviceChoice::default(), &data, &opts, &mut ()))?;
//! println!("{:.2} % after {} epoch(s) on {}", 100.0 * outcome.test_accuracy, outcome.epochs.len(), outcome.adapter.line());
//! # anyhow::Ok(())
//! ```

pub mod epoch;
pub mod evaluate;
pub mod open;
pub mod options;
pub mod pictures;
pub mod train;

pub use crate::engine::EpochReport;
pub use epoch::{TrainConfig, TrainError};
pub use evaluate::{evaluate_checkpoint, forward_only, Evaluation};
pub use open::{arch_for_data, load_data, open_engine, prepare_out_dir, DeviceChoice, Engines};
pub use options::{Options, TrainOptions};
pub use train::{train, Progress, TrainOutcome};
