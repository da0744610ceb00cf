//! `gpu-cnn check`: every kernel a device runs, against the CPU reference (`crate::reference`), on the network's layer
//! shapes and on awkward ones (batch 1, odd batches, partial tiles), with every output buffer poisoned (NaN) before the
//! dispatch so an unwritten element fails; then one whole training step and one evaluation. Each op runs from the same
//! plans the network dispatches (`gpu::ops`). The parity tests (`tests/parity.rs`) run exactly these checks.
//!
//! Tolerance: |gpu − ref| ≤ atol + rtol·|ref|, the reference computed in f64 from the same f32 inputs. A K-term f32 dot
//! product carries a rounding error of at most γ_K·Σ|terms| (γ_K ≈ K·2⁻²⁴), and typically √K·2⁻²⁴·Σ|terms|; we allow
//! atol = 4·√K·2⁻²⁴·Σ|terms| per element (Σ|terms| is the reference run on |inputs|) plus rtol = 1e-5. An indexing
//! mistake moves an element by the size of a whole term, orders of magnitude above that. Max-pool, ReLU and argmax are
//! exact.

mod avgpool;
mod classifier_head;
mod conv2d;
mod dense;
mod harness;
mod load_batch;
mod maxpool;
mod network;
mod pool;
mod sgd;
mod softmax_cross_entropy;

use web_time::Instant;

use serde::{Deserialize, Serialize};

pub use harness::{random, random_labels, to_f64, Harness};
pub use network::{coloured, synthetic};

use crate::gpu::caps::{self, variants};
use crate::gpu::{AdapterSelection, AdapterSummary, Caps, Family, Gpu, GpuError, OpenOptions};

pub(crate) const EPS32: f64 = 1.0 / (1u64 << 24) as f64;
pub(crate) const RTOL: f64 = 1e-5;

/// Per-element tolerance from an f64 "sum of |terms|" for a K-term reduction.
pub(crate) fn bound(sum_abs: &[f64], k: usize) -> impl Fn(usize) -> f64 + '_ {
    move |i| 4.0 * (k as f64).sqrt() * EPS32 * sum_abs[i] + 1e-30
}

/// Tile hints: the tiled family chooses its tiles (and splits) for the batch it will run; check those chosen for the
/// case's own n and for a batch of 1024. The simd family has one shape.
pub(crate) fn batches(caps: Caps, n: usize, quick: bool) -> Vec<usize> {
    match caps.family {
        Family::Tiled if !quick => vec![n, 1024],
        _ => vec![n],
    }
}

/// The kernel a lowered op starts with, for the report.
pub(crate) fn entry(op: &crate::gpu::ops::Lowered) -> &'static str {
    op.plans[0].entry
}

/// The outcome of comparing one output with its reference.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub what: String,
    pub elements: usize,
    /// Largest |gpu − ref| / |ref| among elements whose |ref| is at least 10 % of the largest (smaller ones are sums
    /// that cancelled: their relative error says nothing about the kernel).
    pub worst_relative_error: f64,
    /// Largest |gpu − ref| / tolerance.
    pub worst_share: f64,
    /// The first element out of tolerance (or not finite), described.
    pub failure: Option<String>,
}

