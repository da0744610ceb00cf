//! What trains and evaluates the network, whatever runs it: the GPU (`gpu::network`) or the CPU reference
//! (`cpu::CpuEngine`, over `reference::network`).

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
    fn device(&self) -> crate::device::DeviceInfo;
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
