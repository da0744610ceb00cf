//! `gpu-cnn bench`: training and inference throughput, start-up cost and per-kernel GPU times on any adapter (and on
//! the CPU reference), with everything a result needs to be compared across machines: adapter, driver, wgpu version,
//! git commit, date, command.

use web_time::Instant;

use log::{info, warn};
use serde::{Deserialize, Serialize};

use super::host::{rfc3339_now, HostInfo};
use super::stats::{Stats, NOISY_CV};
use crate::data::Mnist;
use crate::engine::{DeviceInfo, Engine};
use crate::gpu::net::GpuNetwork;
use crate::gpu::{AdapterSelection, Family, Gpu, OpenOptions};
use crate::model::{self, Arch};

/// One kernel's time per dispatch in a training step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KernelTime {
    /// Entry point and layer, e.g. `conv2d_forward_tiled conv2`.
    pub name: String,
    /// Median milliseconds per dispatch.
    pub ms: f64,
    /// Achieved GFLOP/s (0 for kernels that only move data).
    pub gflops: f64,
    /// Achieved GB/s, from the fewest bytes the dispatch must move (0 in results from before schema 2).
    #[serde(default)]
    pub gbytes_per_sec: f64,
    /// FLOPs and bytes of one dispatch (for the roofline).
    #[serde(default)]
    pub flops: f64,
    #[serde(default)]
    pub bytes: f64,
}
/// The result format's version: 2 added samples, host, verified, peak, per-kernel bytes, RFC 3339 dates; 3 the mean
/// and standard deviation of each figure, the warm-up, and the adapter's device id, limits and features.
pub const SCHEMA_VERSION: u32 = 3;

/// One benchmark result: one adapter at one batch size.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchResult {
    /// `SCHEMA_VERSION` when written (0 in results from before the field).
    #[serde(default)]
    pub schema_version: u32,
    pub device: DeviceInfo,
    /// The network (`--arch`; empty in results from before it could be chosen: the study's).
    #[serde(default)]
    pub arch: String,
    #[serde(default)]
    pub host: Option<HostInfo>,
    pub wgpu_version: String,
    pub gpu_cnn_commit: String,
    /// gpu-cnn's version, and whether the build had uncommitted changes.
    #[serde(default)]
    pub gpu_cnn_version: String,
    #[serde(default)]
    pub dirty: bool,
    /// RFC 3339 (older results: `YYYY-MM-DD HH:MM UTC`).
    pub date: String,
    pub command: String,
    /// `check --quick` passed on the adapter just before (None: not run, as in older results).
    #[serde(default)]
    pub verified: Option<bool>,
    pub batch_size: usize,
    /// Training steps in each timed sample.
    pub steps_per_run: usize,
    /// Shortest a timed sample was asked to last, s (0: a fixed step count).
    #[serde(default)]
    pub min_seconds: f64,
    /// Untimed samples run before the timed ones (absent before schema 3).
    #[serde(default)]
    pub warmup: usize,
    /// Pipelines created and data uploaded, seconds.
    pub startup_seconds: f64,
    pub train_images_per_sec: Stats,
    /// One pass over the training set the run loaded (60,000 images for MNIST) at the median training rate.
    pub epoch_seconds: f64,
    /// Training throughput in GFLOP/s (`Arch::train_flops_per_image`: 7.1 MFLOP for the study's network).
    pub train_gflops: f64,
    pub inference_images_per_sec: Stats,
    /// "gpu timestamps", "wall clock" or "none".
    pub kernel_timer: String,
    pub kernels: Vec<KernelTime>,
    /// Dispatches in one training step.
    #[serde(default)]
    pub dispatches_per_step: usize,
    /// What the adapter can do (`gpu-cnn peak`), measured in the same run.
    #[serde(default)]
    pub peak: Option<super::peak::PeakResult>,
}

