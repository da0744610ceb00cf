//! Which digits the network mistakes for which: the 10×10 confusion matrix of a test set (rows: true class, columns:
//! predicted class), counts in the cells, shaded by each row's share.

use std::path::Path;

use super::canvas::{self, Anchor, Canvas, GREY, TEXT, WHITE};
use super::VizError;
use crate::model::CLASSES;

const CELL: i64 = 50;
const X0: i64 = 90;
const Y0: i64 = 110;
const SIDE: i64 = CELL * CLASSES as i64;
const WIDTH: i64 = X0 + SIDE + 90;
const HEIGHT: i64 = Y0 + SIDE + 44;

/// Draws the confusion matrix of `preds` against `labels` (one prediction per label, classes 0..9), with the overall
/// accuracy after `title` and each class's share of right answers at the right of its row.
pub fn confusion_png(path: &Path, preds: &[u32], labels: &[u8], title: &str) -> Result<(), VizError> {
    if preds.len() != labels.len() || labels.is_empty() {
        let msg = format!("{} predictions for {} labels (need as many, at least one)", preds.len(), labels.len());
        return Err(VizError::input(path, msg));
    }
    let mut counts = [[0u32; CLASSES]; CLASSES];
    for (&p, &l) in preds.iter().zip(labels) {
        if p as usize >= CLASSES || l as usize >= CLASSES {
            return Err(VizError::input(
                path,
                format!("prediction {p} or label {l} is not a class 0..{}", CLASSES - 1),
            ));
        }
        counts[l as usize][p as usize] += 1;
    }
    let right: u32 = (0..CLASSES).map(|k| counts[k][k]).sum();
    let n = labels.len();

    let mut c = Canvas::new(WIDTH as u32, HEIGHT as u32);
    let accuracy = 100.0 * right as f64 / n as f64;
    c.text(16, 12, format!("{title} — accuracy {accuracy:.2}% ({right}/{n})"), 17.0, TEXT, Anchor::TopLeft);
    c.text(X0 + SIDE / 2, Y0 - 50, "predicted", 15.0, TEXT, Anchor::TopCenter);
    c.text(X0 - 34, Y0 - 26, "true", 15.0, TEXT, Anchor::TopCenter);
    c.text(X0 + SIDE + 44, Y0 - 26, "% right", 13.0, GREY, Anchor::TopCenter);
    for k in 0..CLASSES as i64 {
        c.text(X0 + k * CELL + CELL / 2, Y0 - 24, k.to_string(), 15.0, TEXT, Anchor::TopCenter);
        c.text(X0 - 34, Y0 + k * CELL + CELL / 2, k.to_string(), 15.0, TEXT, Anchor::Center);
    }
    for (t, row) in counts.iter().enumerate() {
        let total: u32 = row.iter().sum();
        let y = Y0 + t as i64 * CELL;
        for (p, &count) in row.iter().enumerate() {
            let share = if total > 0 { count as f32 / total as f32 } else { 0.0 };
            let x = X0 + p as i64 * CELL;
            c.fill(x + 1, y + 1, CELL - 2, CELL - 2, canvas::blues(share));
            if count > 0 {
                let ink = if share > 0.45 { WHITE } else { TEXT };
                c.text(x + CELL / 2, y + CELL / 2, count.to_string(), 13.0, ink, Anchor::Center);
            }
        }
        let recall = if total > 0 { format!("{:.0}%", 100.0 * row[t] as f64 / total as f64) } else { "–".into() };
        c.text(X0 + SIDE + 44, y + CELL / 2, recall, 13.0, GREY, Anchor::Center);
    }
    c.frame(X0, Y0, SIDE, SIDE, 1, GREY);
    let note = "rows: true class, columns: predicted class; shade = share of the row";
    c.text(16, Y0 + SIDE + 16, note, 12.0, TEXT, Anchor::TopLeft);
    c.save(path)
}
