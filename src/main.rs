//! `gpu-cnn`: the command line. Subcommands, flags, human output on stderr and `--json` on stdout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use log::{info, warn};
use serde_json::json;

use gpu_cnn::checkpoint::{self, Checkpoint};
use gpu_cnn::data::{self, Mnist, Split};
use gpu_cnn::engine::{Engine, Metrics};
use gpu_cnn::gpu::ops::Family;
use gpu_cnn::gpu::{self, network::GpuNetwork, AdapterSelection, AdapterSummary, Gpu};
use gpu_cnn::model;
use gpu_cnn::train::{self, EpochReport, TrainConfig, TrainError};
use gpu_cnn::viz;

#[derive(Parser)]
#[command(
    name = "gpu-cnn",
    version,
    about = "A GPU-first CNN on MNIST: random weights vs backpropagation, every kernel a WGSL compute shader"
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
}

/// `--kernels`: a family, or `auto` (None: the adapter's default, or `GPU_CNN_KERNELS`).
fn parse_kernels(s: &str) -> Result<Family, String> {
    Family::parse(s)
}

/// Opens the selected adapter with `--kernels` over the `GPU_CNN_*` settings.
fn open_gpu(sel: &AdapterSelection, kernels: Option<Family>) -> Result<Gpu, gpu::GpuError> {
    let mut opts = gpu::OpenOptions::from_env()?;
    if kernels.is_some() {
        opts.family = kernels;
    }
    Gpu::open_with(sel, opts)
}

