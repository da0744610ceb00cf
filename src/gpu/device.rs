//! An open device: its queue, limits and features, buffers sized against the adapter's limits, waits that time out
//! and read-backs. Which kernels it runs (`Gpu::caps`) is decided in `caps`, which opens it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use wgpu::util::DeviceExt;

use super::adapter::AdapterSummary;
use super::error::GpuError;
use super::family::{Caps, OpenOptions};
use crate::engine::DeviceInfo;

/// An open device on one adapter.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The kernels this device runs: the family, and whether its 8-lane subgroup kernels passed `subgroup_probe`.
    pub caps: Caps,
    /// The device was opened with subgroups and they are 8 wide as the subgroup kernels need (`subgroup_probe`).
    pub subgroups_of_8: bool,
    /// Held to the downlevel limits (`OpenOptions::downlevel`).
    pub downlevel: bool,
    /// How it was opened (what was asked; `caps` is what the device gave).
    pub options: OpenOptions,
    /// How long `wait` waits natively (a browser's WebGPU has no timed wait).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    timeout: Duration,
    errors: Arc<Mutex<Vec<String>>>,
    lost: Arc<Mutex<Option<String>>>,
}

/// The default wait limit for one GPU submission; `GPU_CNN_TIMEOUT_S` overrides it.
pub const DEFAULT_TIMEOUT_S: u64 = 300;

