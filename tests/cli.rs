//! The `gpu-cnn` command as a user runs it: JSON shapes, forward-only at chance, a short training run that learns,
//! reading PyTorch's checkpoint, and clear one-line errors with a non-zero exit code for bad input.

use assert_cmd::Command;
use pollster::FutureExt;
use predicates::prelude::*;
use serde_json::Value;
use std::path::Path;

fn gpu_cnn() -> Command {
    let mut c = Command::cargo_bin("gpu-cnn").expect("binary");
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn json_of(out: &[u8]) -> Value {
    let s = String::from_utf8_lossy(out);
    assert_eq!(s.trim().lines().count(), 1, "--json must print exactly one line on stdout, got:\n{s}");
    serde_json::from_str(s.trim()).expect("stdout is JSON")
}

/// `train ARGS --save CK --out-dir DIR --json`, which must succeed: the run's JSON.
fn train_saving(args: &[&str], ck: &Path, dir: &Path) -> Value {
    let cmd = gpu_cnn().arg("train").args(args).arg("--save").arg(ck).arg("--out-dir").arg(dir).arg("--json").assert();
    json_of(&cmd.success().get_output().stdout)
}

/// `eval --checkpoint CK --json`, which must succeed: the evaluation's JSON.
fn eval_json(ck: &Path) -> Value {
    json_of(&gpu_cnn().args(["eval", "--json", "--checkpoint"]).arg(ck).assert().success().get_output().stdout)
}

fn check_adapter(v: &Value) {
    for k in ["name", "backend", "device_type", "driver", "driver_info"] {
        assert!(v["adapter"][k].is_string(), "adapter.{k} missing in {v}");
    }
}

/// Trained for 5 epochs by PyTorch (`benches/pytorch/torch_cnn.py --epochs 5 --save ...`): 99.02 %, loss 0.0282 there.
const PYTORCH_CKPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/torch_cnn_e5.safetensors");

#[test]
fn forward_only_is_at_chance() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        gpu_cnn().args(["forward-only", "--json", "--out-dir"]).arg(dir.path()).assert().success().get_output().clone();
    let v = json_of(&out.stdout);
    check_adapter(&v);
    let acc = v["test_accuracy"].as_f64().unwrap();
    let loss = v["test_loss"].as_f64().unwrap();
    eprintln!("forward-only: accuracy {acc}, loss {loss}");
    // Random weights: accuracy near 1/10 and loss near ln 10 = 2.303; a broken kernel lands far outside.
    assert!((0.04..=0.2).contains(&acc), "accuracy {acc}");
    assert!((2.2..=2.45).contains(&loss), "loss {loss}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("adapter:") || stderr.contains("CPU reference"), "the device is printed: {stderr}");
}

#[test]
fn short_training_run_learns() {
    let dir = tempfile::tempdir().unwrap();
    let out = gpu_cnn()
        .args(["train", "--epochs", "1", "--train-limit", "3200", "--batch-size", "32", "--json", "--out-dir"])
        .arg(dir.path())
        .assert()
        .success()
        .get_output()
        .clone();
    let v = json_of(&out.stdout);
    check_adapter(&v);
    let epochs = v["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 1);
    for k in ["epoch", "train_loss", "test_loss", "test_accuracy", "seconds", "images_per_sec"] {
        assert!(epochs[0][k].is_number(), "epochs[0].{k} in {v}");
    }
    assert_eq!(v["hyperparameters"]["batch_size"], 32);
    let (before, after) = (v["forward_only_test_loss"].as_f64().unwrap(), v["test_loss"].as_f64().unwrap());
    let acc = v["test_accuracy"].as_f64().unwrap();
    eprintln!("short run: loss {before} → {after}, accuracy {acc}");
    assert!(after < 0.5 * before, "loss must fall: {before} → {after}");
    assert!(acc > 0.8, "accuracy {acc}");
}

#[test]
fn eval_reads_pytorch_checkpoint() {
    let out = gpu_cnn().args(["eval", "--json", "--checkpoint", PYTORCH_CKPT]).assert().success().get_output().clone();
    let v = json_of(&out.stdout);
    check_adapter(&v);
    // PyTorch reports 99.02 % and loss 0.0282 for this file; allow one prediction to flip on a near-tie.
    let acc = v["test_accuracy"].as_f64().unwrap();
    assert!((acc - 0.9902).abs() <= 0.00011, "accuracy {acc}");
    assert!((v["test_loss"].as_f64().unwrap() - 0.0282).abs() < 0.0005);
    // The same keys as forward-only's JSON.
    let dir = tempfile::tempdir().unwrap();
    let fo =
        gpu_cnn().args(["forward-only", "--json", "--out-dir"]).arg(dir.path()).assert().success().get_output().clone();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&v), keys(&json_of(&fo.stdout)), "eval and forward-only print the same keys");
}

