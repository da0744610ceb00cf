//! Kernels that measure the device rather than run the network: `subgroup_probe.wgsl` (checked before the simd
//! family's subgroup kernels rely on 8-lane subgroups, `gpu::caps`) and `peak.wgsl` (`gpu-cnn peak`).

use crate::gpu::family::Family;
use crate::gpu::shader::{shader, Shader};

pub const SHADERS: &[Shader] = &[
    shader!(
        "peak.wgsl" + [],
        ["peak_fma", "peak_copy", "peak_touch"],
        [Read, ReadWrite],
        None,
        wg 256,
        shared 0
    ),
    shader!(
        "subgroup_probe.wgsl" + [],
        ["subgroup_probe"],
        [ReadWrite],
        Some(Family::Simd),
        wg 64,
        shared 0,
        subgroups
    ),
];
