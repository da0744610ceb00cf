//! `gpu-cnn peak`: what an adapter can do, measured with three tiny kernels (`shaders/peak.wgsl`): f32 multiply-add
//! throughput, device-memory bandwidth (a large copy), and what one dispatch costs in a compute pass, with a
//! dependency on the one before it (the barrier every step of the network pays) and without. The network's kernels
//! are set against these in `bench`.

use web_time::Instant;

use serde::{Deserialize, Serialize};

use super::stats::Stats;
use crate::engine::DeviceInfo;
use crate::gpu::pipelines::{Kernel, Kernels};
use crate::gpu::{Gpu, GpuError};

/// One adapter's peaks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeakResult {
    pub device: DeviceInfo,
    /// "gpu timestamps" or "wall clock".
    pub timer: String,
    /// f32 multiply-add throughput, GFLOP/s (a multiply-add counts two).
    pub fma_gflops: Stats,
    /// Device-memory bandwidth of a copy, GB/s (bytes read plus bytes written).
    pub copy_gbytes_per_sec: Stats,
    /// Bytes of the copied buffer.
    pub copy_bytes: u64,
    /// Microseconds per dispatch of a nearly empty kernel, each writing the buffer the one before it wrote.
    pub dispatch_us_dependent: Stats,
    /// The same with each dispatch writing its own buffer (no barrier between them).
    pub dispatch_us_independent: Stats,
}

/// Times `record` (one compute pass) `repeats` times after a warm-up: GPU timestamps where the adapter has them,
/// else the wall clock of submit-and-wait. Returns seconds per run and the timer used.
async fn time_pass(
    gpu: &Gpu,
    repeats: usize,
    record: &dyn Fn(&mut wgpu::ComputePass),
) -> Result<(Vec<f64>, &'static str), GpuError> {
    let timestamps = gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY);
    let mut out = Vec::new();
    for r in 0..=repeats {
        let qs = timestamps.then(|| {
            gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("peak"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            })
        });
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("peak timestamps"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let t0 = Instant::now();
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let writes = qs.as_ref().map(|q| wgpu::ComputePassTimestampWrites {
                query_set: q,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            });
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("peak"), timestamp_writes: writes });
            record(&mut pass);
        }
        if let Some(q) = &qs {
            enc.resolve_query_set(q, 0..2, &resolve, 0);
        }
        let idx = gpu.queue.submit([enc.finish()]);
        gpu.wait(Some(idx), "a peak measurement").await?;
        let wall = t0.elapsed().as_secs_f64();
        let secs = if qs.is_some() {
            let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&gpu.read_bytes(&resolve, 0, 16, "timestamps").await?);
            if ticks[0] == 0 || ticks[1] <= ticks[0] {
                return time_pass_wall(gpu, repeats, record).await;
            }
            (ticks[1] - ticks[0]) as f64 * gpu.queue.get_timestamp_period() as f64 * 1e-9
        } else {
            wall
        };
        if r > 0 {
            out.push(secs);
        }
    }
    Ok((out, if timestamps { "gpu timestamps" } else { "wall clock" }))
}

async fn time_pass_wall(
    gpu: &Gpu,
    repeats: usize,
    record: &dyn Fn(&mut wgpu::ComputePass),
) -> Result<(Vec<f64>, &'static str), GpuError> {
    let mut out = Vec::new();
    for _ in 0..repeats {
        let t0 = Instant::now();
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            record(&mut pass);
        }
        let idx = gpu.queue.submit([enc.finish()]);
        gpu.wait(Some(idx), "a peak measurement").await?;
        out.push(t0.elapsed().as_secs_f64());
    }
    Ok((out, "wall clock"))
}

