//! What the convolutions see: for each probed digit, the input and each convolution's feature maps after ReLU, in two
//! rows per layer, each drawn 28 pixels wide (the study's conv1: 16 maps 28×28 in two rows of 8; conv2: 32 maps 14×14
//! enlarged 2×, in two rows of 16; maps bigger than 28 pixels are box-averaged down to it), on one colour scale per layer.

use std::path::Path;

use super::canvas::{self, Anchor, Canvas, LIGHT, TEXT};
use super::{probe_len, VizError};
use crate::engine::Probe;
use crate::model::ImageShape;

/// Feature maps are drawn 28×28, 30 pixels apart; each digit's row holds two rows of maps.
const MAP: i64 = 28;
const PITCH: i64 = MAP + 2;
const ROW: i64 = 2 * PITCH - 2;
const ROW_PITCH: i64 = ROW + 12;
const INPUT_X: i64 = 84;
const Y0: i64 = 68;
/// A layer's block is at least this many maps wide, so that its header and colour bar fit.
const MIN_COLS: i64 = 8;
/// Most maps shown per layer (the first ones).
const MAX_MAPS: usize = 32;
/// Colour levels of the maps.
const LEVELS: u32 = 32;
/// The top of a layer's colour scale is this quantile of its positive activations (not the maximum, so that a few
/// hot pixels do not leave every other map dark); larger values get the top colour.
const TOP_QUANTILE: f64 = 0.995;

/// Draws, for each of the probed images (one row each, labelled with `labels`), the input in grey and each
/// convolution's feature maps (after ReLU; the first `MAX_MAPS` of a wider layer) in viridis, each layer on one scale
/// for the whole picture: 0 to the 99.5th percentile of its positive values (larger values are drawn in the top
/// colour; the colour bar says "≥").
pub fn activations_png(path: &Path, probe: &Probe, labels: &[u8], title: &str) -> Result<(), VizError> {
    let n = probe_len(path, probe, labels)?;
    if probe.maps.iter().flat_map(|m| &m.values).any(|v| !v.is_finite()) {
        return Err(VizError::input(path, "a feature map holds NaN or infinity"));
    }
    // Each layer's block: x, columns, width, zoom, colour scale.
    struct Block {
        x: i64,
        cols: i64,
        width: i64,
        zoom: i64,
        shown: usize,
        max: f32,
    }
    let mut blocks = Vec::new();
    let mut x = INPUT_X + 2 * MAP + 20;
    for m in &probe.maps {
        let shown = m.channels.min(MAX_MAPS);
        let cols = shown.div_ceil(2) as i64;
        let width = cols.max(MIN_COLS) * PITCH - 2;
        let zoom = (MAP / m.height.max(m.width).max(1) as i64).max(1);
        blocks.push(Block { x, cols, width, zoom, shown, max: top(&m.values) });
        x += width + 20;
    }
    let width = blocks.last().map_or(INPUT_X + 2 * MAP + 12, |b| b.x + b.width + 12);
    let color = |v: f32, max: f32| canvas::viridis(canvas::levels(v / max, LEVELS));

    let height = Y0 + n as i64 * ROW_PITCH + 44;
    let mut c = Canvas::new(width as u32, height as u32);
    c.text(12, 12, title, 18.0, TEXT, Anchor::TopLeft);
    let header_y = Y0 - 22;
    c.text(INPUT_X + MAP, header_y, "input", 13.0, TEXT, Anchor::TopCenter);
    for (k, (b, m)) in blocks.iter().zip(&probe.maps).enumerate() {
        let mut header = format!("conv{} + ReLU: {} maps {}×{}", k + 1, m.channels, m.height, m.width);
        if b.shown < m.channels {
            header.push_str(&format!(", the first {}", b.shown));
        }
        if b.zoom > 1 {
            header.push_str(&format!(" (shown {}×)", b.zoom));
        }
        c.text(b.x + b.width / 2, header_y, header, 13.0, TEXT, Anchor::TopCenter);
    }

    for (s, &label) in labels.iter().enumerate() {
        let y = Y0 + s as i64 * ROW_PITCH;
        if s > 0 {
            c.fill(12, y - 7, width - 24, 1, LIGHT);
        }
        c.text(12, y + ROW / 2, format!("label {label}"), 14.0, TEXT, Anchor::CenterLeft);
        let input = probe.input;
        let x = &probe.x[s * input.pixels()..(s + 1) * input.pixels()];
        let (x, height, width) = canvas::shrink(x, input.height, input.width, 2 * MAP as usize);
        let shape = ImageShape { height, width, ..input };
        let zoom = (2 * MAP / height.max(width) as i64).max(1);
        let level = |t| canvas::levels(t, LEVELS);
        c.image(INPUT_X, y + (ROW - 2 * MAP) / 2, &x, shape, zoom, probe.norm, level);
        for (b, m) in blocks.iter().zip(&probe.maps) {
            let plane = m.height * m.width;
            let sample = &m.values[s * m.channels * plane..(s + 1) * m.channels * plane];
            let maps_x = b.x + (b.width - (b.cols * PITCH - 2)) / 2;
            for (k, map) in sample.chunks(plane).take(b.shown).enumerate() {
                let (r, col) = (k as i64 / b.cols, k as i64 % b.cols);
                let (map, _, w) = canvas::shrink(map, m.height, m.width, MAP as usize);
                c.grid(maps_x + col * PITCH, y + r * PITCH, &map, w, b.zoom, |v| color(v, b.max));
            }
        }
    }

    let bar_y = Y0 + n as i64 * ROW_PITCH;
    let bar_w = blocks.first().map_or(0, |b| b.width);
    for (k, b) in blocks.iter().enumerate() {
        let w = bar_w.min(b.width);
        let x = b.x + (b.width - w) / 2;
        c.color_bar(x, bar_y, w, 10, canvas::viridis);
        c.text(x, bar_y + 14, "0", 11.0, TEXT, Anchor::TopLeft);
        c.text(x + w / 2, bar_y + 14, format!("conv{} colour scale", k + 1), 11.0, TEXT, Anchor::TopCenter);
        c.text(x + w, bar_y + 14, format!("≥{}", canvas::short(b.max)), 11.0, TEXT, Anchor::TopRight);
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
