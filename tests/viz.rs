//! The pictures: each PNG is written, decodes, has the expected size and is not blank; colour scales are honoured;
//! unwritable targets and bad inputs are errors that name the path, not panics. The ignored test draws every picture
//! from real MNIST and a briefly trained network into `target/viz-demo/`, for looking at.

mod common;

use std::path::{Path, PathBuf};

use common::{random, random_labels};
use gpu_cnn::engine::{FeatureMaps, Probe};
use gpu_cnn::model::{self, Arch, Normalization, CLASSES};
use gpu_cnn::run::EpochReport;
use gpu_cnn::viz::{self, VizError};
use pollster::FutureExt;

/// A scratch directory for one test: a fresh temporary one, or `$VIZ_TEST_OUT/<test>` (emptied first) to keep the
/// pictures for looking at.
fn scratch(test: &str) -> (Option<tempfile::TempDir>, PathBuf) {
    match std::env::var_os("VIZ_TEST_OUT") {
        Some(root) => {
            let dir = Path::new(&root).join(test);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            (None, dir)
        }
        None => {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().to_path_buf();
            (Some(tmp), dir)
        }
    }
}

/// Width, height and the variance of all channel values of the PNG at `path`.
fn decode(path: &Path) -> (u32, u32, f64) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    let v: Vec<f64> = img.as_raw().iter().map(|&b| b as f64).collect();
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
    (img.width(), img.height(), var)
}

fn check_png(path: &Path, width: u32, height: u32) {
    let (w, h, var) = decode(path);
    assert_eq!((w, h), (width, height), "{}", path.display());
    assert!(var > 100.0, "{}: nearly blank (variance {var})", path.display());
    let kb = std::fs::metadata(path).unwrap().len() as f64 / 1024.0;
    eprintln!("{}: {w}×{h} px, {kb:.1} KB", path.file_name().unwrap().to_string_lossy());
}

/// The directory holds exactly `names` (no temporary files left behind).
fn assert_only(dir: &Path, names: &[&str]) {
    let mut found: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    found.sort();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(found, want);
}

/// A probe of `n` images of `arch`: normalized inputs in MNIST's range, ReLU-like activations (about half zeros),
/// random logits.
fn synthetic_probe_of(arch: &Arch, n: usize, seed: u64) -> (Probe, Vec<u8>) {
    let relu = |v: Vec<f32>| v.into_iter().map(|a| a.max(0.0)).collect();
    let maps = arch
        .convs()
        .iter()
        .map(|c| FeatureMaps {
            channels: c.cout,
            height: c.oh,
            width: c.ow,
            values: relu(random(n * c.out_len(), -1.0, 1.5, seed + c.index as u64)),
        })
        .collect();
    let probe = Probe {
        x: random(n * arch.input().pixels(), -0.4242, 2.8215, seed),
        input: arch.input(),
        norm: Normalization::MNIST,
        maps,
        logits: random(n * CLASSES, -4.0, 4.0, seed + 30),
    };
    (probe, (0..n).map(|i| (i % CLASSES) as u8).collect())
}

fn synthetic_probe(n: usize, seed: u64) -> (Probe, Vec<u8>) {
    synthetic_probe_of(&Arch::study(), n, seed)
}

fn epochs(n: usize) -> Vec<EpochReport> {
    (1..=n)
        .map(|e| EpochReport {
            epoch: e,
            train_loss: 0.5 / e as f64,
            train_accuracy: 0.9,
            test_loss: 0.3 / e as f64,
            test_accuracy: 1.0 - 0.05 / e as f64,
            seconds: 1.0,
            images_per_sec: 1000.0,
        })
        .collect()
}

/// Step losses falling from 2.3 with noise.
fn step_losses(n: usize) -> Vec<f32> {
    let noise = random(n, 0.7, 1.3, 9);
    (0..n).map(|i| (2.3 * (-(i as f32) / 150.0).exp() + 0.05) * noise[i]).collect()
}

