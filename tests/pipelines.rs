//! Every pipeline the engine can create builds on this adapter, and none takes long: a pipeline that takes minutes to
//! compile (as some hand-unrolled kernels once did in Chrome's SwiftShader) is a defect users meet as a hang. Prints
//! each pipeline's creation time, slowest first (BENCHMARKS.md records them per adapter).

mod common;

use std::time::Instant;

use common::*;
use gpu_cnn::gpu::net::lower::all_pipeline_specs;
use gpu_cnn::gpu::ops::shader_for;
use gpu_cnn::gpu::pipelines::Kernels;

/// The most one pipeline may take to create, in seconds (the slowest measured on lavapipe on a 2-core VM is well
/// under it; see BENCHMARKS.md).
const MAX_SECONDS: f64 = 10.0;

#[test]
fn every_pipeline_builds_quickly() {
    let Some(gpu) = gpu_for_families("every_pipeline_builds_quickly") else { return };
    let kernels = Kernels::new();
    let mut times = Vec::new();
    for spec in all_pipeline_specs() {
        if shader_for(spec.entry).subgroups && !gpu.subgroups_of_8 {
            continue;
        }
        if gpu_cnn::gpu::limits::unmet(shader_for(spec.entry).family.unwrap_or(gpu.caps.family), false, &gpu.limits)
            .is_some()
        {
            continue; // a family this device's limits rule out (GPU_CNN_LIMITS=downlevel)
        }
        if shader_for(spec.entry).optional && !gpu_cnn::gpu::limits::fits(spec.entry, &gpu.limits) {
            continue; // a fusion the device cannot take: it runs the unfused kernels instead
        }
        let t0 = Instant::now();
        kernels.kernel(&gpu, spec.entry, &spec.constants).unwrap_or_else(|e| panic!("{}: {e}", spec.entry));
        let shape: Vec<String> = spec.constants.iter().map(|(k, v)| format!("{k}={v}")).collect();
        times.push((t0.elapsed().as_secs_f64(), format!("{} {}", spec.entry, shape.join(" "))));
    }
    times.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total: f64 = times.iter().map(|t| t.0).sum();
    eprintln!("{} pipelines in {total:.2} s on {}; slowest first:", times.len(), gpu.adapter.line());
    for (t, name) in &times {
        eprintln!("{t:8.3} s  {name}");
    }
    assert!(times.len() >= 30, "only {} pipelines", times.len());
    for (t, name) in &times {
        assert!(*t < MAX_SECONDS, "{name}: {t:.1} s to create");
    }
}
