//! Benchmarks report their noise as hyperfine does, and `bench-report --compare` tells a change from noise: two runs
//! of the same binary are "within noise" (one pair in up to three: the machine may change speed between runs); a
//! result made 3× faster (a planted change) is "faster".

use assert_cmd::Command;
use pollster::FutureExt;
use serde_json::Value;
use std::path::Path;

fn gpu_cnn() -> Command {
    let mut c = Command::cargo_bin("gpu-cnn").expect("binary");
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// One short bench run written to `file`: its result, and the warnings it printed.
fn bench(file: &Path) -> (Value, String) {
    let out = gpu_cnn()
        .args([
            "bench",
            "--no-check",
            "--steps",
            "2",
            "--min-seconds",
            "0.2",
            "--repeats",
            "5",
            "--warmup",
            "1",
            "--json",
            "--out",
        ])
        .arg(file)
        .assert()
        .success()
        .get_output()
        .clone();
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    (v[0].clone(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn row<'a>(table: &'a str, figure: &str) -> &'a str {
    table.lines().find(|l| l.contains(&format!("| {figure} |"))).unwrap_or_else(|| panic!("no {figure} row:\n{table}"))
}

/// The statistics of one run: mean and σ as its samples give them, and the noise warning exactly when σ / mean > 5 %.
fn check_run(file: &Path, r: &Value, stderr: &str) {
    assert_eq!(r["warmup"], 1, "{r}");
    for k in ["train_images_per_sec", "inference_images_per_sec"] {
        let s = &r[k];
        let samples: Vec<f64> = s["samples"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(samples.len(), 5, "{file:?} {k}");
        let mean = samples.iter().sum::<f64>() / 5.0;
        let sd = (samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
        assert!((s["mean"].as_f64().unwrap() - mean).abs() <= 1e-9 * mean, "{k}: {s}");
        assert!((s["std_dev"].as_f64().unwrap() - sd).abs() <= 1e-9 * mean, "{k}: {s}");
        // The warning is given exactly when σ / mean is over 5 %.
        let what = if k.starts_with("train") { "training" } else { "inference" };
        let warned = stderr.contains(&format!("bench: {what} images/s vary by"));
        assert_eq!(warned, sd / mean > 0.05, "{k}: σ/mean {:.3}, stderr:\n{stderr}", sd / mean);
    }
}

#[test]
fn compare_tells_a_change_from_noise() {
    if gpu_cnn::gpu::Gpu::open(&Default::default()).block_on().is_err() {
        eprintln!("skipped: no GPU adapter");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let compare = |old: &Path, new: &Path| -> String {
        let out = gpu_cnn().arg("bench-report").arg("--compare").arg(old).arg(new).assert().success();
        String::from_utf8_lossy(&out.get_output().stdout).into_owned()
    };
    // Two runs of the same binary on the same adapter, one after the other: within noise, each with its spread shown.
    // A shared machine can change speed between two runs (another process, the host's clock): then the runs really
    // differ and the verdict rightly says so. So up to three pairs are run; the check is that the verdict finds the
    // noise in one of them (a checker that never said "within noise" fails all three).
    let mut verdicts = Vec::new();
    for _ in 0..3 {
        for (file, (r, stderr)) in [(&a, bench(&a)), (&b, bench(&b))] {
            check_run(file, &r, &stderr);
        }
        let table = compare(&a, &b);
        let train = row(&table, "training images/s").to_string();
        assert!(train.matches(" ± ").count() == 2 && train.contains("(n = 5)"), "{table}");
        let within = train.contains("within noise");
        verdicts.push(train);
        if within {
            break;
        }
    }
    eprintln!("pairs of runs of one binary:\n{}", verdicts.join("\n"));
    assert!(
        verdicts.last().is_some_and(|v| v.contains("within noise")),
        "never within noise:\n{}",
        verdicts.join("\n")
    );

    // Planted: the first run with its throughputs made 3× higher. The checker must call that a change, and which way.
    let mut faster: Value = serde_json::from_slice(&std::fs::read(&a).unwrap()).unwrap();
    for k in ["train_images_per_sec", "inference_images_per_sec"] {
        let s = &mut faster[0][k];
        for f in ["median", "min", "max", "mean", "std_dev"] {
            s[f] = (s[f].as_f64().unwrap() * 3.0).into();
        }
        let scaled: Vec<Value> =
            s["samples"].as_array().unwrap().iter().map(|x| (x.as_f64().unwrap() * 3.0).into()).collect();
        s["samples"] = scaled.into();
    }
    let c = dir.path().join("faster.json");
    std::fs::write(&c, serde_json::to_string(&faster).unwrap()).unwrap();
    let table = compare(&a, &c);
    let train = row(&table, "training images/s");
    assert!(train.contains("(faster)") && !train.contains("within noise"), "{table}");
    let table = compare(&c, &a);
    assert!(row(&table, "inference images/s").contains("(slower)"), "{table}");
}