#[test]
fn cpu_device_evaluates_the_same_checkpoint() {
    let out = gpu_cnn()
        .args(["eval", "--device", "cpu", "--json", "--checkpoint", PYTORCH_CKPT])
        .assert()
        .success()
        .get_output()
        .clone();
    let v = json_of(&out.stdout);
    assert_eq!(v["adapter"]["backend"], "cpu");
    assert!((v["test_accuracy"].as_f64().unwrap() - 0.9902).abs() <= 0.00011);
}

/// `--test-limit`: the first N test images, counted in the JSON, and no longer the study's setting.
#[test]
fn test_limit_evaluates_the_first_images() {
    let dir = tempfile::tempdir().unwrap();
    let out = gpu_cnn()
        .args(["eval", "--device", "cpu", "--json", "--test-limit", "500", "--checkpoint", PYTORCH_CKPT])
        .assert()
        .success()
        .get_output()
        .clone();
    let v = json_of(&out.stdout);
    assert_eq!(v["test_images"], 500);
    assert!(v["test_accuracy"].as_f64().unwrap() > 0.95, "{v}");
    let t = train_saving(
        &["--epochs", "1", "--train-limit", "128", "--test-limit", "300"],
        &dir.path().join("t.safetensors"),
        dir.path(),
    );
    assert_eq!(t["test_images"], 300);
    assert_eq!(t["study_setting"], false);
}

#[test]
fn train_save_then_eval_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("run.safetensors");
    let trained =
        train_saving(&["--epochs", "1", "--train-limit", "640"], &ck, dir.path())["test_accuracy"].as_f64().unwrap();
    assert!(ck.exists() && dir.path().join("run.momentum.safetensors").exists());
    assert_eq!(eval_json(&ck)["test_accuracy"].as_f64().unwrap(), trained, "eval of the saved weights");
    // Resuming a finished run has nothing to do: a clear error, not a silent no-op.
    gpu_cnn()
        .args(["train", "--epochs", "1", "--train-limit", "640", "--resume"])
        .arg(&ck)
        .assert()
        .failure()
        .stderr(predicate::str::contains("nothing to train"));
    gpu_cnn()
        .args(["train", "--epochs", "2", "--train-limit", "640", "--json", "--resume"])
        .arg(&ck)
        .arg("--out-dir")
        .arg(dir.path())
        .assert()
        .success()
        .stderr(predicate::str::contains("resuming"));
}

/// Runs `args`, expects failure with `needle` in stderr, no panic, and (for our own errors) one line.
fn fails_with(args: &[&str], needle: &str) {
    let out = gpu_cnn().args(args).assert().failure().get_output().clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(needle), "{args:?}: expected `{needle}` in:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
}

#[test]
fn bad_options_are_clear_errors() {
    fails_with(&["train", "--batch-size", "0"], "must be at least 1");
    fails_with(&["train", "--epochs", "0"], "must be at least 1");
    fails_with(&["train", "--lr", "-1"], "--lr");
    fails_with(&["train", "--lr", "NaN"], "finite number > 0");
    fails_with(&["train", "--lr", "inf"], "finite number > 0");
    fails_with(&["train", "--momentum", "1.5"], "must be in [0, 1)");
    fails_with(&["train", "--seed", "abc"], "--seed");
    fails_with(&["forward-only", "--test-limit", "0"], "must be at least 1");
    fails_with(&["forward-only", "--backend", "glide"], "unknown backend");
    fails_with(&["forward-only", "--adapter", "no-such-adapter-xyz"], "no adapter matches `no-such-adapter-xyz`");
}

