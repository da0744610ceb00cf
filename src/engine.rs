//! What trains and evaluates the network, whatever runs it: the GPU (`gpu::net`) or the CPU reference
//! (`cpu::CpuEngine`, over `reference::network`), and the plain description of what a run ran on (`DeviceInfo`), which
//! every command's JSON, `report.json`, bench and peak results record.

use serde::{Deserialize, Serialize};

/// Per-epoch or per-evaluation sums as an engine reports them.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub loss_sum: f64,
    pub correct: usize,
    pub count: usize,
}

impl Metrics {
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.count.max(1) as f64
    }
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.count.max(1) as f64
    }
}

/// One epoch's results, as `--json` prints them.
#[derive(Clone, Debug, Serialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_loss: f64,
    pub test_accuracy: f64,
    pub seconds: f64,
    pub images_per_sec: f64,
}

/// The activations of a few test images, read back from where the engine computed them (for pictures).
#[derive(Clone, Debug)]
pub struct Probe {
    /// Normalized inputs [n, C, H, W] of shape `input`.
    pub x: Vec<f32>,
    pub input: crate::model::ImageShape,
    /// How `x` was normalized (the pictures undo it).
    pub norm: crate::model::Normalization,
    /// Each convolution's output after ReLU (before its pool), in order.
    pub maps: Vec<FeatureMaps>,
    /// Logits [n, 10].
    pub logits: Vec<f32>,
}

/// One convolution's feature maps for the probed images: `values` [n, channels, height, width].
#[derive(Clone, Debug)]
pub struct FeatureMaps {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub values: Vec<f32>,
}

/// What trains and evaluates the network: the GPU engine or the CPU reference. The methods that read results back
/// are async: natively they finish before returning (the device is polled), in a browser they yield to the page.
#[allow(async_fn_in_trait)] // run where they are called, never sent to another thread
pub trait Engine {
    /// What it runs on (the adapter and kernels, or the CPU reference), as outputs record it.
    fn device(&self) -> DeviceInfo;
    /// The network it runs.
    fn arch(&self) -> &crate::model::Arch;
    /// Trains one epoch in `order`. `progress(steps_done, running)` is called now and then; returning false stops the
    /// epoch early (Ctrl-C). Returns the epoch's metrics and the mean loss of every step that ran.
    async fn train_epoch(
        &mut self,
        order: &[u32],
        lr: f32,
        momentum: f32,
        progress: &mut dyn FnMut(usize, &Metrics) -> bool,
    ) -> anyhow::Result<(Metrics, Vec<f32>)>;
    /// Loss, accuracy and every prediction on the test set.
    async fn evaluate(&mut self) -> anyhow::Result<(Metrics, Vec<u32>)>;
    /// The forward pass on a few test images (at most 64), with its activations.
    async fn probe(&mut self, samples: &[u32]) -> anyhow::Result<Probe>;
    fn steps_per_epoch(&self) -> usize;
    async fn params(&self) -> anyhow::Result<Vec<f32>>;
    fn set_params(&mut self, params: &[f32]) -> anyhow::Result<()>;
    async fn momentum(&self) -> anyhow::Result<Vec<f32>>;
    fn set_momentum(&mut self, momentum: &[f32]) -> anyhow::Result<()>;
}

/// What a run ran on: an adapter and the kernels it used, or the CPU reference.
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
    /// The adapter's device id, the limits a compute engine meets first and its optional features
    /// (`gpu::AdapterSummary`); empty for the CPU reference and in results from before they were recorded.
    #[serde(default)]
    pub device_id: String,
    #[serde(default)]
    pub limits: std::collections::BTreeMap<String, u64>,
    #[serde(default)]
    pub features: Vec<String>,
}

impl DeviceInfo {
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
            device_id: String::new(),
            limits: Default::default(),
            features: Vec::new(),
        }
    }

    /// One line for people: the adapter as `gpu-cnn adapters` prints it and the kernels, or "CPU reference (N threads)".
    pub fn line(&self) -> String {
        if self.backend == "cpu" {
            return self.name.clone();
        }
        let soft = if self.device_type == "cpu" { ", a software adapter (runs on the CPU)" } else { "" };
        format!(
            "{} ({}, {}, driver {} {}, subgroups {}; {} kernels){soft}",
            self.name, self.backend, self.device_type, self.driver, self.driver_info, self.subgroups, self.kernels
        )
    }
}
