//! The command line's arguments (clap): the subcommands, their flags with the library's defaults and checks
//! (`run::options`), and what each turns into (an adapter selection, a device choice, training options).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use anyhow::Result;

use gpu_cnn::data;
use gpu_cnn::gpu::{self, AdapterSelection, Family};
use gpu_cnn::model::{self, Arch};
use gpu_cnn::run::options::{self, Options};
use gpu_cnn::run::{self, DeviceChoice, TrainOptions};

/// The environment variables gpu-cnn reads, for `--help` (options on the command line take precedence).
pub(crate) const ENVIRONMENT: &str = "Environment:
  GPU_CNN_DATA=DIR           MNIST's directory when --data-dir is not given (default: data/mnist)
  GPU_CNN_KERNELS=FAMILY     kernel family when --kernels is not given: tiled, simd or auto
  GPU_CNN_SUBGROUPS=0        the simd family without its 8-lane subgroup kernels
  GPU_CNN_FUSED_HEAD=0       the tiled family's classifier head as four dispatches, not one
  GPU_CNN_LIMITS=downlevel   hold the device to WebGPU's downlevel limits
  GPU_CNN_SHADER_CHECKS=all  wgpu's loop-bounding checks back in the shaders
  GPU_CNN_TIMEOUT_S=N        longest wait for one GPU submission (default 300)
  WGPU_BACKEND, WGPU_ADAPTER_NAME, WGPU_POWER_PREF=low|high
                             wgpu's own: backend, adapter name, integrated before discrete (low)
  RUST_LOG                   what shows on stderr (see -q, -v)";

