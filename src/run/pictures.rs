//! The pictures of a run, from the engine's own state: filters (before and after on one scale), and for each stage
//! the activations and predictions of fixed test digits and the confusion matrix.

use std::path::Path;

use anyhow::Result;

use crate::data::Split;
use crate::engine::Engine;
use crate::model::Arch;
use crate::viz;

/// Writes the pictures of one stage ("before" or "after" training) from the engine's current state: activation maps
/// and predictions of fixed test digits (one per class), and the confusion matrix of `preds`.
pub(super) async fn stage_pictures(
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
pub(super) fn filter_pictures(out: &Path, arch: &Arch, before: &[f32], after: Option<&[f32]>) -> Result<Vec<String>> {
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
