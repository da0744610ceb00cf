//! Shared test helpers: the GPU (or a visible skip), seeded random data, tolerance checks; `browser`: headless Chromium.
#![allow(dead_code)]

pub mod browser;

use gpu_cnn::gpu::Family;
use gpu_cnn::gpu::{AdapterSelection, Gpu, GpuError, OpenOptions};

/// The default adapter, or None with a visible "skipped" line. With `GPU_CNN_REQUIRE_GPU=1` a missing adapter fails.
pub fn gpu(test: &str) -> Option<Gpu> {
    match pollster::block_on(Gpu::open(&AdapterSelection::default())) {
        Ok(g) => {
            eprintln!("{test}: adapter {}", g.adapter.line());
            Some(g)
        }
        Err(e) => {
            if std::env::var("GPU_CNN_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("{test}: GPU_CNN_REQUIRE_GPU=1 but no GPU adapter: {e}");
            }
            eprintln!("{test}: skipped: no GPU adapter ({e})");
            None
        }
    }
}

/// The default adapter opened so that every kernel family can run on it: for the simd family (with its subgroup
/// kernels where the adapter has verified 8-lane subgroups); the tiled kernels need nothing more. Where the device's
/// limits (`GPU_CNN_LIMITS=downlevel`) rule the simd family out, opened for the tiled family alone.
pub fn gpu_for_families(test: &str) -> Option<Gpu> {
    let opts = OpenOptions::from_env().expect("GPU_CNN_* settings");
    let open = |family| pollster::block_on(Gpu::open_with(&AdapterSelection::default(), opts.family(family)));
    let opened = match open(Family::Simd) {
        Err(GpuError::Limit { .. }) => open(Family::Tiled),
        other => other,
    };
    match opened {
        Ok(g) => {
            eprintln!("{test}: adapter {}", g.adapter.line());
            Some(g)
        }
        Err(e) => {
            if std::env::var("GPU_CNN_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("{test}: GPU_CNN_REQUIRE_GPU=1 but no GPU adapter: {e}");
            }
            eprintln!("{test}: skipped: no GPU adapter ({e})");
            None
        }
    }
}

/// Seeded random inputs, as `gpu-cnn check` makes them.
#[allow(unused_imports)] // not every test file uses all three
pub use gpu_cnn::check::{random, random_labels, to_f64};

/// Checks |gpu − ref| ≤ atol_i + rtol·|ref| for every element (atol per element, e.g. from an error bound), and
/// returns the largest relative error |gpu − ref| / |ref| among the elements whose |ref| is at least 10 % of the largest
/// (small elements are sums that cancelled: their relative error says nothing about the kernel). Prints it with the
/// largest share of the tolerance any element used. Fails on NaN (an unwritten, poisoned element).
pub fn assert_close(what: &str, gpu: &[f32], reference: &[f64], atol: &dyn Fn(usize) -> f64, rtol: f64) -> f64 {
    assert_eq!(gpu.len(), reference.len(), "{what}: length");
    let big = 0.1 * reference.iter().fold(0.0f64, |m, r| m.max(r.abs()));
    let (mut worst, mut share) = (0.0f64, 0.0f64);
    for (i, (&g, &r)) in gpu.iter().zip(reference).enumerate() {
        let err = (g as f64 - r).abs();
        let tol = atol(i) + rtol * r.abs();
        assert!(
            g.is_finite() && err <= tol,
            "{what}: element {i}: gpu {g} vs reference {r} (|diff| {err:.3e} > tolerance {tol:.3e})"
        );
        if r.abs() >= big && r != 0.0 {
            worst = worst.max(err / r.abs());
        }
        if tol > 0.0 {
            share = share.max(err / tol);
        }
    }
    eprintln!(
        "{what}: {} elements, worst relative error {worst:.2e}, worst share of tolerance {:.0} %",
        gpu.len(),
        100.0 * share
    );
    worst
}

/// Exact equality (max-pool, ReLU, argmax): bit-for-bit on the values.
pub fn assert_exact(what: &str, gpu: &[f32], reference: &[f32]) {
    assert_eq!(gpu.len(), reference.len(), "{what}: length");
    for (i, (g, r)) in gpu.iter().zip(reference).enumerate() {
        assert!(g.to_bits() == r.to_bits(), "{what}: element {i}: gpu {g} vs reference {r}");
    }
    eprintln!("{what}: {} elements, exact", gpu.len());
}
