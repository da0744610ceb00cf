//! One row of the shader table: a WGSL file (with the shared files the host appends to it), its entry points, the
//! bindings the host gives each of them, and what it asks of a device. Each op declares its own rows
//! (`ops::<op>::SHADERS`); `kernels` lists them all.

use super::family::Family;

/// How a binding is used by a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    ReadWrite,
    /// `var<uniform>` with a dynamic offset: the per-step block (`shaders/step.wgsl`).
    Step,
    /// `var<uniform>` without a dynamic offset.
    Uniform,
    /// `var<uniform>` over the first `WEIGHT_WINDOW_BYTES` of the parameter buffer, where the convolutions' weights
    /// and biases sit: on lavapipe a uniform load is a plain gather, cheaper than a storage load (a loop over the SIMD
    /// lanes).
    Weights,
}

/// Bytes of the parameter buffer the simd convolutions read through their `Weights` binding (their `WEIGHT_VEC4S` ×
/// 16): room for the study's conv1 and conv2 weights and biases, 4,800 floats, which come first in the layout.
pub const WEIGHT_WINDOW_BYTES: u64 = 19_200;

/// Size in bytes of the per-step uniform block (`struct Step` in `shaders/step.wgsl`).
pub const STEP_BYTES: u64 = 16;

/// One shader file: its source, its entry points and their bindings (binding i = `bindings[i]`, the same layout for
/// every entry point of the file), and what it asks of the device (checked against its limits by `gpu::limits`).
pub struct Shader {
    pub file: &'static str,
    /// What is compiled: the file, followed by each of `appended`.
    pub source: &'static str,
    /// Files of shared code appended to this one, in order (WGSL has no include): `step.wgsl` where the shader binds
    /// the step block, the tiled kernels' `tile_core.wgsl`, the loss kernels' `metrics_core.wgsl`.
    pub appended: &'static [&'static str],
    pub entry_points: &'static [&'static str],
    pub bindings: &'static [Access],
    /// The kernel family it belongs to; `None`: both families use it.
    pub family: Option<Family>,
    /// Threads per workgroup (the shader's `WG`).
    pub workgroup: u32,
    /// Bytes of workgroup memory it declares (the hygiene test checks this against naga's reflection).
    pub workgroup_bytes: u32,
    /// Uses subgroup operations: built only on devices with verified 8-lane subgroups.
    pub subgroups: bool,
    /// A fusion its family runs only on devices whose limits take it (`limits::fits`), the unfused kernels elsewhere:
    /// not among the needs that decide whether a device can run the family at all.
    pub optional: bool,
}

/// A `Shader` row: `shader!("file.wgsl" + ["appended.wgsl", …], [entry points], [bindings], family, wg W, shared B)`,
/// optionally followed by `, subgroups` and/or `, optional`. The source is the file with the appended ones after it.
macro_rules! shader {
    ($file:literal + [$($app:literal),*], [$($entry:literal),+], [$($b:ident),+], $family:expr, wg $wg:expr, shared $bytes:expr $(, $flag:ident)*) => {
        $crate::gpu::shader::Shader {
            file: $file,
            source: concat!(
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $file))
                $(, "\n", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $app)))*
            ),
            appended: &[$($app),*],
            entry_points: &[$($entry),+],
            bindings: &[$($crate::gpu::shader::Access::$b),+],
            family: $family,
            workgroup: $wg,
            workgroup_bytes: $bytes,
            subgroups: $crate::gpu::shader::shader!(@has subgroups $($flag)*),
            optional: $crate::gpu::shader::shader!(@has optional $($flag)*),
        }
    };
    (@has subgroups subgroups $($rest:ident)*) => { true };
    (@has optional optional $($rest:ident)*) => { true };
    (@has $want:ident $other:ident $($rest:ident)*) => { $crate::gpu::shader::shader!(@has $want $($rest)*) };
    (@has $want:ident) => { false };
}
pub(crate) use shader;

/// The naga shader capabilities the shaders may use: subgroup operations (only the `*_subgroup` kernels, built only
/// where the device has `Features::SUBGROUP`) and nothing else beyond core WGSL. The shader-hygiene test validates
/// every shader with exactly this set.
pub fn shader_capabilities() -> naga::valid::Capabilities {
    naga::valid::Capabilities::SUBGROUP
}

/// The source as naga (wgpu's native WGSL compiler) takes it: naga 30 does not yet accept the `enable subgroups;`
/// directive that the WGSL spec requires before subgroup built-ins (gfx-rs/wgpu#5555) but allows the built-ins
/// without it, so the directive becomes a comment (the line count stays, so error positions still match the file).
/// Browsers (Tint) get the file as it is.
pub fn wgsl_for_naga(source: &str) -> std::borrow::Cow<'_, str> {
    const DIRECTIVE: &str = "enable subgroups;";
    if source.lines().any(|l| l.trim() == DIRECTIVE) {
        let lines: Vec<&str> = source
            .lines()
            .map(|l| if l.trim() == DIRECTIVE { "// enable subgroups; (see wgsl_for_naga)" } else { l })
            .collect();
        std::borrow::Cow::Owned(lines.join("\n") + "\n")
    } else {
        std::borrow::Cow::Borrowed(source)
    }
}
