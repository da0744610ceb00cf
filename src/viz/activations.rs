//! What the convolutions see: for each probed digit, the input and its feature maps after ReLU, conv1's 16 (28×28, in
//! two rows of 8) and conv2's 32 (14×14 enlarged 2×, in two rows of 16), on one colour scale per layer.

use std::path::Path;

use super::canvas::{self, Anchor, Canvas, LIGHT, TEXT};
use super::{probe_len, VizError};
use crate::engine::Probe;
use crate::model::{C1, C2, H1, IMAGE_PIXELS, IMAGE_SIDE, MNIST_MEAN, MNIST_STD, P1};

/// Feature maps are drawn 28×28, 30 pixels apart; each digit's row holds two rows of maps.
const MAP: i64 = 28;
const PITCH: i64 = MAP + 2;
const ROW: i64 = 2 * PITCH - 2;
const ROW_PITCH: i64 = ROW + 12;
const INPUT_X: i64 = 84;
const C1_X: i64 = INPUT_X + 2 * MAP + 20;
const C1_COLS: i64 = C1 as i64 / 2;
const C2_X: i64 = C1_X + C1_COLS * PITCH - 2 + 20;
const C2_COLS: i64 = C2 as i64 / 2;
const WIDTH: i64 = C2_X + C2_COLS * PITCH - 2 + 12;
const Y0: i64 = 68;
/// Colour levels of the maps.
const LEVELS: u32 = 32;
/// The top of a layer's colour scale is this quantile of its positive activations (not the maximum, so that a few
/// hot pixels do not leave every other map dark); larger values get the top colour.
const TOP_QUANTILE: f64 = 0.995;

/// Draws, for each of the probed images (one row each, labelled with `labels`), the input in grey and its conv1 and
/// conv2 feature maps (after ReLU) in viridis, each layer on one scale for the whole picture: 0 to the 99.5th percentile
/// of its positive values (larger values are drawn in the top colour; the colour bar says "≥").
pub fn activations_png(path: &Path, probe: &Probe, labels: &[u8], title: &str) -> Result<(), VizError> {
    let n = probe_len(path, probe, labels)?;
    if probe.a1.iter().chain(&probe.a2).any(|v| !v.is_finite()) {
        return Err(VizError::input(path, "a feature map holds NaN or infinity"));
    }
    let (max1, max2) = (top(&probe.a1), top(&probe.a2));
    let color = |v: f32, max: f32| canvas::viridis(canvas::levels(v / max, LEVELS));

    let height = Y0 + n as i64 * ROW_PITCH + 44;
    let mut c = Canvas::new(WIDTH as u32, height as u32);
    c.text(12, 12, title, 18.0, TEXT, Anchor::TopLeft);
    let header_y = Y0 - 22;
    c.text(INPUT_X + MAP, header_y, "input", 13.0, TEXT, Anchor::TopCenter);
    let w1 = C1_COLS * PITCH - 2;
    let w2 = C2_COLS * PITCH - 2;
    c.text(C1_X + w1 / 2, header_y, format!("conv1 + ReLU: {C1} maps {H1}×{H1}"), 13.0, TEXT, Anchor::TopCenter);
    c.text(
        C2_X + w2 / 2,
        header_y,
        format!("conv2 + ReLU: {C2} maps {P1}×{P1} (shown 2×)"),
        13.0,
        TEXT,
        Anchor::TopCenter,
    );

    for (s, &label) in labels.iter().enumerate() {
        let y = Y0 + s as i64 * ROW_PITCH;
        if s > 0 {
            c.fill(12, y - 7, WIDTH - 24, 1, LIGHT);
        }
        c.text(12, y + ROW / 2, format!("label {label}"), 14.0, TEXT, Anchor::CenterLeft);
        let x = &probe.x[s * IMAGE_PIXELS..(s + 1) * IMAGE_PIXELS];
        c.grid(INPUT_X, y + (ROW - 2 * MAP) / 2, x, IMAGE_SIDE, 2, |v| {
            canvas::grey(canvas::levels(v * MNIST_STD + MNIST_MEAN, LEVELS))
        });
        let a1 = &probe.a1[s * C1 * H1 * H1..(s + 1) * C1 * H1 * H1];
        for (k, map) in a1.chunks(H1 * H1).enumerate() {
            let (r, col) = (k as i64 / C1_COLS, k as i64 % C1_COLS);
            c.grid(C1_X + col * PITCH, y + r * PITCH, map, H1, 1, |v| color(v, max1));
        }
        let a2 = &probe.a2[s * C2 * P1 * P1..(s + 1) * C2 * P1 * P1];
        for (k, map) in a2.chunks(P1 * P1).enumerate() {
            let (r, col) = (k as i64 / C2_COLS, k as i64 % C2_COLS);
            c.grid(C2_X + col * PITCH, y + r * PITCH, map, P1, MAP / P1 as i64, |v| color(v, max2));
        }
    }

    let bar_y = Y0 + n as i64 * ROW_PITCH;
    for (x, w, name, max) in [(C1_X, w1, "conv1", max1), (C2_X + (w2 - w1) / 2, w1, "conv2", max2)] {
        c.color_bar(x, bar_y, w, 10, canvas::viridis);
        c.text(x, bar_y + 14, "0", 11.0, TEXT, Anchor::TopLeft);
        c.text(x + w / 2, bar_y + 14, format!("{name} colour scale"), 11.0, TEXT, Anchor::TopCenter);
        c.text(x + w, bar_y + 14, format!("≥{}", canvas::short(max)), 11.0, TEXT, Anchor::TopRight);
    }
    c.color_bar(INPUT_X, bar_y, 2 * MAP, 10, canvas::grey);
    c.text(INPUT_X, bar_y + 14, "0", 11.0, TEXT, Anchor::TopLeft);
    c.text(INPUT_X + 2 * MAP, bar_y + 14, "1", 11.0, TEXT, Anchor::TopRight);
    c.save(path)
}

/// The top of a layer's colour scale: the `TOP_QUANTILE` quantile of its positive values (1 if there are none).
fn top(a: &[f32]) -> f32 {
    let mut positive: Vec<f32> = a.iter().copied().filter(|&v| v > 0.0).collect();
    if positive.is_empty() {
        return 1.0;
    }
    let k = ((positive.len() - 1) as f64 * TOP_QUANTILE).round() as usize;
    *positive.select_nth_unstable_by(k, f32::total_cmp).1
}