#[test]
fn filters_png_draws_both_layers_and_honours_the_scale() {
    let (_tmp, dir) = scratch("filters");
    let arch = Arch::study();
    let before = model::init_params(&arch, 1);
    let path = dir.as_path().join("filters_before.png");
    let s = viz::filters_png(&path, &arch, &before, "conv filters before training", None).unwrap();
    // init draws within ±1/√fan_in, so the largest |w|·√fan_in is just under 1.
    assert!(s > 0.9 && s <= 1.0, "scale {s}");
    check_png(&path, 740, 942);

    let mut after = before.clone();
    for w in &mut after[..arch.convs()[1].w_off] {
        *w *= 2.0;
    }
    let path = dir.as_path().join("filters_after.png");
    assert_eq!(viz::filters_png(&path, &arch, &after, "conv filters after training", Some(2.5)).unwrap(), 2.5);
    check_png(&path, 740, 942);
    assert_only(dir.as_path(), &["filters_before.png", "filters_after.png"]);

    let err = viz::filters_png(&path, &arch, &after[1..], "short", None).unwrap_err();
    assert!(matches!(err, VizError::Input { .. }), "{err}");
    let err = viz::filters_png(&path, &arch, &after, "bad scale", Some(-1.0)).unwrap_err();
    assert!(matches!(err, VizError::Input { .. }), "{err}");

    // Other networks: one convolution; a wide pair (smaller conv2 tiles, a wider picture); none (an error, named).
    // Three-channel images: conv1's tiles per (filter, channel).
    for (desc, width, height) in
        [("conv4-fc10", 740, 414), ("wide", 828, 1722), ("3x32x32:conv8-pool-conv16-pool-fc32-fc10", 740, 754)]
    {
        let other = Arch::parse(desc).unwrap();
        let path = dir.as_path().join(format!("filters_{}.png", other.convs().len()));
        viz::filters_png(&path, &other, &model::init_params(&other, 2), desc, None).unwrap();
        check_png(&path, width, height);
    }
    let mlp = Arch::parse("fc16-fc10").unwrap();
    let err = viz::filters_png(&path, &mlp, &model::init_params(&mlp, 2), "mlp", None).unwrap_err();
    assert!(err.to_string().contains("no convolution"), "{err}");
}

#[test]
fn activations_png_has_one_row_per_digit() {
    let (_tmp, dir) = scratch("activations");
    for n in [10, 4, 1] {
        let (probe, labels) = synthetic_probe(n, 20 + n as u64);
        let path = dir.as_path().join(format!("activations_{n}.png"));
        viz::activations_png(&path, &probe, &labels, "feature maps").unwrap();
        check_png(&path, 908, 68 + 70 * n as u32 + 44);
    }
    // Other networks: each convolution's maps (the first 32 of a wider layer), or only the input without any.
    // (each block at least 8 maps wide, for its header; maps bigger than 28 pixels, and inputs bigger than 56, reduced).
    for (desc, width) in [
        ("conv4-fc10", 410),
        ("wide", 1148),
        ("fc16-fc10", 152),
        ("3x32x24:conv8-pool-conv16-pool-fc32-fc10", 668),
        ("3x120x100:conv4-pool-fc10", 410),
    ] {
        let (probe, labels) = synthetic_probe_of(&Arch::parse(desc).unwrap(), 2, 7);
        let path = dir.as_path().join(format!("activations_{}.png", desc.len()));
        viz::activations_png(&path, &probe, &labels, desc).unwrap();
        check_png(&path, width, 68 + 70 * 2 + 44);
    }
    let (mut probe, labels) = synthetic_probe(3, 5);
    probe.maps[1].values.pop();
    let err = viz::activations_png(&dir.as_path().join("bad.png"), &probe, &labels, "bad").unwrap_err();
    assert!(matches!(err, VizError::Input { .. }) && err.to_string().contains("probe.maps[1]"), "{err}");
}

#[test]
fn predictions_png_grids_the_digits() {
    let (_tmp, dir) = scratch("predictions");
    for (n, cols, rows) in [(10, 5, 2), (3, 5, 1), (16, 8, 2)] {
        let (probe, labels) = synthetic_probe(n, 40 + n as u64);
        let path = dir.as_path().join(format!("predictions_{n}.png"));
        viz::predictions_png(&path, &probe, &labels, "predictions").unwrap();
        check_png(&path, 32 + 132 * cols, 56 + 150 * rows + 34);
    }
    // Colour images, 32×32 enlarged 2× (in the same cells), and 120×100 ones (at 1×, in wider and taller cells).
    for (desc, width, height) in [("3x32x32:conv4-pool-fc10", 692, 390), ("3x120x100:fc12-fc10", 772, 462)] {
        let (probe, labels) = synthetic_probe_of(&Arch::parse(desc).unwrap(), 10, 9);
        let path = dir.as_path().join(format!("predictions_{}.png", desc.len()));
        viz::predictions_png(&path, &probe, &labels, desc).unwrap();
        check_png(&path, width, height);
    }
}

