//! The study's runs as library calls, everything the `gpu-cnn` commands do short of parsing arguments and printing:
//! [`forward_only`] (random weights), [`evaluate_checkpoint`], [`train`] (epochs, checkpoints after each, resume,
//! Ctrl-C through [`Progress`], pictures and logs) and, in `report`, `compare`'s `report.md` and `report.json`.
//! `examples/train.rs` uses them on their own. They are async, for the browser (`web/`); natively
//! `pollster::block_on` runs them to the end.
//!
//! ```no_run
//! use gpu_cnn::study::{self, DeviceChoice, TrainOptions};
//! let data = study::load_data(None)?;
//! let opts = TrainOptions { epochs: 1, ..Default::default() };
//! let run = pollster::block_on(study::train(&DeviceChoice::default(), &data, &opts, &mut ()))?;
//! println!("{:.2} % after {} epoch(s) on {}", 100.0 * run.test_accuracy, run.epochs.len(), run.adapter.line());
//! # anyhow::Ok(())
//! ```

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use web_time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use log::{info, warn};
use serde::Serialize;

use crate::checkpoint::{self, Checkpoint};
use crate::cpu::CpuEngine;
use crate::data::{self, Mnist, Split};
use crate::device::DeviceInfo;
use crate::engine::{Engine, Metrics};
use crate::gpu::network::GpuNetwork;
use crate::gpu::ops::Family;
use crate::gpu::{AdapterSelection, Gpu, GpuError, OpenOptions};
use crate::model::{self, Arch, Normalization};
use crate::train::{self, EpochReport, TrainConfig, TrainError};
use crate::viz;

/// Where a run happens.
#[derive(Clone, Debug)]
pub enum DeviceChoice {
    /// A GPU adapter through wgpu, with a kernel family (None: the adapter's default or `GPU_CNN_KERNELS`). With no
    /// adapter selected and none found, the run falls back to the CPU reference (with a warning).
    Gpu { selection: AdapterSelection, kernels: Option<Family> },
    /// The CPU reference (`reference::network`).
    Cpu,
}

impl Default for DeviceChoice {
    fn default() -> Self {
        DeviceChoice::Gpu { selection: AdapterSelection::default(), kernels: None }
    }
}

/// Opens the selected adapter with the `GPU_CNN_*` settings, `kernels` taking precedence over `GPU_CNN_KERNELS`.
pub async fn open_gpu(selection: &AdapterSelection, kernels: Option<Family>) -> Result<Gpu, GpuError> {
    let mut opts = OpenOptions::from_env()?;
    if kernels.is_some() {
        opts.family = kernels;
    }
    Gpu::open_with(selection, opts).await
}

