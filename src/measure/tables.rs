//! Benchmark results as markdown: side by side (`table`), and old against new (`compare_table`).

use super::bench::BenchResult;
use super::stats::{Change, Stats};
use crate::model;

/// Side-by-side markdown table of results (one column per device).
pub fn table(results: &[BenchResult]) -> String {
    let mut s = String::new();
    let cols: Vec<String> = results.iter().map(|r| r.column()).collect();
    s.push_str(&format!("| | {} |\n", cols.join(" | ")));
    s.push_str(&format!("|---|{}\n", "---|".repeat(results.len())));
    let row = |label: &str, f: &dyn Fn(&BenchResult) -> String| {
        format!("| {label} | {} |\n", results.iter().map(f).collect::<Vec<_>>().join(" | "))
    };
    s.push_str(&row("device type", &|r| r.device.device_type.clone()));
    s.push_str(&row("driver", &|r| format!("{} {}", r.device.driver, r.device.driver_info).trim().to_string()));
    s.push_str(&row("subgroup widths / kernel set", &|r| {
        let or_dash = |v: &str| if v.is_empty() { "–".to_string() } else { v.to_string() };
        format!("{} / {}", or_dash(&r.device.subgroups), or_dash(&r.device.kernels))
    }));
    s.push_str(&row("network (`--arch`)", &|r| {
        let preset = model::PRESETS.iter().find(|p| p.1 == r.arch);
        if r.arch.is_empty() {
            "study".into()
        } else {
            preset.map_or(r.arch.clone(), |p| p.0.to_string())
        }
    }));
    s.push_str(&row("batch size", &|r| r.batch_size.to_string()));
    s.push_str(&row("checked (`check --quick` first)", &|r| match r.verified {
        Some(true) => "yes".into(),
        Some(false) => "**FAILED: numbers unverified**".into(),
        None => "–".into(),
    }));
    s.push_str(&row("training images/s (median [min–max])", &|r| fmt_stats(&r.train_images_per_sec)));
    s.push_str(&row("training images/s (mean ± σ)", &|r| fmt_mean(&r.train_images_per_sec)));
    s.push_str(&row("training samples: steps × runs (spread)", &|r| {
        format!(
            "{} × {} ({:.1} %)",
            r.steps_per_run,
            r.train_images_per_sec.runs,
            100.0 * r.train_images_per_sec.spread()
        )
    }));
    s.push_str(&row("epoch-equivalent (training set), s", &|r| format!("{:.2}", r.epoch_seconds)));
    s.push_str(&row("training GFLOP/s", &|r| format!("{:.1}", r.train_gflops)));
    s.push_str(&row("inference images/s (median [min–max])", &|r| fmt_stats(&r.inference_images_per_sec)));
    s.push_str(&row("inference images/s (mean ± σ)", &|r| fmt_mean(&r.inference_images_per_sec)));
    s.push_str(&row("start-up (pipelines + upload), s", &|r| format!("{:.2}", r.startup_seconds)));
    s.push_str(&row("dispatches per training step", &|r| {
        if r.dispatches_per_step > 0 {
            r.dispatches_per_step.to_string()
        } else {
            "–".into()
        }
    }));
    s.push_str(&row("peak f32 FMA, GFLOP/s / copy, GB/s", &|r| {
        r.peak
            .as_ref()
            .map_or("–".into(), |p| format!("{:.0} / {:.0}", p.fma_gflops.median, p.copy_gbytes_per_sec.median))
    }));
    s.push_str(&row("kernel timer", &|r| r.kernel_timer.clone()));
    let mut names: Vec<String> = Vec::new();
    for r in results {
        for k in &r.kernels {
            if !names.contains(&k.name) {
                names.push(k.name.clone());
            }
        }
    }
    for n in &names {
        s.push_str(&row(&format!("`{n}` ms (GFLOP/s, GB/s)"), &|r| {
            r.kernels.iter().find(|k| &k.name == n).map_or("–".into(), |k| {
                if k.gflops > 0.0 {
                    format!("{:.3} ({:.1}, {:.1})", k.ms, k.gflops, k.gbytes_per_sec)
                } else if k.gbytes_per_sec > 0.0 {
                    format!("{:.3} (–, {:.1})", k.ms, k.gbytes_per_sec)
                } else {
                    format!("{:.3}", k.ms)
                }
            })
        }));
    }
    s.push_str(&row("host", &|r| {
        r.host
            .as_ref()
            .map_or("–".into(), |h| format!("{}, {} cores, {:.0} GiB, {}", h.cpu, h.cores, h.memory_gib, h.os))
    }));
    s.push_str(&row("wgpu / gpu-cnn commit / date", &|r| {
        let dirty = if r.dirty { " (dirty)" } else { "" };
        format!("{} / {}{dirty} / {}", r.wgpu_version, r.gpu_cnn_commit, r.date)
    }));
    s
}

/// The change between pairs of results (old, new) of the same adapter and batch size: each throughput's median ± σ
/// in both runs, new/old, and whether that is beyond the two runs' noise (`stats::Change`); each kernel's time old/new
/// (above 1: faster; one median each, so no verdict).
pub fn compare_table(pairs: &[(BenchResult, BenchResult)]) -> String {
    let mut s = String::from("| adapter, batch | figure | old | new | change |\n|---|---|---|---|---|\n");
    for (o, n) in pairs {
        let who = format!("{} ({}), {}", n.device.name, n.device.backend, n.batch_size);
        let mut row = |fig: &str, old: String, new: String, change: String| {
            s.push_str(&format!("| {who} | {fig} | {old} | {new} | {change} |\n"));
        };
        for (fig, old, new) in [
            ("training images/s", &o.train_images_per_sec, &n.train_images_per_sec),
            ("inference images/s", &o.inference_images_per_sec, &n.inference_images_per_sec),
        ] {
            row(fig, fmt_spread(old), fmt_spread(new), Change::of(old, new).describe());
        }
        for k in &n.kernels {
            if let Some(ok) = o.kernels.iter().find(|x| x.name == k.name) {
                let change = format!("{:.2}×", ok.ms / k.ms);
                row(&format!("`{}` ms", k.name), format!("{:.3}", ok.ms), format!("{:.3}", k.ms), change);
            }
        }
    }
    s.push_str(
        "\nThroughputs: median ± standard deviation (samples) of each run; \"within noise\" where the two runs' samples \
         overlap or their means differ by less than twice the standard error of the difference. Kernel times are \
         medians of profiled steps with no spread recorded; their change is old / new time (above 1: faster).\n",
    );
    s
}

fn fmt_stats(s: &Stats) -> String {
    format!("{:.0} [{:.0}–{:.0}]", s.median, s.min, s.max)
}

/// Mean ± σ (and σ / mean).
fn fmt_mean(s: &Stats) -> String {
    let s = s.clone().filled();
    format!("{:.0} ± {:.0} ({:.1} %)", s.mean, s.std_dev, 100.0 * s.cv())
}

/// Median ± σ over n samples, as the comparison shows each run.
fn fmt_spread(s: &Stats) -> String {
    let s = s.clone().filled();
    format!("{:.0} ± {:.0} (n = {})", s.median, s.std_dev, s.runs)
}
