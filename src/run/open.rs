//! Opening a run: the data (`load_data`), the output directory, the network on the data's images (`arch_for_data`),
//! a checkpoint's input normalization, and the engine (`open_engine`): a GPU with the kernels `gpu::caps` decides, or
//! the CPU reference where no adapter exists.

use std::borrow::Cow;
use std::path::Path;
use web_time::Instant;

use anyhow::{anyhow, bail, Result};
use log::{info, warn};

use crate::checkpoint::Checkpoint;
use crate::cpu::CpuEngine;
use crate::data::{self, Mnist, Split};
use crate::engine::{DeviceInfo, Engine, Metrics};
use crate::gpu::net::GpuNetwork;
use crate::gpu::{AdapterSelection, Family, Gpu, GpuError, OpenOptions};
use crate::model::{self, Arch, Normalization};

/// Where a run happens.
#[derive(Clone, Debug)]
pub enum DeviceChoice {
    /// A GPU adapter through wgpu, with a kernel family (None: the adapter's default or `GPU_CNN_KERNELS`). With no
    /// adapter selected and none found, the run falls back to the CPU reference (with a warning).
    Gpu { selection: AdapterSelection, kernels: Option<Family> },
    /// The CPU reference (`reference::network`).
    Cpu,
}

impl Default for DeviceChoice {
    fn default() -> Self {
        DeviceChoice::Gpu { selection: AdapterSelection::default(), kernels: None }
    }
}

/// Loads MNIST from `dir` (default: `data::default_data_dir`), saying where from and how long it took.
pub fn load_data(dir: Option<&Path>) -> Result<Mnist> {
    let dir = dir.map_or_else(data::default_data_dir, Path::to_path_buf);
    let t0 = Instant::now();
    let d = data::load(&dir)?;
    info!(
        "data: {} ({} training, {} test images, {:.2} s)",
        dir.display(),
        d.train.len(),
        d.test.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(d)
}

/// Creates an output directory if needed and proves it writable, before any long work starts (in a browser the
/// files go to the page: `atomic`).
pub fn prepare_out_dir(dir: &Path) -> Result<()> {
    crate::atomic::prepare_dir(dir).map_err(|e| match e.op {
        "creating directory" => anyhow!("cannot create output directory {}: {}", dir.display(), e.source),
        _ => anyhow!("output directory {} is not writable: {}", dir.display(), e.source),
    })
}

/// `arch` (the study's if None) on the images of `data`: the same layers, the data's input shape. An architecture that
/// names another input shape than MNIST's (`3x32x32:…`) must name the data's.
pub fn arch_for_data(arch: Option<&Arch>, data: &Mnist) -> Result<Arch> {
    let arch = arch.cloned().unwrap_or_default();
    let shape = data.shape();
    if arch.input() != model::ImageShape::MNIST && arch.input() != shape {
        bail!("--arch {arch} reads {} images, the data's are {shape}", arch.input());
    }
    arch.with_input(shape).map_err(|e| anyhow!(e))
}

/// The engine for `device` running `arch` with `params`: training batches of `batch` from `train` (if given), and
/// evaluation on `test`.
pub async fn open_engine(
    device: &DeviceChoice,
    arch: &Arch,
    batch: usize,
    train: Option<&Split>,
    test: &Split,
    params: &[f32],
) -> Result<Engines> {
    if test.shape != arch.input() {
        bail!(
            "{arch} reads {} images, the data's are {} (a checkpoint trained on other data?)",
            arch.input(),
            test.shape
        );
    }
    if let DeviceChoice::Gpu { selection, kernels } = device {
        match Gpu::open_with(selection, OpenOptions::with_kernels(*kernels)?).await {
            Ok(g) => {
                info!("adapter: {}", g.adapter.line());
                let net = GpuNetwork::new(g, arch, batch, train, test, params)?;
                info!("pipelines and data upload: {:.2} s", net.pipeline_seconds);
                return Ok(Engines::Gpu(net));
            }
            Err(GpuError::NoAdapter { .. }) if selection.adapter.is_none() && selection.backend.is_none() => {
                warn!("no GPU adapter found (install mesa-vulkan-drivers for a software one); running on the CPU reference");
            }
            Err(e) => return Err(e.into()),
        }
    }
    info!("device: CPU reference");
    Ok(Engines::Cpu(CpuEngine::new(arch, batch, train, test, params)))
}

/// The engine a run got: a GPU, or the CPU reference.
#[allow(clippy::large_enum_variant)] // one per run, never moved in a loop
pub enum Engines {
    Gpu(GpuNetwork),
    Cpu(CpuEngine),
}

/// `body` with `e` bound to whichever engine `engines` holds (both implement `Engine`).
macro_rules! either {
    ($engines:expr, $e:ident => $body:expr) => {
        match $engines {
            Engines::Gpu($e) => $body,
            Engines::Cpu($e) => $body,
        }
    };
}

impl Engine for Engines {
    fn device(&self) -> DeviceInfo {
        either!(self, e => Engine::device(e))
    }
    fn arch(&self) -> &Arch {
        either!(self, e => Engine::arch(e))
    }
    async fn train_epoch(
        &mut self,
        order: &[u32],
        lr: f32,
        momentum: f32,
        progress: &mut dyn FnMut(usize, &Metrics) -> bool,
    ) -> Result<(Metrics, Vec<f32>)> {
        either!(self, e => Engine::train_epoch(e, order, lr, momentum, progress).await)
    }
    async fn evaluate(&mut self) -> Result<(Metrics, Vec<u32>)> {
        either!(self, e => Engine::evaluate(e).await)
    }
    async fn probe(&mut self, samples: &[u32]) -> Result<crate::engine::Probe> {
        either!(self, e => Engine::probe(e, samples).await)
    }
    fn steps_per_epoch(&self) -> usize {
        either!(self, e => Engine::steps_per_epoch(e))
    }
    async fn params(&self) -> Result<Vec<f32>> {
        either!(self, e => Engine::params(e).await)
    }
    fn set_params(&mut self, params: &[f32]) -> Result<()> {
        either!(self, e => Engine::set_params(e, params))
    }
    async fn momentum(&self) -> Result<Vec<f32>> {
        either!(self, e => Engine::momentum(e).await)
    }
    fn set_momentum(&mut self, momentum: &[f32]) -> Result<()> {
        either!(self, e => Engine::set_momentum(e, momentum))
    }
}

/// `split`, or a copy normalized as `norm` (a checkpoint's, from [`trained_norm`]): weights see their inputs as they
/// were trained on them.
pub(super) fn normalized_as(split: &Split, norm: Option<Normalization>) -> Cow<'_, Split> {
    match norm {
        Some(norm) => Cow::Owned(Split { norm, ..split.clone() }),
        None => Cow::Borrowed(split),
    }
}

/// The input normalization the checkpoint at `path` was trained with, where it says (PyTorch's and older files do not)
/// and it differs from `data`'s own (said in the log): what the data must be normalized as for these weights.
pub fn trained_norm(ck: &Checkpoint, path: &Path, data: Normalization) -> Result<Option<Normalization>> {
    let Some(n) = ck.normalization(path)? else { return Ok(None) };
    if n == data {
        return Ok(None);
    }
    info!(
        "inputs normalized as {} was trained (mean {}, std {}); this data's own would be (mean {}, std {})",
        path.display(),
        n.mean,
        n.std,
        data.mean,
        data.std
    );
    Ok(Some(n))
}
