//! The training run as curves: the loss per step and per epoch, and the test accuracy per epoch against the accuracy of
//! the untrained, random-weight network. plotters maps the data and draws the lines and markers into the canvas; the
//! frame, ticks, legend and all text are the canvas's own (monospace text set cleanly, see `canvas`).

use std::ops::Range;
use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::canvas::{self, Anchor, Canvas, Rgb, GREY, TEXT};
use super::VizError;
use crate::engine::EpochReport;

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 480;
/// Each panel is half the picture; its plot area leaves room for the y labels on the left and the x labels below.
const PANEL: i64 = WIDTH as i64 / 2;
const PLOT_LEFT: i64 = 84;
const PLOT_RIGHT: i64 = 24;
const PLOT_TOP: i64 = 72;
const PLOT_BOTTOM: i64 = 66;

const STEP: Rgb = [150, 190, 225];
const AVERAGE: Rgb = [8, 69, 148];
const TRAIN: Rgb = [230, 120, 0];
const TEST: Rgb = [200, 20, 40];
const REFERENCE: Rgb = [90, 90, 90];
const GRID: Rgb = [232, 232, 232];

fn rgb(c: Rgb) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// Draws two panels: left, the training loss of every step (`step_losses`, in order; step i ends at epoch
/// (i + 1) / `steps_per_epoch`) with a moving average, each epoch's mean training loss and its test loss, on a log scale;
/// right, each epoch's test accuracy (%) and a dashed line at `forward_only_accuracy`, the accuracy of the random-weight
/// network. Accuracies are fractions in [0, 1], as in [`EpochReport`]. Works with one epoch, few steps, or none.
pub fn curves_png(
    path: &Path,
    step_losses: &[f32],
    steps_per_epoch: usize,
    epochs: &[EpochReport],
    forward_only_accuracy: f64,
) -> Result<(), VizError> {
    if steps_per_epoch == 0 && !step_losses.is_empty() {
        return Err(VizError::input(path, "steps_per_epoch is 0 but there are step losses"));
    }
    let accuracies = epochs.iter().map(|e| e.test_accuracy).chain([forward_only_accuracy]);
    if let Some(a) = accuracies.into_iter().find(|a| !(0.0..=1.0).contains(a)) {
        return Err(VizError::input(path, format!("accuracy {a} is not a fraction in [0, 1]")));
    }
    let spe = steps_per_epoch.max(1) as f64;
    let last_step_epoch = step_losses.len().div_ceil(steps_per_epoch.max(1));
    let span = epochs.iter().map(|e| e.epoch).chain([last_step_epoch, 1]).max().unwrap_or(1) as f64;

    // The data, in (epoch, value) points.
    let steps: Vec<(f64, f64)> = step_losses
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite() && **l > 0.0)
        .map(|(i, &l)| ((i + 1) as f64 / spe, l as f64))
        .collect();
    // A moving average over about 1/25 of the run, drawn at the middle of its window.
    let window = (steps.len() / 25).max(1);
    let average: Vec<(f64, f64)> = if window >= 3 {
        steps.windows(window).map(|w| (w[w.len() / 2].0, w.iter().map(|p| p.1).sum::<f64>() / window as f64)).collect()
    } else {
        Vec::new()
    };
    let positive = |p: &(f64, f64)| p.1.is_finite() && p.1 > 0.0;
    let train: Vec<(f64, f64)> = epochs.iter().map(|e| (e.epoch as f64 - 0.5, e.train_loss)).filter(positive).collect();
    let test: Vec<(f64, f64)> = epochs.iter().map(|e| (e.epoch as f64, e.test_loss)).filter(positive).collect();
    let accuracy: Vec<(f64, f64)> = epochs.iter().map(|e| (e.epoch as f64, 100.0 * e.test_accuracy)).collect();
    let reference = 100.0 * forward_only_accuracy;

    let losses = steps.iter().chain(&train).chain(&test).map(|p| p.1);
    let (lo, hi) = match (losses.clone().reduce(f64::min), losses.reduce(f64::max)) {
        (Some(lo), Some(hi)) => ((lo * 0.8).max(1e-4), (hi * 1.3).max(lo * 3.0)),
        _ => (0.01, 3.0),
    };
    let loss_ticks = log_ticks(lo, hi);
    let epoch_ticks = epoch_ticks(span);
    let pct_ticks: Vec<f64> = (0..=10).map(|k| 10.0 * k as f64).collect();

    let mut c = Canvas::new(WIDTH, HEIGHT);
    let draw = |e: DrawingAreaErrorKind<_>| VizError::draw(path, e);
    let (loss_px, acc_px) = {
        let root = BitMapBackend::with_buffer(c.pixels_mut(), (WIDTH, HEIGHT)).into_drawing_area();
        let (left, right) = root.split_horizontally(PANEL as u32);

        let plot = plot_area(&left);
        let mut chart = ChartBuilder::on(&plot).build_cartesian_2d(0.0..span, (lo..hi).log_scale()).map_err(draw)?;
        grid(&mut chart, &epoch_ticks, &loss_ticks, 0.0..span, lo..hi).map_err(draw)?;
        chart.draw_series(LineSeries::new(steps.iter().copied(), rgb(STEP).stroke_width(1))).map_err(draw)?;
        chart.draw_series(LineSeries::new(average.iter().copied(), rgb(AVERAGE).stroke_width(2))).map_err(draw)?;
        chart.draw_series(train.iter().map(|&p| Circle::new(p, 5, rgb(TRAIN).filled()))).map_err(draw)?;
        chart.draw_series(LineSeries::new(test.iter().copied(), rgb(TEST).stroke_width(1))).map_err(draw)?;
        let square = |p| EmptyElement::at(p) + Rectangle::new([(-4, -4), (4, 4)], rgb(TEST).filled());
        chart.draw_series(test.iter().map(|&p| square(p))).map_err(draw)?;
        let loss_px = Pixels::of(&chart, &epoch_ticks, &loss_ticks, &[&steps, &average, &test], &train);

        let plot = plot_area(&right);
        let mut chart = ChartBuilder::on(&plot).build_cartesian_2d(0.0..span, 0.0..102.0).map_err(draw)?;
        grid(&mut chart, &epoch_ticks, &pct_ticks, 0.0..span, 0.0..100.0).map_err(draw)?;
        let dashed =
            DashedLineSeries::new([(0.0, reference), (span, reference)], 10, 6, rgb(REFERENCE).stroke_width(2));
        chart.draw_series(dashed).map_err(draw)?;
        // The trained network starts as the forward-only one: its line starts at epoch 0 on the reference, so the jump
        // that backpropagation makes in the first epoch is drawn, not implied.
        let from_start: Vec<(f64, f64)> = match epochs.first() {
            Some(e) if e.epoch == 1 => [(0.0, reference)].into_iter().chain(accuracy.iter().copied()).collect(),
            _ => accuracy.clone(),
        };
        chart.draw_series(LineSeries::new(from_start, rgb(TEST).stroke_width(2))).map_err(draw)?;
        chart.draw_series(accuracy.iter().map(|&p| Circle::new(p, 5, rgb(TEST).filled()))).map_err(draw)?;
        let line = [(0.0, reference), (span, reference)];
        let mut acc_px = Pixels::of(&chart, &epoch_ticks, &pct_ticks, &[&accuracy, &line], &[]);
        acc_px.extra = [(0.0, reference)].iter().chain(accuracy.last()).map(|p| chart.backend_coord(p)).collect();
        root.present().map_err(draw)?;
        (loss_px, acc_px)
    };

    c.text(WIDTH as i64 / 2, 12, "Training: loss and test accuracy per epoch", 20.0, TEXT, Anchor::TopCenter);
    // Two significant digits at most: 0.05, 0.15, 1.5, 2.
    let fmt_loss = |v: f64| {
        let decimals = (-v.log10().floor()).max(0.0) as usize + 1;
        let s = format!("{v:.decimals$}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    axes(&mut c, &loss_px, "cross-entropy loss", "loss (log scale)", &loss_ticks, fmt_loss);
    axes(&mut c, &acc_px, "test accuracy", "accuracy (%)", &pct_ticks, |v| format!("{v:.0}"));

    let mut entries = Vec::new();
    if !steps.is_empty() {
        entries.push((Sample::Line(STEP), "loss per step".to_string()));
    }
    if !average.is_empty() {
        entries.push((Sample::Line(AVERAGE), format!("moving average ({window} steps)")));
    }
    if !train.is_empty() {
        entries.push((Sample::Disc(TRAIN), "train loss (epoch mean)".to_string()));
    }
    if !test.is_empty() {
        entries.push((Sample::Square(TEST), "test loss (end of epoch)".to_string()));
    }
    legend(&mut c, &loss_px, &entries, &[Spot::UpperRight, Spot::LowerLeft, Spot::UpperLeft, Spot::LowerRight]);

    // The direct labels first, so that the legend avoids them too.
    let mut acc_px = acc_px;
    let (x0, y_ref) = acc_px.extra[0];
    let above = if reference > 88.0 { 14 } else { -14 };
    let (x, y) = (x0 as i64 + 8, y_ref as i64 + above);
    let label = "forward-only (random weights)";
    c.text(x, y, label, 13.0, REFERENCE, Anchor::CenterLeft);
    acc_px.cover(x, y - 6, x + (label.len() as f64 * canvas::advance(13.0)) as i64, y + 6);
    let mut entries = Vec::new();
    if let (Some(&(x, y)), Some(&(_, a))) = (acc_px.extra.get(1), accuracy.last()) {
        let (x, y) = (x as i64 - 8, y as i64 + 16);
        c.text(x, y, format!("{a:.2}%"), 13.0, TEST, Anchor::TopRight);
        acc_px.cover(x - 60, y, x, y + 12);
        entries.push((Sample::Disc(TEST), format!("test accuracy, backprop: {a:.2}%")));
    }
    entries.push((Sample::Dashed(REFERENCE), format!("forward-only (random weights): {reference:.1}%")));
    legend(&mut c, &acc_px, &entries, &[Spot::MiddleRight, Spot::LowerRight, Spot::MiddleLeft, Spot::UpperLeft]);
    c.save(path)
}

/// The plot area of a panel: the panel less the margins for titles and labels.
fn plot_area<DB: DrawingBackend>(panel: &DrawingArea<DB, Shift>) -> DrawingArea<DB, Shift> {
    panel.margin(PLOT_TOP as u32, PLOT_BOTTOM as u32, PLOT_LEFT as u32, PLOT_RIGHT as u32)
}

/// Light grid lines at the ticks, under the data.
fn grid<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<DB, Cartesian2d<RangedCoordf64, Y>>,
    xs: &[f64],
    ys: &[f64],
    x: Range<f64>,
    y: Range<f64>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let style = rgb(GRID).stroke_width(1);
    chart.draw_series(xs.iter().map(|&v| PathElement::new(vec![(v, y.start), (v, y.end * 1.02)], style)))?;
    chart.draw_series(ys.iter().map(|&v| PathElement::new(vec![(x.start, v), (x.end, v)], style)))?;
    Ok(())
}

