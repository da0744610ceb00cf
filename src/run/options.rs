//! What a run is asked to do, with its defaults and its validation: the command line and the page take the same
//! options from the same functions.

use std::path::PathBuf;

use crate::model::{self, Arch};

/// The study's training defaults (the CLI's too).
pub const DEFAULT_EPOCHS: usize = 8;
pub const DEFAULT_BATCH_SIZE: usize = 64;
pub const DEFAULT_LR: f64 = 0.01;
pub const DEFAULT_MOMENTUM: f64 = 0.9;

/// A training run: hyperparameters, where it starts from, where it saves, where the pictures go.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The network; None: the `init`/`resume` checkpoint's own, else the study's. A checkpoint of another network is
    /// refused.
    pub arch: Option<Arch>,
    /// Passes over the training set (a resumed run trains from its checkpoint's epoch up to this).
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// SGD momentum μ (v ← μ·v + g; w ← w − lr·v).
    pub momentum: f64,
    /// Seeds the initial weights and every epoch's order.
    pub seed: u64,
    /// Train on the first N training images only.
    pub train_limit: Option<usize>,
    /// Start from this checkpoint's weights (fresh momentum).
    pub init: Option<PathBuf>,
    /// Continue from this training state: weights, momentum and epoch count.
    pub resume: Option<PathBuf>,
    /// Save the training state here after every epoch (and on Ctrl-C).
    pub save: Option<PathBuf>,
    /// Where the pictures and logs go.
    pub out_dir: PathBuf,
}

impl Default for TrainOptions {
    /// The study's: `Options::default()`, from scratch, writing into `outputs`.
    fn default() -> Self {
        Options::default().train(PathBuf::from("outputs"))
    }
}

/// Benchmark defaults: timed samples, the shortest one sample may last, and untimed samples before them.
pub const DEFAULT_REPEATS: usize = 5;
pub const DEFAULT_MIN_SECONDS: f64 = 1.0;
pub const DEFAULT_WARMUP: usize = 1;

/// A whole number ≥ 0.
pub fn count(s: &str) -> Result<usize, String> {
    s.parse::<usize>().map_err(|_| format!("`{s}` is not a whole number ≥ 0"))
}

/// A whole number ≥ 1 (epochs, batch sizes, limits, repeats).
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("`{s}` is not a positive whole number")),
    }
}

/// A learning rate: finite and > 0.
pub fn learning_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(v) => Err(format!("must be a finite number > 0, got {v}")),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// SGD momentum: in [0, 1).
pub fn momentum(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("must be in [0, 1), got {v}")),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// A duration in seconds: in (0, 600].
pub fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 600.0 => Ok(v),
        Ok(v) => Err(format!("must be a number of seconds in (0, 600], got {v}")),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// A seed: any whole number that fits 64 bits.
pub fn seed(s: &str) -> Result<u64, String> {
    s.parse::<u64>().map_err(|_| format!("`{s}` is not a whole number from 0 to {}", u64::MAX))
}

/// The options the commands share, with their defaults: what `gpu-cnn` takes as flags and the page as its query
/// string, parsed and checked by the same functions (`Options::set`), and turned into what each run needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub momentum: f64,
    pub seed: u64,
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
    /// None: the study's, or a checkpoint's own.
    pub arch: Option<Arch>,
    /// None: the adapter's default family (or `GPU_CNN_KERNELS`).
    pub kernels: Option<crate::gpu::Family>,
    /// `check`: the network's shapes only.
    pub quick: bool,
    /// `bench`: timed samples, untimed ones before them, the shortest a sample may last, and whether to skip
    /// `check --quick` first.
    pub repeats: usize,
    pub warmup: usize,
    pub min_seconds: f64,
    pub no_check: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            epochs: DEFAULT_EPOCHS,
            batch_size: DEFAULT_BATCH_SIZE,
            lr: DEFAULT_LR,
            momentum: DEFAULT_MOMENTUM,
            seed: model::DEFAULT_SEED,
            train_limit: None,
            test_limit: None,
            arch: None,
            kernels: None,
            quick: false,
            repeats: DEFAULT_REPEATS,
            warmup: DEFAULT_WARMUP,
            min_seconds: DEFAULT_MIN_SECONDS,
            no_check: false,
        }
    }
}

