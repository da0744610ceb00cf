//! The CPU reference as a device: `--device cpu`, and the fallback when wgpu finds no adapter. It trains and evaluates
//! with `reference::network` (plain Rust, threads over the batch), so the main job runs on any machine.

use crate::data::Split;
use crate::engine::{Engine, FeatureMaps, Metrics, Probe};
use crate::model::{Arch, CLASSES};
use crate::reference::{self, network};

/// Images per evaluation chunk (one thread each).
const EVAL_CHUNK: usize = 500;

pub struct CpuEngine {
    arch: Arch,
    batch: usize,
    train: Option<Split>,
    test: Split,
    params: Vec<f32>,
    momentum: Vec<f32>,
}

impl CpuEngine {
    pub fn new(arch: &Arch, batch: usize, train: Option<&Split>, test: &Split, params: &[f32]) -> CpuEngine {
        assert_eq!(params.len(), arch.param_count(), "parameters for {arch}");
        CpuEngine {
            arch: arch.clone(),
            batch,
            train: train.cloned(),
            test: test.clone(),
            params: params.to_vec(),
            momentum: vec![0.0; params.len()],
        }
    }
}

/// Normalized images `indices` of `split`, and their labels.
fn gather(split: &Split, indices: impl Iterator<Item = usize>) -> (Vec<f32>, Vec<u8>) {
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in indices {
        x.extend(split.normalized(i));
        y.push(split.labels[i]);
    }
    (x, y)
}

impl Engine for CpuEngine {
    fn device(&self) -> crate::engine::DeviceInfo {
        crate::engine::DeviceInfo::cpu_reference()
    }
    fn arch(&self) -> &Arch {
        &self.arch
    }
    async fn train_epoch(
        &mut self,
        order: &[u32],
        lr: f32,
        momentum: f32,
        progress: &mut dyn FnMut(usize, &Metrics) -> bool,
    ) -> anyhow::Result<(Metrics, Vec<f32>)> {
        let train = self.train.as_ref().expect("CpuEngine was built without a training set");
        let mut losses = Vec::new();
        let mut m = Metrics::default();
        for (s, batch) in order.chunks(self.batch).enumerate() {
            let (x, y) = gather(train, batch.iter().map(|&i| i as usize));
            let (loss, correct) =
                network::train_step_counted(&self.arch, &mut self.params, &mut self.momentum, &x, &y, lr, momentum);
            losses.push(loss);
            m.loss_sum += loss as f64 * y.len() as f64;
            m.correct += correct;
            m.count += y.len();
            if (s + 1) % 10 == 0 && !progress(s + 1, &m) {
                break;
            }
        }
        Ok((m, losses))
    }

    async fn evaluate(&mut self) -> anyhow::Result<(Metrics, Vec<u32>)> {
        let n = self.test.len();
        let (arch, params, test) = (&self.arch, &self.params, &self.test);
        let chunks: Vec<(f64, usize, Vec<u32>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .step_by(EVAL_CHUNK)
                .map(|start| {
                    scope.spawn(move || {
                        let end = (start + EVAL_CHUNK).min(n);
                        let (x, y) = gather(test, start..end);
                        let acts = network::forward(arch, params, &x, end - start);
                        let mut losses = vec![0.0f32; end - start];
                        reference::softmax_cross_entropy_forward(acts.logits(), &y, &mut losses, end - start, CLASSES);
                        let preds: Vec<u32> =
                            acts.logits().chunks(CLASSES).map(|row| reference::argmax(row) as u32).collect();
                        let correct = preds.iter().zip(&y).filter(|(p, &l)| **p == l as u32).count();
                        (losses.iter().map(|&l| l as f64).sum::<f64>(), correct, preds)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("evaluation thread panicked")).collect()
        });
        let mut m = Metrics { count: n, ..Default::default() };
        let mut preds = Vec::with_capacity(n);
        for (loss, correct, p) in chunks {
            m.loss_sum += loss;
            m.correct += correct;
            preds.extend(p);
        }
        Ok((m, preds))
    }

    async fn probe(&mut self, samples: &[u32]) -> anyhow::Result<Probe> {
        let (x, y) = gather(&self.test, samples.iter().map(|&i| i as usize));
        let acts = network::forward(&self.arch, &self.params, &x, y.len());
        let maps = self
            .arch
            .convs()
            .iter()
            .zip(acts.conv_maps(&self.arch))
            .map(|(c, m)| FeatureMaps { channels: c.cout, height: c.oh, width: c.ow, values: m.to_vec() })
            .collect();
        let (input, norm) = (self.arch.input(), self.test.norm);
        Ok(Probe { x, input, norm, maps, logits: acts.logits().to_vec() })
    }

    fn steps_per_epoch(&self) -> usize {
        self.train.as_ref().map_or(0, |t| t.len().div_ceil(self.batch))
    }
    async fn params(&self) -> anyhow::Result<Vec<f32>> {
        Ok(self.params.clone())
    }
    fn set_params(&mut self, params: &[f32]) -> anyhow::Result<()> {
        self.params.copy_from_slice(params);
        Ok(())
    }
    async fn momentum(&self) -> anyhow::Result<Vec<f32>> {
        Ok(self.momentum.clone())
    }
    fn set_momentum(&mut self, momentum: &[f32]) -> anyhow::Result<()> {
        self.momentum.copy_from_slice(momentum);
        Ok(())
    }
}
