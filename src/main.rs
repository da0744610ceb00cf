//! `gpu-cnn`: the command line. Subcommands, flags, human output on stderr and `--json` on stdout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

use gpu_cnn::checkpoint::{self, Checkpoint};
use gpu_cnn::data::{self, Mnist};
use gpu_cnn::engine::{Engine, Metrics};
use gpu_cnn::gpu::{self, network::GpuNetwork, AdapterSelection, AdapterSummary, Gpu};
use gpu_cnn::model;
use gpu_cnn::train::{self, EpochReport, TrainConfig, TrainError};

#[derive(Parser)]
#[command(
    name = "gpu-cnn",
    version,
    about = "A GPU-first CNN on MNIST: random weights vs backpropagation, every kernel a WGSL compute shader"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
}

#[derive(Args, Clone)]
struct TrainArgs {
    #[command(flatten)]
    common: Common,
    /// Passes over the training set.
    #[arg(long, default_value_t = 5, value_parser = positive_usize)]
    epochs: usize,
    /// Images per SGD step.
    #[arg(long, default_value_t = 64, value_parser = positive_usize)]
    batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.01, value_parser = learning_rate, allow_negative_numbers = true)]
    lr: f32,
    /// SGD momentum μ (v ← μ·v + g; w ← w − lr·v).
    #[arg(long, default_value_t = 0.9, value_parser = momentum, allow_negative_numbers = true)]
    momentum: f32,
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

fn positive_usize(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("`{s}` is not a positive whole number")),
    }
}

fn learning_rate(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(v) => Err(format!("must be a finite number > 0, got {v}")),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

fn momentum(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("must be in [0, 1), got {v}")),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
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
    }
}

fn adapters(backend: Option<wgpu::Backend>, json: bool) -> Result<()> {
    let all: Vec<AdapterSummary> = gpu::enumerate(backend).into_iter().map(|(s, _)| s).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    if all.is_empty() {
        eprintln!("no GPU adapter found. On Debian/Ubuntu, `apt-get install mesa-vulkan-drivers` provides a software Vulkan adapter (lavapipe); `--device cpu` runs on the CPU reference.");
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
            json!({"name": a.name, "vendor": a.vendor, "backend": a.backend, "device_type": a.device_type, "driver": a.driver, "driver_info": a.driver_info})
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
    eprintln!(
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
        match Gpu::open(&sel) {
            Ok(g) => {
                let summary = g.adapter.clone();
                eprintln!("adapter: {}", summary.line());
                let net = GpuNetwork::new(g, batch, train, &data.test, params)?;
                eprintln!("pipelines and data upload: {:.2} s", net.pipeline_seconds);
                return Ok((Box::new(net), Some(summary)));
            }
            Err(gpu::GpuError::NoAdapter { .. }) if c.adapter.is_none() && c.backend.is_none() => {
                eprintln!("warning: no GPU adapter found (install mesa-vulkan-drivers for a software one); running on the CPU reference");
            }
            Err(e) => return Err(e.into()),
        }
    }
    eprintln!("device: CPU reference");
    let cpu = gpu_cnn::cpu::CpuEngine::new(batch, train, &data.test, params);
    Ok((Box::new(cpu), None))
}

fn print_eval(label: &str, m: &Metrics) {
    eprintln!(
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
    let (m, _) = engine.evaluate()?;
    let secs = t0.elapsed().as_secs_f64();
    print_eval(&format!("forward-only (random weights, seed {})", c.seed), &m);
    eprintln!("inference: {:.0} images/s ({:.3} s)", m.count as f64 / secs, secs);
    if c.json {
        println!(
            "{}",
            json!({"command": "forward-only", "adapter": device_json(&adapter), "seed": c.seed,
                   "test_accuracy": m.accuracy(), "test_loss": m.mean_loss(), "test_images": m.count,
                   "seconds": secs, "images_per_sec": m.count as f64 / secs})
        );
    }
    Ok(())
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
        println!(
            "{}",
            json!({"command": "eval", "checkpoint": path.display().to_string(), "adapter": device_json(&adapter),
                   "test_accuracy": m.accuracy(), "test_loss": m.mean_loss(), "test_images": m.count,
                   "seconds": secs, "images_per_sec": m.count as f64 / secs})
        );
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
    eprintln!(
        "saved {} (after epoch {epochs_done}; momentum in {})",
        path.display(),
        checkpoint::momentum_path(path).display()
    );
    Ok(())
}

fn train_cmd(t: &TrainArgs) -> Result<()> {
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
            eprintln!("resuming from {} after epoch {start_epoch}", p.display());
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
    eprintln!(
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

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }

    let (before, _) = engine.evaluate()?;
    print_eval("before training", &before);
    let mut epochs: Vec<EpochReport> = Vec::new();
    let mut step_losses: Vec<f32> = Vec::new();
    let steps = engine.steps_per_epoch();
    let run_start = Instant::now();
    for epoch in start_epoch..cfg.epochs {
        let bar = indicatif::ProgressBar::new(steps as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} steps, {msg} ({elapsed}, eta {eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, cfg.epochs));
        let flag = interrupted.clone();
        let mut progress = |s: usize, m: &Metrics| {
            bar.set_position(s as u64);
            bar.set_message(format!("loss {:.4}", m.mean_loss()));
            !flag.load(Ordering::SeqCst)
        };
        let r = train::run_epoch(engine.as_mut(), &cfg, epoch, &data.train, &mut progress);
        bar.finish_and_clear();
        match r {
            Ok((report, losses)) => {
                eprintln!(
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
                if let Some(TrainError::Interrupted { .. }) = e.downcast_ref::<TrainError>() {
                    if let Some(p) = &t.save {
                        eprintln!("interrupted: saving the weights of the last completed step");
                        save_checkpoint(p, engine.as_ref(), &cfg, epoch)?;
                    }
                } else if t.save.is_some() {
                    eprintln!("the last good checkpoint is kept; nothing was written over it");
                }
                return Err(e);
            }
        }
    }
    let total = run_start.elapsed().as_secs_f64();
    let (after, _) = engine.evaluate()?;
    print_eval("after training", &after);
    eprintln!("training time: {:.1} s", total);
    if c.json {
        println!(
            "{}",
            json!({"command": "train", "adapter": device_json(&adapter), "hyperparameters": cfg,
                   "forward_only_test_accuracy": before.accuracy(), "forward_only_test_loss": before.mean_loss(),
                   "test_accuracy": after.accuracy(), "test_loss": after.mean_loss(),
                   "training_seconds": total, "epochs": epochs})
        );
    }
    Ok(())
}
