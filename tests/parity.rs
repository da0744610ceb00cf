//! Every WGSL entry point against its CPU reference, through `gpu_cnn::check`: what `gpu-cnn check` runs on any
//! adapter, here for every kernel family the device can run (simd with and without its 8-lane subgroup kernels, tiled
//! with the tiles chosen for each case's batch and for a batch of 1024), on the network's shapes and awkward ones, with
//! outputs poisoned (NaN) so an unwritten element fails. The tolerances and their reasons are in `gpu_cnn::check`.

mod common;

use common::*;
use gpu_cnn::check::{self, Harness};
use gpu_cnn::gpu::ops as kernels;

/// Runs the checks of `op` on the default adapter in every variant it can run, printing each row; fails on any
/// failure, naming it.
fn check(op: &str) {
    let Some(gpu) = gpu_for_families(op) else { return };
    let variants = gpu_cnn::gpu::caps::variants(&gpu, true);
    if !check::has_kernels(op, &variants) {
        // E.g. maxpool_backward on a device held to the downlevel limits, where only the tiled family fits.
        eprintln!("{op}: skipped: no kernel of it in the families this device runs");
        return;
    }
    let h = Harness::new(gpu);
    let rows = pollster::block_on(check::check_op(&h, op, &variants, false));
    assert!(!rows.is_empty(), "{op}: nothing checked");
    for r in &rows {
        eprintln!(
            "{} [{}]: {} outputs, worst relative error {:.2e}, worst share of tolerance {:.0} %{}",
            r.kernel,
            r.variant,
            r.cases,
            r.worst_relative_error,
            100.0 * r.worst_share_of_tolerance,
            if r.passed { "" } else { " FAILED" }
        );
    }
    let failures: Vec<String> = rows.iter().filter(|r| !r.passed).filter_map(|r| r.failure.clone()).collect();
    assert!(failures.is_empty(), "{op}:\n{}", failures.join("\n"));
}

#[test]
fn kernels_refuse_shapes_they_cannot_take() {
    for entry in ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight"] {
        let err = kernels::check_shape(entry, &[("CIN", 3.0), ("COUT", 5.0), ("H", 5.0), ("W", 5.0)]).unwrap_err();
        assert!(err.contains("W = 5 must be even"), "{err}");
        assert!(kernels::check_shape(entry, &[("H", 6.0), ("W", 6.0)]).is_ok());
    }
    // The tiled convolutions take any width, but a fused 2×2 max-pool needs even sides, as the average pool does.
    let err = kernels::check_shape("avgpool_forward", &[("C", 3.0), ("H", 5.0), ("W", 6.0)]).unwrap_err();
    assert!(err.contains("must be even for a 2×2 pool"), "{err}");
    assert!(kernels::check_shape("avgpool_backward", &[("H", 10.0), ("W", 6.0)]).is_ok());
    assert!(kernels::check_shape("conv2d_backward_input_tiled", &[("H", 5.0), ("W", 5.0)]).is_ok());
    assert!(kernels::check_shape("conv2d_forward_tiled", &[("H", 5.0), ("W", 5.0), ("POOL", 0.0)]).is_ok());
    let err = kernels::check_shape("conv2d_forward_tiled", &[("H", 5.0), ("W", 6.0), ("POOL", 1.0)]).unwrap_err();
    assert!(err.contains("5×6, must have even sides for the fused 2×2 max-pool"), "{err}");
    // Of its output: 14 through a 5×5 kernel without padding is 10, which pools; with padding 1, 12.
    let tiled = |k: f64, pad: f64| {
        kernels::check_shape(
            "conv2d_forward_tiled",
            &[("H", 14.0), ("W", 14.0), ("KSIZE", k), ("PAD", pad), ("POOL", 1.0)],
        )
    };
    assert!(tiled(5.0, 0.0).is_ok() && tiled(5.0, 1.0).is_ok());
    assert!(tiled(4.0, 0.0).unwrap_err().contains("11×11"));
    assert!(tiled(5.0, 5.0).unwrap_err().contains("does not fit"));
    assert!(kernels::check_shape("dense_forward", &[("IN", 13.0), ("W_OFF", 3.0)]).is_ok());
    // The subgroup dense kernel reads vec4s.
    let err = kernels::check_shape("dense_forward_subgroup", &[("IN", 13.0), ("W_OFF", 4.0)]).unwrap_err();
    assert!(err.contains("IN = 13 must be a multiple of 4"), "{err}");
    let err = kernels::check_shape("dense_forward_subgroup", &[("IN", 12.0), ("W_OFF", 3.0)]).unwrap_err();
    assert!(err.contains("W_OFF = 3 must be a multiple of 4"), "{err}");
    assert!(kernels::check_shape("dense_forward_subgroup", &[("IN", 1568.0), ("W_OFF", 4800.0)]).is_ok());
    let bi = |out: f64| {
        kernels::check_shape("dense_backward_input_subgroup", &[("IN", 128.0), ("OUT", out), ("W_OFF", 8.0)])
    };
    assert!(bi(10.0).unwrap_err().contains("OUT = 10 must be a multiple of 4"));
    assert!(bi(12.0).is_ok());
    let bw = |b_off: f64| {
        kernels::check_shape(
            "dense_backward_weight_subgroup",
            &[("IN", 128.0), ("OUT", 12.0), ("W_OFF", 4.0), ("B_OFF", b_off)],
        )
    };
    assert!(bw(1542.0).unwrap_err().contains("B_OFF = 1542 must be a multiple of 4"));
    assert!(bw(1544.0).is_ok());
}

#[test]
fn conv2d_forward_matches_reference() {
    check("conv2d_forward");
}

#[test]
fn conv2d_backward_input_matches_reference() {
    check("conv2d_backward_input");
}

#[test]
fn conv2d_backward_weight_matches_reference() {
    check("conv2d_backward_weight");
}

#[test]
fn maxpool_backward_matches_reference_exactly() {
    check("maxpool_backward");
}

#[test]
fn avgpool_forward_matches_reference_exactly() {
    check("avgpool_forward");
}

#[test]
fn avgpool_backward_matches_reference_exactly() {
    check("avgpool_backward");
}

#[test]
fn dense_forward_matches_reference() {
    check("dense_forward");
}

#[test]
fn dense_backward_input_matches_reference() {
    check("dense_backward_input");
}

#[test]
fn dense_backward_weight_matches_reference() {
    check("dense_backward_weight");
}

#[test]
fn softmax_cross_entropy_matches_reference() {
    check("softmax_cross_entropy");
}

#[test]
fn classifier_head_matches_reference() {
    check("classifier_head");
}

#[test]
fn sgd_step_matches_reference() {
    check("sgd_step");
}

#[test]
fn load_batch_gathers_and_normalizes() {
    check("load_batch");
}

#[test]
fn every_op_group_is_tested() {
    // The list above and `check::OPS` (what `gpu-cnn check` runs) are the same.
    let source = include_str!("parity.rs");
    for op in check::OPS {
        assert!(source.contains(&format!("check(\"{op}\")")), "{op} has no parity test");
    }
}