/// |gpu − ref| ≤ atol(i) + rtol·|ref| for every element; NaN (an unwritten, poisoned element) fails.
pub fn compare(what: &str, gpu: &[f32], reference: &[f64], atol: &dyn Fn(usize) -> f64, rtol: f64) -> Comparison {
    let mut c = Comparison {
        what: what.to_string(),
        elements: gpu.len(),
        worst_relative_error: 0.0,
        worst_share: 0.0,
        failure: None,
    };
    if gpu.len() != reference.len() {
        c.failure = Some(format!("{what}: {} elements, the reference has {}", gpu.len(), reference.len()));
        return c;
    }
    let big = 0.1 * reference.iter().fold(0.0f64, |m, r| m.max(r.abs()));
    for (i, (&g, &r)) in gpu.iter().zip(reference).enumerate() {
        let err = (g as f64 - r).abs();
        let tol = atol(i) + rtol * r.abs();
        if !(g.is_finite() && err <= tol) && c.failure.is_none() {
            c.failure =
                Some(format!("{what}: element {i}: gpu {g} vs reference {r} (|diff| {err:.3e} > tolerance {tol:.3e})"));
        }
        if g.is_finite() {
            if r.abs() >= big && r != 0.0 {
                c.worst_relative_error = c.worst_relative_error.max(err / r.abs());
            }
            if tol > 0.0 {
                c.worst_share = c.worst_share.max(err / tol);
            }
        }
    }
    c
}

/// Bit-for-bit equality (max-pool, ReLU routing, argmax).
pub fn compare_exact(what: &str, gpu: &[f32], reference: &[f32]) -> Comparison {
    let failure = if gpu.len() != reference.len() {
        Some(format!("{what}: {} elements, the reference has {}", gpu.len(), reference.len()))
    } else {
        gpu.iter()
            .zip(reference)
            .position(|(g, r)| g.to_bits() != r.to_bits())
            .map(|i| format!("{what}: element {i}: gpu {} vs reference {} (must be exact)", gpu[i], reference[i]))
    };
    // How far off a failing kernel is (0 where it is exact), relative to the reference where it is not zero.
    let worst_relative_error = gpu
        .iter()
        .zip(reference)
        .filter(|(g, r)| g.to_bits() != r.to_bits())
        .map(|(&g, &r)| f64::from((g - r).abs()) / f64::from(r.abs()).max(f64::MIN_POSITIVE))
        .fold(0.0, f64::max);
    Comparison { what: what.to_string(), elements: gpu.len(), worst_relative_error, worst_share: 0.0, failure }
}

/// One line of the report: a kernel in one variant, over all the cases it was run on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckRow {
    /// The entry point (or "training step", "evaluation").
    pub kernel: String,
    /// The kernels it ran with: "tiled", "simd", "simd, 8-lane subgroups".
    pub variant: String,
    /// Outputs compared (shapes × outputs per shape).
    pub cases: usize,
    pub worst_relative_error: f64,
    pub worst_share_of_tolerance: f64,
    pub passed: bool,
    /// The first failure, described.
    pub failure: Option<String>,
}

/// Everything one `check` found on one adapter.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckReport {
    pub adapter: AdapterSummary,
    /// The kernels the engine runs on this adapter unless told otherwise.
    pub default_variant: String,
    pub rows: Vec<CheckRow>,
    pub passed: bool,
    /// "full" or "quick" (the form `bench` runs first).
    pub form: String,
    pub seconds: f64,
}

/// What to check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Every variant the device can run, not only those the engine would use there.
    pub all_variants: bool,
    /// The network's shapes only (for `bench`): a minute on lavapipe becomes seconds.
    pub quick: bool,
    /// A network whose whole training step is checked too, beside the study's (`--arch`).
    pub arch: Option<crate::model::Arch>,
}

/// Collects comparisons into rows.
#[derive(Default)]
pub struct Rows {
    rows: Vec<CheckRow>,
}

impl Rows {
    pub fn add(&mut self, kernel: &str, variant: &str, c: Comparison) {
        let row = match self.rows.iter_mut().position(|r| r.kernel == kernel && r.variant == variant) {
            Some(i) => &mut self.rows[i],
            None => {
                self.rows.push(CheckRow {
                    kernel: kernel.to_string(),
                    variant: variant.to_string(),
                    cases: 0,
                    worst_relative_error: 0.0,
                    worst_share_of_tolerance: 0.0,
                    passed: true,
                    failure: None,
                });
                self.rows.last_mut().expect("just pushed")
            }
        };
        row.cases += 1;
        row.worst_relative_error = row.worst_relative_error.max(c.worst_relative_error);
        row.worst_share_of_tolerance = row.worst_share_of_tolerance.max(c.worst_share);
        if let Some(f) = c.failure {
            row.passed = false;
            row.failure.get_or_insert(f);
        }
    }

