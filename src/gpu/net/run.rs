//! Running the network: training epochs (many steps recorded per command buffer, the running metrics read back while
//! the next chunk runs), raw training and evaluation for benchmarks, evaluation with every prediction, and the probe
//! (the forward pass on a few test images with their activations).

use super::lower::PROBE_MAX;
use super::network::{GpuNetwork, Hyper, StepBlock};
use crate::engine::{FeatureMaps, Metrics, Probe};
use crate::gpu::error::GpuError;
use crate::model::CLASSES;

/// Training steps recorded into one command buffer before it is submitted.
pub const STEPS_PER_SUBMIT: usize = 32;

impl GpuNetwork {
    /// Trains one epoch over the training set in `order` (a permutation of its indices). `progress(steps_done,
    /// running_metrics)` is called after each submission completes; returning `false` from it stops after that
    /// submission (Ctrl-C). Returns the epoch's metrics and each step's mean loss.
    pub async fn train_epoch(
        &mut self,
        order: &[u32],
        lr: f32,
        momentum: f32,
        progress: &mut dyn FnMut(usize, &Metrics) -> bool,
    ) -> Result<(Metrics, Vec<f32>), GpuError> {
        self.begin_epoch(order, lr, momentum);
        // Each chunk's command buffer ends by copying the running metrics into one of two staging buffers; chunk
        // k − 1's are read while chunk k runs, without a submission of their own (which would queue behind chunk k).
        let staging = [self.gpu.staging("metrics a", 16), self.gpu.staging("metrics b", 16)];
        let metrics = |bytes: Vec<u8>| {
            let m: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
            Metrics { loss_sum: m[0] as f64, correct: m[1] as usize, count: m[2] as usize }
        };
        let mut done = 0;
        let mut pending: Option<(wgpu::SubmissionIndex, usize, usize)> = None;
        let mut chunk = 0;
        while done < self.train_steps {
            let end = (done + STEPS_PER_SUBMIT).min(self.train_steps);
            let mut enc =
                self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("train") });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("train steps"),
                    timestamp_writes: None,
                });
                for s in done..end {
                    self.record_train_step(&mut pass, s);
                }
            }
            enc.copy_buffer_to_buffer(self.buffer("stats"), 0, &staging[chunk % 2], 0, 16);
            let idx = self.gpu.queue.submit([enc.finish()]);
            if let Some((prev, prev_end, prev_chunk)) = pending.replace((idx, end, chunk)) {
                let m = metrics(self.gpu.read_recorded(&staging[prev_chunk % 2], prev, "the running metrics").await?);
                if !progress(prev_end, &m) {
                    self.gpu.wait(pending.map(|p| p.0), "a chunk of training steps").await?;
                    return self.finish_epoch(end).await;
                }
            }
            done = end;
            chunk += 1;
        }
        if let Some((idx, end, last)) = pending {
            progress(end, &metrics(self.gpu.read_recorded(&staging[last % 2], idx, "the running metrics").await?));
        }
        self.finish_epoch(self.train_steps).await
    }

    async fn finish_epoch(&self, steps: usize) -> Result<(Metrics, Vec<f32>), GpuError> {
        let m = self.read_metrics().await?;
        Ok((m, self.step_losses(steps).await?))
    }

    /// Uploads the epoch's sample order and the SGD hyperparameters, and zeroes the running metrics.
    fn begin_epoch(&self, order: &[u32], lr: f32, momentum: f32) {
        let train = self.train.as_ref().expect("GpuNetwork was built without a training set");
        assert_eq!(order.len(), train.len);
        let hyper = Hyper { lr, momentum, count: self.arch.param_count() as u32, _pad: 0 };
        self.gpu.queue.write_buffer(self.buffer("hyper"), 0, bytemuck::bytes_of(&hyper));
        self.gpu.queue.write_buffer(&train.order, 0, bytemuck::cast_slice(order));
        self.clear_metrics();
    }

    /// Records one full training step (batch `s` of the epoch) into `pass`.
    fn record_train_step(&self, pass: &mut wgpu::ComputePass, s: usize) {
        let n = self.batch.min(self.train.as_ref().map_or(0, |t| t.len) - s * self.batch);
        let off = self.offset(s);
        for op in self.load_train.iter().chain(&self.train_ops) {
            op.record(pass, off, n);
        }
    }

    /// Runs `steps` training steps in `order` without reading anything back (for benchmarks and tests): steps
    /// 0, 1, ... of the epoch, wrapping round to its first batch again after the last, submitted in chunks.
    pub async fn train_steps_raw(
        &mut self,
        order: &[u32],
        lr: f32,
        momentum: f32,
        steps: usize,
    ) -> Result<(), GpuError> {
        self.begin_epoch(order, lr, momentum);
        let mut last = None;
        let mut done = 0;
        while done < steps {
            let end = (done + 8 * STEPS_PER_SUBMIT).min(steps);
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                for s in done..end {
                    self.record_train_step(&mut pass, s % self.train_steps);
                }
            }
            last = Some(self.gpu.queue.submit([enc.finish()]));
            done = end;
        }
        self.gpu.wait(last, "training steps").await
    }

    /// Runs `passes` forward passes over the whole test set (load, forward, loss), in one submission, and returns the
    /// number of images evaluated, reading nothing else back: inference throughput for `bench`.
    pub async fn evaluate_raw(&mut self, passes: usize) -> Result<usize, GpuError> {
        self.clear_metrics();
        let chunks = self.test.len.div_ceil(self.eval_batch);
        for ch in 0..chunks {
            let n = self.eval_batch.min(self.test.len - ch * self.eval_batch);
            self.write_step(self.train_steps + ch, ch * self.eval_batch, n, false);
        }
        // One submission per pass, all queued before the first wait: the GPU never idles, and each wait's timeout
        // covers one pass.
        let mut submitted = Vec::new();
        for _ in 0..passes {
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                for ch in 0..chunks {
                    let n = self.eval_batch.min(self.test.len - ch * self.eval_batch);
                    for op in self.load_test.iter().chain(&self.eval_ops) {
                        op.record(&mut pass, self.offset(self.train_steps + ch), n);
                    }
                }
            }
            submitted.push(self.gpu.queue.submit([enc.finish()]));
        }
        for idx in submitted {
            self.gpu.wait(Some(idx), "evaluation").await?;
        }
        Ok(self.read_metrics().await?.count)
    }

    /// The step losses of the last epoch's first `steps` steps.
    pub async fn step_losses(&self, steps: usize) -> Result<Vec<f32>, GpuError> {
        self.gpu.read_f32(self.buffer("stats"), self.stats_layout.losses, steps, "the step losses").await
    }

    /// Evaluates the current parameters on the test set: summed loss, correct count and every sample's predicted class.
    pub async fn evaluate(&mut self) -> Result<(Metrics, Vec<u32>), GpuError> {
        let (split, load) = (&self.test, &self.load_test);
        self.clear_metrics();
        let chunks = split.len.div_ceil(self.eval_batch);
        // One submission per chunk, all queued before the first wait: the GPU never idles, and each wait's timeout
        // covers one chunk (a big network on a software adapter takes minutes for the whole test set).
        let mut submitted = Vec::new();
        for ch in 0..chunks {
            let n = self.eval_batch.min(split.len - ch * self.eval_batch);
            let e = self.train_steps + ch;
            self.write_step(e, ch * self.eval_batch, n, false);
            let mut enc =
                self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("eval") });
            {
                let mut pass = enc
                    .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("eval"), timestamp_writes: None });
                for op in load.iter().chain(&self.eval_ops) {
                    op.record(&mut pass, self.offset(e), n);
                }
            }
            submitted.push(self.gpu.queue.submit([enc.finish()]));
        }
        for idx in submitted {
            self.gpu.wait(Some(idx), "evaluation").await?;
        }
        let m = self.read_metrics().await?;
        let preds =
            self.gpu.read_u32(self.buffer("stats"), self.stats_layout.preds, split.len, "the predictions").await?;
        Ok((m, preds))
    }
    /// Dispatches of one training step (load included).
    pub fn dispatches_per_step(&self) -> usize {
        self.load_train.len() + self.train_ops.len()
    }

    /// Runs the forward pass on the chosen test images and reads back their activations and logits.
    pub async fn probe(&mut self, samples: &[u32]) -> Result<Probe, GpuError> {
        let n = samples.len();
        assert!(n > 0 && n <= PROBE_MAX && samples.iter().all(|&s| (s as usize) < self.test.len));
        self.gpu.queue.write_buffer(self.buffer("probe.order"), 0, bytemuck::cast_slice(samples));
        let e = self.train_steps;
        self.write_step(e, 0, n, true);
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            let eval_forward = &self.eval_ops[..self.eval_ops.len() - 1]; // without the loss
            for op in self.load_probe.iter().chain(eval_forward) {
                op.record(&mut pass, self.offset(e), n);
            }
        }
        let idx = self.gpu.queue.submit([enc.finish()]);
        self.gpu.wait(Some(idx), "the probe forward pass").await?;
        let mut maps = Vec::new();
        for c in self.arch.convs() {
            let what = format!("conv{} activations", c.index);
            let values =
                self.gpu.read_f32(self.buffer(&format!("conv{}.out", c.index)), 0, n * c.out_len(), &what).await?;
            maps.push(FeatureMaps { channels: c.cout, height: c.oh, width: c.ow, values });
        }
        let input = self.arch.input();
        Ok(Probe {
            x: self.gpu.read_f32(self.buffer("x"), 0, n * input.pixels(), "probe inputs").await?,
            input,
            norm: self.norm,
            maps,
            logits: self.gpu.read_f32(self.buffer("logits"), 0, n * CLASSES, "logits").await?,
        })
    }

    /// Writes step block `e`; `full`: conv2d_forward also stores the pre-pool activations.
    fn write_step(&self, e: usize, start: usize, n: usize, full: bool) {
        assert!(e < self.train_steps + self.eval_steps);
        let b = StepBlock { start: start as u32, n: n as u32, index: e as u32, full: u32::from(full) };
        self.gpu.queue.write_buffer(self.buffer("step"), self.offset(e) as u64, bytemuck::bytes_of(&b));
    }
}
