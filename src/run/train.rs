//! Training a network as the study does (`train`): the starting weights evaluated, epochs with an evaluation and a
//! checkpoint after each, Ctrl-C and divergence handled without losing what was saved, then the pictures and logs.

use std::path::Path;
use web_time::Instant;

use anyhow::{bail, Context, Result};
use log::info;
use serde::Serialize;

use super::epoch::{self, TrainConfig, TrainError};
use super::evaluate::evaluation;
use super::open::{arch_for_data, normalized_as, open_engine, prepare_out_dir, trained_norm, DeviceChoice};
use super::options::TrainOptions;
use super::pictures::{filter_pictures, stage_pictures};
use crate::checkpoint::{self, Checkpoint};
use crate::data::Mnist;
use crate::engine::{DeviceInfo, Engine, EpochReport, Metrics};
use crate::model::{self, Arch, Normalization};
use crate::viz;

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

/// The checkpoint metadata of a training state after `epochs_done` epochs, trained on inputs normalized as `norm`.
fn metadata(cfg: &TrainConfig, epochs_done: usize, norm: Normalization) -> std::collections::BTreeMap<String, String> {
    [
        ("epochs_done", epochs_done.to_string()),
        ("seed", cfg.seed.to_string()),
        ("lr", cfg.lr.to_string()),
        ("momentum", cfg.momentum.to_string()),
        ("batch_size", cfg.batch_size.to_string()),
        (checkpoint::MEAN_KEY, norm.mean.to_string()),
        (checkpoint::STD_KEY, norm.std.to_string()),
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
        let r = epoch::run_epoch(&mut engine, &cfg, epoch, train_split, &mut |s, m| progress.step(s, m)).await;
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
                if let Some(&TrainError::Interrupted { epoch: at, step, .. }) = e.downcast_ref::<TrainError>() {
                    if let Some(p) = &opts.save {
                        info!("interrupted: saving the weights after step {step} of epoch {}", epoch + 1);
                        save_state(p, &engine, &cfg, epoch, train_split.norm).await?;
                    }
                    // The pictures of the network as it stands (Ctrl-C again skips them and quits at once).
                    info!("interrupted: writing the pictures of the network as it stands");
                    let (m, preds) = engine.evaluate().await?;
                    filter_pictures(out, &arch, &params, Some(&engine.params().await?))?;
                    stage_pictures(out, "after", &mut engine, &test, &preds).await?;
                    if !epochs.is_empty() {
                        viz::curves_png(&out.join("curves.png"), &step_losses, steps, &epochs, before.accuracy())?;
                        epoch::write_logs(out, &step_losses, steps, &epochs)?;
                    }
                    return Err(TrainError::Interrupted { epoch: at, step, test_accuracy: Some(m.accuracy()) }.into());
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
    pictures.extend(epoch::write_logs(out, &step_losses, steps, &epochs)?);
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