#[test]
fn help_lists_every_environment_variable_the_sources_read() {
    let out = gpu_cnn().arg("--help").assert().success().get_output().clone();
    let help = String::from_utf8_lossy(&out.stdout);
    fn sources(dir: &std::path::Path, out: &mut String) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut text = String::new();
    sources(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut text);
    let mut names = std::collections::BTreeSet::new();
    for (i, _) in text.match_indices("GPU_CNN_") {
        let name: String = text[i..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
        names.insert(name);
    }
    // Build-time values (build.rs) and the hidden testing aid are not settings.
    let not_settings = [
        "GPU_CNN_GIT_COMMIT",
        "GPU_CNN_GIT_DIRTY",
        "GPU_CNN_WGPU_VERSION",
        "GPU_CNN_VERSION_LONG",
        "GPU_CNN_BREAK_KERNEL",
        "GPU_CNN_",
    ];
    let settings: Vec<&String> = names.iter().filter(|n| !not_settings.contains(&n.as_str())).collect();
    assert!(settings.len() >= 6, "{settings:?}");
    for n in settings.into_iter().map(String::as_str).chain([
        "WGPU_BACKEND",
        "WGPU_ADAPTER_NAME",
        "WGPU_POWER_PREF",
        "RUST_LOG",
    ]) {
        assert!(help.contains(n), "--help does not list {n}:\n{help}");
    }
    // A bad wgpu variable is named.
    let out = gpu_cnn().args(["forward-only"]).env("WGPU_POWER_PREF", "turbo").assert().failure().get_output().clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WGPU_POWER_PREF") && stderr.contains("`turbo`"), "{stderr}");
}

/// `--arch`: a preset trains and says so; its checkpoint carries the network, so `eval` needs no `--arch` and refuses a
/// different one; bad descriptions name the part that is wrong.
#[test]
fn arch_trains_saves_and_is_checked_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("tiny.safetensors");
    let v = train_saving(&["--arch", "tiny", "--epochs", "1", "--train-limit", "6400"], &ck, dir.path());
    assert_eq!(v["arch"], "conv4-pool-conv8-pool-fc32-fc10", "{v}");
    let trained = v["test_accuracy"].as_f64().unwrap();
    assert!(trained > 0.8, "tiny learns: {trained}");
    let e = eval_json(&ck);
    assert_eq!((e["arch"].as_str(), e["test_accuracy"].as_f64()), (v["arch"].as_str(), Some(trained)));
    fails_with(&["eval", "--arch", "study", "--checkpoint", ck.to_str().unwrap()], "holds the network conv4-pool");
    fails_with(&["train", "--arch", "wide", "--resume", ck.to_str().unwrap()], "holds the network conv4-pool");
    fails_with(&["train", "--arch", "conv16-pool-pool-fc10"], "right after a convolution");
    fails_with(&["forward-only", "--arch", "conv8-pool-fc128"], "10 classes");
    fails_with(&["bench", "--arch", "conv8-relu-fc10"], "`relu` (part 2");
}