#[test]
fn confusion_png_counts_every_prediction() {
    let (_tmp, dir) = scratch("confusion");
    let labels = random_labels(1000, 10, 7);
    let wrong = random_labels(1000, 10, 8);
    // About 90 % right, the rest random.
    let preds: Vec<u32> =
        labels.iter().zip(&wrong).enumerate().map(|(i, (&l, &w))| if i % 10 == 0 { w } else { l } as u32).collect();
    let path = dir.as_path().join("confusion.png");
    viz::confusion_png(&path, &preds, &labels, "test set").unwrap();
    check_png(&path, 680, 654);

    let err = viz::confusion_png(&path, &preds[1..], &labels, "short").unwrap_err();
    assert!(matches!(err, VizError::Input { .. }), "{err}");
    let mut bad = preds.clone();
    bad[3] = 10;
    assert!(matches!(viz::confusion_png(&path, &bad, &labels, "bad"), Err(VizError::Input { .. })));
}

#[test]
fn curves_png_works_for_many_few_and_no_steps() {
    let (_tmp, dir) = scratch("curves");
    let cases: [(&str, Vec<f32>, usize, Vec<EpochReport>); 4] = [
        ("curves_3_epochs.png", step_losses(3 * 400), 400, epochs(3)),
        ("curves_1_epoch.png", step_losses(5), 5, epochs(1)),
        ("curves_no_steps.png", Vec::new(), 100, epochs(2)),
        ("curves_nothing.png", Vec::new(), 0, Vec::new()),
    ];
    for (name, losses, spe, reports) in cases {
        let path = dir.as_path().join(name);
        viz::curves_png(&path, &losses, spe, &reports, 0.098).unwrap();
        check_png(&path, 1200, 480);
    }
    let path = dir.as_path().join("bad.png");
    let err = viz::curves_png(&path, &[1.0], 0, &[], 0.1).unwrap_err();
    assert!(matches!(err, VizError::Input { .. }), "{err}");
    let err = viz::curves_png(&path, &[1.0], 1, &[], 9.8).unwrap_err();
    assert!(err.to_string().contains("fraction"), "{err}");
}

