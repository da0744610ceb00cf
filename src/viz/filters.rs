//! The first two layers' filters: conv1's 16 3×3 filters (a 2×8 grid of 48×48-pixel blocks) and, below, conv2's 32×16
//! 3×3 filters (one row per output channel, one column per input channel), blue–white–red around zero.

use std::path::Path;

use super::canvas::{self, Anchor, Canvas, GREY, TEXT};
use super::VizError;
use crate::model::{C1, C2, PARAM_COUNT, PARAM_TENSORS};

const WIDTH: u32 = 740;
const HEIGHT: u32 = 942;
/// Left edge of both grids (room for conv2's row numbers).
const X0: i64 = 56;
/// conv1: 3×3 → 48×48 pixels, 8 per row, 8 pixels apart, rows 66 pixels apart (room for the filter numbers).
const Z1: i64 = 16;
const PITCH1: i64 = 3 * Z1 + 8;
const ROW1: i64 = 3 * Z1 + 18;
const Y1: i64 = 88;
/// conv2: 3×3 → 18×18 pixels, 2 pixels apart.
const Z2: i64 = 6;
const PITCH2: i64 = 3 * Z2 + 2;
const Y2: i64 = 280;
/// The colour bars and notes, right of the grids.
const BAR_X: i64 = 520;
const BAR_W: i64 = 180;
/// Colour levels of the weights, and the grey between conv2's tiles (so that pale tiles keep their edges).
const LEVELS: u32 = 64;
const GAP: canvas::Rgb = [200, 200, 200];

/// Draws conv1's and conv2's weights from the flat parameter vector `params` (layout of `model::PARAM_TENSORS`) to
/// `path` and returns the colour scale it used.
///
/// The scale `s` is in units of each layer's initialization bound 1/√fan_in (conv1: 1/3, conv2: 1/12; PyTorch's
/// default initialization draws every weight uniformly within ±1 of these units), so both sections of one picture, and
/// a "before" and an "after" picture, can share it while conv2's smaller weights stay visible: conv1 is coloured over
/// ±s/3 and conv2 over ±s/12, each with its own colour bar in weight units. With `scale` None, `s` is the largest
/// |w|·√fan_in of the two layers; pass the larger of two pictures' returned scales to draw both on one scale.
pub fn filters_png(path: &Path, params: &[f32], title: &str, scale: Option<f32>) -> Result<f32, VizError> {
    if params.len() != PARAM_COUNT {
        return Err(VizError::input(path, format!("{} parameters, expected {PARAM_COUNT}", params.len())));
    }
    let [conv1, _, conv2, ..] = PARAM_TENSORS;
    let (w1, w2) = (&params[conv1.range()], &params[conv2.range()]);
    let (f1, f2) = ((conv1.fan_in as f32).sqrt(), (conv2.fan_in as f32).sqrt());
    if w1.iter().chain(w2).any(|w| !w.is_finite()) {
        return Err(VizError::input(path, "a conv weight is NaN or infinite"));
    }
    let s = match scale {
        Some(s) if s.is_finite() && s > 0.0 => s,
        Some(s) => return Err(VizError::input(path, format!("colour scale {s} is not a positive number"))),
        None => {
            let m1 = w1.iter().fold(0.0f32, |m, w| m.max(w.abs())) * f1;
            let m2 = w2.iter().fold(0.0f32, |m, w| m.max(w.abs())) * f2;
            let m = m1.max(m2);
            if m > 0.0 {
                m
            } else {
                1.0
            }
        }
    };
    let (s1, s2) = (s / f1, s / f2);

    let mut c = Canvas::new(WIDTH, HEIGHT);
    c.text(20, 14, title, 20.0, TEXT, Anchor::TopLeft);

    // conv1: a 2×8 grid of filters, each numbered.
    c.text(20, 50, format!("conv1: {C1} filters 3×3"), 15.0, TEXT, Anchor::TopLeft);
    for (k, f) in w1.chunks(9).enumerate() {
        let x = X0 + (k % 8) as i64 * PITCH1;
        let y = Y1 + (k / 8) as i64 * ROW1;
        c.text(x + 3 * Z1 / 2, y - 13, k.to_string(), 11.0, GREY, Anchor::TopCenter);
        c.grid(x, y, f, 3, Z1, |w| weight(w, s1));
        c.frame(x, y, 3 * Z1, 3 * Z1, 1, canvas::LIGHT);
    }
    bar(&mut c, Y1 + 8, "conv1 colour scale", s1);

    // conv2: one row per output channel, one column per input channel.
    c.text(20, Y2 - 54, format!("conv2: {C2}×{C1} filters 3×3 (rows: output channel)"), 15.0, TEXT, Anchor::TopLeft);
    c.text(X0 + 8 * PITCH2, Y2 - 32, "input channel", 11.0, GREY, Anchor::TopCenter);
    c.text(X0 - 6, Y2 - 16, "out", 10.0, GREY, Anchor::TopRight);
    for i in 0..C1 as i64 {
        c.text(X0 + i * PITCH2 + 3 * Z2 / 2, Y2 - 16, i.to_string(), 10.0, GREY, Anchor::TopCenter);
    }
    c.fill(X0 - 2, Y2 - 2, C1 as i64 * PITCH2 + 2, C2 as i64 * PITCH2 + 2, GAP);
    for (k, f) in w2.chunks(9).enumerate() {
        let (o, i) = ((k / C1) as i64, (k % C1) as i64);
        if i == 0 {
            c.text(X0 - 6, Y2 + o * PITCH2 + 3 * Z2 / 2, o.to_string(), 10.0, GREY, Anchor::CenterRight);
        }
        c.grid(X0 + i * PITCH2, Y2 + o * PITCH2, f, 3, Z2, |w| weight(w, s2));
    }
    bar(&mut c, Y2 + 8, "conv2 colour scale", s2);

    let notes = [
        "blue < 0 < red, white = 0".to_string(),
        String::new(),
        format!("scale s = {} × 1/√fan_in:", canvas::short(s)),
        format!("conv1 ±{} (fan_in {})", canvas::short(s1), conv1.fan_in),
        format!("conv2 ±{} (fan_in {})", canvas::short(s2), conv2.fan_in),
        String::new(),
        "random init draws each weight".to_string(),
        "uniformly in ±1/√fan_in (s = 1)".to_string(),
    ];
    for (j, line) in notes.iter().enumerate() {
        c.text(BAR_X, Y2 + 80 + 18 * j as i64, line.as_str(), 12.0, TEXT, Anchor::TopLeft);
    }
    c.save(path)?;
    Ok(s)
}

/// A colour bar for weights in ±`scale` at the right of the picture, with a caption above and its range below.
fn bar(c: &mut Canvas, y: i64, caption: &str, scale: f32) {
    c.text(BAR_X, y, caption, 12.0, TEXT, Anchor::TopLeft);
    c.color_bar(BAR_X, y + 18, BAR_W, 14, canvas::diverging);
    let ty = y + 36;
    c.text(BAR_X, ty, canvas::short(-scale), 11.0, TEXT, Anchor::TopLeft);
    c.text(BAR_X + BAR_W / 2, ty, "0", 11.0, TEXT, Anchor::TopCenter);
    c.text(BAR_X + BAR_W, ty, format!("+{}", canvas::short(scale)), 11.0, TEXT, Anchor::TopRight);
}

/// A weight `w` on the diverging map with symmetric scale ±`scale`.
fn weight(w: f32, scale: f32) -> canvas::Rgb {
    canvas::diverging(canvas::levels(0.5 + 0.5 * w / scale, LEVELS))
}
