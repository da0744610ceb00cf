//! The kernel families and a device's kernel set (`Caps`), as plain data: which one runs where is decided in `caps`.
//!
//! - `Family::Simd`: kernels shaped for CPU adapters (lavapipe): big register tiles spelled out by hand, weights
//!   through a uniform window, 8-lane subgroup variants; one op per dispatch, as in the CPU reference.
//! - `Family::Tiled`: kernels shaped for GPUs: matrix products and implicit-GEMM convolutions tiled through workgroup
//!   memory, tiles and split-K sized for the batch (`ops::tiles`), the pools' backward fused into the kernels that
//!   produce the pooled gradient, and a training step's classifier head in one dispatch where the device takes it.

use std::fmt;

/// The kernel family a device runs (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Simd,
    Tiled,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Simd, Family::Tiled];

    pub fn name(self) -> &'static str {
        match self {
            Family::Simd => "simd",
            Family::Tiled => "tiled",
        }
    }

    /// A family, or `auto` (None: the adapter's default), as `--kernels` and `GPU_CNN_KERNELS` take it.
    pub fn parse_choice(s: &str) -> Result<Option<Family>, String> {
        match s {
            "" | "auto" => Ok(None),
            other => Family::parse(other).map(Some),
        }
    }

    pub fn parse(s: &str) -> Result<Family, String> {
        match s.to_ascii_lowercase().as_str() {
            "simd" => Ok(Family::Simd),
            "tiled" => Ok(Family::Tiled),
            other => Err(format!("unknown kernel family `{other}` (expected simd, tiled or auto)")),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the ops need to know about the device to pick their kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub family: Family,
    /// Subgroups of exactly 8 invocations, verified on the device (`gpu::subgroup_probe`): the simd family then runs
    /// its `*_subgroup` kernels.
    pub subgroups_of_8: bool,
    /// The tiled family's training step runs its classifier head as one dispatch (`classifier_head`), where the
    /// device's limits take it (`Caps::within`).
    pub head: bool,
}

impl Caps {
    pub fn simd(subgroups_of_8: bool) -> Caps {
        Caps { family: Family::Simd, subgroups_of_8, head: false }
    }

    /// The tiled family with its fused classifier head.
    pub fn tiled() -> Caps {
        Caps { family: Family::Tiled, subgroups_of_8: false, head: true }
    }

    /// The tiled family with the head's four dispatches (a device without six storage buffers per stage).
    pub fn tiled_unfused() -> Caps {
        Caps { head: false, ..Caps::tiled() }
    }

    /// "tiled", "tiled, head unfused", "simd" or "simd, 8-lane subgroups": as results and the adapters list show it.
    pub fn describe(&self) -> String {
        match (self.family, self.subgroups_of_8, self.head) {
            (Family::Simd, true, _) => "simd, 8-lane subgroups".into(),
            (Family::Tiled, _, false) => "tiled, head unfused".into(),
            (f, _, _) => f.name().into(),
        }
    }
}

/// How to open a device: which kernel family (None: the adapter's default, `default_family`), whether the simd family
/// may use its subgroup kernels, whether the tiled family may fuse its classifier head, and whether to hold the device
/// to `wgpu::Limits::downlevel_defaults()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    pub family: Option<Family>,
    pub no_subgroups: bool,
    pub no_head: bool,
    pub downlevel: bool,
}