/// Loads MNIST from `dir` (default: `data::default_data_dir`), saying where from and how long it took.
pub fn load_data(dir: Option<&Path>) -> Result<Mnist> {
    let dir = dir.map_or_else(data::default_data_dir, Path::to_path_buf);
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

/// Creates an output directory if needed and proves it writable, before any long work starts. (In a browser the
/// files go to the page: see `atomic::write_atomic`.)
#[cfg(target_arch = "wasm32")]
pub fn prepare_out_dir(_dir: &Path) -> Result<()> {
    Ok(())
}

/// Creates an output directory if needed and proves it writable, before any long work starts.
#[cfg(not(target_arch = "wasm32"))]
pub fn prepare_out_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create output directory {}", dir.display()))?;
    let probe = dir.join(format!(".gpu-cnn-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"ok").with_context(|| format!("output directory {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// `arch` (the study's if None) on the images of `data`: the same layers, the data's input shape. An architecture that
/// names another input shape than MNIST's (`3x32x32:…`) must name the data's.
pub fn arch_for_data(arch: Option<&Arch>, data: &Mnist) -> Result<Arch> {
    let arch = arch.cloned().unwrap_or_default();
    let shape = data.shape();
    if arch.input() != model::ImageShape::MNIST && arch.input() != shape {
        bail!("--arch {arch} reads {} images, the data's are {shape}", arch.input());
    }
    arch.with_input(shape).map_err(|e| anyhow!(e))
}

/// The engine for `device` running `arch` with `params`: training batches of `batch` from `train` (if given), and
/// evaluation on `test`.
pub async fn open_engine(
    device: &DeviceChoice,
    arch: &Arch,
    batch: usize,
    train: Option<&Split>,
    test: &Split,
    params: &[f32],
) -> Result<Engines> {
    if test.shape != arch.input() {
        bail!(
            "{arch} reads {} images, the data's are {} (a checkpoint trained on other data?)",
            arch.input(),
            test.shape
        );
    }
    if let DeviceChoice::Gpu { selection, kernels } = device {
        match open_gpu(selection, *kernels).await {
            Ok(g) => {
                info!("adapter: {}", g.adapter.line());
                let net = GpuNetwork::new(g, arch, batch, train, test, params)?;
                info!("pipelines and data upload: {:.2} s", net.pipeline_seconds);
                return Ok(Engines::Gpu(net));
            }
            Err(GpuError::NoAdapter { .. }) if selection.adapter.is_none() && selection.backend.is_none() => {
                warn!("no GPU adapter found (install mesa-vulkan-drivers for a software one); running on the CPU reference");
            }
            Err(e) => return Err(e.into()),
        }
    }
    info!("device: CPU reference");
    Ok(Engines::Cpu(CpuEngine::new(arch, batch, train, test, params)))
}

/// The engine a run got: a GPU, or the CPU reference.
#[allow(clippy::large_enum_variant)] // one per run, never moved in a loop
pub enum Engines {
    Gpu(GpuNetwork),
    Cpu(CpuEngine),
}

/// `body` with `e` bound to whichever engine `engines` holds (both implement `Engine`).
macro_rules! either {
    ($engines:expr, $e:ident => $body:expr) => {
        match $engines {
            Engines::Gpu($e) => $body,
            Engines::Cpu($e) => $body,
        }
    };
}

impl Engine for Engines {
    fn device(&self) -> DeviceInfo {
        either!(self, e => Engine::device(e))
    }
    fn arch(&self) -> &Arch {
        either!(self, e => Engine::arch(e))
    }
    async fn train_epoch(
        &mut self,
        order: &[u32],
        lr: f32,
        momentum: f32,
        progress: &mut dyn FnMut(usize, &Metrics) -> bool,
    ) -> Result<(Metrics, Vec<f32>)> {
        either!(self, e => Engine::train_epoch(e, order, lr, momentum, progress).await)
    }
    async fn evaluate(&mut self) -> Result<(Metrics, Vec<u32>)> {
        either!(self, e => Engine::evaluate(e).await)
    }
    async fn probe(&mut self, samples: &[u32]) -> Result<crate::engine::Probe> {
        either!(self, e => Engine::probe(e, samples).await)
    }
    fn steps_per_epoch(&self) -> usize {
        either!(self, e => Engine::steps_per_epoch(e))
    }
    async fn params(&self) -> Result<Vec<f32>> {
        either!(self, e => Engine::params(e).await)
    }
    fn set_params(&mut self, params: &[f32]) -> Result<()> {
        either!(self, e => Engine::set_params(e, params))
    }
    async fn momentum(&self) -> Result<Vec<f32>> {
        either!(self, e => Engine::momentum(e).await)
    }
    fn set_momentum(&mut self, momentum: &[f32]) -> Result<()> {
        either!(self, e => Engine::set_momentum(e, momentum))
    }
}

/// One evaluation on the test set, as `forward-only --json` and `eval --json` print it (the same keys).
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    /// "forward-only" or "eval".
    pub command: String,
    pub adapter: DeviceInfo,
    /// The network (`Arch::describe`).
    pub arch: String,
    /// The seed of the random weights (forward-only), or None.
    pub seed: Option<u64>,
    /// The checkpoint evaluated (eval), or None.
    pub checkpoint: Option<String>,
    pub test_accuracy: f64,
    pub test_loss: f64,
    pub test_images: usize,
    pub seconds: f64,
    pub images_per_sec: f64,
    /// Files written into the output directory (none for eval).
    pub pictures: Vec<String>,
}

async fn evaluation(engine: &mut impl Engine, label: &str) -> Result<(Metrics, Vec<u32>, f64)> {
    let t0 = Instant::now();
    let (m, preds) = engine.evaluate().await?;
    let secs = t0.elapsed().as_secs_f64();
    log_metrics(label, &m);
    Ok((m, preds, secs))
}

fn log_metrics(label: &str, m: &Metrics) {
    info!(
        "{label}: test accuracy {:.2} % ({} / {}), test loss {:.4}",
        100.0 * m.accuracy(),
        m.correct,
        m.count,
        m.mean_loss()
    );
}

/// The study's first half: `arch` with random weights from `seed`, evaluated on the test set (chance, about 10 %),
/// with the pictures of its filters, activations, predictions and confusion matrix written into `out_dir`.
pub async fn forward_only(
    device: &DeviceChoice,
    data: &Mnist,
    arch: &Arch,
    seed: u64,
    out_dir: &Path,
) -> Result<Evaluation> {
    let arch = &arch_for_data(Some(arch), data)?;
    prepare_out_dir(out_dir)?;
    let params = model::init_params(arch, seed);
    let mut engine = open_engine(device, arch, 64, None, &data.test, &params).await?;
    let (m, preds, secs) = evaluation(&mut engine, &format!("forward-only (random weights, seed {seed})")).await?;
    info!("inference: {:.0} images/s ({:.3} s)", m.count as f64 / secs, secs);
    let mut pictures = filter_pictures(out_dir, arch, &params, None)?;
    pictures.extend(stage_pictures(out_dir, "before", &mut engine, &data.test, &preds).await?);
    info!("pictures: {} in {}", pictures.join(", "), out_dir.display());
    Ok(Evaluation {
        command: "forward-only".into(),
        adapter: engine.device(),
        arch: arch.describe(),
        seed: Some(seed),
        checkpoint: None,
        test_accuracy: m.accuracy(),
        test_loss: m.mean_loss(),
        test_images: m.count,
        seconds: secs,
        images_per_sec: m.count as f64 / secs,
        pictures,
    })
}

/// The weights of a checkpoint (gpu-cnn's or PyTorch's, see `checkpoint`) evaluated on the test set, with the
/// checkpoint's own architecture, which must be `arch` if that is given.
pub async fn evaluate_checkpoint(
    device: &DeviceChoice,
    data: &Mnist,
    arch: Option<&Arch>,
    path: &Path,
) -> Result<Evaluation> {
    let arch = arch.map(|a| arch_for_data(Some(a), data)).transpose()?;
    let ckpt = checkpoint::load(path, arch.as_ref())?;
    let test = normalized_as(&data.test, trained_norm(&ckpt, path, data.train.norm)?);
    let mut engine = open_engine(device, &ckpt.arch, 64, None, &test, &ckpt.params).await?;
    let (m, _, secs) = evaluation(&mut engine, &format!("checkpoint {}", path.display())).await?;
    Ok(Evaluation {
        command: "eval".into(),
        adapter: engine.device(),
        arch: ckpt.arch.describe(),
        seed: None,
        checkpoint: Some(path.display().to_string()),
        test_accuracy: m.accuracy(),
        test_loss: m.mean_loss(),
        test_images: m.count,
        seconds: secs,
        images_per_sec: m.count as f64 / secs,
        pictures: Vec::new(),
    })
}

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
    fn default() -> Self {
        TrainOptions {
            arch: None,
            epochs: DEFAULT_EPOCHS,
            batch_size: DEFAULT_BATCH_SIZE,
            lr: DEFAULT_LR,
            momentum: DEFAULT_MOMENTUM,
            seed: model::DEFAULT_SEED,
            train_limit: None,
            init: None,
            resume: None,
            save: None,
            out_dir: PathBuf::from("outputs"),
        }
    }
}

/// What a caller sees of a training run as it goes (a progress bar, Ctrl-C). Every method has a default that does
/// nothing; `()` is the observer that shows nothing and never stops.
pub trait Progress {
    /// Epoch `epoch` (0-based) of `epochs` begins; it has `steps` steps.
    fn epoch_started(&mut self, _epoch: usize, _epochs: usize, _steps: usize) {}
    /// Now and then during an epoch: the steps done and the running metrics. Returning false stops the run after the
    /// steps in flight, as Ctrl-C does: the training state (with `save`) and the pictures of the network as it stands
    /// are written, and `train` returns `TrainError::Interrupted`.
    fn step(&mut self, _done: usize, _running: &Metrics) -> bool {
        true
    }
    /// The epoch's steps are over (before its evaluation and checkpoint).
    fn epoch_ended(&mut self) {}
    /// The epoch is evaluated: its report.
    fn epoch_report(&mut self, _report: &EpochReport) {}
    /// Whether to write the pictures of the network as it stands after every epoch (`filters_after.png`,
    /// `activations_after.png`), for a display that shows training as it goes (the web page).
    fn live_pictures(&self) -> bool {
        false
    }
    /// No more epochs: what follows is the final evaluation and the pictures.
    fn epochs_finished(&mut self) {}
}

impl Progress for () {}

/// Everything a training run produced.
#[derive(Clone, Debug, Serialize)]
pub struct TrainOutcome {
    pub adapter: DeviceInfo,
    /// The network (`Arch::describe`).
    pub arch: String,
    pub hyperparameters: TrainConfig,
    /// The starting weights' test accuracy and loss (random weights unless `init`/`resume`).
    pub forward_only_test_accuracy: f64,
    pub forward_only_test_loss: f64,
    pub test_accuracy: f64,
    pub test_loss: f64,
    /// The test images both evaluations ran on (all of the test set unless `--test-limit`).
    pub test_images: usize,
    pub training_seconds: f64,
    pub picture_seconds: f64,
    /// Files written into the output directory: pictures, `steps.csv`, `epochs.jsonl`.
    pub pictures: Vec<String>,
    pub epochs: Vec<EpochReport>,
    /// The study's network on MNIST's test set: only then are the study's numbers shown beside this run's.
    pub study_setting: bool,
}

/// Checkpoint metadata keys of the input normalization the weights were trained with.
const MEAN_KEY: &str = "input_mean";
const STD_KEY: &str = "input_std";

/// The input normalization the checkpoint at `path` was trained with, where it says (PyTorch's and older files do not)
/// and it differs from `data`'s own (said in the log): what the data must be normalized as for these weights.
fn trained_norm(ck: &Checkpoint, path: &Path, data: Normalization) -> Result<Option<Normalization>> {
    let value = |key: &str| -> Result<Option<f32>> {
        let Some(s) = ck.metadata.get(key) else { return Ok(None) };
        match s.parse::<f32>() {
            Ok(v) if v.is_finite() && (key != STD_KEY || v > 0.0) => Ok(Some(v)),
            _ => bail!("checkpoint {}: its `{key}` metadata `{s}` is not a valid number", path.display()),
        }
    };
    let n = match (value(MEAN_KEY)?, value(STD_KEY)?) {
        (Some(mean), Some(std)) => Normalization { mean, std },
        _ => return Ok(None),
    };
    if n == data {
        return Ok(None);
    }
    info!(
        "inputs normalized as {} was trained (mean {}, std {}); this data's own would be (mean {}, std {})",
        path.display(),
        n.mean,
        n.std,
        data.mean,
        data.std
    );
    Ok(Some(n))
}

/// `split`, or a copy normalized as `norm` (a checkpoint's, from [`trained_norm`]): weights see their inputs as they
/// were trained on them.
fn normalized_as(split: &Split, norm: Option<Normalization>) -> Cow<'_, Split> {
    match norm {
        Some(norm) => Cow::Owned(Split { norm, ..split.clone() }),
        None => Cow::Borrowed(split),
    }
}

/// The checkpoint metadata of a training state after `epochs_done` epochs, trained on inputs normalized as `norm`.
fn metadata(cfg: &TrainConfig, epochs_done: usize, norm: Normalization) -> std::collections::BTreeMap<String, String> {
    [
        ("format", "gpu-cnn".to_string()),
        ("epochs_done", epochs_done.to_string()),
        ("seed", cfg.seed.to_string()),
        ("lr", cfg.lr.to_string()),
        ("momentum", cfg.momentum.to_string()),
        ("batch_size", cfg.batch_size.to_string()),
        (MEAN_KEY, norm.mean.to_string()),
        (STD_KEY, norm.std.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

async fn save_state(
    path: &Path,
    engine: &impl Engine,
    cfg: &TrainConfig,
    epochs_done: usize,
    norm: Normalization,
) -> Result<()> {
    let metadata = metadata(cfg, epochs_done, norm);
    let ckpt = Checkpoint { arch: engine.arch().clone(), params: engine.params().await?, metadata };
    checkpoint::save_training(path, &ckpt, &engine.momentum().await?)?;
    info!(
        "saved {} (after epoch {epochs_done}; momentum in {})",
        path.display(),
        checkpoint::momentum_path(path).display()
    );
    Ok(())
}

/// Where a run starts: the network, its weights, the momentum (when resuming) and the epochs already done.
struct Start {
    arch: Arch,
    params: Vec<f32>,
    momentum: Option<Vec<f32>>,
    epochs_done: usize,
    /// The input normalization the starting weights were trained with, if their checkpoint says.
    norm: Option<Normalization>,
}

fn starting_point(opts: &TrainOptions, data: &Mnist) -> Result<Start> {
    let requested = opts.arch.as_ref().map(|a| arch_for_data(Some(a), data)).transpose()?;
    if let Some(p) = &opts.resume {
        let (ck, momentum) = checkpoint::load_training(p, requested.as_ref())?;
        let Some(momentum) = momentum else {
            bail!(
                "--resume {}: no momentum state found (expected {}); use --init to start from its weights",
                p.display(),
                checkpoint::momentum_path(p).display()
            );
        };
        let done = ck.metadata.get("epochs_done").and_then(|s| s.parse().ok()).unwrap_or(0);
        info!("resuming from {} after epoch {done}", p.display());
        let norm = trained_norm(&ck, p, data.train.norm)?;
        return Ok(Start { arch: ck.arch, params: ck.params, momentum: Some(momentum), epochs_done: done, norm });
    }
    if let Some(p) = &opts.init {
        let ck = checkpoint::load(p, requested.as_ref())?;
        let norm = trained_norm(&ck, p, data.train.norm)?;
        return Ok(Start { arch: ck.arch, params: ck.params, momentum: None, epochs_done: 0, norm });
    }
    let arch = match requested {
        Some(a) => a,
        None => arch_for_data(None, data)?,
    };
    let params = model::init_params(&arch, opts.seed);
    Ok(Start { arch, params, momentum: None, epochs_done: 0, norm: None })
}

/// Trains the network with backpropagation and SGD: evaluates the starting weights, runs the epochs (evaluating and
/// saving after each), then writes every picture (filters before and after on one scale, activations, predictions,
/// confusion matrices, curves) and `steps.csv` / `epochs.jsonl` into `opts.out_dir`.
///
/// Stopped through `progress` (Ctrl-C), it saves the state after the last finished step (with `save`), writes the
/// pictures of the network as it stands and returns `TrainError::Interrupted`. A diverged run returns
/// `TrainError::NonFinite` and leaves the last good checkpoint untouched.
pub async fn train(
    device: &DeviceChoice,
    data: &Mnist,
    opts: &TrainOptions,
    progress: &mut dyn Progress,
) -> Result<TrainOutcome> {
    let out = opts.out_dir.as_path();
    prepare_out_dir(out)?;
    if let Some(p) = &opts.save {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            prepare_out_dir(dir).with_context(|| format!("--save {}", p.display()))?;
        }
    }
    let Start { arch, params, momentum, epochs_done: start_epoch, norm } = starting_point(opts, data)?;
    let (train_all, test) = (normalized_as(&data.train, norm), normalized_as(&data.test, norm));
    let limited;
    let train_split = match opts.train_limit {
        Some(n) => {
            limited = train_all.take(n.min(train_all.len()));
            &limited
        }
        None => &*train_all,
    };
    let cfg = TrainConfig {
        epochs: opts.epochs,
        batch_size: opts.batch_size,
        lr: opts.lr,
        momentum: opts.momentum,
        seed: opts.seed,
        train_images: train_split.len(),
    };
    info!(
        "train: {arch}, {} epochs, batch {}, SGD lr {} momentum {}, seed {}, {} training images",
        cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum, cfg.seed, cfg.train_images
    );
    if cfg.epochs <= start_epoch {
        bail!("nothing to train: the checkpoint is already at epoch {start_epoch} and --epochs is {}", cfg.epochs);
    }
    let mut engine = open_engine(device, &arch, cfg.batch_size, Some(train_split), &test, &params).await?;
    if let Some(m) = &momentum {
        engine.set_momentum(m)?;
    }

    let (before, preds_before, _) = evaluation(&mut engine, "before training").await?;
    let tp = Instant::now();
    let mut pictures = stage_pictures(out, "before", &mut engine, &test, &preds_before).await?;
    let mut picture_seconds = tp.elapsed().as_secs_f64();
    let mut epochs: Vec<EpochReport> = Vec::new();
    let mut step_losses: Vec<f32> = Vec::new();
    let steps = engine.steps_per_epoch();
    let run_start = Instant::now();
    for epoch in start_epoch..cfg.epochs {
        progress.epoch_started(epoch, cfg.epochs, steps);
        let r = train::run_epoch(&mut engine, &cfg, epoch, train_split, &mut |s, m| progress.step(s, m)).await;
        progress.epoch_ended();
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
                progress.epoch_report(&report);
                epochs.push(report);
                step_losses.extend(losses);
                if progress.live_pictures() && epoch + 1 < cfg.epochs {
                    filter_pictures(out, &arch, &params, Some(&engine.params().await?))?;
                    let samples = viz::probe_samples(&test.labels);
                    let probe = engine.probe(&samples).await?;
                    let labels: Vec<u8> = samples.iter().map(|&i| test.labels[i as usize]).collect();
                    let title = format!("Feature maps after epoch {}", epoch + 1);
                    viz::activations_png(&out.join("activations_after.png"), &probe, &labels, &title)?;
                }
                if let Some(p) = &opts.save {
                    save_state(p, &engine, &cfg, epoch + 1, train_split.norm).await?;
                }
            }
            Err(e) => {
                progress.epochs_finished();
                if let Some(TrainError::Interrupted { step, .. }) = e.downcast_ref::<TrainError>() {
                    if let Some(p) = &opts.save {
                        info!("interrupted: saving the weights after step {step} of epoch {}", epoch + 1);
                        save_state(p, &engine, &cfg, epoch, train_split.norm).await?;
                    }
                    // The pictures of the network as it stands (Ctrl-C again skips them and quits at once).
                    info!("interrupted: writing the pictures of the network as it stands");
                    let (_, preds) = engine.evaluate().await?;
                    filter_pictures(out, &arch, &params, Some(&engine.params().await?))?;
                    stage_pictures(out, "after", &mut engine, &test, &preds).await?;
                    if !epochs.is_empty() {
                        viz::curves_png(&out.join("curves.png"), &step_losses, steps, &epochs, before.accuracy())?;
                        train::write_logs(out, &step_losses, steps, &epochs)?;
                    }
                } else if opts.save.is_some() {
                    info!("the last good checkpoint is kept; nothing was written over it");
                }
                return Err(e);
            }
        }
    }
    progress.epochs_finished();
    let training_seconds = run_start.elapsed().as_secs_f64();
    let (after, preds_after, _) = evaluation(&mut engine, "after training").await?;
    info!("training time: {:.1} s", training_seconds);
    let tp = Instant::now();
    pictures.extend(filter_pictures(out, &arch, &params, Some(&engine.params().await?))?);
    pictures.extend(stage_pictures(out, "after", &mut engine, &test, &preds_after).await?);
    viz::curves_png(&out.join("curves.png"), &step_losses, steps, &epochs, before.accuracy())?;
    pictures.push("curves.png".into());
    pictures.extend(train::write_logs(out, &step_losses, steps, &epochs)?);
    picture_seconds += tp.elapsed().as_secs_f64();
    info!("pictures: {} files in {} ({:.2} s)", pictures.len(), out.display(), picture_seconds);
    Ok(TrainOutcome {
        adapter: engine.device(),
        arch: arch.describe(),
        hyperparameters: cfg,
        forward_only_test_accuracy: before.accuracy(),
        forward_only_test_loss: before.mean_loss(),
        test_accuracy: after.accuracy(),
        test_loss: after.mean_loss(),
        test_images: after.count,
        training_seconds,
        picture_seconds,
        pictures,
        epochs,
        study_setting: arch == Arch::study() && data.is_mnist(),
    })
}

/// Writes the pictures of one stage ("before" or "after" training) from the engine's current state: activation maps
/// and predictions of fixed test digits (one per class), and the confusion matrix of `preds`.
async fn stage_pictures(
    out: &Path,
    stage: &str,
    engine: &mut impl Engine,
    test: &Split,
    preds: &[u32],
) -> Result<Vec<String>> {
    let what = if stage == "before" { "random weights (forward-only)" } else { "after backpropagation" };
    let samples = viz::probe_samples(&test.labels);
    let probe = engine.probe(&samples).await?;
    let labels: Vec<u8> = samples.iter().map(|&i| test.labels[i as usize]).collect();
    let names =
        [format!("activations_{stage}.png"), format!("predictions_{stage}.png"), format!("confusion_{stage}.png")];
    viz::activations_png(&out.join(&names[0]), &probe, &labels, &format!("Feature maps, {what}"))?;
    viz::predictions_png(&out.join(&names[1]), &probe, &labels, &format!("Predictions, {what}"))?;
    viz::confusion_png(&out.join(&names[2]), preds, &test.labels, &format!("Confusion matrix, {what}"))?;
    Ok(names.to_vec())
}

/// Filters before and after training on one shared colour scale (the larger of the two pictures' own scales), so the
/// two pictures compare at a glance. None for a network without convolutions.
fn filter_pictures(out: &Path, arch: &Arch, before: &[f32], after: Option<&[f32]>) -> Result<Vec<String>> {
    if arch.convs().is_empty() {
        return Ok(Vec::new());
    }
    let (b_path, a_path) = (out.join("filters_before.png"), out.join("filters_after.png"));
    let b_title = "Filters, random weights (forward-only)";
    let scale_b = viz::filters_png(&b_path, arch, before, b_title, None)?;
    let Some(after) = after else { return Ok(vec!["filters_before.png".into()]) };
    let a_title = "Filters after backpropagation";
    let scale_a = viz::filters_png(&a_path, arch, after, a_title, None)?;
    let shared = scale_a.max(scale_b);
    viz::filters_png(&b_path, arch, before, b_title, Some(shared))?;
    viz::filters_png(&a_path, arch, after, a_title, Some(shared))?;
    Ok(vec!["filters_before.png".into(), "filters_after.png".into()])
}
