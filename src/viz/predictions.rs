//! What the network answers: the probed digits, each with its prediction, the softmax confidence and the true label,
//! framed green when right and red when wrong.

use std::path::Path;

use super::canvas::{Anchor, Canvas, RIGHT, TEXT, WRONG};
use super::{argmax, probe_len, softmax, VizError};
use crate::engine::Probe;
use crate::model::CLASSES;

/// Images are drawn enlarged to about 84 pixels (MNIST's 3×) inside a 4-pixel frame, with two lines of text below, in
/// cells 132×150 (larger for images over 84 pixels).
const SIDE: i64 = 84;
const FRAME: i64 = 4;
const CELL_W: i64 = 132;
const CELL_H: i64 = 150;
const MARGIN: i64 = 16;
const Y0: i64 = 56;

/// Draws the probed digits (de-normalized to grey, white on black as MNIST stores them) in a grid, each with
/// "pred p (confidence%)" and "true t" below and a green (right) or red (wrong) frame; `labels` are the true classes.
pub fn predictions_png(path: &Path, probe: &Probe, labels: &[u8], title: &str) -> Result<(), VizError> {
    let n = probe_len(path, probe, labels)?;
    let shape = probe.input;
    let zoom = (SIDE / shape.height.max(shape.width) as i64).max(1);
    let (img_w, img_h) = (shape.width as i64 * zoom, shape.height as i64 * zoom);
    let (side_w, side_h) = (img_w.max(SIDE), img_h.max(SIDE));
    let (cell_w, cell_h) = (CELL_W.max(side_w + 48), CELL_H + side_h - SIDE);
    let cols = if n <= 10 { n.min(5) } else { 8 };
    let rows = n.div_ceil(cols);
    let width = 2 * MARGIN + cols.max(5) as i64 * cell_w;
    let height = Y0 + rows as i64 * cell_h + 34;
    let mut c = Canvas::new(width as u32, height as u32);
    c.text(MARGIN, 12, title, 18.0, TEXT, Anchor::TopLeft);

    let mut right = 0;
    for (s, &label) in labels.iter().enumerate() {
        let p = softmax(&probe.logits[s * CLASSES..(s + 1) * CLASSES]);
        let pred = argmax(&p);
        let ok = pred == label as usize;
        right += ok as usize;
        let x = MARGIN + (s % cols) as i64 * cell_w + (cell_w - side_w) / 2;
        let y = Y0 + (s / cols) as i64 * cell_h;
        let img = &probe.x[s * shape.pixels()..(s + 1) * shape.pixels()];
        c.image(x + (side_w - img_w) / 2, y + (side_h - img_h) / 2, img, shape, zoom, probe.norm, |v| v);
        let color = if ok { RIGHT } else { WRONG };
        c.frame(x, y, side_w, side_h, FRAME, color);
        let cx = x + side_w / 2;
        let confidence = if p[pred] >= 0.995 { ">99".to_string() } else { format!("{:.0}", p[pred] * 100.0) };
        c.text(cx, y + side_h + FRAME + 8, format!("pred {pred} ({confidence}%)"), 14.0, color, Anchor::TopCenter);
        c.text(cx, y + side_h + FRAME + 28, format!("true {label}"), 14.0, TEXT, Anchor::TopCenter);
    }
    let summary = format!("{right} of {n} right · green frame: right, red frame: wrong · % = softmax confidence");
    c.text(MARGIN, height - 26, summary, 12.0, TEXT, Anchor::TopLeft);
    c.save(path)
}
