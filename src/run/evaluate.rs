//! The study's evaluations: random weights on the test set (`forward_only`, with the pictures) and a checkpoint's
//! weights (`evaluate_checkpoint`).

use std::path::Path;
use web_time::Instant;

use anyhow::Result;
use log::info;
use serde::Serialize;

use super::open::{arch_for_data, normalized_as, open_engine, prepare_out_dir, trained_norm, DeviceChoice};
use super::pictures::{filter_pictures, stage_pictures};
use crate::checkpoint;
use crate::data::Mnist;
use crate::engine::{DeviceInfo, Engine, Metrics};
use crate::model::{self, Arch};

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

pub(super) async fn evaluation(engine: &mut impl Engine, label: &str) -> Result<(Metrics, Vec<u32>, f64)> {
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
