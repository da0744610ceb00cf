//! Pictures of benchmark results (`gpu-cnn bench-report --plot DIR`), in the study's look: throughput per adapter
//! with min–max whiskers, throughput against batch size, the per-kernel time of one training step, and a roofline
//! per adapter with each kernel placed on it; and, with `--compare`, the change per kernel between two results.

use std::path::{Path, PathBuf};

use super::canvas::{Anchor, Canvas, Rgb, GREY, LIGHT, TEXT};
use super::VizError;
use crate::measure::bench::BenchResult;

const PALETTE: [Rgb; 10] = [
    [8, 69, 148],
    [230, 120, 0],
    [0, 150, 60],
    [200, 20, 40],
    [120, 60, 170],
    [90, 90, 90],
    [0, 150, 170],
    [170, 120, 0],
    [230, 90, 160],
    [100, 160, 230],
];

/// A log-scale axis from `lo` to `hi` onto pixels `p0..p1`.
#[derive(Clone, Copy)]
struct LogAxis {
    lo: f64,
    hi: f64,
    p0: i64,
    p1: i64,
}

impl LogAxis {
    /// Spanning `values` (positive), widened to whole decades.
    fn spanning(values: impl Iterator<Item = f64>, p0: i64, p1: i64) -> LogAxis {
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for v in values.filter(|v| v.is_finite() && *v > 0.0) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if lo > hi {
            (lo, hi) = (1.0, 10.0);
        }
        LogAxis {
            lo: 10f64.powf(lo.log10().floor()),
            hi: 10f64.powf(hi.log10().ceil().max(lo.log10().floor() + 1.0)),
            p0,
            p1,
        }
    }

    fn px(&self, v: f64) -> i64 {
        let t = (v.max(self.lo).ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln());
        self.p0 + (t * (self.p1 - self.p0) as f64).round() as i64
    }

    fn decades(&self) -> Vec<f64> {
        let mut v = Vec::new();
        let mut d = self.lo;
        while d <= self.hi * 1.0001 {
            v.push(d);
            d *= 10.0;
        }
        v
    }
}

/// 1.2k, 34k, 1.1M: a compact number for axes.
fn compact(v: f64) -> String {
    let (x, unit) = if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    if x >= 100.0 || x.fract() == 0.0 {
        format!("{x:.0}{unit}")
    } else {
        format!("{x:.1}{unit}")
    }
}

/// One result's label: adapter, backend, kernel family, batch.
fn label(r: &BenchResult) -> String {
    // "llvmpipe (LLVM 15.0.6, 256 bits)" → "llvmpipe": the details are in the report's table.
    let name = r.device.name.split(" (").next().unwrap_or(&r.device.name);
    let short: String = name.chars().take(26).collect();
    let family = r.device.kernels.split(',').next().unwrap_or("").trim();
    let family = if family.is_empty() { String::new() } else { format!(" {family}") };
    let mark = if r.verified == Some(false) { " UNVERIFIED" } else { "" };
    format!("{short} ({}{family}) b{}{mark}", r.device.backend, r.batch_size)
}

/// Draws a line of 1-pixel dots from (x0, y0) to (x1, y1).
fn line(c: &mut Canvas, (x0, y0): (i64, i64), (x1, y1): (i64, i64), color: Rgb, thick: i64) {
    let n = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
    for i in 0..=n {
        let (x, y) = (x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n);
        c.fill(x - thick / 2, y - thick / 2, thick, thick, color);
    }
}

/// Vertical decade grid and labels along a horizontal log axis at the bottom of a panel.
fn x_axis(c: &mut Canvas, a: &LogAxis, top: i64, bottom: i64, title: &str) {
    for d in a.decades() {
        let x = a.px(d);
        c.fill(x, top, 1, bottom - top, LIGHT);
        c.text(x, bottom + 6, compact(d), 12.0, GREY, Anchor::TopCenter);
    }
    c.text((a.p0 + a.p1) / 2, bottom + 24, title, 13.0, TEXT, Anchor::TopCenter);
}

