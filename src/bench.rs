//! `gpu-cnn bench`: training and inference throughput, start-up cost and per-kernel GPU times on any adapter (and on
//! the CPU reference), with everything a result needs to be compared across machines: adapter, driver, wgpu version,
//! git commit, date, command.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::Mnist;
use crate::engine::Engine;
use crate::gpu::network::GpuNetwork;
use crate::gpu::{AdapterSummary, Gpu};
use crate::model::{self, TRAIN_FLOPS_PER_IMAGE};

/// What was measured on, as every result records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub name: String,
    pub vendor: String,
    pub device_type: String,
    pub backend: String,
    pub driver: String,
    pub driver_info: String,
    /// The adapter's subgroup widths (`AdapterSummary::subgroups`); empty in results from before it was recorded.
    #[serde(default)]
    pub subgroups: String,
    /// Which kernels ran: "tiled", "simd" or "simd, 8-lane subgroups" (see the README's "Kernel families"); results from
    /// before the families say "subgroup (8 lanes)" or "plain".
    #[serde(default)]
    pub kernels: String,
}

impl DeviceInfo {
    /// The adapter, and the kernels the run used.
    pub fn of(a: &AdapterSummary, kernels: &crate::gpu::ops::Caps) -> Self {
        DeviceInfo {
            name: a.name.clone(),
            vendor: a.vendor.clone(),
            device_type: a.device_type.clone(),
            backend: a.backend.clone(),
            driver: a.driver.clone(),
            driver_info: a.driver_info.clone(),
            subgroups: a.subgroups.clone(),
            kernels: kernels.describe(),
        }
    }

    pub fn cpu_reference() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        DeviceInfo {
            name: format!("CPU reference ({threads} threads)"),
            vendor: String::new(),
            device_type: "cpu".into(),
            backend: "cpu".into(),
            driver: "gpu-cnn reference".into(),
            driver_info: String::new(),
            subgroups: "–".into(),
            kernels: "CPU reference".into(),
        }
    }
}

/// Median, min and max of repeated measurements.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Stats {
    pub fn of(mut v: Vec<f64>) -> Stats {
        assert!(!v.is_empty());
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) };
        Stats { median, min: v[0], max: v[n - 1], runs: n }
    }
}

/// One kernel's time per dispatch in a training step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KernelTime {
    /// Entry point and layer, e.g. `conv2d_forward conv2`.
    pub name: String,
    /// Median milliseconds per dispatch.
    pub ms: f64,
    /// Achieved GFLOP/s (0 for kernels that only move data).
    pub gflops: f64,
}

/// One benchmark result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchResult {
    pub device: DeviceInfo,
    pub wgpu_version: String,
    pub gpu_cnn_commit: String,
    pub date: String,
    pub command: String,
    pub batch_size: usize,
    pub steps_per_run: usize,
    /// Pipelines created and data uploaded, seconds.
    pub startup_seconds: f64,
    pub train_images_per_sec: Stats,
    /// 60,000 images at the median training rate.
    pub epoch_seconds: f64,
    /// Training throughput in GFLOP/s (7.1 MFLOP per image).
    pub train_gflops: f64,
    pub inference_images_per_sec: Stats,
    /// "gpu timestamps", "wall clock" or "none".
    pub kernel_timer: String,
    pub kernels: Vec<KernelTime>,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub batch_size: usize,
    pub steps: usize,
    pub repeats: usize,
    pub command: String,
}

/// Benchmarks one adapter: start-up, training steps (warm-up, then `repeats` runs of `steps` steps), inference on the
/// test set, and per-kernel times.
pub fn bench_gpu(gpu: Gpu, data: &Mnist, cfg: &BenchConfig) -> anyhow::Result<BenchResult> {
    let device = DeviceInfo::of(&gpu.adapter, &gpu.caps);
    let params = model::init_params(model::DEFAULT_SEED);
    let t0 = Instant::now();
    let mut net = GpuNetwork::new(gpu, cfg.batch_size, Some(&data.train), &data.test, &params)?;
    let startup_seconds = t0.elapsed().as_secs_f64();
    let steps = cfg.steps.min(net.steps_per_epoch());
    let order = crate::train::epoch_order(model::DEFAULT_SEED, 0, data.train.len());
    net.train_steps_raw(&order, 0.01, 0.9, 3)?; // warm-up: first dispatches, caches
    let mut train = Vec::new();
    for _ in 0..cfg.repeats {
        let t = Instant::now();
        net.train_steps_raw(&order, 0.01, 0.9, steps)?;
        train.push((steps * cfg.batch_size) as f64 / t.elapsed().as_secs_f64());
    }
    let _ = GpuNetwork::evaluate(&mut net, false)?; // warm-up
    let mut infer = Vec::new();
    for _ in 0..cfg.repeats {
        let t = Instant::now();
        let (m, _) = GpuNetwork::evaluate(&mut net, false)?;
        infer.push(m.count as f64 / t.elapsed().as_secs_f64());
    }
    let (kernel_timer, ops) = net.profile(cfg.repeats.max(3))?;
    let kernels = ops
        .into_iter()
        .map(|o| KernelTime {
            name: o.name,
            ms: o.seconds * 1e3,
            gflops: if o.seconds > 0.0 { o.flops / o.seconds / 1e9 } else { 0.0 },
        })
        .collect();
    Ok(result(device, cfg, steps, startup_seconds, train, infer, kernel_timer, kernels))
}

