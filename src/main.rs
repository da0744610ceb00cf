//! `gpu-cnn`: the command line. Subcommands, flags, human output on stderr and `--json` on stdout.
//! The library is async (for the browser); every call here runs it to the end with `pollster::block_on`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use log::info;
use pollster::block_on;

use gpu_cnn::checkpoint::{self, Checkpoint};
use gpu_cnn::data;
use gpu_cnn::engine::Metrics;
use gpu_cnn::gpu::ops::Family;
use gpu_cnn::gpu::{self, AdapterSelection, AdapterSummary, Gpu};
use gpu_cnn::model::{self, Arch};
use gpu_cnn::study::{self, DeviceChoice, TrainOptions};
use gpu_cnn::train::TrainError;

/// The environment variables gpu-cnn reads, for `--help` (options on the command line take precedence).
const ENVIRONMENT: &str = "Environment:
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
    version,
    about = "A GPU-first CNN on MNIST: random weights vs backpropagation, every kernel a WGSL compute shader",
    after_help = ENVIRONMENT
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Only warnings and errors on stderr (no progress, no per-epoch lines).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// More detail on stderr (-v: what gpu-cnn does and wgpu's notices; -vv: everything). RUST_LOG sets it finely.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// The logger: gpu-cnn's own messages as plain lines on stderr ("warning: ", "error: " before the worse ones), other
/// crates' (wgpu's, naga's) with their level and origin. `RUST_LOG` chooses what shows unless -q or -v is given.
fn init_logging(quiet: bool, verbose: u8) {
    use std::io::Write;
    let default = match (quiet, verbose) {
        (true, _) => "error,gpu_cnn=warn",
        (false, 0) => "warn,gpu_cnn=info",
        (false, 1) => "info,gpu_cnn=debug",
        _ => "debug,gpu_cnn=trace",
    };
    let spec =
        if quiet || verbose > 0 { default.to_string() } else { std::env::var("RUST_LOG").unwrap_or(default.into()) };
    env_logger::Builder::new()
        .parse_filters(&spec)
        .format(|buf, r| {
            let ours = r.target().starts_with("gpu_cnn");
            match (ours, r.level()) {
                (true, log::Level::Info) => writeln!(buf, "{}", r.args()),
                (true, log::Level::Warn) => writeln!(buf, "warning: {}", r.args()),
                (true, log::Level::Error) => writeln!(buf, "error: {}", r.args()),
                (true, level) => writeln!(buf, "{}: {}", level.as_str().to_lowercase(), r.args()),
                (false, level) => writeln!(buf, "{} [{}] {}", level.as_str().to_lowercase(), r.target(), r.args()),
            }
        })
        .target(env_logger::Target::Stderr)
        .init();
}