impl BenchResult {
    /// "name (backend)", with " — unverified" where `check` did not pass before the run.
    pub fn column(&self) -> String {
        let mark = if self.verified == Some(false) { " — UNVERIFIED" } else { "" };
        format!("{} ({}){mark}", self.device.name, self.device.backend)
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// One result per batch size.
    pub batch_sizes: Vec<usize>,
    /// Training steps per timed sample; None: as many as fill `min_seconds`.
    pub steps: Option<usize>,
    pub min_seconds: f64,
    pub repeats: usize,
    /// Untimed samples before the timed ones (after the calibration's own warm-up).
    pub warmup: usize,
    pub command: String,
    /// Run `check --quick` first and record the verdict.
    pub check: bool,
    /// The network trained and evaluated.
    pub arch: Arch,
}

/// Times `run(k)` (which does k units of work) so that one sample lasts at least `min_seconds`: a warm-up, a short
/// run to learn the rate, then the count that fills the time. Returns the count.
async fn calibrate(
    min_seconds: f64,
    max: usize,
    mut run: impl AsyncFnMut(usize) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    run(1).await?;
    let mut k = 2;
    loop {
        let t = Instant::now();
        run(k).await?;
        let secs = t.elapsed().as_secs_f64();
        if secs >= min_seconds / 4.0 || k >= max {
            let per = secs / k as f64;
            return Ok(((min_seconds / per.max(1e-9)).ceil() as usize).clamp(1, max));
        }
        k = (k * 4).min(max);
    }
}

/// Benchmarks one adapter at each batch size: start-up, training (calibrated samples), inference over the test set,
/// per-kernel times; with the adapter's peaks and, if asked, whether `check --quick` passed on it first.
pub async fn bench_gpu(gpu: Gpu, data: &Mnist, cfg: &BenchConfig) -> anyhow::Result<Vec<BenchResult>> {
    let verified = if cfg.check {
        let quick = crate::check::CheckOptions { quick: true, ..Default::default() };
        let report = crate::check::run(gpu.reopen().await?, quick).await;
        if !report.passed {
            log::warn!("bench: check failed on {}; its numbers are marked UNVERIFIED", gpu.adapter.line());
            log::warn!("{}", crate::check::table(&report));
        }
        Some(report.passed)
    } else {
        None
    };
    let peak = super::peak::peak(&gpu, 3).await.ok();
    let params = model::init_params(&cfg.arch, model::DEFAULT_SEED);
    let order = model::epoch_order(model::DEFAULT_SEED, 0, data.train.len());
    let mut out = Vec::new();
    let mut gpu = Some(gpu);
    for (i, &batch) in cfg.batch_sizes.iter().enumerate() {
        let g = match gpu.take() {
            Some(g) => g,
            None => unreachable!("the device is handed back after each batch size"),
        };
        let t0 = Instant::now();
        let mut net = GpuNetwork::new(g, &cfg.arch, batch, Some(&data.train), &data.test, &params)?;
        let device = net.gpu.info(&net.caps);
        let startup_seconds = t0.elapsed().as_secs_f64();
        let max_steps = 200_000;
        let steps = match cfg.steps {
            Some(s) => s,
            None => {
                calibrate(cfg.min_seconds, max_steps, async |k| Ok(net.train_steps_raw(&order, 0.01, 0.9, k).await?))
                    .await?
            }
        };
        let mut train = Vec::new();
        for r in 0..cfg.warmup + cfg.repeats {
            let t = Instant::now();
            net.train_steps_raw(&order, 0.01, 0.9, steps).await?;
            if r >= cfg.warmup {
                train.push((steps * batch) as f64 / t.elapsed().as_secs_f64());
            }
        }
        let passes = calibrate(cfg.min_seconds, 1600, async |k| Ok(net.evaluate_raw(k).await.map(|_| ())?)).await?;
        let mut infer = Vec::new();
        for r in 0..cfg.warmup + cfg.repeats {
            let t = Instant::now();
            let images = net.evaluate_raw(passes).await?;
            if r >= cfg.warmup {
                infer.push(images as f64 / t.elapsed().as_secs_f64());
            }
        }
        let (kernel_timer, ops) = net.profile(cfg.repeats.max(3)).await?;
        let kernels = ops
            .into_iter()
            .map(|o| KernelTime {
                name: o.name,
                ms: o.seconds * 1e3,
                gflops: if o.seconds > 0.0 { o.flops / o.seconds / 1e9 } else { 0.0 },
                gbytes_per_sec: if o.seconds > 0.0 { o.bytes / o.seconds / 1e9 } else { 0.0 },
                flops: o.flops,
                bytes: o.bytes,
            })
            .collect();
        let dispatches = net.dispatches_per_step();
        let epoch = data.train.len();
        let mut r = result(device, cfg, batch, steps, epoch, startup_seconds, train, infer, kernel_timer, kernels);
        r.verified = verified;
        r.peak = peak.clone();
        r.dispatches_per_step = dispatches;
        warn_if_noisy(&r);
        out.push(r);
        if i + 1 < cfg.batch_sizes.len() {
            gpu = Some(net.gpu);
        }
    }
    Ok(out)
}

/// Which adapters `run` benchmarks.
pub enum Adapters {
    /// The selected one.
    One(AdapterSelection),
    /// Every adapter wgpu finds (of `backend`, if given, or `WGPU_BACKEND`), then the CPU reference; an adapter that
    /// fails is reported and skipped.
    All { backend: Option<wgpu::Backends> },
}

/// `gpu-cnn bench`: the results of every batch size of `cfg` on `which` adapters, with the kernel family `kernels`
/// (None: each adapter's default, or `GPU_CNN_KERNELS`).
pub async fn run(
    which: &Adapters,
    kernels: Option<Family>,
    data: &Mnist,
    cfg: &BenchConfig,
) -> anyhow::Result<Vec<BenchResult>> {
    let mut results = Vec::new();
    match which {
        Adapters::One(selection) => {
            let g = Gpu::open_with(selection, OpenOptions::with_kernels(kernels)?).await?;
            info!("bench: {}", g.adapter.line());
            results.extend(bench_gpu(g, data, cfg).await?);
        }
        Adapters::All { backend } => {
            let selection = AdapterSelection { adapter: None, backend: *backend };
            let all = crate::gpu::adapter::enumerate_selected(&selection).await?;
            if all.is_empty() {
                info!("no GPU adapter found; benchmarking the CPU reference only");
            }
            for (summary, adapter) in all {
                info!("bench: {}", summary.line());
                let opts = OpenOptions::with_kernels(kernels)?;
                let result = match Gpu::open_adapter(summary.clone(), adapter, opts).await {
                    Ok(g) => bench_gpu(g, data, cfg).await,
                    Err(e) => Err(e.into()),
                };
                match result {
                    Ok(r) => results.extend(r),
                    Err(e) => warn!("bench: {} failed: {e:#}", summary.line()),
                }
            }
            info!("bench: CPU reference");
            results.extend(bench_cpu(data, cfg).await?);
        }
    }
    Ok(results)
}

/// Reads a file written by `gpu-cnn bench --json --out FILE`.
pub fn read_results(path: &std::path::Path) -> anyhow::Result<Vec<BenchResult>> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let results: Vec<BenchResult> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a `gpu-cnn bench --json` result", path.display()))?;
    Ok(results
        .into_iter()
        .map(|mut r| {
            r.train_images_per_sec = r.train_images_per_sec.filled();
            r.inference_images_per_sec = r.inference_images_per_sec.filled();
            r
        })
        .collect())
}

