//! Records the wgpu version (from Cargo.lock) and the git commit for benchmark results and `--version`.
fn main() {
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let mut wgpu = "unknown".to_string();
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l == "name = \"wgpu\"" {
            if let Some(v) = lines.next().and_then(|v| v.strip_prefix("version = \"")) {
                wgpu = v.trim_end_matches('"').to_string();
            }
        }
    }
    println!("cargo:rustc-env=GPU_CNN_WGPU_VERSION={wgpu}");
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=GPU_CNN_GIT_COMMIT={commit}");
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| !o.stdout.is_empty());
    println!("cargo:rustc-env=GPU_CNN_GIT_DIRTY={}", u8::from(dirty));
    // `gpu-cnn --version`: the version, the commit and whether the build had uncommitted changes.
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let state = if dirty { ", with uncommitted changes" } else { "" };
    println!("cargo:rustc-env=GPU_CNN_VERSION_LONG={version} (commit {commit}{state})");
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-changed=.git/index");
}
