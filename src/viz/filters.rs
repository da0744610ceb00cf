//! The first two convolutions' filters: conv1's K×K filters (rows of 8 blocks of about 48×48 pixels; the study's 16
//! make a 2×8 grid) and, below, conv2's COUT×CIN filters (one row per output channel, one column per input channel),
//! blue–white–red around zero.

use std::path::Path;

use super::canvas::{self, Anchor, Canvas, GREY, TEXT};
use super::VizError;
use crate::model::Arch;

/// Left edge of both grids (room for conv2's row numbers).
const X0: i64 = 56;
/// conv1: each filter about 48×48 pixels (3×3 taps of 16), 8 per row, 8 pixels apart, rows 18 pixels apart beyond
/// the tile (room for the filter numbers).
const TILE1: i64 = 48;
const Y1: i64 = 88;
/// The colour bars and notes, right of the grids (further right when conv2's grid is wider).
const BAR_X: i64 = 520;
const BAR_W: i64 = 180;
/// Colour levels of the weights, and the grey between conv2's tiles (so that pale tiles keep their edges).
const LEVELS: u32 = 64;
const GAP: canvas::Rgb = [200, 200, 200];

/// Draws conv1's and conv2's weights (conv1's alone if `arch` has one convolution) from the flat parameter vector
/// `params` (`arch`'s layout) to `path` and returns the colour scale it used.
///
/// The scale `s` is in units of each layer's initialization bound 1/√fan_in (conv1: 1/3, conv2: 1/12; PyTorch's
/// default initialization draws every weight uniformly within ±1 of these units), so both sections of one picture, and
/// a "before" and an "after" picture, can share it while conv2's smaller weights stay visible: conv1 is coloured over
/// ±s/3 and conv2 over ±s/12, each with its own colour bar in weight units. With `scale` None, `s` is the largest
/// |w|·√fan_in of the two layers; pass the larger of two pictures' returned scales to draw both on one scale.
pub fn filters_png(path: &Path, arch: &Arch, params: &[f32], title: &str, scale: Option<f32>) -> Result<f32, VizError> {
    if params.len() != arch.param_count() {
        let want = arch.param_count();
        return Err(VizError::input(path, format!("{} parameters, expected {want} for {arch}", params.len())));
    }
    let Some(l1) = arch.convs().first() else {
        return Err(VizError::input(path, format!("{arch} has no convolution")));
    };
    let l2 = arch.convs().get(1);
    let (c1, k1, fan1) = (l1.cout, l1.k, l1.cin * l1.k * l1.k);
    let k2 = l2.map_or(3, |l| l.k);
    let (z1, zoom2) = ((TILE1 / k1 as i64).max(1), (18 / k2 as i64).max(1));
    let (pitch1, row1) = (k1 as i64 * z1 + 8, k1 as i64 * z1 + 18);
    let w1 = &params[l1.w_off..l1.b_off];
    let w2 = l2.map_or(&[][..], |l| &params[l.w_off..l.b_off]);
    let (f1, f2) = ((fan1 as f32).sqrt(), (l2.map_or(1, |l| l.cin * l.k * l.k) as f32).sqrt());
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

    // conv2's grid: about 18×18-pixel tiles 2 pixels apart (the study's 32×16), smaller for larger layers.
    let (c2, cin2) = l2.map_or((0, 0), |l| (l.cout, l.cin));
    let z2: i64 = if c2 * cin2 <= 32 * 16 { zoom2 } else { (zoom2 / 3).max(1) };
    let pitch2 = k2 as i64 * z2 + 2;
    // conv1's tiles: one per filter, or per (filter, input channel) on multi-channel images, a filter's tiles on one row.
    let cin1 = l1.cin;
    let per_row = if cin1 == 1 { 8 } else { cin1 * (8 / cin1).max(1) };
    let y2 = Y1 + (c1 * cin1).div_ceil(per_row) as i64 * row1 + 60;
    let bar_x = BAR_X.max(X0 + cin2 as i64 * pitch2 + 40).max(X0 + per_row as i64 * pitch1 + 16);
    let width = (bar_x + 220) as u32;
    let height = if l2.is_some() { y2 + c2 as i64 * pitch2 + 22 } else { y2 + 200 } as u32;
    let mut c = Canvas::new(width, height);
    c.text(20, 14, title, 20.0, TEXT, Anchor::TopLeft);

    // conv1: rows of 8 filters, each numbered (with several input channels: "filter.channel").
    let head = if cin1 == 1 {
        format!("conv1: {c1} filters {k1}×{k1}")
    } else {
        format!("conv1: {c1} filters {k1}×{k1}×{cin1} (one tile per input channel, numbered filter.channel)")
    };
    c.text(20, 50, head, 15.0, TEXT, Anchor::TopLeft);
    let side1 = k1 as i64 * z1;
    for (k, f) in w1.chunks(k1 * k1).enumerate() {
        let x = X0 + (k % per_row) as i64 * pitch1;
        let y = Y1 + (k / per_row) as i64 * row1;
        let label = if cin1 == 1 { k.to_string() } else { format!("{}.{}", k / cin1, k % cin1) };
        c.text(x + side1 / 2, y - 13, label, 11.0, GREY, Anchor::TopCenter);
        c.grid(x, y, f, k1, z1, |w| weight(w, s1));
        c.frame(x, y, side1, side1, 1, canvas::LIGHT);
    }
    bar(&mut c, bar_x, Y1 + 8, "conv1 colour scale", s1);

    // conv2: one row per output channel, one column per input channel (numbered every 4th when they are many).
    let mut notes = vec![
        "blue < 0 < red, white = 0".to_string(),
        String::new(),
        format!("scale s = {} × 1/√fan_in:", canvas::short(s)),
        format!("conv1 ±{} (fan_in {fan1})", canvas::short(s1)),
    ];
    if let Some(l2) = l2 {
        let (y, every) = (y2, if z2 < 6 { 4 } else { 1 });
        c.text(
            20,
            y - 54,
            format!("conv2: {c2}×{cin2} filters {k2}×{k2} (rows: output channel)"),
            15.0,
            TEXT,
            Anchor::TopLeft,
        );
        c.text(X0 + cin2 as i64 * pitch2 / 2, y - 32, "input channel", 11.0, GREY, Anchor::TopCenter);
        c.text(X0 - 6, y - 16, "out", 10.0, GREY, Anchor::TopRight);
        let side2 = k2 as i64 * z2;
        for i in (0..cin2 as i64).step_by(every) {
            c.text(X0 + i * pitch2 + side2 / 2, y - 16, i.to_string(), 10.0, GREY, Anchor::TopCenter);
        }
        c.fill(X0 - 2, y - 2, cin2 as i64 * pitch2 + 2, c2 as i64 * pitch2 + 2, GAP);
        for (k, f) in w2.chunks(k2 * k2).enumerate() {
            let (o, i) = ((k / cin2) as i64, (k % cin2) as i64);
            if i == 0 && o % every as i64 == 0 {
                c.text(X0 - 6, y + o * pitch2 + side2 / 2, o.to_string(), 10.0, GREY, Anchor::CenterRight);
            }
            c.grid(X0 + i * pitch2, y + o * pitch2, f, k2, z2, |w| weight(w, s2));
        }
        bar(&mut c, bar_x, y + 8, "conv2 colour scale", s2);
        notes.push(format!("conv2 ±{} (fan_in {})", canvas::short(s2), l2.cin * l2.k * l2.k));
    }
    notes.extend([String::new(), "random init draws each weight".into(), "uniformly in ±1/√fan_in (s = 1)".into()]);
    for (j, line) in notes.iter().enumerate() {
        c.text(bar_x, y2 + 80 + 18 * j as i64, line.as_str(), 12.0, TEXT, Anchor::TopLeft);
    }
    c.save(path)?;
    Ok(s)
}

/// A colour bar for weights in ±`scale` at `x` (right of the grids), with a caption above and its range below.
fn bar(c: &mut Canvas, x: i64, y: i64, caption: &str, scale: f32) {
    c.text(x, y, caption, 12.0, TEXT, Anchor::TopLeft);
    c.color_bar(x, y + 18, BAR_W, 14, canvas::diverging);
    let ty = y + 36;
    c.text(x, ty, canvas::short(-scale), 11.0, TEXT, Anchor::TopLeft);
    c.text(x + BAR_W / 2, ty, "0", 11.0, TEXT, Anchor::TopCenter);
    c.text(x + BAR_W, ty, format!("+{}", canvas::short(scale)), 11.0, TEXT, Anchor::TopRight);
}

/// A weight `w` on the diverging map with symmetric scale ±`scale`.
fn weight(w: f32, scale: f32) -> canvas::Rgb {
    canvas::diverging(canvas::levels(0.5 + 0.5 * w / scale, LEVELS))
}