/// Horizontal decade grid and labels along a vertical log axis at the left of a panel.
fn y_axis(c: &mut Canvas, a: &LogAxis, left: i64, right: i64, title: &str) {
    for d in a.decades() {
        let y = a.px(d);
        c.fill(left, y, right - left, 1, LIGHT);
        c.text(left - 6, y, compact(d), 12.0, GREY, Anchor::CenterRight);
    }
    c.text_up(left - 58, (a.p0 + a.p1) / 2, title, 13.0, TEXT);
}

/// Training and inference images/s per result (median bar, min–max whisker), two panels.
pub fn throughput_png(path: &Path, results: &[BenchResult]) -> Result<(), VizError> {
    if results.is_empty() {
        return Err(VizError::input(path, "no results"));
    }
    let row_h = 26i64;
    let (left, width) = (330i64, 1240u32);
    let height = (110 + row_h * results.len() as i64 + 60) as u32;
    let mut c = Canvas::new(width, height);
    c.text(
        width as i64 / 2,
        12,
        "Throughput per adapter and batch size (median, min–max)",
        20.0,
        TEXT,
        Anchor::TopCenter,
    );
    let panel_w = (width as i64 - left - 40) / 2;
    let top = 70;
    let bottom = top + row_h * results.len() as i64;
    for (p, (title, stat)) in [("training images/s", 0usize), ("inference images/s", 1)].iter().enumerate() {
        let x0 = left + p as i64 * (panel_w + 30);
        let values = results.iter().flat_map(|r| {
            let s = if *stat == 0 { &r.train_images_per_sec } else { &r.inference_images_per_sec };
            [s.min, s.max]
        });
        let a = LogAxis::spanning(values, x0, x0 + panel_w);
        c.text(x0 + panel_w / 2, top - 24, *title, 15.0, TEXT, Anchor::TopCenter);
        x_axis(&mut c, &a, top, bottom, "images/s (log scale)");
        for (i, r) in results.iter().enumerate() {
            let s = if *stat == 0 { &r.train_images_per_sec } else { &r.inference_images_per_sec };
            let y = top + i as i64 * row_h + 5;
            let color = PALETTE[i % PALETTE.len()];
            c.fill(a.p0, y, a.px(s.median) - a.p0, row_h - 10, color);
            let (lo, hi) = (a.px(s.min), a.px(s.max));
            c.fill(lo, y + (row_h - 10) / 2, (hi - lo).max(1), 2, TEXT);
            c.fill(lo, y + 2, 2, row_h - 14, TEXT);
            c.fill(hi, y + 2, 2, row_h - 14, TEXT);
            c.text(hi.max(a.px(s.median)) + 8, y + (row_h - 10) / 2, compact(s.median), 12.0, TEXT, Anchor::CenterLeft);
        }
    }
    for (i, r) in results.iter().enumerate() {
        let y = top + i as i64 * row_h + row_h / 2;
        c.text(left - 10, y, label(r), 12.0, TEXT, Anchor::CenterRight);
    }
    c.save(path)
}

