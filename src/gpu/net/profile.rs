//! Per-kernel times of a training step: each dispatch on its own, timed by GPU timestamp queries where the adapter
//! has them (readings validated), else by the wall clock.

use super::network::GpuNetwork;
use crate::gpu::error::GpuError;

/// One op's time per dispatch, from `GpuNetwork::profile`.
#[derive(Clone, Debug)]
pub struct OpTime {
    pub name: String,
    pub seconds: f64,
    /// FLOPs of one dispatch (0 for ops that only move data).
    pub flops: f64,
    /// The fewest bytes one dispatch moves.
    pub bytes: f64,
}

impl GpuNetwork {
    /// Per-dispatch time of every op of a training step: the median of `reps` passes of one dispatch each, timed with
    /// GPU timestamp queries where the adapter has them (readings validated: non-zero, end after start), else by the
    /// wall clock of a submit-and-wait per pass. Returns the timer used and each op's time and work.
    pub async fn profile(&mut self, reps: usize) -> Result<(String, Vec<OpTime>), GpuError> {
        let reps = reps.max(1);
        let train_len = self.train.as_ref().map_or(0, |t| t.len);
        let n = self.batch.min(train_len);
        let order: Vec<u32> = (0..train_len as u32).collect();
        self.train_steps_raw(&order, 0.0, 0.0, 1).await?; // fills every buffer with real values
        let off = self.offset(0);
        let timestamps = self.gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY);
        let mut all_valid = timestamps;
        let mut out = Vec::new();
        for op in self.load_train.iter().chain(&self.train_ops) {
            let mut times = Vec::with_capacity(reps);
            if timestamps {
                let count = 2 * reps as u32;
                let qs = self.gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count,
                });
                let resolve = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timestamps"),
                    size: 8 * count as u64,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                let mut enc = self.gpu.device.create_command_encoder(&Default::default());
                for r in 0..reps as u32 {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(op.kernel.entry),
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: &qs,
                            beginning_of_pass_write_index: Some(2 * r),
                            end_of_pass_write_index: Some(2 * r + 1),
                        }),
                    });
                    op.record(&mut pass, off, n);
                }
                enc.resolve_query_set(&qs, 0..count, &resolve, 0);
                self.gpu.queue.submit([enc.finish()]);
                let raw = self.gpu.read_bytes(&resolve, 0, 8 * count as u64, "timestamps").await?;
                let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&raw);
                let period = self.gpu.queue.get_timestamp_period() as f64;
                for r in 0..reps {
                    let (a, b) = (ticks[2 * r], ticks[2 * r + 1]);
                    if a == 0 || b <= a {
                        all_valid = false;
                    }
                    times.push(b.saturating_sub(a) as f64 * period * 1e-9);
                }
            }
            if !all_valid {
                times.clear();
                for _ in 0..reps {
                    let t0 = web_time::Instant::now();
                    let mut enc = self.gpu.device.create_command_encoder(&Default::default());
                    {
                        let mut pass = enc.begin_compute_pass(&Default::default());
                        op.record(&mut pass, off, n);
                    }
                    let idx = self.gpu.queue.submit([enc.finish()]);
                    self.gpu.wait(Some(idx), "profiling").await?;
                    times.push(t0.elapsed().as_secs_f64());
                }
            }
            times.sort_by(|a, b| a.total_cmp(b));
            out.push(OpTime {
                name: op.label.clone(),
                seconds: times[times.len() / 2],
                flops: (op.flops)(n),
                bytes: (op.bytes)(n),
            });
        }
        Ok((if all_valid { "gpu timestamps" } else { "wall clock" }.to_string(), out))
    }
}