/// Warns where a result's samples spread more than `NOISY_CV` (σ / mean): a noisy machine, whose figures compare
/// only with others measured beside them.
fn warn_if_noisy(r: &BenchResult) {
    for (what, s) in [("training", &r.train_images_per_sec), ("inference", &r.inference_images_per_sec)] {
        if s.cv() > NOISY_CV {
            warn!(
                "bench: {what} images/s vary by {:.1} % (σ / mean over {} samples, {:.0} to {:.0}): the machine is noisy; compare ratios measured side by side (bench-report --compare)",
                100.0 * s.cv(),
                s.runs,
                s.min,
                s.max
            );
        }
    }
}

/// The pairs of results `bench-report --compare OLD NEW` compares: read from the two files, matched by adapter,
/// backend and batch size; an error where they share none.
pub fn compare_files(old: &std::path::Path, new: &std::path::Path) -> anyhow::Result<Vec<(BenchResult, BenchResult)>> {
    let pairs = pairs(&read_results(old)?, &read_results(new)?);
    if pairs.is_empty() {
        anyhow::bail!("{} and {} share no adapter and batch size to compare", old.display(), new.display());
    }
    Ok(pairs)
}

/// The results of `new` with the result of `old` on the same adapter, backend and batch size, for `compare_table`.
pub fn pairs(old: &[BenchResult], new: &[BenchResult]) -> Vec<(BenchResult, BenchResult)> {
    let key = |r: &BenchResult| (r.device.name.clone(), r.device.backend.clone(), r.batch_size);
    new.iter().filter_map(|n| old.iter().find(|o| key(o) == key(n)).map(|o| (o.clone(), n.clone()))).collect()
}