/// LeNet-5 (`--arch lenet5`: 5×5 convolutions, average pools, three dense layers): a short run learns, its checkpoint
/// evaluates the same, and PyTorch's own LeNet-5 checkpoint (`benches/pytorch/torch_cnn.py --arch lenet5 --epochs 1
/// --save …`: 97.20 %, loss 0.0863 in PyTorch) evaluates as PyTorch evaluates it; without `--arch` it cannot be told
/// from its tensors, and the error says to give it.
#[test]
fn lenet5_trains_and_reads_pytorchs_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("lenet5.safetensors");
    // 60 steps of 32 on 1,920 images, a high learning rate: far from LeNet's best, enough to see it learn.
    let args =
        ["--arch", "lenet5", "--epochs", "1", "--train-limit", "1920", "--batch-size", "32", "--test-limit", "1000"];
    let v = train_saving(&[&args[..], &["--lr", "0.1", "--momentum", "0.5"]].concat(), &ck, dir.path());
    assert_eq!(v["arch"], "conv6k5-avgpool-conv16k5p0-avgpool-fc120-fc84-fc10", "{v}");
    let (before, after) = (v["forward_only_test_accuracy"].as_f64().unwrap(), v["test_accuracy"].as_f64().unwrap());
    assert!(after > 0.5 && after > before + 0.35, "LeNet-5 learns: {before} → {after}");
    for png in ["filters_after.png", "activations_after.png", "curves.png"] {
        assert!(dir.path().join(png).is_file(), "{png} drawn");
    }
    let e = json_of(
        &gpu_cnn()
            .args(["eval", "--json", "--test-limit", "1000", "--checkpoint"])
            .arg(&ck)
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    assert_eq!((e["arch"].as_str(), e["test_accuracy"].as_f64()), (v["arch"].as_str(), Some(after)));

    let torch = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lenet5_torch_e1.safetensors");
    let out = gpu_cnn().args(["eval", "--json", "--arch", "lenet5", "--checkpoint", torch]).assert().success();
    let v = json_of(&out.get_output().stdout);
    let acc = v["test_accuracy"].as_f64().unwrap();
    assert!((acc - 0.9720).abs() <= 0.00011, "accuracy {acc}");
    assert!((v["test_loss"].as_f64().unwrap() - 0.0863).abs() < 0.0005, "{v}");
    fails_with(&["eval", "--checkpoint", torch], "give its network with --arch");
}

/// PyTorch's anchor of the study (`../shared/anchors/pytorch`, copied into the fixtures): its metadata has an `arch` key
/// of its own, which is not gpu-cnn's; its tensors say the network. PyTorch measured 98.97 % and loss 0.0298.
#[test]
fn eval_reads_the_pytorch_anchor_with_its_own_arch_key() {
    let anchor = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seed_cnn_pytorch_e5.safetensors");
    let v = json_of(&gpu_cnn().args(["eval", "--json", "--checkpoint", anchor]).assert().success().get_output().stdout);
    assert_eq!(v["arch"], "conv16-pool-conv32-pool-fc128-fc10");
    assert!((v["test_accuracy"].as_f64().unwrap() - 0.9897).abs() <= 0.00011, "{v}");
    assert!((v["test_loss"].as_f64().unwrap() - 0.0298).abs() < 0.0005, "{v}");
}

/// Other image shapes as a user brings them: a directory of 4-D IDX files (n × 3 × 32 × 32, generated) trains with a
/// hand-written `--arch`, the input shape and normalization come from the data, JSON and checkpoint say `3x32x32:`, the
/// pictures are drawn, and a checkpoint for one shape is refused on data of another with both shapes named.
#[test]
fn colour_images_from_idx4_files_train_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("colour");
    std::fs::create_dir(&data).unwrap();
    gpu_cnn::data::save_split(&data, "train", &gpu_cnn::check::coloured(640, 1)).unwrap();
    gpu_cnn::data::save_split(&data, "t10k", &gpu_cnn::check::coloured(200, 2)).unwrap();
    let ck = dir.path().join("colour.safetensors");
    let d = data.to_str().unwrap();
    let arch = "conv8-pool-conv16-pool-fc32-fc10";
    let args = ["--data-dir", d, "--arch", arch, "--epochs", "3", "--batch-size", "32"];
    let v = train_saving(&args, &ck, dir.path());
    assert_eq!(v["arch"], format!("3x32x32:{arch}"), "{v}");
    assert_eq!(v["study_setting"], false, "not the study's data: its numbers are not shown beside these");
    let (before, after) = (v["forward_only_test_accuracy"].as_f64(), v["test_accuracy"].as_f64().unwrap());
    assert!(after > 0.9, "the coloured squares are learnt: {after} (random weights: {before:?})");
    for png in ["filters_after.png", "activations_after.png", "predictions_after.png"] {
        assert!(dir.path().join(png).is_file(), "{png} drawn");
    }
    let e = json_of(
        &gpu_cnn()
            .args(["eval", "--json", "--data-dir", d, "--checkpoint"])
            .arg(&ck)
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    assert_eq!((e["arch"].as_str(), e["test_accuracy"].as_f64()), (v["arch"].as_str(), Some(after)));
    // The same test images beside a training set of other brightness: the checkpoint's normalization (its metadata),
    // not that data's, is what the weights see, so the accuracy is the same.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let mut dark = gpu_cnn::check::coloured(640, 3);
    dark.images.iter_mut().for_each(|p| *p /= 2);
    let dark = gpu_cnn::data::Split::new(dark.images, dark.labels, dark.shape);
    gpu_cnn::data::save_split(&other, "train", &dark).unwrap();
    gpu_cnn::data::save_split(&other, "t10k", &gpu_cnn::check::coloured(200, 2)).unwrap();
    let out =
        gpu_cnn().args(["eval", "--json", "--data-dir", other.to_str().unwrap(), "--checkpoint"]).arg(&ck).assert();
    let out = out.success().get_output().clone();
    assert!(String::from_utf8_lossy(&out.stderr).contains("inputs normalized as"), "the normalization is said");
    assert_eq!(json_of(&out.stdout)["test_accuracy"].as_f64(), Some(after));
    fails_with(&["eval", "--checkpoint", ck.to_str().unwrap()], "3x32x32");
    fails_with(&["forward-only", "--data-dir", d, "--arch", "3x28x28:tiny"], "3x28x28");
}