/// Measures `gpu`'s peaks, `repeats` timed runs of each after a warm-up.
pub async fn peak(gpu: &Gpu, repeats: usize) -> Result<PeakResult, GpuError> {
    let kernels = Kernels::new();
    let repeats = repeats.max(1);
    let storage = |label: &str, bytes: u64| gpu.storage(label, bytes);

    // Multiply-adds: grow the work until one run lasts at least 20 ms (or the largest size).
    let fma_out = storage("peak fma out", 16 * 256 * 8192)?;
    let src = gpu.storage_init("peak src", bytemuck::cast_slice(&[1e-3f32, 2e-3, 3e-3, 4e-3]))?;
    let (mut groups, mut iters) = (64u64, 256usize);
    let fma = loop {
        let k = kernels.kernel(gpu, "peak_fma", &[("ITERS", iters as f64)])?;
        let g = k.bind(gpu, &[&src, &fma_out]);
        let (t, _) = time_pass(gpu, 1, &|p| k.dispatch_workgroups(p, &g, None, groups)).await?;
        if t[0] >= 0.02 || (groups >= 8192 && iters >= 16384) {
            break (k, g, groups, iters);
        }
        if groups < 8192 {
            groups *= 2;
        } else {
            iters *= 2;
        }
    };
    let (k, g, groups, iters) = fma;
    let flops = groups as f64 * 256.0 * 64.0 * iters as f64;
    let (t, timer) = time_pass(gpu, repeats, &|p| k.dispatch_workgroups(p, &g, None, groups)).await?;
    let fma_gflops = Stats::of(t.iter().map(|s| flops / s / 1e9).collect());

    // Bandwidth: copy a buffer of up to 256 MiB.
    let max = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size);
    let copy_bytes = (256u64 << 20).min(max) / 16 * 16;
    let (a, b) = (storage("peak copy a", copy_bytes)?, storage("peak copy b", copy_bytes)?);
    let copy = kernels.kernel(gpu, "peak_copy", &[])?;
    let cg = copy.bind(gpu, &[&a, &b]);
    let (t, _) = time_pass(gpu, repeats, &|p| copy.dispatch(p, &cg, None, copy_bytes / 16)).await?;
    let copy_gbytes_per_sec = Stats::of(t.iter().map(|s| 2.0 * copy_bytes as f64 / s / 1e9).collect());

    // Dispatches: 500 in one pass, all writing one buffer (a barrier before each), or each its own.
    const N: usize = 500;
    let touch: Kernel = kernels.kernel(gpu, "peak_touch", &[])?;
    let one = storage("peak touch", 16)?;
    let dep = touch.bind(gpu, &[&src, &one]);
    let (t, _) = time_pass(gpu, repeats, &|p| (0..N).for_each(|_| touch.dispatch_workgroups(p, &dep, None, 1))).await?;
    let dispatch_us_dependent = Stats::of(t.iter().map(|s| s / N as f64 * 1e6).collect());
    let own: Vec<wgpu::Buffer> = (0..N).map(|_| storage("peak touch", 16)).collect::<Result<_, _>>()?;
    let groups_own: Vec<wgpu::BindGroup> = own.iter().map(|b| touch.bind(gpu, &[&src, b])).collect();
    let (t, _) =
        time_pass(gpu, repeats, &|p| groups_own.iter().for_each(|g| touch.dispatch_workgroups(p, g, None, 1))).await?;
    let dispatch_us_independent = Stats::of(t.iter().map(|s| s / N as f64 * 1e6).collect());

    Ok(PeakResult {
        device: gpu.info(&gpu.caps),
        timer: timer.to_string(),
        fma_gflops,
        copy_gbytes_per_sec,
        copy_bytes,
        dispatch_us_dependent,
        dispatch_us_independent,
    })
}

/// A markdown table of peaks, one column per adapter.
pub fn table(results: &[PeakResult]) -> String {
    let mut s = String::new();
    let cols: Vec<String> = results.iter().map(|r| format!("{} ({})", r.device.name, r.device.backend)).collect();
    s.push_str(&format!("| | {} |\n|---|{}\n", cols.join(" | "), "---|".repeat(results.len())));
    let row = |label: &str, f: &dyn Fn(&PeakResult) -> String| {
        format!("| {label} | {} |\n", results.iter().map(f).collect::<Vec<_>>().join(" | "))
    };
    let st = |x: &Stats, digits: usize| format!("{:.*} [{:.*}–{:.*}]", digits, x.median, digits, x.min, digits, x.max);
    s.push_str(&row("f32 multiply-add, GFLOP/s (median [min–max])", &|r| st(&r.fma_gflops, 0)));
    s.push_str(&row("copy bandwidth, GB/s (read + write)", &|r| st(&r.copy_gbytes_per_sec, 1)));
    s.push_str(&row("one dispatch after a dependent one, µs", &|r| st(&r.dispatch_us_dependent, 2)));
    s.push_str(&row("one independent dispatch, µs", &|r| st(&r.dispatch_us_independent, 2)));
    s.push_str(&row("timer", &|r| r.timer.clone()));
    s
}