    pub fn into_rows(self) -> Vec<CheckRow> {
        self.rows
    }
}

/// The kernel groups `check` runs, by the name a parity test gives them.
pub const OPS: [&str; 13] = [
    "conv2d_forward",
    "conv2d_backward_input",
    "conv2d_backward_weight",
    "maxpool_backward",
    "avgpool_forward",
    "avgpool_backward",
    "dense_forward",
    "dense_backward_input",
    "dense_backward_weight",
    "softmax_cross_entropy",
    "classifier_head",
    "sgd_step",
    "load_batch",
];

/// Whether op group `op` (named by its entry points' common prefix) has a kernel in any of `variants`, from the shader
/// table: a shader whose entry point starts with `op`, of a family among the variants' (or of both), and, for an
/// optional fusion, a variant that runs it. E.g. maxpool_backward only in the simd family (the tiled one fuses it),
/// classifier_head only in the tiled family with its head.
pub fn has_kernels(op: &str, variants: &[Caps]) -> bool {
    crate::gpu::ops::shaders().any(|s| {
        s.entry_points.iter().any(|e| e.starts_with(op))
            && variants.iter().any(|c| s.family.is_none_or(|f| f == c.family) && (!s.optional || c.head))
    })
}

/// Checks the kernels of op group `op` (one of `OPS`) in `variants` on the harness's device.
pub async fn check_op(h: &Harness, op: &str, variants: &[Caps], quick: bool) -> Vec<CheckRow> {
    let mut rows = Rows::default();
    match op {
        "conv2d_forward" => conv2d::conv2d_forward(h, variants, quick, &mut rows).await,
        "conv2d_backward_input" => conv2d::conv2d_backward_input(h, variants, quick, &mut rows).await,
        "conv2d_backward_weight" => conv2d::conv2d_backward_weight(h, variants, quick, &mut rows).await,
        "maxpool_backward" => maxpool::maxpool_backward(h, variants, quick, &mut rows).await,
        "avgpool_forward" => avgpool::avgpool_forward(h, quick, &mut rows).await,
        "avgpool_backward" => avgpool::avgpool_backward(h, quick, &mut rows).await,
        "dense_forward" => dense::dense_forward(h, variants, quick, &mut rows).await,
        "dense_backward_input" => dense::dense_backward_input(h, variants, quick, &mut rows).await,
        "dense_backward_weight" => dense::dense_backward_weight(h, variants, quick, &mut rows).await,
        "softmax_cross_entropy" => softmax_cross_entropy::softmax_cross_entropy(h, quick, &mut rows).await,
        "classifier_head" => classifier_head::classifier_head(h, variants, quick, &mut rows).await,
        "sgd_step" => sgd::sgd_step(h, quick, &mut rows).await,
        "load_batch" => load_batch::load_batch(h, &mut rows).await,
        other => panic!("no op group {other}"),
    }
    rows.into_rows()
}

/// One whole training step of `arch` in each of `variants` whose kernels can run it (`gpu::caps::for_arch`), against
/// the f64 reference: the loss, every gradient tensor, the parameters after SGD.
pub async fn training_steps(h: &Harness, arch: &crate::model::Arch, variants: &[Caps]) -> Vec<CheckRow> {
    let mut rows = Rows::default();
    for caps in variants.iter().filter(|c| caps::for_arch(arch, **c).is_ok()) {
        network::training_step(h, *caps, arch, &mut rows).await;
    }
    rows.into_rows()
}