#[test]
fn bad_paths_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    fails_with(&["forward-only", "--data-dir", missing.to_str().unwrap()], "does not exist");
    fails_with(&["eval", "--checkpoint", missing.to_str().unwrap()], "does not exist");
    fails_with(&["eval", "--checkpoint", dir.path().to_str().unwrap()], "is a directory");
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not a checkpoint at all").unwrap();
    fails_with(&["eval", "--checkpoint", garbage.to_str().unwrap()], "checkpoint");
    // An output directory that cannot be created is refused before any work starts.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    fails_with(&["train", "--out-dir", file.join("sub").to_str().unwrap()], "cannot create output directory");
}

#[test]
fn adapters_lists_something_or_says_how_to_get_one() {
    let out = gpu_cnn().args(["adapters", "--json"]).assert().success().get_output().clone();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for a in v.as_array().unwrap() {
        assert!(a["name"].is_string() && a["backend"].is_string() && a["index"].is_number());
        assert!(a["subgroups"].is_string(), "subgroup widths in {a}");
    }
}

#[test]
fn compare_writes_every_picture_and_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = gpu_cnn()
        .args(["compare", "--epochs", "1", "--train-limit", "1280", "--json", "--out-dir"])
        .arg(dir.path())
        .assert()
        .success()
        .get_output()
        .clone();
    let v = json_of(&out.stdout);
    let names = [
        "filters_before.png",
        "filters_after.png",
        "activations_before.png",
        "activations_after.png",
        "predictions_before.png",
        "predictions_after.png",
        "confusion_before.png",
        "confusion_after.png",
        "curves.png",
    ];
    let mut decoded = std::collections::HashMap::new();
    for n in names {
        let img = image::open(dir.path().join(n)).unwrap_or_else(|e| panic!("{n}: {e}")).to_rgb8();
        assert!(img.width() >= 300 && img.height() >= 200, "{n}: {}×{}", img.width(), img.height());
        let px: Vec<f64> = img.pixels().map(|p| p.0.iter().map(|&c| c as f64).sum::<f64>()).collect();
        let mean = px.iter().sum::<f64>() / px.len() as f64;
        let var = px.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / px.len() as f64;
        assert!(var > 0.0, "{n} is blank");
        decoded.insert(n, img);
    }
    assert_eq!(decoded["filters_before.png"].dimensions(), decoded["filters_after.png"].dimensions());
    assert_ne!(decoded["filters_before.png"], decoded["filters_after.png"], "training must change the filters");
    assert_ne!(decoded["activations_before.png"], decoded["activations_after.png"]);
    let report: Value = serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["test_accuracy"], v["test_accuracy"], "report.json and --json disagree");
    assert_eq!(report["forward_only_test_accuracy"], v["forward_only_test_accuracy"]);
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    let pct = format!("{:.2} %", 100.0 * v["test_accuracy"].as_f64().unwrap());
    assert!(md.contains(&pct) && md.contains("98.89 %") && md.contains("filters_after.png"), "{md}");
    assert_eq!(v["study_setting"], true, "the study's network on MNIST");

    // By default these files go to outputs/: git ignores every one of them there, so a fresh clone's `compare` leaves
    // `git status` clean, while the README's own figures (outputs/study/) stay tracked.
    let git =
        |args: &[&str]| std::process::Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output();
    if !git(&["rev-parse", "--git-dir"]).is_ok_and(|o| o.status.success()) {
        return eprintln!("not a git checkout: the .gitignore check is skipped");
    }
    let written: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(written.len() >= names.len() + 4, "{written:?}");
    for name in &written {
        let ignored = git(&["check-ignore", "-q", &format!("outputs/{name}")]).unwrap().status.success();
        assert!(ignored, "outputs/{name} is not ignored by git: a user's run would dirty the checkout");
    }
    let tracked = git(&["ls-files", "outputs/study"]).unwrap();
    let tracked = String::from_utf8_lossy(&tracked.stdout);
    for name in names.iter().chain(&["report.md"]) {
        assert!(tracked.contains(&format!("outputs/study/{name}")), "outputs/study/{name} is not tracked:\n{tracked}");
    }
}

