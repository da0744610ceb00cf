//! The device limits a kernel family relies on, derived from the shader table (bindings, workgroup sizes, workgroup
//! memory), checked against an adapter's limits before anything is created, so that a device too small for a family
//! gets a message naming the limit, what is needed and what the adapter offers, or the other family.

use super::family::Family;
use super::ops;
use super::shader::{Access, Shader, STEP_BYTES, WEIGHT_WINDOW_BYTES};

/// One limit a family needs: wgpu's name for it, the value needed and which shader needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    pub limit: &'static str,
    pub needed: u64,
    pub by: &'static str,
}

/// Everything the shaders of `family` (and the shared ones) ask of a device, but its optional fusions. `subgroups`:
/// the simd family's subgroup kernels are included.
pub fn needs(family: Family, subgroups: bool) -> Vec<Need> {
    let mut out: Vec<Need> = Vec::new();
    let shaders =
        ops::shaders().filter(|s| s.family.is_none_or(|f| f == family) && (subgroups || !s.subgroups) && !s.optional);
    for need in shaders.flat_map(shader_needs) {
        match out.iter_mut().find(|n| n.limit == need.limit) {
            Some(n) if n.needed >= need.needed => {}
            Some(n) => *n = need,
            None => out.push(need),
        }
    }
    out
}

/// What one shader asks of a device.
fn shader_needs(s: &Shader) -> Vec<Need> {
    let storage = s.bindings.iter().filter(|a| matches!(a, Access::Read | Access::ReadWrite)).count();
    let dynamic = s.bindings.iter().filter(|a| **a == Access::Step).count();
    let biggest_uniform = s.bindings.iter().fold(0, |m, a| match a {
        Access::Weights => m.max(WEIGHT_WINDOW_BYTES),
        Access::Step | Access::Uniform => m.max(STEP_BYTES),
        _ => m,
    });
    let need = |limit: &'static str, needed: u64| Need { limit, needed, by: s.file };
    vec![
        need("max_storage_buffers_per_shader_stage", storage as u64),
        need("max_uniform_buffers_per_shader_stage", (s.bindings.len() - storage) as u64),
        need("max_bindings_per_bind_group", s.bindings.len() as u64),
        need("max_dynamic_uniform_buffers_per_pipeline_layout", dynamic as u64),
        need("max_uniform_buffer_binding_size", biggest_uniform),
        need("max_compute_workgroup_storage_size", s.workgroup_bytes as u64),
        need("max_compute_invocations_per_workgroup", s.workgroup as u64),
        need("max_compute_workgroup_size_x", s.workgroup as u64),
    ]
}

/// Whether the device's limits take the shader of entry point `entry` (an optional fusion, `Shader::optional`).
pub fn fits(entry: &str, limits: &wgpu::Limits) -> bool {
    shader_needs(ops::shader_for(entry)).iter().all(|n| n.needed <= value(limits, n.limit))
}

/// The value of a limit by wgpu's name (those `needs` uses).
pub fn value(limits: &wgpu::Limits, name: &str) -> u64 {
    match name {
        "max_storage_buffers_per_shader_stage" => limits.max_storage_buffers_per_shader_stage as u64,
        "max_uniform_buffers_per_shader_stage" => limits.max_uniform_buffers_per_shader_stage as u64,
        "max_bindings_per_bind_group" => limits.max_bindings_per_bind_group as u64,
        "max_dynamic_uniform_buffers_per_pipeline_layout" => {
            limits.max_dynamic_uniform_buffers_per_pipeline_layout as u64
        }
        "max_uniform_buffer_binding_size" => limits.max_uniform_buffer_binding_size,
        "max_compute_workgroup_storage_size" => limits.max_compute_workgroup_storage_size as u64,
        "max_compute_invocations_per_workgroup" => limits.max_compute_invocations_per_workgroup as u64,
        "max_compute_workgroup_size_x" => limits.max_compute_workgroup_size_x as u64,
        other => panic!("unknown limit {other}"),
    }
}

/// The first need the limits do not meet, with what they offer.
pub fn unmet(family: Family, subgroups: bool, limits: &wgpu::Limits) -> Option<(Need, u64)> {
    needs(family, subgroups)
        .into_iter()
        .map(|n| {
            let have = value(limits, n.limit);
            (n, have)
        })
        .find(|(n, have)| n.needed > *have)
}

/// The adapter's limits cut down to `wgpu::Limits::downlevel_defaults()` where those are lower: the smallest device
/// the engine promises to run on (`GPU_CNN_LIMITS=downlevel` opens devices so, to test that promise).
pub fn downlevel(adapter: &wgpu::Limits) -> wgpu::Limits {
    adapter.clone().or_worse_values_from(&wgpu::Limits::downlevel_defaults())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_fit_the_webgpu_defaults_and_tiled_fits_downlevel() {
        let webgpu = wgpu::Limits::default();
        assert_eq!(unmet(Family::Tiled, false, &webgpu), None);
        assert_eq!(unmet(Family::Simd, true, &webgpu), None);
        let small = wgpu::Limits::downlevel_defaults();
        assert_eq!(unmet(Family::Tiled, false, &small), None);
        // The simd family reads the conv weights through a 19,200-byte uniform window: over the 16 KiB floor.
        let (need, have) = unmet(Family::Simd, true, &small).expect("the simd family needs more");
        assert_eq!((need.limit, need.needed, have), ("max_uniform_buffer_binding_size", 19_200, 16_384));
    }

    #[test]
    fn the_classifier_head_needs_six_storage_buffers() {
        assert!(fits("classifier_head", &wgpu::Limits::default()));
        assert!(!fits("classifier_head", &wgpu::Limits::downlevel_defaults()));
        let six = wgpu::Limits { max_storage_buffers_per_shader_stage: 6, ..wgpu::Limits::downlevel_defaults() };
        assert!(fits("classifier_head", &six));
    }
}