/// Runs every check on `gpu`: each op group, then a whole training step and an evaluation per variant.
pub async fn run(gpu: Gpu, opts: CheckOptions) -> CheckReport {
    let t0 = Instant::now();
    let adapter = gpu.adapter.clone();
    let default_variant = gpu.caps.describe();
    let variants = variants(&gpu, opts.all_variants);
    let tiled: Vec<Caps> = self::variants(&gpu, true).into_iter().filter(|c| c.family == Family::Tiled).collect();
    let h = Harness::new(gpu);
    let mut rows: Vec<CheckRow> = Vec::new();
    for op in OPS {
        rows.extend(check_op(&h, op, &variants, opts.quick).await);
    }
    let mut net = Rows::default();
    for caps in &variants {
        network::training_step(&h, *caps, &crate::model::Arch::study(), &mut net).await;
        network::evaluation(&h, *caps, &mut net).await;
    }
    rows.extend(net.into_rows());
    if let Some(arch) = opts.arch.as_ref().filter(|a| **a != crate::model::Arch::study()) {
        // A network the chosen kernels cannot run is checked where the engine would run it: on the tiled family.
        let fit = variants.iter().any(|c| caps::for_arch(arch, *c).is_ok());
        rows.extend(training_steps(&h, arch, if fit { &variants } else { &tiled }).await);
    }
    let passed = rows.iter().all(|r| r.passed);
    CheckReport {
        adapter,
        default_variant,
        rows,
        passed,
        form: if opts.quick { "quick" } else { "full" }.into(),
        seconds: t0.elapsed().as_secs_f64(),
    }
}

/// `check` on the selected adapter, or on every adapter (of the selection's backend) with `all_adapters`, each opened
/// with the `GPU_CNN_*` settings and `kernels`: one report per adapter, in order. An adapter that cannot be opened
/// fails the whole call, naming it.
pub async fn run_adapters(
    selection: &AdapterSelection,
    all_adapters: bool,
    kernels: Option<Family>,
    opts: &CheckOptions,
    mut each: impl FnMut(&CheckReport),
) -> Result<Vec<CheckReport>, GpuError> {
    let open = OpenOptions::with_kernels(kernels)?;
    let mut gpus = Vec::new();
    if all_adapters {
        for (summary, adapter) in crate::gpu::adapter::enumerate_selected(selection).await? {
            gpus.push(Gpu::open_adapter(summary, adapter, open).await?);
        }
        if gpus.is_empty() {
            return Err(GpuError::NoAdapter { backend: String::new() });
        }
    } else {
        gpus.push(Gpu::open_with(selection, open).await?);
    }
    let mut reports = Vec::new();
    for gpu in gpus {
        log::info!(
            "check: {} ({} kernels{})",
            gpu.adapter.line(),
            gpu.caps.describe(),
            if opts.all_variants { " and every other variant it can run" } else { "" }
        );
        let report = run(gpu, opts.clone()).await;
        each(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// The report as a markdown table: kernel, variant, cases, worst relative error, share of tolerance, pass/fail.
pub fn table(report: &CheckReport) -> String {
    let mut s = format!(
        "check on {} ({} form, {:.1} s): {}\n\n| kernel | variant | cases | worst relative error | worst share of tolerance | result |\n|---|---|---|---|---|---|\n",
        report.adapter.line(),
        report.form,
        report.seconds,
        if report.passed { "every kernel passed" } else { "FAILED" }
    );
    for r in &report.rows {
        s.push_str(&format!(
            "| `{}` | {} | {} | {:.1e} | {:.0} % | {} |\n",
            r.kernel,
            r.variant,
            r.cases,
            r.worst_relative_error,
            100.0 * r.worst_share_of_tolerance,
            if r.passed { "pass" } else { "**FAIL**" }
        ));
    }
    for r in report.rows.iter().filter(|r| !r.passed) {
        if let Some(f) = &r.failure {
            s.push_str(&format!("\n{} [{}]: {f}", r.kernel, r.variant));
        }
    }
    s
}
