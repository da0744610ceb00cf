//! Pictures of the study, as PNG files: the filters a network learned, what its feature maps see, its predictions, its
//! confusion matrix, and its training curves.
//!
//! Every picture is drawn into an RGB buffer (`canvas`): pixel grids directly, the curves' lines and markers by plotters'
//! bitmap backend, and all text glyph by glyph from the embedded DejaVu Sans Mono (registered with plotters, rasterized
//! by its ab_glyph support). Every PNG is written to a temporary file beside its target and then renamed, so a reader
//! never sees half a picture.
//!
//! | function | picture |
//! |---|---|
//! | [`filters_png`] | conv1's 16 and conv2's 32×16 3×3 filters, blue–white–red around zero |
//! | [`activations_png`] | per probed digit: the input, its 16 conv1 and 32 conv2 feature maps after ReLU |
//! | [`predictions_png`] | the probed digits with "pred 3 (97%) / true 3", framed green (right) or red (wrong) |
//! | [`confusion_png`] | the 10×10 confusion matrix of a whole test set |
//! | [`curves_png`] | training loss per step and per epoch, test accuracy per epoch against the forward-only one |
//! | [`bench_pictures`] | benchmark results: throughput, scaling with batch size, per-kernel time, roofline |
//! | [`compare_png`] | the speed-up per kernel between two benchmark results |

mod activations;
mod bench;
mod canvas;
mod confusion;
mod curves;
mod filters;
mod font;
mod predictions;

use std::path::{Path, PathBuf};

pub use activations::activations_png;
pub use bench::{bench_pictures, compare_png, kernels_png, roofline_png, scaling_png, throughput_png};
pub use confusion::confusion_png;
pub use curves::curves_png;
pub use filters::filters_png;
pub use predictions::predictions_png;

use crate::engine::Probe;
use crate::model::CLASSES;

/// Why a picture was not written. Every variant names the picture's path.
#[derive(thiserror::Error, Debug)]
pub enum VizError {
    #[error("cannot write picture {}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot encode picture {} as PNG: {source}", .path.display())]
    Encode { path: PathBuf, source: image::ImageError },
    #[error("cannot draw picture {}: {message}", .path.display())]
    Draw { path: PathBuf, message: String },
    #[error("cannot draw picture {}: {message}", .path.display())]
    Input { path: PathBuf, message: String },
}

impl VizError {
    fn input(path: &Path, message: impl Into<String>) -> VizError {
        VizError::Input { path: path.to_path_buf(), message: message.into() }
    }
    fn draw(path: &Path, message: impl std::fmt::Display) -> VizError {
        VizError::Draw { path: path.to_path_buf(), message: message.to_string() }
    }
}

/// The test images the pictures look at: the first test image of each class 0..9, in class order (a class that does not
/// occur is left out, so a full test set gives 10 indices).
pub fn probe_samples(labels: &[u8]) -> Vec<u32> {
    (0..CLASSES as u8).filter_map(|c| labels.iter().position(|&l| l == c).map(|i| i as u32)).collect()
}

/// The number of images in `probe`, after checking that its tensors and `labels` agree on it.
fn probe_len(path: &Path, probe: &Probe, labels: &[u8]) -> Result<usize, VizError> {
    let n = labels.len();
    let mut expect = vec![("x".to_string(), probe.x.len(), n * probe.input.pixels())];
    for (k, m) in probe.maps.iter().enumerate() {
        expect.push((format!("maps[{k}]"), m.values.len(), n * m.channels * m.height * m.width));
    }
    expect.push(("logits".into(), probe.logits.len(), n * CLASSES));
    if n == 0 {
        return Err(VizError::input(path, "no probed images (labels is empty)"));
    }
    for (name, got, want) in expect {
        if got != want {
            return Err(VizError::input(
                path,
                format!("probe.{name} has {got} values, expected {want} for {n} labelled images"),
            ));
        }
    }
    if let Some(&l) = labels.iter().find(|&&l| l as usize >= CLASSES) {
        return Err(VizError::input(path, format!("label {l} is not a class 0..{}", CLASSES - 1)));
    }
    Ok(n)
}

/// Softmax of one row of logits (numerically stable).
fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&z| (z - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

/// Index of the largest value (the first one on ties, like `reference::argmax`).
fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_samples_takes_the_first_of_each_class_in_class_order() {
        let labels = [3, 1, 0, 1, 9, 2, 4, 5, 6, 7, 8, 0, 3];
        assert_eq!(probe_samples(&labels), vec![2, 1, 5, 0, 6, 7, 8, 9, 10, 4]);
        assert_eq!(probe_samples(&[5, 5, 2]), vec![2, 0]);
    }

    #[test]
    fn softmax_sums_to_one_and_argmax_takes_the_first_maximum() {
        let p = softmax(&[1000.0, 1000.0, -1000.0]);
        assert!((p[0] - 0.5).abs() < 1e-6 && (p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(argmax(&[0.1, 0.7, 0.7, 0.2]), 1);
    }
}
