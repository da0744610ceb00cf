//! Faults a user will cause: a kill during a save, a diverging learning rate, Ctrl-C during training, a batch larger
//! than the adapter allows. Each must end in a clear message and a non-zero exit, and lose nothing already saved.

use std::process::{Command as Std, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use gpu_cnn::checkpoint;
use pollster::FutureExt;

fn bin() -> Std {
    let mut c = Std::cargo_bin("gpu-cnn").expect("binary");
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn signal(pid: u32, sig: &str) {
    let ok = Std::new("kill").args([sig, &pid.to_string()]).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn kill_during_save_leaves_a_loadable_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    let mut last = -1.0f32;
    for round in 0..12u64 {
        let mut child = bin().args(["__save-loop"]).arg(&path).stderr(Stdio::null()).spawn().unwrap();
        let t0 = Instant::now();
        while !path.exists() && t0.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(2));
        }
        // Saves run back to back, so a kill lands inside one most of the time.
        std::thread::sleep(Duration::from_millis(5 + (round * 37) % 60));
        signal(child.id(), "-KILL");
        let _ = child.wait();
        let ck = checkpoint::load(&path, None)
            .unwrap_or_else(|e| panic!("round {round}: checkpoint unreadable after kill: {e}"));
        let iteration: f32 = ck.metadata["iteration"].parse().unwrap();
        assert_eq!(ck.params[0], iteration, "round {round}: weights and metadata from different saves");
        assert!(ck.params.iter().all(|v| v.is_finite()));
        last = last.max(iteration);
    }
    assert!(last > 0.0, "the save loop never got past its first save");
}

#[test]
fn diverging_training_stops_and_keeps_the_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("good.safetensors");
    let out = bin()
        .args(["train", "--epochs", "1", "--train-limit", "640", "--save"])
        .arg(&ck)
        .arg("--out-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let good = std::fs::read(&ck).unwrap();
    let out = bin()
        .args(["train", "--epochs", "2", "--train-limit", "640", "--lr", "100", "--init"])
        .arg(&ck)
        .arg("--save")
        .arg(&ck)
        .arg("--out-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "lr 100 must fail");
    assert!(stderr.contains("training diverged") && stderr.contains("epoch 1, step"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(std::fs::read(&ck).unwrap(), good, "the good checkpoint was overwritten");
}

#[test]
fn ctrl_c_saves_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("int.safetensors");
    let mut child = bin()
        .args(["train", "--epochs", "3", "--train-limit", "6400", "--save"])
        .arg(&ck)
        .arg("--out-dir")
        .arg(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut stderr = stderr;
        let _ = std::io::Read::read_to_string(&mut stderr, &mut all);
        all
    });
    let t0 = Instant::now();
    // The "before" evaluation and pictures take a moment; interrupt once training is under way.
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if dir.path().join("predictions_before.png").exists() || t0.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    signal(child.id(), "-INT");
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    // 130 = 128 + SIGINT, as shells expect of an interrupted command.
    assert_eq!(status.code(), Some(130), "an interrupted run must exit with 130:\n{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let saved = checkpoint::load(&ck, None).unwrap_or_else(|e| panic!("no checkpoint after Ctrl-C: {e}\n{stderr}"));
    // What it could write: the pictures of the network as it stood.
    assert!(
        dir.path().join("filters_after.png").exists() && dir.path().join("predictions_after.png").exists(),
        "{stderr}"
    );
    assert!(saved.params.iter().all(|v| v.is_finite()));
}

#[test]
fn batch_beyond_the_adapter_limit_is_refused_up_front() {
    if gpu_cnn::gpu::Gpu::open(&Default::default()).block_on().is_err() {
        assert_ne!(std::env::var("GPU_CNN_REQUIRE_GPU").as_deref(), Ok("1"), "no GPU adapter");
        eprintln!("skipped: no GPU adapter");
        return;
    }
    let out = bin().args(["train", "--batch-size", "1000000", "--epochs", "1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("batch size 1000000") && stderr.contains("allows at most"), "{stderr}");
}