/// Where a chart landed in the picture: its plot area (left, top, right, bottom), the pixel positions of its ticks,
/// pixels its data covers (for placing the legend) and any points asked for.
struct Pixels {
    area: (i64, i64, i64, i64),
    x_ticks: Vec<(f64, i64)>,
    y_ticks: Vec<i64>,
    covered: Vec<(i64, i64)>,
    extra: Vec<(i32, i32)>,
}

impl Pixels {
    /// `lines` are polylines (sampled every few pixels along each segment), `markers` single points.
    fn of<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
        chart: &ChartContext<DB, Cartesian2d<RangedCoordf64, Y>>,
        xs: &[f64],
        ys: &[f64],
        lines: &[&[(f64, f64)]],
        markers: &[(f64, f64)],
    ) -> Pixels {
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        let px = |p: &(f64, f64)| {
            let (x, y) = chart.backend_coord(p);
            (x as i64, y as i64)
        };
        let mut covered: Vec<(i64, i64)> = markers.iter().map(px).collect();
        for line in lines {
            let points: Vec<(i64, i64)> = line.iter().map(px).collect();
            covered.extend(points.first());
            for w in points.windows(2) {
                let (dx, dy) = (w[1].0 - w[0].0, w[1].1 - w[0].1);
                let n = (dx.abs().max(dy.abs()) / 4).max(1);
                covered.extend((1..=n).map(|k| (w[0].0 + dx * k / n, w[0].1 + dy * k / n)));
            }
        }
        Pixels {
            area: (xr.start as i64, yr.start as i64, xr.end as i64 - 1, yr.end as i64 - 1),
            x_ticks: xs.iter().map(|&x| (x, chart.backend_coord(&(x, ys[0])).0 as i64)).collect(),
            y_ticks: ys.iter().map(|&y| chart.backend_coord(&(xs[0], y)).1 as i64).collect(),
            covered,
            extra: Vec::new(),
        }
    }

    /// Marks the rectangle (x0, y0)–(x1, y1) as covered (a label drawn there).
    fn cover(&mut self, x0: i64, y0: i64, x1: i64, y1: i64) {
        for y in (y0..=y1).step_by(4) {
            self.covered.extend((x0..=x1).step_by(4).map(|x| (x, y)));
        }
    }
}