#[test]
fn without_any_adapter_the_main_job_runs_on_the_cpu() {
    // Hide every Vulkan driver and every EGL vendor (the GL backend): wgpu then finds no adapter at all.
    let out = gpu_cnn()
        .env("VK_ICD_FILENAMES", "/nonexistent")
        .env("VK_DRIVER_FILES", "/nonexistent")
        .env("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent")
        .args(["forward-only", "--json", "--out-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v = json_of(&out.stdout);
    if v["adapter"]["backend"] != "cpu" {
        eprintln!("skipped: this machine's adapters cannot be hidden with the loader's environment variables");
        return;
    }
    assert_eq!(stderr.matches("warning: no GPU adapter found").count(), 1, "{stderr}");
    assert!((v["test_accuracy"].as_f64().unwrap() - 0.1007).abs() < 0.02);
}

#[test]
fn bench_writes_results_that_bench_report_merges() {
    if gpu_cnn::gpu::Gpu::open(&Default::default()).block_on().is_err() {
        eprintln!("skipped: no GPU adapter");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.json");
    let out = gpu_cnn()
        .args(["bench", "--steps", "2", "--repeats", "1", "--json", "--out"])
        .arg(&file)
        .assert()
        .success()
        .get_output()
        .clone();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &v[0];
    for k in ["name", "vendor", "device_type", "backend", "driver", "driver_info", "subgroups", "kernels"] {
        assert!(r["device"][k].is_string(), "device.{k} in {r}");
    }
    // The kernel set follows the adapter: the simd family's subgroup kernels exactly where subgroups are 8 wide.
    let kernels = r["device"]["kernels"].as_str().unwrap();
    if kernels.starts_with("simd") {
        assert_eq!(kernels == "simd, 8-lane subgroups", r["device"]["subgroups"] == "8", "{r}");
    } else {
        assert!(kernels.starts_with("tiled"), "{r}");
    }
    // Schema 3: the host, the check before the run, the warm-up, every sample with its mean and deviation.
    assert_eq!(r["schema_version"], 3, "{r}");
    assert_eq!(r["warmup"], 1, "{r}");
    for k in ["train_images_per_sec", "inference_images_per_sec"] {
        assert!(r[k]["mean"].as_f64().is_some_and(|m| m > 0.0) && r[k]["std_dev"].as_f64().is_some(), "{k} in {r}");
    }
    assert_eq!(r["verified"], true, "{r}");
    assert!(r["host"]["cpu"].is_string() && r["host"]["cores"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["train_images_per_sec"]["samples"].as_array().unwrap().len(), 1, "{r}");
    for k in ["wgpu_version", "gpu_cnn_commit", "date", "command", "kernel_timer"] {
        assert!(r[k].is_string(), "{k} in {r}");
    }
    assert!(r["train_images_per_sec"]["median"].as_f64().unwrap() > 0.0);
    assert!(r["inference_images_per_sec"]["median"].as_f64().unwrap() > 0.0);
    let kernels = r["kernels"].as_array().unwrap();
    // Every dispatch of a step is timed (simd: load, 2 fused conv+pool, 2 dense, loss, 2 × 2 dense backward, 2 pool
    // backward, 2 conv weight + 1 reduce, 1 conv input, sgd).
    assert_eq!(
        kernels.len() as u64,
        r["dispatches_per_step"].as_u64().unwrap(),
        "every op of a step is timed: {kernels:?}"
    );
    assert!(kernels.len() >= 15, "{kernels:?}");
    assert!(kernels.iter().all(|k| k["ms"].as_f64().unwrap() > 0.0), "a kernel time is zero: {kernels:?}");
    let report = gpu_cnn().arg("bench-report").arg(&file).arg(&file).assert().success().get_output().clone();
    let table = String::from_utf8_lossy(&report.stdout);
    let name = r["device"]["name"].as_str().unwrap();
    assert!(table.contains("training images/s") && table.matches(name).count() >= 2, "{table}");
    // Without --json the table is the result, on stdout.
    let plain = gpu_cnn().args(["bench", "--steps", "1", "--repeats", "1"]).assert().success().get_output().clone();
    let table = String::from_utf8_lossy(&plain.stdout);
    assert!(table.contains("training images/s") && table.contains(name), "{table}");
    // Not a bench result: a clear error.
    std::fs::write(dir.path().join("junk.json"), "{}").unwrap();
    gpu_cnn()
        .arg("bench-report")
        .arg(dir.path().join("junk.json"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("is not a `gpu-cnn bench --json` result"));
}

/// `gpu-cnn check --quick`: every kernel the engine runs on the adapter passes; with a kernel deliberately broken (a
/// planted 0.1 % error in SGD's update), the check fails, names the kernel, and exits non-zero.
#[test]
fn check_passes_and_catches_a_broken_kernel() {
    if gpu_cnn::gpu::Gpu::open(&Default::default()).block_on().is_err()
        && std::env::var("GPU_CNN_REQUIRE_GPU").as_deref() != Ok("1")
    {
        eprintln!("skipped: no GPU adapter");
        return;
    }
    let out = gpu_cnn().args(["check", "--quick", "--json"]).assert().success().get_output().clone();
    let reports: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let report = &reports[0];
    assert_eq!(report["passed"], true, "{report}");
    let rows = report["rows"].as_array().unwrap();
    assert!(rows.len() >= 10, "{} rows", rows.len());
    for k in ["name", "backend", "driver"] {
        assert!(report["adapter"][k].is_string(), "adapter.{k} missing");
    }
    assert!(rows.iter().any(|r| r["kernel"] == "training step"), "the whole step is checked");

    // `--arch` adds a whole step of that network, on the kernels the engine would run it with (the tiled family for
    // a convolution right after another and for LeNet-5's 5×5 kernels, which the simd kernels cannot run).
    for arch in ["conv4-conv6-pool-fc10", "lenet5"] {
        let out = gpu_cnn().args(["check", "--quick", "--json", "--arch", arch]).assert().success();
        let reports: Value = serde_json::from_slice(&out.get_output().stdout).expect("stdout is JSON");
        let rows = reports[0]["rows"].as_array().unwrap();
        let step = rows.iter().find(|r| r["kernel"].as_str().is_some_and(|k| k.starts_with("training step conv")));
        let step = step.expect("a training step row for --arch");
        assert!(step["variant"].as_str().is_some_and(|v| v.starts_with("tiled")), "{step}");
        assert_eq!(step["passed"].as_bool(), Some(true), "{step}");
    }

    let out = gpu_cnn()
        .args(["check", "--quick"])
        .env("GPU_CNN_BREAK_KERNEL", "sgd_step.wgsl:params[i] - hyper.lr * v=>params[i] - 1.001 * hyper.lr * v")
        .assert()
        .failure()
        .get_output()
        .clone();
    let table = String::from_utf8_lossy(&out.stdout);
    let sgd = table.lines().find(|l| l.starts_with("| `sgd_step`")).expect("an sgd_step row");
    assert!(sgd.contains("FAIL"), "{sgd}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("check failed on"), "the error names the adapter");
}
