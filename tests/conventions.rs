//! What a user of a Rust command-line tool expects of `gpu-cnn` besides its work: `--version` with the commit, shell
//! completions, options a command does not use refused, `--json` failures as JSON on stdout, wgpu's backend
//! variables read as wgpu reads them, and adapters described well enough to compare vendors.

use assert_cmd::Command;
use serde_json::Value;

fn gpu_cnn() -> Command {
    let mut c = Command::cargo_bin("gpu-cnn").expect("binary");
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn stdout_of(c: &mut Command) -> String {
    String::from_utf8_lossy(&c.assert().success().get_output().stdout).into_owned()
}

#[test]
fn version_names_the_commit() {
    let v = stdout_of(gpu_cnn().arg("--version"));
    assert!(v.starts_with(&format!("gpu-cnn {}", env!("CARGO_PKG_VERSION"))), "{v}");
    // Built from a git checkout (as every test run is): the commit, and whether the tree had changes.
    assert!(v.contains("(commit ") || v.contains("(no git commit"), "{v}");
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = stdout_of(gpu_cnn().args(["completions", shell]));
        assert!(script.contains("forward-only") && script.contains("bench-report"), "{shell}:\n{script}");
    }
    let bash = stdout_of(gpu_cnn().args(["completions", "bash"]));
    assert!(bash.contains("complete -F") && bash.contains("--checkpoint"), "{bash}");
    gpu_cnn().args(["completions", "tcsh"]).assert().failure();
}

/// Options a command does not use are refused, not silently ignored.
#[test]
fn unused_options_are_refused() {
    for (cmd, opt, value) in [
        ("eval", "--seed", "1"),
        ("eval", "--out-dir", "x"),
        ("forward-only", "--epochs", "2"),
        ("bench-report", "--seed", "1"),
    ] {
        let out = gpu_cnn().args([cmd, opt, value, "--checkpoint", "x"]).assert().code(2).get_output().clone();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("unexpected argument '{opt}'")), "{cmd} {opt}:\n{stderr}");
    }
}

/// With `--json`, a failure is `{"error": "..."}` on stdout (as the page reports one), and the exit code is the same
/// as without it.
#[test]
fn json_failures_are_json() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.safetensors");
    let plain = gpu_cnn().args(["eval", "--checkpoint"]).arg(&missing).assert().failure().get_output().clone();
    assert!(plain.stdout.is_empty());
    let out = gpu_cnn().args(["eval", "--json", "--checkpoint"]).arg(&missing).assert().failure().get_output().clone();
    assert_eq!(out.status.code(), plain.status.code());
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(s.trim().lines().count(), 1, "{s}");
    let v: Value = serde_json::from_str(s.trim()).expect("stdout is JSON");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("does not exist")), "{v}");
    // Also a failure in a command printing an array on success.
    let out = gpu_cnn().args(["bench", "--json", "--adapter", "no-such-xyz"]).assert().failure();
    let v: Value = serde_json::from_slice(&out.get_output().stdout).expect("stdout is JSON");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("no-such-xyz")), "{v}");
}

fn adapters(env: Option<&str>, args: &[&str]) -> Vec<Value> {
    let mut c = gpu_cnn();
    c.arg("adapters").arg("--json").args(args);
    if let Some(b) = env {
        c.env("WGPU_BACKEND", b);
    }
    serde_json::from_str::<Value>(&stdout_of(&mut c)).expect("JSON").as_array().expect("an array").clone()
}

/// `adapters --json` records what a vendor comparison needs: ids, limits and every feature.
#[test]
fn adapters_record_limits_features_and_ids() {
    for a in adapters(None, &[]) {
        assert!(a["device_id"].as_str().is_some_and(|d| d.starts_with("0x")), "{a}");
        assert!(a["vendor"].as_str().is_some_and(|d| d.starts_with("0x")), "{a}");
        for l in ["max_storage_buffer_binding_size", "max_compute_workgroup_storage_size", "max_buffer_size"] {
            assert!(a["limits"][l].as_u64().is_some_and(|v| v > 0), "limit {l} in {a}");
        }
        let features: Vec<&str> = a["features"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
        assert_eq!(features.contains(&"SUBGROUP"), a["subgroups"] != "none", "{a}");
    }
    // The text form says it too, on a second line per adapter.
    let text = stdout_of(gpu_cnn().arg("adapters"));
    for line in text.lines().filter(|l| l.starts_with("   ")) {
        assert!(line.contains("device 0x") && line.contains("features:") && line.contains("KiB"), "{line}");
    }
}

/// `WGPU_BACKEND` and `--backend` take wgpu's comma list, in every command; a filter that matches nothing fails
/// and says what there is.
#[test]
fn backend_filters_as_wgpu_reads_them() {
    let all = adapters(None, &[]);
    let backends: std::collections::BTreeSet<&str> = all.iter().map(|a| a["backend"].as_str().unwrap()).collect();
    for b in &backends {
        let only = adapters(Some(b), &[]);
        assert!(!only.is_empty() && only.iter().all(|a| a["backend"] == *b), "{b}: {only:?}");
        assert_eq!(only, adapters(None, &["--backend", b]), "--backend and WGPU_BACKEND agree");
    }
    let list: Vec<&str> = backends.iter().copied().collect();
    assert_eq!(adapters(Some(&list.join(",")), &[]).len(), all.len(), "a comma list keeps every backend it names");
    // A backend this machine lacks (Metal exists only on Apple's systems; DX12 only on Windows).
    let missing = if cfg!(target_os = "macos") { "dx12" } else { "metal" };
    let out = gpu_cnn().args(["adapters", "--backend", missing]).assert().failure().get_output().clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("no adapter of backend {missing}")), "{stderr}");
    let out = gpu_cnn().arg("adapters").env("WGPU_BACKEND", "vulkan,glide").assert().failure().get_output().clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WGPU_BACKEND") && stderr.contains("`glide`"), "{stderr}");
}