#[derive(Parser)]
#[command(
    name = "gpu-cnn",
    version = env!("GPU_CNN_VERSION_LONG"),
    about = "A GPU-first CNN on MNIST: random weights vs backpropagation, every kernel a WGSL compute shader",
    after_help = ENVIRONMENT
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Only warnings and errors on stderr (no progress, no per-epoch lines).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// More detail on stderr (-v: what gpu-cnn does and wgpu's notices; -vv: everything). RUST_LOG sets it finely.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// List the adapters wgpu finds (index, name, backend, type, driver; with --json their limits and features too).
    Adapters {
        /// Only these backends (a comma list: vulkan, metal, dx12, gl); WGPU_BACKEND where not given.
        #[arg(long, value_parser = gpu::parse_backends)]
        backend: Option<wgpu::Backends>,
        /// Print a JSON array, one object per adapter.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate the random-initialized network (no learning) on the test set.
    ForwardOnly(ForwardOnlyArgs),
    /// Train with backpropagation and SGD, evaluating after each epoch.
    Train(TrainArgs),
    /// The study in one command: forward-only, then backpropagation from the same initial weights; writes every
    /// picture and report.md / report.json.
    Compare(TrainArgs),
    /// Benchmark training and inference (and per-kernel GPU times) on one adapter or all of them.
    Bench(BenchArgs),
    /// Check every kernel the engine runs on an adapter against the CPU reference; exits non-zero on any failure.
    Check {
        #[command(flatten)]
        adapter: AdapterArgs,
        /// Every adapter wgpu finds.
        #[arg(long, conflicts_with = "adapter")]
        all_adapters: bool,
        /// Every kernel variant the adapter can run, not only the ones the engine uses there.
        #[arg(long)]
        all_variants: bool,
        /// The network's shapes only (what `bench` runs first).
        #[arg(long)]
        quick: bool,
        /// Kernel family: tiled, simd or auto.
        #[arg(long, value_parser = kernel_choice)]
        kernels: Option<KernelChoice>,
        /// Also check a whole training step of this network (as `train --arch`).
        #[arg(long, value_parser = Arch::parse)]
        arch: Option<Arch>,
        /// Print JSON on stdout (the table then goes to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Measure what the adapter can do: f32 multiply-add rate, memory bandwidth, the cost of a dispatch.
    Peak {
        #[command(flatten)]
        adapter: AdapterArgs,
        /// Timed runs of each measurement.
        #[arg(long, default_value_t = options::DEFAULT_REPEATS, value_parser = options::positive)]
        repeats: usize,
        /// Print JSON on stdout (the table then goes to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Merge `bench --json` results from several machines into one markdown table.
    BenchReport {
        /// JSON files written by `gpu-cnn bench --json --out FILE`.
        #[arg(required_unless_present = "compare")]
        files: Vec<PathBuf>,
        /// Also draw the results as PNGs in this directory: throughput, throughput against batch size, per-kernel
        /// time of one step, roofline.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Compare two result files (OLD NEW): the change of every figure, as a table (and a picture with --plot).
        #[arg(long, num_args = 2, value_names = ["OLD", "NEW"])]
        compare: Option<Vec<PathBuf>>,
    },
    /// (Testing aid, hidden) Save a checkpoint to PATH over and over until killed.
    #[command(hide = true, name = "__save-loop")]
    SaveLoop { path: PathBuf },
    /// Evaluate a safetensors checkpoint on the test set.
    Eval {
        #[command(flatten)]
        data: DataArgs,
        /// The checkpoint (PyTorch names and shapes).
        #[arg(long)]
        checkpoint: PathBuf,
    },
    /// Print a completion script for a shell (bash, zsh, fish, elvish, powershell), e.g.
    /// `gpu-cnn completions bash > ~/.local/share/bash-completion/completions/gpu-cnn`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// Whether the command was asked for JSON on stdout (where a failure then prints `{"error": …}`).
    pub(crate) fn json(&self) -> bool {
        match self {
            Command::Adapters { json, .. } | Command::Check { json, .. } | Command::Peak { json, .. } => *json,
            Command::ForwardOnly(a) => a.data.json,
            Command::Train(t) | Command::Compare(t) => t.data.json,
            Command::Eval { data, .. } => data.json,
            Command::Bench(b) => b.json,
            Command::BenchReport { .. } | Command::SaveLoop { .. } | Command::Completions { .. } => false,
        }
    }
}

/// `--kernels`: a family, or `auto` (None: the adapter's default, or `GPU_CNN_KERNELS`).
#[derive(Clone, Copy)]
pub(crate) struct KernelChoice(pub(crate) Option<Family>);

pub(crate) fn kernel_choice(s: &str) -> Result<KernelChoice, String> {
    Family::parse_choice(s).map(KernelChoice)
}

/// Which adapter: the same two flags on every command that opens one.
#[derive(Args, Clone)]
pub(crate) struct AdapterArgs {
    /// Adapter index (see `gpu-cnn adapters`) or a substring of its name (default: the best one).
    #[arg(long)]
    pub(crate) adapter: Option<String>,
    /// Only consider adapters of these backends: vulkan, metal, dx12, gl, or a comma list (as WGPU_BACKEND).
    #[arg(long, value_parser = gpu::parse_backends)]
    pub(crate) backend: Option<wgpu::Backends>,
}

impl AdapterArgs {
    pub(crate) fn selection(&self) -> AdapterSelection {
        AdapterSelection { adapter: self.adapter.clone(), backend: self.backend }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum DeviceKind {
    /// A GPU adapter through wgpu (falls back to the CPU when there is none).
    Gpu,
    /// The CPU reference.
    Cpu,
}

/// What every command that evaluates a network takes: the data, the device and the network.
#[derive(Args, Clone)]
pub(crate) struct DataArgs {
    /// Directory with the four IDX files (gzipped or not).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Evaluate on the first N test images only (quick runs on slow adapters; the study's figures use all of them).
    #[arg(long, value_parser = options::positive)]
    pub(crate) test_limit: Option<usize>,
    /// Print one JSON object on stdout (human output stays on stderr).
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) adapter: AdapterArgs,
    /// Run on a GPU adapter or on the CPU reference.
    #[arg(long, value_enum, default_value_t = DeviceKind::Gpu)]
    pub(crate) device: DeviceKind,
    /// Kernel family: tiled (GPUs), simd (CPU adapters such as lavapipe) or auto (by the adapter's type).
    #[arg(long, value_parser = kernel_choice)]
    pub(crate) kernels: Option<KernelChoice>,
    /// The network: a preset (study, tiny, wide, lenet5) or layers joined by `-`, e.g.
    /// conv16-pool-conv32-pool-fc128-fc10 (convC: 3×3 convolution + ReLU; pool: 2×2 max-pool; fcN: dense layer).
    /// Default: the study's, or a checkpoint's own.
    #[arg(long, value_parser = Arch::parse)]
    pub(crate) arch: Option<Arch>,
}

/// Where a run's pictures and logs go, and the seed of its weights and order.
#[derive(Args, Clone)]
pub(crate) struct RunArgs {
    /// Seed for initialization and shuffling.
    #[arg(long, default_value_t = model::DEFAULT_SEED, value_parser = options::seed)]
    pub(crate) seed: u64,
    /// Where pictures and reports go (git ignores what it holds, but for `outputs/study`).
    #[arg(long, default_value = "outputs")]
    pub(crate) out_dir: PathBuf,
}

#[derive(Args, Clone)]
pub(crate) struct ForwardOnlyArgs {
    #[command(flatten)]
    pub(crate) data: DataArgs,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

impl DataArgs {
    pub(crate) fn device_choice(&self) -> DeviceChoice {
        match self.device {
            DeviceKind::Cpu => DeviceChoice::Cpu,
            DeviceKind::Gpu => {
                DeviceChoice::Gpu { selection: self.adapter.selection(), kernels: self.kernels.and_then(|k| k.0) }
            }
        }
    }

    pub(crate) fn load_data(&self) -> Result<data::Mnist> {
        Ok(run::load_data(self.data_dir.as_deref())?.limit_test(self.test_limit))
    }
}

#[derive(Args, Clone)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    pub(crate) data: DataArgs,
    #[command(flatten)]
    pub(crate) run: RunArgs,
    /// Passes over the training set.
    #[arg(long, default_value_t = options::DEFAULT_EPOCHS, value_parser = options::positive)]
    pub(crate) epochs: usize,
    /// Images per SGD step.
    #[arg(long, default_value_t = options::DEFAULT_BATCH_SIZE, value_parser = options::positive)]
    pub(crate) batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = options::DEFAULT_LR, value_parser = options::learning_rate, allow_negative_numbers = true)]
    pub(crate) lr: f64,
    /// SGD momentum μ (v ← μ·v + g; w ← w − lr·v).
    #[arg(long, default_value_t = options::DEFAULT_MOMENTUM, value_parser = options::momentum, allow_negative_numbers = true)]
    pub(crate) momentum: f64,
    /// Train on the first N training images only.
    #[arg(long, value_parser = options::positive)]
    pub(crate) train_limit: Option<usize>,
    /// Save a checkpoint (safetensors) here after every epoch and at the end.
    #[arg(long)]
    pub(crate) save: Option<PathBuf>,
    /// Start from this checkpoint's weights (fresh optimizer state).
    #[arg(long, conflicts_with = "resume")]
    pub(crate) init: Option<PathBuf>,
    /// Continue from this checkpoint: weights, momentum and epoch count.
    #[arg(long)]
    pub(crate) resume: Option<PathBuf>,
}

impl TrainArgs {
    pub(crate) fn options(&self) -> TrainOptions {
        let shared = Options {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            momentum: self.momentum,
            seed: self.run.seed,
            train_limit: self.train_limit,
            arch: self.data.arch.clone(),
            ..Options::default()
        };
        TrainOptions {
            init: self.init.clone(),
            resume: self.resume.clone(),
            save: self.save.clone(),
            ..shared.train(self.run.out_dir.clone())
        }
    }
}

#[derive(Args, Clone)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    pub(crate) adapter: AdapterArgs,
    /// Kernel family: tiled (GPUs), simd (CPU adapters such as lavapipe) or auto (by the adapter's type).
    #[arg(long, value_parser = kernel_choice)]
    pub(crate) kernels: Option<KernelChoice>,
    /// The network (as for `train`): e.g. `wide` to give a big GPU more work per image.
    #[arg(long, value_parser = Arch::parse, default_value = "study")]
    pub(crate) arch: Arch,
    /// Every adapter on the machine, plus the CPU reference as a row.
    #[arg(long, conflicts_with = "adapter")]
    pub(crate) all_adapters: bool,
    /// Images per training step.
    #[arg(long, default_value_t = options::DEFAULT_BATCH_SIZE, value_parser = options::positive, conflicts_with = "batch_sizes")]
    pub(crate) batch_size: usize,
    /// Several batch sizes, one result each (e.g. 16,64,256,1024): where an adapter stops being launch-bound.
    #[arg(long, value_delimiter = ',', value_parser = options::positive)]
    pub(crate) batch_sizes: Vec<usize>,
    /// Training steps per timed sample (default: as many as fill --min-seconds).
    #[arg(long, value_parser = options::positive)]
    pub(crate) steps: Option<usize>,
    /// Shortest a timed sample may last, in seconds (its step count is chosen after a warm-up to fill it).
    #[arg(long, default_value_t = options::DEFAULT_MIN_SECONDS, value_parser = options::seconds)]
    pub(crate) min_seconds: f64,
    /// Timed samples (median, min, max, mean ± standard deviation and every sample are reported).
    #[arg(long, default_value_t = options::DEFAULT_REPEATS, value_parser = options::positive)]
    pub(crate) repeats: usize,
    /// Untimed samples before the timed ones (after the calibration's own warm-up).
    #[arg(long, default_value_t = options::DEFAULT_WARMUP, value_parser = options::count)]
    pub(crate) warmup: usize,
    /// Skip `check --quick` before the run (its result is then recorded as not checked).
    #[arg(long)]
    pub(crate) no_check: bool,
    /// Directory with the four IDX files.
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write the JSON results to this file.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}