/// The frame, ticks, tick labels and titles of one panel.
fn axes(c: &mut Canvas, px: &Pixels, title: &str, y_title: &str, y_ticks: &[f64], fmt: impl Fn(f64) -> String) {
    let (l, t, r, b) = px.area;
    c.frame(l, t, r - l + 1, b - t + 1, 1, GREY);
    c.text((l + r) / 2, t - 30, title, 17.0, TEXT, Anchor::TopCenter);
    for &(epoch, x) in &px.x_ticks {
        c.fill(x, b + 1, 1, 5, GREY);
        c.text(x, b + 12, format!("{epoch:.0}"), 13.0, TEXT, Anchor::TopCenter);
    }
    for (&v, &y) in y_ticks.iter().zip(&px.y_ticks) {
        c.fill(l - 6, y, 5, 1, GREY);
        c.text(l - 10, y, fmt(v), 13.0, TEXT, Anchor::CenterRight);
    }
    c.text((l + r) / 2, b + 36, "epoch", 14.0, TEXT, Anchor::TopCenter);
    c.text_up(l - 62, (t + b) / 2, y_title, 14.0, TEXT);
}

enum Sample {
    Line(Rgb),
    Dashed(Rgb),
    Disc(Rgb),
    Square(Rgb),
}

/// Where a legend may go in a plot area.
#[derive(Clone, Copy)]
enum Spot {
    UpperRight,
    UpperLeft,
    MiddleRight,
    MiddleLeft,
    LowerRight,
    LowerLeft,
}

