//! Errors from the GPU side. Each names the adapter where one was chosen, and the limit or setting that is wrong.

use super::family::Family;

/// Errors from the GPU side. Each names the adapter where one was chosen.
#[derive(thiserror::Error, Debug)]
pub enum GpuError {
    #[error("no GPU adapter found{backend}. On Debian/Ubuntu, `apt-get install mesa-vulkan-drivers` provides a software Vulkan adapter (lavapipe); or pass `--device cpu`")]
    NoAdapter { backend: String },
    #[error("no adapter of backend {backends} (--backend or WGPU_BACKEND); wgpu finds: {others}")]
    NoAdapterOf { backends: String, others: String },
    #[error("no adapter matches `{selection}`; available adapters:\n{choices}")]
    NoMatch { selection: String, choices: String },
    #[error("could not open a device on {adapter}: {message}")]
    RequestDevice { adapter: String, message: String },
    #[error("{what} needs {needed} but {adapter} allows at most {limit} ({limit_name}); use a smaller batch size")]
    TooLarge { what: String, needed: u64, limit: u64, limit_name: &'static str, adapter: String },
    #[error("the {family} kernels need {limit_name} ≥ {needed} ({by}) but {adapter} allows {limit}{hint}")]
    Limit {
        family: Family,
        limit_name: &'static str,
        needed: u64,
        by: &'static str,
        limit: u64,
        adapter: String,
        hint: &'static str,
    },
    #[error("the GPU did not finish {what} within {secs} s on {adapter} (a hang or a very slow adapter; set GPU_CNN_TIMEOUT_S to wait longer)")]
    Timeout { what: String, secs: u64, adapter: String },
    #[error("GPU device lost on {adapter}: {reason}")]
    DeviceLost { adapter: String, reason: String },
    #[error("GPU error on {adapter}: {message}")]
    Device { adapter: String, message: String },
    #[error("reading back {what} from {adapter} failed: {message}")]
    Readback { what: String, adapter: String, message: String },
    #[error("{variable}: {message}")]
    Config { variable: &'static str, message: String },
    #[error("--arch {arch}: {message} (--kernels tiled runs any architecture)")]
    Arch { arch: String, message: String },
}