/// Training (solid) and inference (dots) images/s against batch size, one colour per adapter and kernel set.
pub fn scaling_png(path: &Path, results: &[BenchResult]) -> Result<(), VizError> {
    let mut groups: Vec<(String, Vec<&BenchResult>)> = Vec::new();
    for r in results {
        let key = format!("{} ({}, {})", r.device.name, r.device.backend, r.device.kernels);
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => g.1.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    for g in &mut groups {
        g.1.sort_by_key(|r| r.batch_size);
    }
    let (width, height) = (1000u32, 560u32);
    let (left, right, top, bottom) = (110i64, width as i64 - 30, 60i64, height as i64 - 150);
    let mut c = Canvas::new(width, height);
    c.text(width as i64 / 2, 12, "Throughput against batch size", 20.0, TEXT, Anchor::TopCenter);
    let xa = LogAxis::spanning(results.iter().map(|r| r.batch_size as f64), left, right);
    let ya = LogAxis::spanning(
        results.iter().flat_map(|r| [r.train_images_per_sec.median, r.inference_images_per_sec.median]),
        bottom,
        top,
    );
    x_axis(&mut c, &xa, top, bottom, "batch size (log scale)");
    y_axis(&mut c, &ya, left, right, "images/s (log scale)");
    for (gi, (name, rs)) in groups.iter().enumerate() {
        let color = PALETTE[gi % PALETTE.len()];
        let pts = |f: &dyn Fn(&BenchResult) -> f64| -> Vec<(i64, i64)> {
            rs.iter().map(|r| (xa.px(r.batch_size as f64), ya.px(f(r)))).collect()
        };
        let train = pts(&|r| r.train_images_per_sec.median);
        let infer = pts(&|r| r.inference_images_per_sec.median);
        for w in train.windows(2) {
            line(&mut c, w[0], w[1], color, 3);
        }
        for &(x, y) in &train {
            c.disc(x, y, 5, color);
        }
        for &(x, y) in &infer {
            c.fill(x - 4, y - 4, 8, 8, color);
        }
        let y = bottom + 56 + gi as i64 * 20;
        c.fill(left, y - 1, 24, 3, color);
        c.text(left + 32, y, format!("{name}: training (line), inference (squares)"), 12.0, TEXT, Anchor::CenterLeft);
    }
    c.save(path)
}

/// The time of each kernel in one training step, per result, as stacked bars in step order.
pub fn kernels_png(path: &Path, results: &[BenchResult]) -> Result<(), VizError> {
    let timed: Vec<&BenchResult> = results.iter().filter(|r| !r.kernels.is_empty()).collect();
    if timed.is_empty() {
        return Err(VizError::input(path, "no result has per-kernel times"));
    }
    // Colour by op: the convolutions' forward and backward, the dense layers', the rest.
    let class = |name: &str| -> (usize, &'static str) {
        let op = name.split_whitespace().next().unwrap_or("");
        if op.starts_with("conv2d_forward") {
            (0, "convolution forward")
        } else if op.starts_with("conv2d_backward") {
            (1, "convolution gradients")
        } else if op.starts_with("dense_forward") {
            (2, "dense forward")
        } else if op.starts_with("dense_backward") {
            (3, "dense gradients")
        } else if op.starts_with("maxpool") {
            (4, "max-pool backward")
        } else {
            (5, "load, loss, SGD")
        }
    };
    let row_h = 34i64;
    let (left, width) = (330i64, 1240u32);
    let height = (120 + row_h * timed.len() as i64 + 90) as u32;
    let mut c = Canvas::new(width, height);
    c.text(
        width as i64 / 2,
        12,
        "Where one training step's time goes (per-kernel GPU timestamps)",
        20.0,
        TEXT,
        Anchor::TopCenter,
    );
    let (top, right) = (70i64, width as i64 - 40);
    for (i, r) in timed.iter().enumerate() {
        let total: f64 = r.kernels.iter().map(|k| k.ms).sum();
        let y = top + i as i64 * row_h;
        c.text(left - 10, y + row_h / 2 - 4, label(r), 12.0, TEXT, Anchor::CenterRight);
        let mut x = left;
        for k in &r.kernels {
            let w = ((k.ms / total) * (right - left - 90) as f64).round() as i64;
            let color = PALETTE[class(&k.name).0];
            c.fill(x, y + 4, (w - 1).max(1), row_h - 16, color);
            x += w;
        }
        c.text(x + 6, y + row_h / 2 - 4, format!("{:.3} ms", total), 12.0, TEXT, Anchor::CenterLeft);
        // The biggest kernel, named under the bar.
        if let Some(k) = r.kernels.iter().max_by(|a, b| a.ms.total_cmp(&b.ms)) {
            let share = 100.0 * k.ms / total;
            c.text(left, y + row_h - 10, format!("largest: {} {:.0} %", k.name, share), 10.0, GREY, Anchor::TopLeft);
        }
    }
    let y = top + row_h * timed.len() as i64 + 24;
    let names = [
        "convolution forward",
        "convolution gradients",
        "dense forward",
        "dense gradients",
        "max-pool backward",
        "load, loss, SGD",
    ];
    for (j, n) in names.iter().enumerate() {
        let (x, y) = (left + (j % 3) as i64 * 260, y + (j / 3) as i64 * 20);
        c.fill(x, y, 16, 12, PALETTE[j]);
        c.text(x + 22, y + 6, *n, 12.0, TEXT, Anchor::CenterLeft);
    }
    c.text(
        left,
        y + 46,
        "Each bar is one step in dispatch order, scaled to its own total.",
        11.0,
        GREY,
        Anchor::TopLeft,
    );
    c.save(path)
}

/// A roofline per adapter (its largest batch among the results that carry the adapter's peaks): attainable GFLOP/s =
/// min(FMA peak, bandwidth × FLOP/byte), with each kernel that does arithmetic placed at its measured FLOP/byte and
/// GFLOP/s; one colour per kernel, the same in every panel.
pub fn roofline_png(path: &Path, results: &[BenchResult]) -> Result<(), VizError> {
    let mut chosen: Vec<&BenchResult> = Vec::new();
    for r in results.iter().filter(|r| r.peak.is_some() && r.kernels.iter().any(|k| k.flops > 0.0 && k.bytes > 0.0)) {
        let same = |o: &&BenchResult| {
            o.device.name == r.device.name
                && o.device.backend == r.device.backend
                && o.device.kernels == r.device.kernels
        };
        match chosen.iter().position(same) {
            Some(i) if chosen[i].batch_size < r.batch_size => chosen[i] = r,
            Some(_) => {}
            None => chosen.push(r),
        }
    }
    if chosen.is_empty() {
        return Err(VizError::input(path, "no result carries the adapter's peaks and per-kernel bytes (schema 2)"));
    }
    chosen.truncate(4);
    let mut names: Vec<&str> = Vec::new();
    for r in &chosen {
        for k in r.kernels.iter().filter(|k| k.flops > 0.0 && k.bytes > 0.0 && k.ms > 0.0) {
            if !names.contains(&k.name.as_str()) {
                names.push(&k.name);
            }
        }
    }
    let panel_w = 560i64;
    let legend_rows = names.len().div_ceil(2) as i64;
    let (width, height) = ((panel_w * chosen.len().max(2) as i64 + 40) as u32, (620 + 18 * legend_rows) as u32);
    let mut c = Canvas::new(width, height);
    c.text(
        width as i64 / 2,
        12,
        "Roofline: each kernel against what the adapter can do",
        20.0,
        TEXT,
        Anchor::TopCenter,
    );
    let marker = |c: &mut Canvas, i: usize, x: i64, y: i64| {
        let color = PALETTE[i % PALETTE.len()];
        if i < PALETTE.len() {
            c.disc(x, y, 5, color);
        } else {
            c.fill(x - 4, y - 4, 9, 9, color);
        }
    };
    for (p, r) in chosen.iter().enumerate() {
        let peak = r.peak.as_ref().expect("filtered");
        let (fma, bw) = (peak.fma_gflops.median, peak.copy_gbytes_per_sec.median);
        let x0 = 20 + p as i64 * panel_w;
        let (left, right, top, bottom) = (x0 + 90, x0 + panel_w - 20, 90i64, 540i64);
        let pts: Vec<(f64, f64, usize)> = r
            .kernels
            .iter()
            .filter(|k| k.flops > 0.0 && k.bytes > 0.0 && k.ms > 0.0)
            .map(|k| (k.flops / k.bytes, k.gflops, names.iter().position(|n| *n == k.name).unwrap_or(0)))
            .collect();
        let xa = LogAxis::spanning(pts.iter().map(|p| p.0).chain([fma / bw, 0.5]), left, right);
        let ya = LogAxis::spanning(pts.iter().map(|p| p.1).chain([fma * 1.5]), bottom, top);
        c.text(
            (left + right) / 2,
            44,
            format!("{} — {} kernels", label(r), r.device.kernels),
            14.0,
            TEXT,
            Anchor::TopCenter,
        );
        x_axis(&mut c, &xa, top, bottom, "FLOP per byte moved (log scale)");
        y_axis(&mut c, &ya, left, right, "GFLOP/s (log scale)");
        // The roof: bandwidth-bound, then flat at the FMA peak.
        let steps = 200;
        let mut prev = None;
        for i in 0..=steps {
            let ai = xa.lo * (xa.hi / xa.lo).powf(i as f64 / steps as f64);
            let pt = (xa.px(ai), ya.px((bw * ai).min(fma)));
            if let Some(q) = prev {
                line(&mut c, q, pt, GREY, 2);
            }
            prev = Some(pt);
        }
        let peak_label = format!("f32 FMA peak {:.1} TFLOP/s", fma / 1e3);
        c.text(right - 4, ya.px(fma) - 10, peak_label, 11.0, GREY, Anchor::CenterRight);
        c.text(left + 6, top + 6, format!("copy {:.0} GB/s", bw), 11.0, GREY, Anchor::TopLeft);
        for &(ai, g, i) in &pts {
            marker(&mut c, i, xa.px(ai), ya.px(g));
        }
    }
    // One legend for every panel.
    for (i, name) in names.iter().enumerate() {
        let (col, row) = ((i as i64) / legend_rows, (i as i64) % legend_rows);
        let (x, y) = (110 + col * 520, 600 + row * 18);
        marker(&mut c, i, x, y);
        c.text(x + 10, y, *name, 11.0, TEXT, Anchor::CenterLeft);
    }
    c.save(path)
}

/// Writes the four pictures into `dir` (created if missing); returns their paths.
pub fn bench_pictures(dir: &Path, results: &[BenchResult]) -> Result<Vec<PathBuf>, VizError> {
    std::fs::create_dir_all(dir).map_err(|source| VizError::Io { path: dir.to_path_buf(), source })?;
    let mut out = Vec::new();
    let throughput = dir.join("bench_throughput.png");
    throughput_png(&throughput, results)?;
    out.push(throughput);
    if results.iter().map(|r| r.batch_size).collect::<std::collections::BTreeSet<_>>().len() > 1 {
        let p = dir.join("bench_scaling.png");
        scaling_png(&p, results)?;
        out.push(p);
    }
    if results.iter().any(|r| !r.kernels.is_empty()) {
        let p = dir.join("bench_kernels.png");
        kernels_png(&p, results)?;
        out.push(p);
    }
    if results.iter().any(|r| r.peak.is_some()) {
        let p = dir.join("bench_roofline.png");
        roofline_png(&p, results)?;
        out.push(p);
    }
    Ok(out)
}

/// The change from `old` to `new` per kernel (matched by name), as bars of new/old time (left of 1: faster).
pub fn compare_png(path: &Path, old: &BenchResult, new: &BenchResult) -> Result<(), VizError> {
    let pairs: Vec<(&str, f64)> = new
        .kernels
        .iter()
        .filter_map(|k| old.kernels.iter().find(|o| o.name == k.name).map(|o| (k.name.as_str(), o.ms / k.ms)))
        .collect();
    let rows = pairs.len() as i64 + 2;
    let row_h = 22i64;
    let (left, width) = (360i64, 1000u32);
    let height = (110 + rows * row_h + 40) as u32;
    let mut c = Canvas::new(width, height);
    c.text(
        width as i64 / 2,
        12,
        format!("Speed-up from {} to {}", old.gpu_cnn_commit, new.gpu_cnn_commit),
        20.0,
        TEXT,
        Anchor::TopCenter,
    );
    c.text(width as i64 / 2, 40, label(new), 13.0, GREY, Anchor::TopCenter);
    let all: Vec<(String, f64)> = [
        ("training images/s".to_string(), new.train_images_per_sec.median / old.train_images_per_sec.median),
        ("inference images/s".to_string(), new.inference_images_per_sec.median / old.inference_images_per_sec.median),
    ]
    .into_iter()
    .chain(pairs.iter().map(|(n, s)| (n.to_string(), *s)))
    .collect();
    let (top, right) = (80i64, width as i64 - 80);
    let xa = LogAxis::spanning(all.iter().map(|p| p.1).chain([0.5, 2.0]), left, right);
    x_axis(&mut c, &xa, top, top + rows * row_h, "new / old speed (log scale; right of 1: faster)");
    let one = xa.px(1.0);
    c.fill(one, top, 2, rows * row_h, TEXT);
    for (i, (name, s)) in all.iter().enumerate() {
        let y = top + i as i64 * row_h + 4;
        let x = xa.px(*s);
        let color = if *s >= 1.0 { PALETTE[2] } else { PALETTE[3] };
        let (a, b) = if x >= one { (one, x) } else { (x, one) };
        c.fill(a, y, (b - a).max(1), row_h - 8, color);
        c.text(left - 10, y + (row_h - 8) / 2, name.clone(), 11.0, TEXT, Anchor::CenterRight);
        c.text(b + 6, y + (row_h - 8) / 2, format!("{s:.2}×"), 11.0, TEXT, Anchor::CenterLeft);
    }
    c.save(path)
}