/// The names `Options::set` takes, as the command line spells them (without the dashes).
pub const OPTION_NAMES: [&str; 14] = [
    "epochs",
    "batch-size",
    "lr",
    "momentum",
    "seed",
    "train-limit",
    "test-limit",
    "arch",
    "kernels",
    "quick",
    "repeats",
    "warmup",
    "min-seconds",
    "no-check",
];

impl Options {
    /// Sets option `name` (as `OPTION_NAMES` spells it) from `value`, checked as the command line checks it; an
    /// error names the option, the value and what is wrong. Flags take "1", "true" or "" (on) and "0", "false" (off).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let bad = |e: String| format!("{name}={value}: {e}");
        let flag = || match value {
            "" | "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            _ => Err(bad("expected 1 or 0".into())),
        };
        match name {
            "epochs" => self.epochs = positive(value).map_err(bad)?,
            "batch-size" => self.batch_size = positive(value).map_err(bad)?,
            "lr" => self.lr = learning_rate(value).map_err(bad)?,
            "momentum" => self.momentum = momentum(value).map_err(bad)?,
            "seed" => self.seed = seed(value).map_err(bad)?,
            "train-limit" => self.train_limit = Some(positive(value).map_err(bad)?),
            "test-limit" => self.test_limit = Some(positive(value).map_err(bad)?),
            "arch" => self.arch = Some(Arch::parse(value).map_err(bad)?),
            "kernels" => self.kernels = crate::gpu::Family::parse_choice(value).map_err(bad)?,
            "quick" => self.quick = flag()?,
            "repeats" => self.repeats = positive(value).map_err(bad)?,
            "warmup" => self.warmup = count(value).map_err(bad)?,
            "min-seconds" => self.min_seconds = seconds(value).map_err(bad)?,
            "no-check" => self.no_check = flag()?,
            other => return Err(format!("unknown option `{other}` (known: {})", OPTION_NAMES.join(", "))),
        }
        Ok(())
    }

    /// The defaults with each of `pairs` set in turn.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Options, String> {
        let mut o = Options::default();
        for (name, value) in pairs {
            o.set(name, value)?;
        }
        Ok(o)
    }

    /// A training run of these options writing into `out_dir` (from scratch; the command line adds `--init`,
    /// `--resume` and `--save`).
    pub fn train(&self, out_dir: PathBuf) -> TrainOptions {
        TrainOptions {
            arch: self.arch.clone(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            momentum: self.momentum,
            seed: self.seed,
            train_limit: self.train_limit,
            init: None,
            resume: None,
            save: None,
            out_dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_as_the_command_line_checks_them() {
        let o = Options::from_pairs([("epochs", "2"), ("lr", "0.05"), ("arch", "tiny"), ("quick", "")]).unwrap();
        assert_eq!((o.epochs, o.lr, o.quick, o.repeats), (2, 0.05, true, DEFAULT_REPEATS));
        assert_eq!(o.arch.unwrap().describe(), "conv4-pool-conv8-pool-fc32-fc10");
        for (name, value, says) in [
            ("lr", "-1", "lr=-1: must be a finite number > 0"),
            ("lr", "nan", "finite number"),
            ("momentum", "1", "momentum=1: must be in [0, 1)"),
            ("epochs", "0", "at least 1"),
            ("seed", "-3", "not a whole number"),
            ("kernels", "fast", "unknown kernel family `fast`"),
            ("quick", "maybe", "expected 1 or 0"),
            ("colour", "red", "unknown option `colour`"),
        ] {
            let e = Options::from_pairs([(name, value)]).unwrap_err();
            assert!(e.contains(says), "{name}={value}: {e}");
        }
    }
}