#[derive(Args, Clone)]
struct TrainArgs {
    #[command(flatten)]
    common: Common,
    /// Passes over the training set. 8 by default: the study's 98.89 % is passed by epoch 5 or so, but by a margin
    /// that rounding differences between adapters can eat; by epoch 8 it is passed with room to spare.
    #[arg(long, default_value_t = 8, value_parser = positive_usize)]
    epochs: usize,
    /// Images per SGD step.
    #[arg(long, default_value_t = 64, value_parser = positive_usize)]
    batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.01, value_parser = learning_rate, allow_negative_numbers = true)]
    lr: f64,
    /// SGD momentum μ (v ← μ·v + g; w ← w − lr·v).
    #[arg(long, default_value_t = 0.9, value_parser = momentum, allow_negative_numbers = true)]
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
        Command::Train(t) => train_cmd(&t),
        Command::Eval { common, checkpoint } => eval_cmd(&common, &checkpoint),
        Command::Compare(t) => compare_cmd(&t),
        Command::SaveLoop { path } => save_loop(&path),
        Command::Bench(b) => bench_cmd(&b),
        Command::BenchReport { files, plot, compare } => bench_report(&files, plot.as_deref(), compare.as_deref()),
        Command::Peak { adapter, backend, repeats, json } => peak_cmd(adapter, backend, repeats, json),
        Command::Check { adapter, backend, all_adapters, all_variants, quick, kernels, json } => {
            let opts = gpu_cnn::check::CheckOptions { all_variants, quick };
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
        gpu::enumerate(sel.backend).into_iter().map(|(s, a)| Gpu::open_adapter(s, a, env)).collect()
    } else {
        vec![Gpu::open_with(&sel, env)]
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
        let r = gpu_cnn::check::run(g, opts);
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
    let g = Gpu::open(&AdapterSelection { adapter, backend })?;
    info!("peak: {}", g.adapter.line());
    let r = gpu_cnn::peak::peak(&g, repeats)?;
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
    let all: Vec<AdapterSummary> = gpu::enumerate(backend).into_iter().map(|(s, _)| s).collect();
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

/// Where the run happens, for the output: an adapter, or the CPU reference.
fn device_json(adapter: &Option<AdapterSummary>) -> serde_json::Value {
    match adapter {
        Some(a) => {
            json!({"name": a.name, "vendor": a.vendor, "backend": a.backend, "device_type": a.device_type, "driver": a.driver, "driver_info": a.driver_info, "subgroups": a.subgroups})
        }
        None => {
            json!({"name": "CPU reference", "vendor": "", "backend": "cpu", "device_type": "cpu", "driver": "gpu-cnn reference", "driver_info": ""})
        }
    }
}

fn load_data(c: &Common) -> Result<Mnist> {
    let dir = c.data_dir.clone().unwrap_or_else(data::default_data_dir);
    let t0 = Instant::now();
    let d = data::load(&dir)?;
    info!(
        "data: {} ({} training, {} test images, {:.2} s)",
        dir.display(),
        d.train.len(),
        d.test.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(d)
}

/// Creates `--out-dir` if needed and proves it writable, before any long work starts.
fn prepare_out_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create output directory {}", dir.display()))?;
    let probe = dir.join(format!(".gpu-cnn-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"ok").with_context(|| format!("output directory {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Opens the requested engine: the chosen GPU adapter, or the CPU reference (asked for, or when there is no adapter).
fn open_engine(
    c: &Common,
    batch: usize,
    data: &Mnist,
    with_train: bool,
    params: &[f32],
) -> Result<(Box<dyn Engine>, Option<AdapterSummary>)> {
    let train = with_train.then_some(&data.train);
    if c.device == DeviceKind::Gpu {
        let sel = AdapterSelection { adapter: c.adapter.clone(), backend: c.backend };
        match open_gpu(&sel, c.kernels) {
            Ok(g) => {
                let summary = g.adapter.clone();
                info!("adapter: {}", summary.line());
                let net = GpuNetwork::new(g, batch, train, &data.test, params)?;
                info!("pipelines and data upload: {:.2} s", net.pipeline_seconds);
                return Ok((Box::new(net), Some(summary)));
            }
            Err(gpu::GpuError::NoAdapter { .. }) if c.adapter.is_none() && c.backend.is_none() => {
                warn!("no GPU adapter found (install mesa-vulkan-drivers for a software one); running on the CPU reference");
            }
            Err(e) => return Err(e.into()),
        }
    }
    info!("device: CPU reference");
    let cpu = gpu_cnn::cpu::CpuEngine::new(batch, train, &data.test, params);
    Ok((Box::new(cpu), None))
}

fn print_eval(label: &str, m: &Metrics) {
    info!(
        "{label}: test accuracy {:.2} % ({} / {}), test loss {:.4}",
        100.0 * m.accuracy(),
        m.correct,
        m.count,
        m.mean_loss()
    );
}

fn forward_only(c: &Common) -> Result<()> {
    prepare_out_dir(&c.out_dir)?;
    let data = load_data(c)?;
    let params = model::init_params(c.seed);
    let (mut engine, adapter) = open_engine(c, 64, &data, false, &params)?;
    let t0 = Instant::now();
    let (m, preds) = engine.evaluate()?;
    let secs = t0.elapsed().as_secs_f64();
    print_eval(&format!("forward-only (random weights, seed {})", c.seed), &m);
    info!("inference: {:.0} images/s ({:.3} s)", m.count as f64 / secs, secs);
    let mut pictures = filter_pictures(&c.out_dir, &params, None)?;
    pictures.extend(stage_pictures(&c.out_dir, "before", engine.as_mut(), &data.test, &preds)?);
    info!("pictures: {} in {}", pictures.join(", "), c.out_dir.display());
    if c.json {
        println!("{}", evaluation_json("forward-only", &adapter, &m, secs, Some(c.seed), None, &pictures));
    }
    Ok(())
}

/// The JSON of an evaluation, the same keys for `forward-only` and `eval`: the seed of the random weights or the
/// checkpoint they came from (the other null), and the pictures written (none for `eval`).
fn evaluation_json(
    command: &str,
    adapter: &Option<AdapterSummary>,
    m: &gpu_cnn::engine::Metrics,
    secs: f64,
    seed: Option<u64>,
    checkpoint: Option<&Path>,
    pictures: &[String],
) -> serde_json::Value {
    json!({"command": command, "adapter": device_json(adapter), "seed": seed,
           "checkpoint": checkpoint.map(|p| p.display().to_string()),
           "test_accuracy": m.accuracy(), "test_loss": m.mean_loss(), "test_images": m.count,
           "seconds": secs, "images_per_sec": m.count as f64 / secs, "pictures": pictures})
}

fn eval_cmd(c: &Common, path: &Path) -> Result<()> {
    let ckpt = checkpoint::load(path)?;
    let data = load_data(c)?;
    let (mut engine, adapter) = open_engine(c, 64, &data, false, &ckpt.params)?;
    let t0 = Instant::now();
    let (m, _) = engine.evaluate()?;
    let secs = t0.elapsed().as_secs_f64();
    print_eval(&format!("checkpoint {}", path.display()), &m);
    if c.json {
        println!("{}", evaluation_json("eval", &adapter, &m, secs, None, Some(path), &[]));
    }
    Ok(())
}

fn save_checkpoint(path: &Path, engine: &dyn Engine, cfg: &TrainConfig, epochs_done: usize) -> Result<()> {
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("format".to_string(), "gpu-cnn".to_string());
    metadata.insert("epochs_done".to_string(), epochs_done.to_string());
    metadata.insert("seed".to_string(), cfg.seed.to_string());
    metadata.insert("lr".to_string(), cfg.lr.to_string());
    metadata.insert("momentum".to_string(), cfg.momentum.to_string());
    metadata.insert("batch_size".to_string(), cfg.batch_size.to_string());
    let ckpt = Checkpoint { params: engine.params()?, momentum: Some(engine.momentum()?), metadata };
    checkpoint::save_training(path, &ckpt)?;
    info!(
        "saved {} (after epoch {epochs_done}; momentum in {})",
        path.display(),
        checkpoint::momentum_path(path).display()
    );
    Ok(())
}

/// Everything a training run produced, for the JSON output and the report.
struct RunOutcome {
    adapter: Option<AdapterSummary>,
    cfg: TrainConfig,
    before: Metrics,
    after: Metrics,
    epochs: Vec<EpochReport>,
    training_seconds: f64,
    picture_seconds: f64,
    pictures: Vec<String>,
}

/// Writes the pictures of one stage ("before" or "after" training) from the engine's current state: activation maps
/// and predictions of fixed test digits (one per class), and the confusion matrix of `preds`.
fn stage_pictures(
    out: &Path,
    stage: &str,
    engine: &mut dyn Engine,
    test: &Split,
    preds: &[u32],
) -> Result<Vec<String>> {
    let what = if stage == "before" { "random weights (forward-only)" } else { "after backpropagation" };
    let samples = viz::probe_samples(&test.labels);
    let probe = engine.probe(&samples)?;
    let labels: Vec<u8> = samples.iter().map(|&i| test.labels[i as usize]).collect();
    let names =
        [format!("activations_{stage}.png"), format!("predictions_{stage}.png"), format!("confusion_{stage}.png")];
    viz::activations_png(&out.join(&names[0]), &probe, &labels, &format!("Feature maps, {what}"))?;
    viz::predictions_png(&out.join(&names[1]), &probe, &labels, &format!("Predictions, {what}"))?;
    viz::confusion_png(&out.join(&names[2]), preds, &test.labels, &format!("Confusion matrix, {what}"))?;
    Ok(names.to_vec())
}

/// Filters before and after training on one shared colour scale (the larger of the two pictures' own scales), so the
/// two pictures compare at a glance.
fn filter_pictures(out: &Path, before: &[f32], after: Option<&[f32]>) -> Result<Vec<String>> {
    let (b_path, a_path) = (out.join("filters_before.png"), out.join("filters_after.png"));
    let b_title = "Filters, random weights (forward-only)";
    let scale_b = viz::filters_png(&b_path, before, b_title, None)?;
    let Some(after) = after else { return Ok(vec!["filters_before.png".into()]) };
    let a_title = "Filters after backpropagation";
    let scale_a = viz::filters_png(&a_path, after, a_title, None)?;
    let shared = scale_a.max(scale_b);
    viz::filters_png(&b_path, before, b_title, Some(shared))?;
    viz::filters_png(&a_path, after, a_title, Some(shared))?;
    Ok(vec!["filters_before.png".into(), "filters_after.png".into()])
}

fn train_cmd(t: &TrainArgs) -> Result<()> {
    let o = run_training(t)?;
    if t.common.json {
        println!("{}", outcome_json("train", &o));
    }
    Ok(())
}

fn outcome_json(command: &str, o: &RunOutcome) -> serde_json::Value {
    json!({"command": command, "adapter": device_json(&o.adapter), "hyperparameters": o.cfg,
           "forward_only_test_accuracy": o.before.accuracy(), "forward_only_test_loss": o.before.mean_loss(),
           "test_accuracy": o.after.accuracy(), "test_loss": o.after.mean_loss(),
           "training_seconds": o.training_seconds, "picture_seconds": o.picture_seconds,
           "pictures": o.pictures, "epochs": o.epochs})
}

fn run_training(t: &TrainArgs) -> Result<RunOutcome> {
    let c = &t.common;
    prepare_out_dir(&c.out_dir)?;
    if let Some(p) = &t.save {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            prepare_out_dir(dir).with_context(|| format!("--save {}", p.display()))?;
        }
    }
    let mut data = load_data(c)?;
    if let Some(n) = t.train_limit {
        data.train = data.train.take(n.min(data.train.len()));
    }
    let mut start_epoch = 0;
    let mut params = model::init_params(c.seed);
    let mut momentum_state = None;
    if let Some(p) = t.init.as_ref().or(t.resume.as_ref()) {
        let ck = if t.resume.is_some() { checkpoint::load_training(p)? } else { checkpoint::load(p)? };
        params = ck.params;
        if t.resume.is_some() {
            if ck.momentum.is_none() {
                bail!(
                    "--resume {}: no momentum state found (expected {}); use --init to start from its weights",
                    p.display(),
                    checkpoint::momentum_path(p).display()
                );
            }
            momentum_state = ck.momentum;
            start_epoch = ck.metadata.get("epochs_done").and_then(|s| s.parse().ok()).unwrap_or(0);
            info!("resuming from {} after epoch {start_epoch}", p.display());
        }
    }
    let cfg = TrainConfig {
        epochs: t.epochs,
        batch_size: t.batch_size,
        lr: t.lr,
        momentum: t.momentum,
        seed: c.seed,
        train_images: data.train.len(),
    };
    info!(
        "train: {} epochs, batch {}, SGD lr {} momentum {}, seed {}, {} training images",
        cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum, cfg.seed, cfg.train_images
    );
    if cfg.epochs <= start_epoch {
        bail!("nothing to train: the checkpoint is already at epoch {start_epoch} and --epochs is {}", cfg.epochs);
    }
    let (mut engine, adapter) = open_engine(c, t.batch_size, &data, true, &params)?;
    if let Some(m) = &momentum_state {
        engine.set_momentum(m)?;
    }

    let (before, preds_before) = engine.evaluate()?;
    print_eval("before training", &before);
    let mut picture_seconds = 0.0;
    let tp = Instant::now();
    let mut pictures = stage_pictures(&c.out_dir, "before", engine.as_mut(), &data.test, &preds_before)?;
    picture_seconds += tp.elapsed().as_secs_f64();
    let mut epochs: Vec<EpochReport> = Vec::new();
    let mut step_losses: Vec<f32> = Vec::new();
    let steps = engine.steps_per_epoch();
    let run_start = Instant::now();
    TRAINING.store(true, Ordering::SeqCst);
    for epoch in start_epoch..cfg.epochs {
        // The progress bar shows where messages do (not with -q).
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
        bar.set_prefix(format!("{}/{}", epoch + 1, cfg.epochs));
        let mut progress = |s: usize, m: &Metrics| {
            bar.set_position(s as u64);
            bar.set_message(format!("loss {:.4}", m.mean_loss()));
            !INTERRUPTED.load(Ordering::SeqCst)
        };
        let r = train::run_epoch(engine.as_mut(), &cfg, epoch, &data.train, &mut progress);
        bar.finish_and_clear();
        match r {
            Ok((report, losses)) => {
                info!(
                    "epoch {}: train loss {:.4}, test loss {:.4}, test accuracy {:.2} %, {:.2} s, {:.0} images/s",
                    report.epoch,
                    report.train_loss,
                    report.test_loss,
                    100.0 * report.test_accuracy,
                    report.seconds,
                    report.images_per_sec
                );
                epochs.push(report);
                step_losses.extend(losses);
                if let Some(p) = &t.save {
                    save_checkpoint(p, engine.as_ref(), &cfg, epoch + 1)?;
                }
            }
            Err(e) => {
                if let Some(TrainError::Interrupted { step, .. }) = e.downcast_ref::<TrainError>() {
                    if let Some(p) = &t.save {
                        info!("interrupted: saving the weights after step {step} of epoch {}", epoch + 1);
                        save_checkpoint(p, engine.as_ref(), &cfg, epoch)?;
                    }
                    // The pictures of the network as it stands (Ctrl-C again skips them and quits at once).
                    info!("interrupted: writing the pictures of the network as it stands");
                    let (_, preds) = engine.evaluate()?;
                    filter_pictures(&c.out_dir, &params, Some(&engine.params()?))?;
                    stage_pictures(&c.out_dir, "after", engine.as_mut(), &data.test, &preds)?;
                    if !epochs.is_empty() {
                        viz::curves_png(
                            &c.out_dir.join("curves.png"),
                            &step_losses,
                            steps,
                            &epochs,
                            before.accuracy(),
                        )?;
                        train::write_logs(&c.out_dir, &step_losses, steps, &epochs)?;
                    }
                } else if t.save.is_some() {
                    info!("the last good checkpoint is kept; nothing was written over it");
                }
                return Err(e);
            }
        }
    }
    TRAINING.store(false, Ordering::SeqCst);
    let training_seconds = run_start.elapsed().as_secs_f64();
    let (after, preds_after) = engine.evaluate()?;
    print_eval("after training", &after);
    info!("training time: {:.1} s", training_seconds);
    let tp = Instant::now();
    let after_params = engine.params()?;
    let mut names = filter_pictures(&c.out_dir, &params, Some(&after_params))?;
    names.extend(stage_pictures(&c.out_dir, "after", engine.as_mut(), &data.test, &preds_after)?);
    viz::curves_png(&c.out_dir.join("curves.png"), &step_losses, steps, &epochs, before.accuracy())?;
    names.push("curves.png".into());
    names.extend(train::write_logs(&c.out_dir, &step_losses, steps, &epochs)?);
    pictures.extend(names);
    picture_seconds += tp.elapsed().as_secs_f64();
    info!("pictures: {} files in {} ({:.2} s)", pictures.len(), c.out_dir.display(), picture_seconds);
    Ok(RunOutcome { adapter, cfg, before, after, epochs, training_seconds, picture_seconds, pictures })
}

fn compare_cmd(t: &TrainArgs) -> Result<()> {
    let o = run_training(t)?;
    let device_line = o.adapter.as_ref().map_or("CPU reference".to_string(), |a| a.line());
    let report = gpu_cnn::report::StudyReport {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        date: gpu_cnn::bench::utc_now(),
        gpu_cnn_commit: env!("GPU_CNN_GIT_COMMIT").to_string(),
        device_line,
        adapter: device_json(&o.adapter),
        hyperparameters: o.cfg.clone(),
        forward_only_test_accuracy: o.before.accuracy(),
        forward_only_test_loss: o.before.mean_loss(),
        test_accuracy: o.after.accuracy(),
        test_loss: o.after.mean_loss(),
        epochs: o.epochs.clone(),
        training_seconds: o.training_seconds,
        picture_seconds: o.picture_seconds,
        pictures: o.pictures.clone(),
    };
    report
        .write(&t.common.out_dir)
        .with_context(|| format!("writing the report into {}", t.common.out_dir.display()))?;
    // The result: the study's table on stdout (with --json, the JSON there and the table on stderr).
    let table = format!(
        "| | forward-only (random weights) | backpropagation (trained) |\n|---|---|---|\n\
         | test accuracy | {:.2} % (study: {:.2} %) | {:.2} % (study: {:.2} %) |\n| test loss | {:.4} | {:.4} |",
        100.0 * o.before.accuracy(),
        100.0 * gpu_cnn::report::STUDY_FORWARD_ONLY_ACCURACY,
        100.0 * o.after.accuracy(),
        100.0 * gpu_cnn::report::STUDY_TRAINED_ACCURACY,
        o.before.mean_loss(),
        o.after.mean_loss()
    );
    info!("report: {}", t.common.out_dir.join("report.md").display());
    if t.common.json {
        info!("\n{table}");
        println!("{}", outcome_json("compare", &o));
    } else {
        println!("\n{table}");
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
    };
    let mut results = Vec::new();
    if b.all_adapters {
        let all = gpu::enumerate(b.backend);
        if all.is_empty() {
            info!("no GPU adapter found; benchmarking the CPU reference only");
        }
        for (summary, adapter) in all {
            info!("bench: {}", summary.line());
            let mut opts = gpu::OpenOptions::from_env()?;
            if b.kernels.is_some() {
                opts.family = b.kernels;
            }
            match Gpu::open_adapter(summary.clone(), adapter, opts)
                .map_err(anyhow::Error::from)
                .and_then(|g| gpu_cnn::bench::bench_gpu(g, &data, &cfg))
            {
                Ok(r) => results.extend(r),
                Err(e) => info!("bench: {} failed: {}", summary.line(), one_line(&e)),
            }
        }
        info!("bench: CPU reference");
        results.extend(gpu_cnn::bench::bench_cpu(&data, &cfg)?);
    } else {
        let g = open_gpu(&AdapterSelection { adapter: b.adapter.clone(), backend: b.backend }, b.kernels)?;
        info!("bench: {}", g.adapter.line());
        results.extend(gpu_cnn::bench::bench_gpu(g, &data, &cfg)?);
    }
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

fn read_results(f: &Path) -> Result<Vec<gpu_cnn::bench::BenchResult>> {
    let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a `gpu-cnn bench --json` result", f.display()))
}

fn bench_report(files: &[PathBuf], plot: Option<&Path>, compare: Option<&[PathBuf]>) -> Result<()> {
    if let Some([old, new]) = compare {
        let (old_rs, new_rs) = (read_results(old)?, read_results(new)?);
        let mut pairs = Vec::new();
        for n in &new_rs {
            let key = |r: &gpu_cnn::bench::BenchResult| (r.device.name.clone(), r.device.backend.clone(), r.batch_size);
            if let Some(o) = old_rs.iter().find(|o| key(o) == key(n)) {
                pairs.push((o.clone(), n.clone()));
            }
        }
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
        all.extend(read_results(f)?);
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
    let mut params = model::init_params(1);
    for i in 0u64.. {
        params[0] = i as f32;
        let mut metadata = std::collections::BTreeMap::new();
        metadata.insert("iteration".to_string(), i.to_string());
        checkpoint::save(path, &Checkpoint { params: params.clone(), momentum: None, metadata })?;
        if i == 0 {
            eprintln!("saving");
        }
    }
    Ok(())
}