/// A legend box in the first of `spots` that covers the fewest data pixels.
fn legend(c: &mut Canvas, px: &Pixels, entries: &[(Sample, String)], spots: &[Spot]) {
    if entries.is_empty() {
        return;
    }
    let (l, t, r, b) = px.area;
    let chars = entries.iter().map(|(_, s)| s.chars().count()).max().unwrap_or(0);
    let width = (38 + (chars as f64 * canvas::advance(13.0)).ceil() as i64 + 10).min(r - l - 20);
    let height = 22 * entries.len() as i64 + 8;
    let corner = |spot: Spot| {
        let x = match spot {
            Spot::UpperLeft | Spot::MiddleLeft | Spot::LowerLeft => l + 10,
            _ => r - 10 - width,
        };
        let y = match spot {
            Spot::UpperRight | Spot::UpperLeft => t + 10,
            Spot::MiddleRight | Spot::MiddleLeft => (t + b - height) / 2,
            Spot::LowerRight | Spot::LowerLeft => b - 10 - height,
        };
        (x, y)
    };
    let hits = |(x, y): (i64, i64)| {
        px.covered
            .iter()
            .filter(|p| p.0 >= x - 6 && p.0 <= x + width + 6 && p.1 >= y - 6 && p.1 <= y + height + 6)
            .count()
    };
    let (x, top) = spots.iter().map(|&s| corner(s)).min_by_key(|&p| hits(p)).unwrap_or((l + 10, t + 10));
    c.fill(x, top, width, height, canvas::WHITE);
    c.frame(x, top, width, height, 1, [200, 200, 200]);
    for (i, (sample, text)) in entries.iter().enumerate() {
        let y = top + 15 + 22 * i as i64;
        let sx = x + 8;
        match *sample {
            Sample::Line(col) => c.fill(sx, y - 1, 22, 2, col),
            Sample::Dashed(col) => {
                c.fill(sx, y - 1, 9, 2, col);
                c.fill(sx + 13, y - 1, 9, 2, col);
            }
            Sample::Disc(col) => c.disc(sx + 11, y, 5, col),
            Sample::Square(col) => c.fill(sx + 7, y - 4, 9, 9, col),
        }
        c.text(sx + 30, y, text.as_str(), 13.0, TEXT, Anchor::CenterLeft);
    }
}

/// Whole epochs 0..=span, every epoch up to 10 of them, else every 2, 5, 10, ... epochs.
fn epoch_ticks(span: f64) -> Vec<f64> {
    let every = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0].into_iter().find(|e| span / e <= 10.0).unwrap_or(200.0);
    (0..).map(|k| k as f64 * every).take_while(|&x| x <= span + 1e-9).collect()
}

/// Ticks for a log axis over [lo, hi]: 1, 2, 5 times powers of ten, with 3 added where that gives fewer than four.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let pick = |mantissas: &[f64]| -> Vec<f64> {
        let (e0, e1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        let mut v: Vec<f64> = (e0..=e1)
            .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|&t| t >= lo && t <= hi)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let ticks = pick(&[1.0, 2.0, 5.0]);
    if ticks.len() >= 4 {
        ticks
    } else {
        pick(&[1.0, 1.5, 2.0, 3.0, 5.0, 7.0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_land_on_whole_epochs_and_round_losses() {
        assert_eq!(epoch_ticks(1.0), vec![0.0, 1.0]);
        assert_eq!(epoch_ticks(3.0), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(epoch_ticks(24.0), vec![0.0, 5.0, 10.0, 15.0, 20.0]);
        let t = log_ticks(0.03, 3.0);
        assert!(t.len() >= 4 && t.iter().all(|&v| (0.03..=3.0).contains(&v)), "{t:?}");
        assert!(log_ticks(0.5, 1.5).len() >= 2);
    }
}