#[derive(Subcommand)]
enum Command {
    /// List the adapters wgpu finds (index, name, backend, type, driver).
    Adapters {
        /// Only this backend.
        #[arg(long, value_parser = gpu::parse_backend)]
        backend: Option<wgpu::Backend>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate the random-initialized network (no learning) on the test set.
    ForwardOnly(Common),
    /// Train with backpropagation and SGD, evaluating after each epoch.
    Train(TrainArgs),
    /// The study in one command: forward-only, then backpropagation from the same initial weights; writes every
    /// picture and report.md / report.json.
    Compare(TrainArgs),
    /// Benchmark training and inference (and per-kernel GPU times) on one adapter or all of them.
    Bench(BenchArgs),
    /// Check every kernel the engine runs on an adapter against the CPU reference; exits non-zero on any failure.
    Check {
        /// Adapter index or name substring (default: the best one).
        #[arg(long, conflicts_with = "all_adapters")]
        adapter: Option<String>,
        /// Only adapters of this backend.
        #[arg(long, value_parser = gpu::parse_backend)]
        backend: Option<wgpu::Backend>,
        /// Every adapter wgpu finds.
        #[arg(long)]
        all_adapters: bool,
        /// Every kernel variant the adapter can run, not only the ones the engine uses there.
        #[arg(long)]
        all_variants: bool,
        /// The network's shapes only (what `bench` runs first).
        #[arg(long)]
        quick: bool,
        /// Kernel family: tiled, simd or auto.
        #[arg(long, value_parser = parse_kernels)]
        kernels: Option<Family>,
        /// Also check a whole training step of this network (as `train --arch`).
        #[arg(long, value_parser = Arch::parse)]
        arch: Option<Arch>,
        /// Print JSON on stdout (the table then goes to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Measure what the adapter can do: f32 multiply-add rate, memory bandwidth, the cost of a dispatch.
    Peak {
        /// Adapter index or name substring (default: the best one).
        #[arg(long)]
        adapter: Option<String>,
        /// Only adapters of this backend.
        #[arg(long, value_parser = gpu::parse_backend)]
        backend: Option<wgpu::Backend>,
        /// Timed runs of each measurement.
        #[arg(long, default_value_t = 5, value_parser = positive_usize)]
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
        common: Common,
        /// The checkpoint (PyTorch names and shapes).
        #[arg(long)]
        checkpoint: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DeviceKind {
    /// A GPU adapter through wgpu (falls back to the CPU when there is none).
    Gpu,
    /// The CPU reference.
    Cpu,
}

#[derive(Args, Clone)]
struct Common {
    /// Seed for initialization and shuffling.
    #[arg(long, default_value_t = model::DEFAULT_SEED)]
    seed: u64,
    /// Directory with the four IDX files (gzipped or not).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Evaluate on the first N test images only (quick runs on slow adapters; the study's figures use all of them).
    #[arg(long, value_parser = positive_usize)]
    test_limit: Option<usize>,
    /// Where pictures and reports go.
    #[arg(long, default_value = "outputs")]
    out_dir: PathBuf,
    /// Print one JSON object on stdout (human output stays on stderr).
    #[arg(long)]
    json: bool,
    /// Adapter index (see `gpu-cnn adapters`) or a substring of its name.
    #[arg(long)]
    adapter: Option<String>,
    /// Only consider adapters of this backend: vulkan, metal, dx12 or gl.
    #[arg(long, value_parser = gpu::parse_backend)]
    backend: Option<wgpu::Backend>,
    /// Run on a GPU adapter or on the CPU reference.
    #[arg(long, value_enum, default_value_t = DeviceKind::Gpu)]
    device: DeviceKind,
    /// Kernel family: tiled (GPUs), simd (CPU adapters such as lavapipe) or auto (by the adapter's type).
    #[arg(long, value_parser = parse_kernels)]
    kernels: Option<Family>,
    /// The network: a preset (study, tiny, wide) or layers joined by `-`, e.g. conv16-pool-conv32-pool-fc128-fc10
    /// (convC: 3×3 convolution + ReLU; pool: 2×2 max-pool; fcN: dense layer). Default: the study's, or a checkpoint's own.
    #[arg(long, value_parser = Arch::parse)]
    arch: Option<Arch>,
}

/// `--kernels`: a family, or `auto` (None: the adapter's default, or `GPU_CNN_KERNELS`).
fn parse_kernels(s: &str) -> Result<Family, String> {
    Family::parse(s)
}

impl Common {
    fn device_choice(&self) -> DeviceChoice {
        match self.device {
            DeviceKind::Cpu => DeviceChoice::Cpu,
            DeviceKind::Gpu => DeviceChoice::Gpu {
                selection: AdapterSelection { adapter: self.adapter.clone(), backend: self.backend },
                kernels: self.kernels,
            },
        }
    }
}

#[derive(Args, Clone)]
struct TrainArgs {
    #[command(flatten)]
    common: Common,
    /// Passes over the training set. 8 by default: the study's 98.89 % is passed by epoch 5 or so, but by a margin
    /// that rounding differences between adapters can eat; by epoch 8 it is passed with room to spare.
    #[arg(long, default_value_t = study::DEFAULT_EPOCHS, value_parser = positive_usize)]
    epochs: usize,
    /// Images per SGD step.
    #[arg(long, default_value_t = study::DEFAULT_BATCH_SIZE, value_parser = positive_usize)]
    batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = study::DEFAULT_LR, value_parser = learning_rate, allow_negative_numbers = true)]
    lr: f64,
    /// SGD momentum μ (v ← μ·v + g; w ← w − lr·v).
    #[arg(long, default_value_t = study::DEFAULT_MOMENTUM, value_parser = momentum, allow_negative_numbers = true)]
    momentum: f64,
    /// Train on the first N training images only.
    #[arg(long, value_parser = positive_usize)]
    train_limit: Option<usize>,
    /// Save a checkpoint (safetensors) here after every epoch and at the end.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Start from this checkpoint's weights (fresh optimizer state).
    #[arg(long, conflicts_with = "resume")]
    init: Option<PathBuf>,
    /// Continue from this checkpoint: weights, momentum and epoch count.
    #[arg(long)]
    resume: Option<PathBuf>,
}

impl TrainArgs {
    fn options(&self) -> TrainOptions {
        TrainOptions {
            arch: self.common.arch.clone(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            momentum: self.momentum,
            seed: self.common.seed,
            train_limit: self.train_limit,
            init: self.init.clone(),
            resume: self.resume.clone(),
            save: self.save.clone(),
            out_dir: self.common.out_dir.clone(),
        }
    }
}

#[derive(Args, Clone)]
struct BenchArgs {
    /// Adapter index or name substring (default: the best one).
    #[arg(long, conflicts_with = "all_adapters")]
    adapter: Option<String>,
    /// Only adapters of this backend.
    #[arg(long, value_parser = gpu::parse_backend)]
    backend: Option<wgpu::Backend>,
    /// Kernel family: tiled (GPUs), simd (CPU adapters such as lavapipe) or auto (by the adapter's type).
    #[arg(long, value_parser = parse_kernels)]
    kernels: Option<Family>,
    /// The network (as for `train`): e.g. `wide` to give a big GPU more work per image.
    #[arg(long, value_parser = Arch::parse, default_value = "study")]
    arch: Arch,
    /// Every adapter on the machine, plus the CPU reference as a row.
    #[arg(long)]
    all_adapters: bool,
    /// Images per training step.
    #[arg(long, default_value_t = 64, value_parser = positive_usize, conflicts_with = "batch_sizes")]
    batch_size: usize,
    /// Several batch sizes, one result each (e.g. 16,64,256,1024): where an adapter stops being launch-bound.
    #[arg(long, value_delimiter = ',', value_parser = positive_usize)]
    batch_sizes: Vec<usize>,
    /// Training steps per timed sample (default: as many as fill --min-seconds).
    #[arg(long, value_parser = positive_usize)]
    steps: Option<usize>,
    /// Shortest a timed sample may last, in seconds (its step count is chosen after a warm-up to fill it).
    #[arg(long, default_value_t = 1.0, value_parser = positive_seconds)]
    min_seconds: f64,
    /// Timed samples (the median is reported, with min, max and every sample).
    #[arg(long, default_value_t = 5, value_parser = positive_usize)]
    repeats: usize,
    /// Skip `check --quick` before the run (its result is then recorded as not checked).
    #[arg(long)]
    no_check: bool,
    /// Directory with the four IDX files.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Also write the JSON results to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 600.0 => Ok(v),
        Ok(v) => Err(format!("must be a number of seconds in (0, 600], got {v}")),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

fn positive_usize(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("`{s}` is not a positive whole number")),
    }
}

fn learning_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(v) => Err(format!("must be a finite number > 0, got {v}")),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

fn momentum(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("must be in [0, 1), got {v}")),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// Set by Ctrl-C (SIGINT) during training; the training loop checks it between chunks of steps.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// True while epochs run: the time a Ctrl-C should end gracefully (finish the steps in flight, save) rather than at once.
static TRAINING: AtomicBool = AtomicBool::new(false);

fn on_ctrl_c() {
    if TRAINING.load(Ordering::SeqCst) && !INTERRUPTED.swap(true, Ordering::SeqCst) {
        eprintln!("\ninterrupt: finishing the steps in flight (Ctrl-C again to quit at once)");
    } else {
        eprintln!("\ninterrupted");
        std::process::exit(130);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.quiet, cli.verbose);
    // Installed first, so a Ctrl-C at any point is seen by the training loop rather than killing a half-written save.
    let _ = ctrlc::set_handler(on_ctrl_c);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // After Ctrl-C (the steps in flight finished, the checkpoint and pictures written): 128 + SIGINT, as shells
        // expect of an interrupted command.
        Err(e) if e.chain().any(|c| matches!(c.downcast_ref::<TrainError>(), Some(TrainError::Interrupted { .. }))) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line (`a: b: c`), without repeating a cause already in the message.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Adapters { backend, json } => adapters(backend, json),
        Command::ForwardOnly(c) => forward_only(&c),
        Command::Train(t) => train_cmd(&t, false),
        Command::Eval { common, checkpoint } => eval_cmd(&common, &checkpoint),
        Command::Compare(t) => train_cmd(&t, true),
        Command::SaveLoop { path } => save_loop(&path),
        Command::Bench(b) => bench_cmd(&b),
        Command::BenchReport { files, plot, compare } => bench_report(&files, plot.as_deref(), compare.as_deref()),
        Command::Peak { adapter, backend, repeats, json } => peak_cmd(adapter, backend, repeats, json),
        Command::Check { adapter, backend, all_adapters, all_variants, quick, kernels, arch, json } => {
            let opts = gpu_cnn::check::CheckOptions { all_variants, quick, arch };
            check_cmd(AdapterSelection { adapter, backend }, all_adapters, kernels, opts, json)
        }
    }
}

fn check_cmd(
    sel: AdapterSelection,
    all_adapters: bool,
    kernels: Option<Family>,
    opts: gpu_cnn::check::CheckOptions,
    json: bool,
) -> Result<()> {
    let mut env = gpu::OpenOptions::from_env()?;
    if kernels.is_some() {
        env.family = kernels;
    }
    let opened: Vec<Result<Gpu, gpu::GpuError>> = if all_adapters {
        block_on(gpu::enumerate(sel.backend)).into_iter().map(|(s, a)| block_on(Gpu::open_adapter(s, a, env))).collect()
    } else {
        vec![block_on(Gpu::open_with(&sel, env))]
    };
    if opened.is_empty() {
        bail!("no GPU adapter found to check");
    }
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for g in opened {
        let g = g?;
        info!(
            "check: {} ({} kernels{})",
            g.adapter.line(),
            g.caps.describe(),
            if opts.all_variants { " and every other variant it can run" } else { "" }
        );
        let r = block_on(gpu_cnn::check::run(g, opts.clone()));
        let table = gpu_cnn::check::table(&r);
        if json {
            info!("{table}\n");
        } else {
            println!("{table}\n");
        }
        if !r.passed {
            failed.push(r.adapter.line());
        }
        reports.push(r);
    }
    if json {
        println!("{}", serde_json::to_string(&reports)?);
    }
    if !failed.is_empty() {
        bail!("check failed on {}", failed.join("; "));
    }
    Ok(())
}

fn peak_cmd(adapter: Option<String>, backend: Option<wgpu::Backend>, repeats: usize, json: bool) -> Result<()> {
    let g = block_on(Gpu::open(&AdapterSelection { adapter, backend }))?;
    info!("peak: {}", g.adapter.line());
    let r = block_on(gpu_cnn::peak::peak(&g, repeats))?;
    let table = gpu_cnn::peak::table(std::slice::from_ref(&r));
    if json {
        println!("{}", serde_json::to_string(&r)?);
        info!("\n{table}");
    } else {
        println!("{table}");
    }
    Ok(())
}

fn adapters(backend: Option<wgpu::Backend>, json: bool) -> Result<()> {
    let all: Vec<AdapterSummary> = block_on(gpu::enumerate(backend)).into_iter().map(|(s, _)| s).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    if all.is_empty() {
        info!("no GPU adapter found. On Debian/Ubuntu, `apt-get install mesa-vulkan-drivers` provides a software Vulkan adapter (lavapipe); `--device cpu` runs on the CPU reference.");
    }
    for s in &all {
        println!("{}: {}", s.index, s.line());
    }
    Ok(())
}

fn forward_only(c: &Common) -> Result<()> {
    let data = study::load_data(c.data_dir.as_deref())?.limit_test(c.test_limit);
    let arch = c.arch.clone().unwrap_or_default();
    let e = block_on(study::forward_only(&c.device_choice(), &data, &arch, c.seed, &c.out_dir))?;
    if c.json {
        println!("{}", serde_json::to_string(&e)?);
    }
    Ok(())
}

fn eval_cmd(c: &Common, path: &Path) -> Result<()> {
    let data = study::load_data(c.data_dir.as_deref())?.limit_test(c.test_limit);
    let e = block_on(study::evaluate_checkpoint(&c.device_choice(), &data, c.arch.as_ref(), path))?;
    if c.json {
        println!("{}", serde_json::to_string(&e)?);
    }
    Ok(())
}

/// The progress bar of each epoch (where messages show: not with -q), and Ctrl-C: while epochs run, a first Ctrl-C
/// stops the run after the steps in flight.
#[derive(Default)]
struct Bar(Option<indicatif::ProgressBar>);

impl study::Progress for Bar {
    fn epoch_started(&mut self, epoch: usize, epochs: usize, steps: usize) {
        TRAINING.store(true, Ordering::SeqCst);
        let target = if log::log_enabled!(log::Level::Info) {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        };
        let bar = indicatif::ProgressBar::with_draw_target(Some(steps as u64), target);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} steps, {msg} ({elapsed}, eta {eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, epochs));
        self.0 = Some(bar);
    }
    fn step(&mut self, done: usize, running: &Metrics) -> bool {
        if let Some(bar) = &self.0 {
            bar.set_position(done as u64);
            bar.set_message(format!("loss {:.4}", running.mean_loss()));
        }
        !INTERRUPTED.load(Ordering::SeqCst)
    }
    fn epoch_ended(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
    fn epochs_finished(&mut self) {
        TRAINING.store(false, Ordering::SeqCst);
    }
}

/// `train` and `compare`: the run, and its report as JSON on stdout with --json.
fn train_cmd(t: &TrainArgs, compare: bool) -> Result<()> {
    let c = &t.common;
    let data = study::load_data(c.data_dir.as_deref())?.limit_test(c.test_limit);
    let run = block_on(study::train(&c.device_choice(), &data, &t.options(), &mut Bar::default()))?;
    let report = gpu_cnn::report::StudyReport::new(run);
    if compare {
        report.write(&c.out_dir).with_context(|| format!("writing the report into {}", c.out_dir.display()))?;
        info!("report: {}", c.out_dir.join("report.md").display());
        // The result: the study's table on stdout (with --json, the JSON there and the table on stderr).
        if c.json {
            info!("\n{}", report.table());
        } else {
            println!("\n{}", report.table());
        }
    }
    if c.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

fn bench_cmd(b: &BenchArgs) -> Result<()> {
    let dir = b.data_dir.clone().unwrap_or_else(data::default_data_dir);
    let data = data::load(&dir)?;
    let cfg = gpu_cnn::bench::BenchConfig {
        batch_sizes: if b.batch_sizes.is_empty() { vec![b.batch_size] } else { b.batch_sizes.clone() },
        steps: b.steps,
        min_seconds: b.min_seconds,
        repeats: b.repeats,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        check: !b.no_check,
        arch: study::arch_for_data(Some(&b.arch), &data)?,
    };
    let which = if b.all_adapters {
        gpu_cnn::bench::Adapters::All { backend: b.backend }
    } else {
        gpu_cnn::bench::Adapters::One(AdapterSelection { adapter: b.adapter.clone(), backend: b.backend })
    };
    let results = block_on(gpu_cnn::bench::run(&which, b.kernels, &data, &cfg))?;
    let json = serde_json::to_string_pretty(&results)?;
    if let Some(p) = &b.out {
        gpu_cnn::atomic::write_atomic(p, json.as_bytes())
            .map_err(|e| e.source)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    // The result goes to stdout: the JSON with --json (the table then goes to stderr, for the eye), else the table.
    if b.json {
        println!("{}", serde_json::to_string(&results)?);
        info!("\n{}", gpu_cnn::bench::table(&results));
    } else {
        println!("{}", gpu_cnn::bench::table(&results));
    }
    Ok(())
}

fn bench_report(files: &[PathBuf], plot: Option<&Path>, compare: Option<&[PathBuf]>) -> Result<()> {
    if let Some([old, new]) = compare {
        let pairs = gpu_cnn::bench::pairs(&gpu_cnn::bench::read_results(old)?, &gpu_cnn::bench::read_results(new)?);
        if pairs.is_empty() {
            bail!("{} and {} share no adapter and batch size to compare", old.display(), new.display());
        }
        println!("{}", gpu_cnn::bench::compare_table(&pairs));
        if let Some(dir) = plot {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            for (i, (o, n)) in pairs.iter().enumerate() {
                let path = dir.join(format!("bench_compare_{i}.png"));
                gpu_cnn::viz::compare_png(&path, o, n)?;
                info!("wrote {}", path.display());
            }
        }
        if files.is_empty() {
            return Ok(());
        }
    }
    let mut all: Vec<gpu_cnn::bench::BenchResult> = Vec::new();
    for f in files {
        all.extend(gpu_cnn::bench::read_results(f)?);
    }
    println!("{}", gpu_cnn::bench::table(&all));
    if let Some(dir) = plot {
        for p in gpu_cnn::viz::bench_pictures(dir, &all)? {
            info!("wrote {}", p.display());
        }
    }
    Ok(())
}

/// Saves a fresh checkpoint to `path` in a tight loop (values change every time) until the process is killed: the
/// robustness test kills it at random moments and checks that `path` always loads.
fn save_loop(path: &Path) -> Result<()> {
    let arch = Arch::study();
    let mut params = model::init_params(&arch, 1);
    for i in 0u64.. {
        params[0] = i as f32;
        let mut metadata = std::collections::BTreeMap::new();
        metadata.insert("iteration".to_string(), i.to_string());
        checkpoint::save(path, &Checkpoint { arch: arch.clone(), params: params.clone(), metadata })?;
        if i == 0 {
            eprintln!("saving");
        }
    }
    Ok(())
}