impl Gpu {
    /// A device on `adapter` with `limits` and `features`, errors and device loss collected for `check`, waits limited
    /// by `GPU_CNN_TIMEOUT_S` (default `DEFAULT_TIMEOUT_S`), to run the kernels of `caps`.
    pub async fn request(
        summary: AdapterSummary,
        adapter: &wgpu::Adapter,
        limits: wgpu::Limits,
        features: wgpu::Features,
        caps: Caps,
        options: OpenOptions,
    ) -> Result<Gpu, GpuError> {
        let desc = wgpu::DeviceDescriptor {
            label: Some("gpu-cnn"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = adapter
            .request_device(&desc)
            .await
            .map_err(|e| GpuError::RequestDevice { adapter: summary.line(), message: e.to_string() })?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let lost = Arc::new(Mutex::new(None));
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut l) = lost_sink.lock() {
                *l = Some(format!("{reason:?}: {message}"));
            }
        });
        let secs = std::env::var("GPU_CNN_TIMEOUT_S").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_TIMEOUT_S);
        Ok(Gpu {
            device,
            queue,
            adapter: summary,
            limits,
            subgroups_of_8: features.contains(wgpu::Features::SUBGROUP),
            features,
            caps,
            downlevel: options.downlevel,
            options,
            timeout: Duration::from_secs(secs),
            errors,
            lost,
        })
    }

    /// What a run on this device with the kernels of `caps` records (`engine::DeviceInfo`).
    pub fn info(&self, caps: &Caps) -> DeviceInfo {
        let a = &self.adapter;
        DeviceInfo {
            name: a.name.clone(),
            vendor: a.vendor.clone(),
            device_type: a.device_type.clone(),
            backend: a.backend.clone(),
            driver: a.driver.clone(),
            driver_info: a.driver_info.clone(),
            subgroups: a.subgroups.clone(),
            kernels: caps.describe(),
            device_id: a.device_id.clone(),
            limits: a.limits.clone(),
            features: a.features.clone(),
        }
    }

    /// Fails with the first error the device reported since the last check (validation, out of memory, device loss).
    pub fn check(&self) -> Result<(), GpuError> {
        if let Some(reason) = self.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(GpuError::DeviceLost { adapter: self.adapter.line(), reason });
        }
        let first = self.errors.lock().ok().and_then(|mut v| if v.is_empty() { None } else { Some(v.remove(0)) });
        match first {
            Some(message) => Err(GpuError::Device { adapter: self.adapter.line(), message }),
            None => Ok(()),
        }
    }

    /// Waits for a submission, at most the timeout; `what` names the work in the error. Natively this polls the
    /// device (blocking); in a browser it awaits the queue, and the page's event loop runs meanwhile.
    pub async fn wait(&self, index: Option<wgpu::SubmissionIndex>, what: &str) -> Result<(), GpuError> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let r = self.device.poll(wgpu::PollType::Wait { submission_index: index, timeout: Some(self.timeout) });
            if let Err(e) = r {
                self.check()?;
                return Err(match e {
                    wgpu::PollError::Timeout => GpuError::Timeout {
                        what: what.to_string(),
                        secs: self.timeout.as_secs(),
                        adapter: self.adapter.line(),
                    },
                    other => GpuError::Device { adapter: self.adapter.line(), message: other.to_string() },
                });
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = (index, what); // WebGPU waits for all work submitted so far
            let (done, finished) = handoff();
            self.queue.on_submitted_work_done(move || done(()));
            finished.await;
        }
        self.check()
    }

    /// A storage buffer initialized from `data` (also copyable both ways, and bindable as a uniform window: see
    /// `kernels::Access::Weights`).
    pub fn storage_init(&self, label: &str, data: &[u8]) -> Result<wgpu::Buffer, GpuError> {
        self.check_size(label, data.len() as u64)?;
        Ok(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: data,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        }))
    }

    /// A zeroed storage buffer of `bytes` bytes.
    pub fn storage(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        let bytes = bytes.max(4).next_multiple_of(4);
        self.check_size(label, bytes)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// Refuses a buffer larger than the adapter's binding limit, with the limit, the size and the adapter named.
    pub fn check_size(&self, what: &str, bytes: u64) -> Result<(), GpuError> {
        let limit = self.limits.max_storage_buffer_binding_size;
        if bytes > limit {
            return Err(GpuError::TooLarge {
                what: format!("buffer `{what}`"),
                needed: bytes,
                limit,
                limit_name: "max_storage_buffer_binding_size",
                adapter: self.adapter.line(),
            });
        }
        Ok(())
    }

    /// Copies `bytes` bytes from `offset` in `buffer` back to the host (waits, with the timeout).
    pub async fn read_bytes(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
        what: &str,
    ) -> Result<Vec<u8>, GpuError> {
        let staging = self.staging("readback", bytes);
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buffer, offset, &staging, 0, bytes);
        let idx = self.queue.submit([enc.finish()]);
        self.map_read(&staging, bytes, idx, what).await
    }

    /// A small buffer the host can map, for reads recorded into a command buffer (`read_recorded`).
    pub fn staging(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Reads `staging`, which submission `after` filled (a copy recorded in it), once that submission is done: no new
    /// submission, so work queued behind it keeps the GPU busy meanwhile.
    pub async fn read_recorded(
        &self,
        staging: &wgpu::Buffer,
        after: wgpu::SubmissionIndex,
        what: &str,
    ) -> Result<Vec<u8>, GpuError> {
        self.map_read(staging, staging.size(), after, what).await
    }

    /// Maps the first `bytes` of `staging` once submission `after` is done, copies them out and unmaps.
    async fn map_read(
        &self,
        staging: &wgpu::Buffer,
        bytes: u64,
        after: wgpu::SubmissionIndex,
        what: &str,
    ) -> Result<Vec<u8>, GpuError> {
        let err =
            |message: String| GpuError::Readback { what: what.to_string(), adapter: self.adapter.line(), message };
        let slice = staging.slice(..bytes);
        let (mapped, result) = handoff();
        slice.map_async(wgpu::MapMode::Read, mapped);
        self.wait(Some(after), what).await?;
        // Natively the device poll in `wait` has run the callback; in a browser it comes when the page gets to it.
        #[cfg(not(target_arch = "wasm32"))]
        let result = result.now().ok_or_else(|| err("the buffer was not mapped after the work was done".into()))?;
        #[cfg(target_arch = "wasm32")]
        let result = result.await;
        result.map_err(|e| err(e.to_string()))?;
        let out = slice.get_mapped_range().map_err(|e| err(e.to_string()))?.to_vec();
        staging.unmap();
        Ok(out)
    }

    pub async fn read_f32(
        &self,
        buffer: &wgpu::Buffer,
        offset_elems: usize,
        len: usize,
        what: &str,
    ) -> Result<Vec<f32>, GpuError> {
        let bytes = self.read_bytes(buffer, offset_elems as u64 * 4, len as u64 * 4, what).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    pub async fn read_u32(
        &self,
        buffer: &wgpu::Buffer,
        offset_elems: usize,
        len: usize,
        what: &str,
    ) -> Result<Vec<u32>, GpuError> {
        let bytes = self.read_bytes(buffer, offset_elems as u64 * 4, len as u64 * 4, what).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}

/// Packs bytes four to a u32 (little-endian), as the shaders read u8 data.
pub fn pack_u8(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.resize(bytes.len().next_multiple_of(4).max(4), 0);
    v
}

/// A value a wgpu callback hands over (a buffer mapped, the queue done) to the code awaiting it: the sending half is
/// the callback, the receiving half a future.
fn handoff<T: Send + 'static>() -> (impl FnOnce(T) + Send + 'static, Handoff<T>) {
    let shared: Arc<Mutex<(Option<T>, Option<Waker>)>> = Arc::new(Mutex::new((None, None)));
    let sender = shared.clone();
    let send = move |value: T| {
        let waker = sender.lock().ok().and_then(|mut s| {
            s.0 = Some(value);
            s.1.take()
        });
        if let Some(w) = waker {
            w.wake();
        }
    };
    (send, Handoff(shared))
}

struct Handoff<T>(Arc<Mutex<(Option<T>, Option<Waker>)>>);

impl<T> Handoff<T> {
    /// The value if the callback has run.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    fn now(&self) -> Option<T> {
        self.0.lock().ok().and_then(|mut s| s.0.take())
    }
}

impl<T> Future for Handoff<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Ok(mut s) = self.0.lock() else { return Poll::Pending };
        match s.0.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