/// Assembles a result with the run's metadata (wgpu version, commit, date) and the derived numbers.
#[allow(clippy::too_many_arguments)]
fn result(
    device: DeviceInfo,
    cfg: &BenchConfig,
    steps: usize,
    startup_seconds: f64,
    train: Vec<f64>,
    infer: Vec<f64>,
    kernel_timer: String,
    kernels: Vec<KernelTime>,
) -> BenchResult {
    let train = Stats::of(train);
    BenchResult {
        device,
        wgpu_version: env!("GPU_CNN_WGPU_VERSION").to_string(),
        gpu_cnn_commit: env!("GPU_CNN_GIT_COMMIT").to_string(),
        date: utc_now(),
        command: cfg.command.clone(),
        batch_size: cfg.batch_size,
        steps_per_run: steps,
        startup_seconds,
        epoch_seconds: 60_000.0 / train.median,
        train_gflops: train.median * TRAIN_FLOPS_PER_IMAGE as f64 / 1e9,
        train_images_per_sec: train,
        inference_images_per_sec: Stats::of(infer),
        kernel_timer,
        kernels,
    }
}

/// The same measurements on the CPU reference (fewer steps: it is the slow row).
pub fn bench_cpu(data: &Mnist, cfg: &BenchConfig) -> anyhow::Result<BenchResult> {
    let params = model::init_params(model::DEFAULT_SEED);
    let t0 = Instant::now();
    let mut cpu = crate::cpu::CpuEngine::new(cfg.batch_size, Some(&data.train), &data.test, &params);
    let startup_seconds = t0.elapsed().as_secs_f64();
    let steps = cfg.steps.clamp(1, 20);
    let order = crate::train::epoch_order(model::DEFAULT_SEED, 0, data.train.len());
    let mut train = Vec::new();
    for r in 0..cfg.repeats {
        let part = &order[r * steps * cfg.batch_size..(r + 1) * steps * cfg.batch_size];
        let t = Instant::now();
        cpu.train_epoch(part, 0.01, 0.9, &mut |_, _| true)?;
        train.push((steps * cfg.batch_size) as f64 / t.elapsed().as_secs_f64());
    }
    let mut infer = Vec::new();
    for _ in 0..cfg.repeats {
        let t = Instant::now();
        let (m, _) = cpu.evaluate()?;
        infer.push(m.count as f64 / t.elapsed().as_secs_f64());
    }
    Ok(result(DeviceInfo::cpu_reference(), cfg, steps, startup_seconds, train, infer, "none".into(), Vec::new()))
}

/// Side-by-side markdown table of results (one column per device).
pub fn table(results: &[BenchResult]) -> String {
    let mut s = String::new();
    let cols: Vec<String> = results.iter().map(|r| format!("{} ({})", r.device.name, r.device.backend)).collect();
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
    s.push_str(&row("batch size", &|r| r.batch_size.to_string()));
    s.push_str(&row("training images/s (median [min–max])", &|r| fmt_stats(&r.train_images_per_sec)));
    s.push_str(&row("epoch-equivalent (60k images), s", &|r| format!("{:.2}", r.epoch_seconds)));
    s.push_str(&row("training GFLOP/s", &|r| format!("{:.1}", r.train_gflops)));
    s.push_str(&row("inference images/s (median [min–max])", &|r| fmt_stats(&r.inference_images_per_sec)));
    s.push_str(&row("start-up (pipelines + upload), s", &|r| format!("{:.2}", r.startup_seconds)));
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
        s.push_str(&row(&format!("`{n}` ms (GFLOP/s)"), &|r| {
            r.kernels.iter().find(|k| &k.name == n).map_or("–".into(), |k| {
                if k.gflops > 0.0 {
                    format!("{:.3} ({:.1})", k.ms, k.gflops)
                } else {
                    format!("{:.3}", k.ms)
                }
            })
        }));
    }
    s.push_str(&row("wgpu / gpu-cnn commit / date", &|r| {
        format!("{} / {} / {}", r.wgpu_version, r.gpu_cnn_commit, r.date)
    }));
    s
}

fn fmt_stats(s: &Stats) -> String {
    format!("{:.0} [{:.0}–{:.0}]", s.median, s.min, s.max)
}

/// Now, UTC, as `YYYY-MM-DD HH:MM` (no date crate: days since the epoch to the civil calendar).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_median_min_max() {
        let s = Stats::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 3.0, 3));
        assert_eq!(Stats::of(vec![4.0, 1.0, 2.0, 3.0]).median, 2.5);
    }

    #[test]
    fn date_is_plausible() {
        let d = utc_now();
        assert!(d.starts_with("20") && d.len() == "2026-11-26 23:59 UTC".len(), "{d}");
    }
}