#[test]
fn unwritable_targets_are_errors_naming_the_path() {
    let (_tmp, dir) = scratch("unwritable");
    let arch = Arch::study();
    let params = model::init_params(&arch, 3);
    let (probe, labels) = synthetic_probe(2, 3);

    let missing = dir.as_path().join("no-such-dir").join("filters.png");
    let err = viz::filters_png(&missing, &arch, &params, "t", None).unwrap_err();
    assert!(matches!(err, VizError::Io { .. }), "{err}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
    eprintln!("{err}");

    // A directory where the picture should go: the rename fails, and the temporary file is cleaned up.
    let taken = dir.as_path().join("taken.png");
    std::fs::create_dir(&taken).unwrap();
    let results: [(&str, Result<(), VizError>); 5] = [
        ("filters", viz::filters_png(&taken, &arch, &params, "t", None).map(|_| ())),
        ("activations", viz::activations_png(&taken, &probe, &labels, "t")),
        ("predictions", viz::predictions_png(&taken, &probe, &labels, "t")),
        ("confusion", viz::confusion_png(&taken, &[1, 2], &labels, "t")),
        ("curves", viz::curves_png(&taken, &[2.0, 1.0], 2, &epochs(1), 0.1)),
    ];
    for (what, r) in results {
        let err = r.expect_err(what);
        assert!(matches!(err, VizError::Io { .. }), "{what}: {err}");
        assert!(err.to_string().contains("taken.png"), "{what}: {err}");
        eprintln!("{what}: {err}");
    }
    assert_only(dir.as_path(), &["taken.png"]);
}

/// Draws every picture from real MNIST test images: random weights, then after three short "epochs" of 100 steps of
/// 64 images on the CPU (enough for ~95 %). Run with `cargo test --release --test viz -- --ignored`, then look at
/// `target/viz-demo/*.png`.
#[test]
#[ignore = "trains briefly on the CPU; for looking at the pictures"]
fn real_mnist_pictures() {
    use gpu_cnn::cpu::CpuEngine;
    use gpu_cnn::engine::Engine;

    let data = gpu_cnn::data::default_data_dir();
    let (Ok(train), Ok(test)) = (
        gpu_cnn::data::load_split(&data, gpu_cnn::data::TRAIN_PREFIX),
        gpu_cnn::data::load_split(&data, gpu_cnn::data::TEST_PREFIX),
    ) else {
        eprintln!("real_mnist_pictures: skipped: no MNIST in {}", data.display());
        return;
    };
    let test = test.take(2000);
    let out: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/viz-demo");
    std::fs::create_dir_all(&out).unwrap();

    let arch = Arch::study();
    let init = model::init_params(&arch, model::DEFAULT_SEED);
    let mut engine = CpuEngine::new(&arch, 64, Some(&train), &test, &init);
    let samples = viz::probe_samples(&test.labels);
    let labels: Vec<u8> = samples.iter().map(|&i| test.labels[i as usize]).collect();
    let draw = |engine: &mut CpuEngine, tag: &str, when: &str, scale: Option<f32>| -> f32 {
        let (m, preds) = engine.evaluate().block_on().unwrap();
        let probe = engine.probe(&samples).block_on().unwrap();
        let s = viz::filters_png(
            &out.join(format!("filters_{tag}.png")),
            &Arch::study(),
            &engine.params().block_on().unwrap(),
            &format!("conv filters {when}"),
            scale,
        )
        .unwrap();
        viz::activations_png(
            &out.join(format!("activations_{tag}.png")),
            &probe,
            &labels,
            &format!("feature maps {when}"),
        )
        .unwrap();
        viz::predictions_png(
            &out.join(format!("predictions_{tag}.png")),
            &probe,
            &labels,
            &format!("predictions {when}"),
        )
        .unwrap();
        viz::confusion_png(
            &out.join(format!("confusion_{tag}.png")),
            &preds,
            &test.labels,
            &format!("confusion {when}"),
        )
        .unwrap();
        eprintln!("{tag}: accuracy {:.4}", m.accuracy());
        s
    };
    let s_before = draw(&mut engine, "before", "before training (random weights)", None);
    let forward_only = engine.evaluate().block_on().unwrap().0.accuracy();

    let (steps, batch) = (100, 64);
    let mut losses = Vec::new();
    let mut reports = Vec::new();
    for e in 0..3 {
        let order: Vec<u32> = gpu_cnn::model::epoch_order(1, e, train.len())[..steps * batch].to_vec();
        let (m, l) = engine.train_epoch(&order, 0.01, 0.9, &mut |_, _| true).block_on().unwrap();
        let (t, _) = engine.evaluate().block_on().unwrap();
        losses.extend(l);
        reports.push(EpochReport {
            epoch: e + 1,
            train_loss: m.mean_loss(),
            train_accuracy: m.accuracy(),
            test_loss: t.mean_loss(),
            test_accuracy: t.accuracy(),
            seconds: 0.0,
            images_per_sec: 0.0,
        });
    }
    let s_after = draw(&mut engine, "after", "after training (backprop)", None);
    let s = s_before.max(s_after);
    draw(&mut engine, "after", "after training (backprop)", Some(s));
    engine.set_params(&init).unwrap();
    draw(&mut engine, "before", "before training (random weights)", Some(s));
    viz::curves_png(&out.join("curves.png"), &losses, steps, &reports, forward_only).unwrap();
    for entry in std::fs::read_dir(&out).unwrap() {
        let p = entry.unwrap().path();
        let (w, h, _) = decode(&p);
        eprintln!("{}: {w}×{h} px, {:.1} KB", p.display(), std::fs::metadata(&p).unwrap().len() as f64 / 1024.0);
    }
}

#[test]
fn bench_pictures_draw_results_old_and_new() {
    let (_keep, dir) = scratch("bench_pictures");
    let read = |p: &str| -> Vec<gpu_cnn::measure::bench::BenchResult> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/results/").to_string() + p;
        serde_json::from_str(&std::fs::read_to_string(path).expect("a result file")).expect("a result")
    };
    // The H200's final results (schema 2: four batch sizes, peaks, per-kernel bytes) and the simd family beside them.
    let mut results = read("2026-12-04-h200-final/bench.json");
    results.extend(read("2026-12-04-h200-final/bench64simd.json"));
    let written = gpu_cnn::viz::bench_pictures(&dir, &results).expect("pictures");
    let names: Vec<String> = written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["bench_throughput.png", "bench_scaling.png", "bench_kernels.png", "bench_roofline.png"]);
    for p in &written {
        let (w, h, var) = decode(p);
        assert!(w >= 800 && h >= 200 && var > 100.0, "{}: {w}×{h}, variance {var}", p.display());
    }
    // A result from before schema 2 (no peaks, no samples) still draws what it can: no roofline.
    let old = read("2026-12-04-h200-baseline/bench64.json");
    let (_keep2, dir2) = scratch("bench_pictures_old");
    let written = gpu_cnn::viz::bench_pictures(&dir2, &old).expect("pictures of an old result");
    assert!(written.iter().all(|p| !p.ends_with("bench_roofline.png")));
    // The comparison picture.
    let cmp = dir.join("compare.png");
    gpu_cnn::viz::compare_png(&cmp, &old[0], &results[1]).expect("a comparison");
    check_png(&cmp, decode(&cmp).0, decode(&cmp).1);
}