/// Assembles a result with the run's metadata (wgpu version, commit, date, host) and the derived numbers.
#[allow(clippy::too_many_arguments)]
fn result(
    device: DeviceInfo,
    cfg: &BenchConfig,
    batch_size: usize,
    steps: usize,
    epoch_images: usize,
    startup_seconds: f64,
    train: Vec<f64>,
    infer: Vec<f64>,
    kernel_timer: String,
    kernels: Vec<KernelTime>,
) -> BenchResult {
    let train = Stats::of(train);
    BenchResult {
        schema_version: SCHEMA_VERSION,
        device,
        arch: cfg.arch.describe(),
        host: Some(HostInfo::this()),
        wgpu_version: env!("GPU_CNN_WGPU_VERSION").to_string(),
        gpu_cnn_commit: env!("GPU_CNN_GIT_COMMIT").to_string(),
        gpu_cnn_version: env!("CARGO_PKG_VERSION").to_string(),
        dirty: env!("GPU_CNN_GIT_DIRTY") == "1",
        date: rfc3339_now(),
        command: cfg.command.clone(),
        verified: None,
        batch_size,
        steps_per_run: steps,
        min_seconds: if cfg.steps.is_some() { 0.0 } else { cfg.min_seconds },
        warmup: cfg.warmup,
        startup_seconds,
        epoch_seconds: epoch_images as f64 / train.median,
        train_gflops: train.median * cfg.arch.train_flops_per_image() as f64 / 1e9,
        train_images_per_sec: train,
        inference_images_per_sec: Stats::of(infer),
        kernel_timer,
        kernels,
        dispatches_per_step: 0,
        peak: None,
    }
}

/// The same measurements on the CPU reference (fewer steps: it is the slow row).
pub async fn bench_cpu(data: &Mnist, cfg: &BenchConfig) -> anyhow::Result<Vec<BenchResult>> {
    let mut out = Vec::new();
    for &batch in &cfg.batch_sizes {
        let params = model::init_params(&cfg.arch, model::DEFAULT_SEED);
        let t0 = Instant::now();
        let mut cpu = crate::cpu::CpuEngine::new(&cfg.arch, batch, Some(&data.train), &data.test, &params);
        let startup_seconds = t0.elapsed().as_secs_f64();
        let steps = cfg.steps.unwrap_or(20).clamp(1, 20).min(data.train.len() / (batch * cfg.repeats).max(1)).max(1);
        let order = model::epoch_order(model::DEFAULT_SEED, 0, data.train.len());
        let mut train = Vec::new();
        for r in 0..cfg.repeats {
            let from = (r * steps * batch) % data.train.len();
            let part: Vec<u32> = (0..steps * batch).map(|i| order[(from + i) % order.len()]).collect();
            let t = Instant::now();
            cpu.train_epoch(&part, 0.01, 0.9, &mut |_, _| true).await?;
            train.push((steps * batch) as f64 / t.elapsed().as_secs_f64());
        }
        let mut infer = Vec::new();
        for _ in 0..cfg.repeats {
            let t = Instant::now();
            let (m, _) = cpu.evaluate().await?;
            infer.push(m.count as f64 / t.elapsed().as_secs_f64());
        }
        let cpu_dev = DeviceInfo::cpu_reference();
        let epoch = data.train.len();
        out.push(result(cpu_dev, cfg, batch, steps, epoch, startup_seconds, train, infer, "none".into(), Vec::new()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_from_before_schema_2_still_read() {
        // A result as `bench --json` wrote it on 2026-11-27 (schema 1: no samples, host, verified, peak, bytes).
        let old = include_str!("../../benches/results/2026-12-04-h200-baseline/bench64.json");
        let rs: Vec<BenchResult> = serde_json::from_str(old).expect("an old result reads");
        assert_eq!((rs[0].schema_version, rs[0].verified, rs[0].batch_size), (0, None, 64));
        assert!(super::super::tables::table(&rs).contains("NVIDIA H200"));
    }
}
