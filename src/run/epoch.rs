//! One epoch over any engine (a GPU or the CPU reference): its sample order, its steps (watched for divergence and
//! Ctrl-C), its evaluation and report; and the run's logs (`steps.csv`, `epochs.jsonl`).

use web_time::Instant;

use serde::Serialize;

use crate::data::Split;
use crate::engine::{Engine, EpochReport, Metrics};
use crate::model;

/// Hyperparameters of a training run.
#[derive(Clone, Debug, Serialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Learning rate as the user gave it (the kernels use it as f32).
    pub lr: f64,
    pub momentum: f64,
    pub seed: u64,
    pub train_images: usize,
}

/// A step loss above this means training diverged: at chance the loss is ln 10 ≈ 2.3, and a loss of 1000 means the
/// right class's logit sits 1000 below the largest one. Such a run never comes back, so it stops (and saves nothing).
pub const DIVERGED_LOSS: f32 = 1000.0;

fn diverged(loss: f64) -> bool {
    !loss.is_finite() || loss > DIVERGED_LOSS as f64
}

/// Why a run stopped before its last epoch.
#[derive(thiserror::Error, Debug)]
pub enum TrainError {
    #[error("training diverged: the loss became {value:e} at epoch {epoch}, step {step} (try a smaller --lr)")]
    NonFinite { epoch: usize, step: usize, value: f32 },
    /// Stopped by the caller (Ctrl-C, the page's Stop) after the steps in flight; `test_accuracy` is the network's as
    /// it stands, where it was evaluated before the run returned.
    #[error("interrupted during epoch {epoch} after step {step}{}", .test_accuracy.map_or(String::new(), |a| format!(": the network as it stands, {:.2} % on the test set", 100.0 * a)))]
    Interrupted { epoch: usize, step: usize, test_accuracy: Option<f64> },
}

/// Runs one epoch and evaluates: the epoch's report and its step losses. Checks every step loss for NaN/inf.
pub async fn run_epoch(
    engine: &mut impl Engine,
    cfg: &TrainConfig,
    epoch: usize,
    train: &Split,
    progress: &mut dyn FnMut(usize, &Metrics) -> bool,
) -> anyhow::Result<(EpochReport, Vec<f32>)> {
    let order = model::epoch_order(cfg.seed, epoch, train.len());
    let t0 = Instant::now();
    let mut stopped = false;
    let mut wrapped = |s: usize, m: &Metrics| {
        if diverged(m.mean_loss()) {
            return false; // the step losses below name the step
        }
        let go = progress(s, m);
        stopped |= !go;
        go
    };
    let (m, losses) = engine.train_epoch(&order, cfg.lr as f32, cfg.momentum as f32, &mut wrapped).await?;
    let seconds = t0.elapsed().as_secs_f64();
    if let Some((step, &value)) = losses.iter().enumerate().find(|(_, &l)| diverged(l as f64)) {
        return Err(TrainError::NonFinite { epoch: epoch + 1, step: step + 1, value }.into());
    }
    if stopped || losses.len() < engine.steps_per_epoch() {
        return Err(TrainError::Interrupted { epoch: epoch + 1, step: losses.len(), test_accuracy: None }.into());
    }
    let (test, _) = engine.evaluate().await?;
    let report = EpochReport {
        epoch: epoch + 1,
        train_loss: m.mean_loss(),
        train_accuracy: m.accuracy(),
        test_loss: test.mean_loss(),
        test_accuracy: test.accuracy(),
        seconds,
        images_per_sec: m.count as f64 / seconds,
    };
    Ok((report, losses))
}

/// Writes the run's numbers beside its pictures, for reuse elsewhere: `steps.csv` (every step's mean loss: global
/// step, epoch, loss) and `epochs.jsonl` (one JSON object per epoch, the keys `--json` prints). Both written
/// atomically; returns their file names.
pub fn write_logs(
    dir: &std::path::Path,
    step_losses: &[f32],
    steps_per_epoch: usize,
    epochs: &[EpochReport],
) -> anyhow::Result<Vec<String>> {
    let first_epoch = epochs.first().map_or(1, |e| e.epoch);
    let mut csv = String::from("step,epoch,loss\n");
    for (i, l) in step_losses.iter().enumerate() {
        csv.push_str(&format!("{},{},{l}\n", i + 1, first_epoch + i / steps_per_epoch.max(1)));
    }
    let mut jsonl = String::new();
    for e in epochs {
        jsonl.push_str(&serde_json::to_string(e)?);
        jsonl.push('\n');
    }
    for (name, text) in [("steps.csv", &csv), ("epochs.jsonl", &jsonl)] {
        crate::atomic::write_atomic(&dir.join(name), text.as_bytes()).map_err(|e| e.source)?;
    }
    Ok(vec!["steps.csv".into(), "epochs.jsonl".into()])
}
