//! The web page (`web/`): the engine compiled to wasm32 with its WGSL kernels on the browser's WebGPU, driven in
//! headless Chromium (SwiftShader, no GPU needed) through the page's test contract: `?run=<command>&<options>` runs
//! the command on load and writes the JSON `gpu-cnn <command> --json` prints into `<pre id="result">` (on failure a
//! JSON object with an `error` key). Checked: a short training run whose random weights are at chance and evaluate as
//! the native engine's do, and which learns as the native engine does from the same seed and data; `check` passing;
//! a bad option named; a screenshot of the page with its pictures. (SwiftShader runs the tiled kernels at about 70
//! test images a second, so the run is short: 2,048 training images.)
//!
//! Needs the built page (`web/build.sh` writes `web/pkg/`); skipped without it or without the browser, unless
//! `GPU_CNN_REQUIRE_WEB=1` (CI builds the page first and sets it).

mod common;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use common::browser::{chromium, Browser, Server};
use gpu_cnn::run::{self, DeviceChoice, TrainOptions};
use pollster::FutureExt;
use serde_json::Value;

/// One browser at a time (two cores).
static ONE_BROWSER: Mutex<()> = Mutex::new(());

const FILES: [(&str, &str, &str); 10] = [
    ("/web/index.html", "web/index.html", "text/html"),
    ("/web/app.js", "web/app.js", "text/javascript"),
    ("/web/style.css", "web/style.css", "text/css"),
    ("/web/pkg/gpu_cnn_web.js", "web/pkg/gpu_cnn_web.js", "text/javascript"),
    ("/web/pkg/gpu_cnn_web_bg.wasm", "web/pkg/gpu_cnn_web_bg.wasm", "application/wasm"),
    ("/data/mnist/SHA256SUMS", "data/mnist/SHA256SUMS", "text/plain"),
    ("/data/mnist/train-images-idx3-ubyte.gz", "data/mnist/train-images-idx3-ubyte.gz", "application/gzip"),
    ("/data/mnist/train-labels-idx1-ubyte.gz", "data/mnist/train-labels-idx1-ubyte.gz", "application/gzip"),
    ("/data/mnist/t10k-images-idx3-ubyte.gz", "data/mnist/t10k-images-idx3-ubyte.gz", "application/gzip"),
    ("/data/mnist/t10k-labels-idx1-ubyte.gz", "data/mnist/t10k-labels-idx1-ubyte.gz", "application/gzip"),
];

/// The page's files, or None (with a visible skip) where the page is not built or the browser not installed.
fn page(test: &str) -> Option<(Server, std::path::PathBuf)> {
    let program = chromium(test)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !root.join("web/pkg/gpu_cnn_web_bg.wasm").is_file() {
        if std::env::var("GPU_CNN_REQUIRE_WEB").as_deref() == Ok("1") {
            panic!("{test}: GPU_CNN_REQUIRE_WEB=1 but the page is not built (run web/build.sh)");
        }
        eprintln!("{test}: skipped: the page is not built (web/build.sh)");
        return None;
    }
    let files = FILES
        .iter()
        .map(|(url, file, kind)| {
            let body = std::fs::read(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            (*url, *kind, body)
        })
        .collect();
    Some((Server::start(files), program))
}

/// Opens `/web/?<query>` and returns the JSON the page writes into #result, with the browser (for a screenshot).
fn run_page(test: &str, query: &str, limit: Duration) -> Option<(Value, Browser)> {
    let (server, program) = page(test)?;
    let mut browser = Browser::start(&program, &[]);
    browser.open(&server.url(&format!("/web/index.html?{query}")));
    let result = browser.wait_for_json("result", limit, "line", Duration::from_secs(20), |t, line| {
        eprintln!("{test}: {:.0} s: {line}", t.as_secs_f64());
    });
    eprintln!("{test}: adapter: {}", browser.text("adapter").unwrap_or_default());
    // The server must live until the page has everything; it has by now.
    drop(server);
    Some((result, browser))
}

fn no_error(test: &str, v: &Value) {
    assert!(v.get("error").is_none(), "{test}: the page failed: {}", v["error"]);
}

#[test]
fn training_in_the_browser_learns_as_the_native_engine_does() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let test = "training_in_the_browser";
    // 2,000 test images: SwiftShader evaluates about 70 images/s with the tiled kernels.
    let query = "run=train&epochs=1&train-limit=2048&test-limit=2000&batch-size=64&seed=42";
    let Some((web, mut browser)) = run_page(test, query, Duration::from_secs(600)) else { return };
    no_error(test, &web);
    let (before, after) = (web["forward_only_test_accuracy"].as_f64().unwrap(), web["test_accuracy"].as_f64().unwrap());
    eprintln!("{test}: {:.2} % -> {:.2} % on {}", 100.0 * before, 100.0 * after, web["adapter"]["name"]);
    assert!((0.05..0.15).contains(&before), "{test}: random weights should be at chance, got {before}");
    // 32 steps of 64 images: about 70 % (68.0 % on these 2,000 test images in SwiftShader, 72.9 % on all 10,000).
    assert!(after > 0.6 && after > before + 0.45, "{test}: did not learn: {before} -> {after}");
    assert_eq!(web["epochs"].as_array().map(Vec::len), Some(1));
    assert_eq!(web["hyperparameters"]["train_images"], 2048);
    assert_eq!(web["test_images"], 2000);
    let names: Vec<&str> = web["pictures"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for p in
        ["filters_after.png", "activations_after.png", "predictions_after.png", "confusion_after.png", "curves.png"]
    {
        assert!(names.contains(&p), "{test}: no {p} in {names:?}");
    }
    // The page shows them: every picture loaded.
    let shown = browser.eval("[...document.querySelectorAll('#gallery img')].filter(i => i.naturalWidth > 0).length");
    assert!(shown.as_u64().unwrap_or(0) >= 9, "{test}: {shown} pictures shown");

    // The screenshot shows the page with its pictures, not a blank page.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let shot = dir.join("web-train.png");
    browser.screenshot(&shot);
    let img = image::open(&shot).expect("the screenshot decodes").to_rgb8();
    let coloured = img.pixels().filter(|p| p.0.iter().any(|&c| c < 200)).count();
    let share = coloured as f64 / (img.width() * img.height()) as f64;
    eprintln!("{test}: screenshot {} ({}x{}), {:.1} % inked", shot.display(), img.width(), img.height(), 100.0 * share);
    assert!(img.height() > 1000 && share > 0.05, "{test}: the screenshot looks blank");

    // The native engine, same seed and data: the same run within what a different summation order gives.
    let data = run::load_data(None).expect("data/mnist").limit_test(Some(2000));
    let out = tempfile::tempdir().unwrap();
    let opts = TrainOptions { epochs: 1, train_limit: Some(2048), out_dir: out.path().into(), ..Default::default() };
    let native = match run::train(&DeviceChoice::default(), &data, &opts, &mut ()).block_on() {
        Ok(n) => n,
        Err(e) => return eprintln!("{test}: no native comparison: {e}"),
    };
    eprintln!(
        "{test}: native ({}) {:.2} % -> {:.2} %",
        native.adapter.line(),
        100.0 * native.forward_only_test_accuracy,
        100.0 * native.test_accuracy
    );
    // Random weights: the same loss within the parity tolerance, the same predictions but for near-ties.
    let (wl, nl) = (web["forward_only_test_loss"].as_f64().unwrap(), native.forward_only_test_loss);
    assert!((wl - nl).abs() <= 1e-5 * nl, "{test}: forward-only loss {wl} in the browser, {nl} natively");
    let one_image = 1.0 / 2000.0 + 1e-9;
    assert!((before - native.forward_only_test_accuracy).abs() <= one_image, "{test}: forward-only {before}");
    // Trained: 32 steps in another summation order drift apart a little.
    assert!((after - native.test_accuracy).abs() < 0.01, "{test}: {after} in the browser, {}", native.test_accuracy);
}

#[test]
fn check_passes_in_the_browser() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let test = "check_in_the_browser";
    let Some((web, _browser)) = run_page(test, "run=check&quick=1", Duration::from_secs(600)) else { return };
    no_error(test, &web);
    let report = &web[0];
    let rows = report["rows"].as_array().expect("rows");
    eprintln!("{test}: {} rows on {} ({} s)", rows.len(), report["adapter"]["name"], report["seconds"]);
    let failed: Vec<&Value> = rows.iter().filter(|r| r["passed"] != true).collect();
    assert!(failed.is_empty(), "{test}: failed rows: {failed:?}");
    assert!(rows.len() >= 10 && report["passed"] == true);
}

#[test]
fn the_page_names_a_bad_option() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let test = "bad_option_in_the_browser";
    // Checked as the command line checks them (`run::Options`), the learning rate and momentum too.
    for (query, says) in [
        ("run=train&epochs=two", "epochs=two"),
        ("run=train&lr=-1", "lr=-1: must be a finite number > 0"),
        ("run=train&momentum=1.5", "momentum=1.5: must be in [0, 1)"),
    ] {
        let Some((web, _browser)) = run_page(test, query, Duration::from_secs(120)) else { return };
        let error = web["error"].as_str().unwrap_or_else(|| panic!("{test}: no error in {web}"));
        assert!(error.contains(says), "{test}: ?{query}: {error}");
    }
}

/// LeNet-5 (5×5 convolutions, average pools) in the page: random weights at chance, with the pictures of its 5×5
/// filters and its feature maps.
#[test]
fn lenet5_in_the_browser() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let test = "lenet5_in_the_browser";
    let query = "run=forward-only&arch=lenet5&test-limit=500";
    let Some((web, mut browser)) = run_page(test, query, Duration::from_secs(300)) else { return };
    no_error(test, &web);
    assert_eq!(web["arch"], "conv6k5-avgpool-conv16k5p0-avgpool-fc120-fc84-fc10");
    let accuracy = web["test_accuracy"].as_f64().unwrap();
    assert!((0.02..0.2).contains(&accuracy), "{test}: random weights at chance, got {accuracy}");
    assert_eq!(web["test_images"], 500);
    let names: Vec<&str> = web["pictures"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(names.contains(&"filters_before.png") && names.contains(&"activations_before.png"), "{names:?}");
    let shown = browser.eval("[...document.querySelectorAll('#gallery img')].filter(i => i.naturalWidth > 0).length");
    assert!(shown.as_u64().unwrap_or(0) >= 4, "{test}: {shown} pictures shown");
}

/// Any query, for measurements (BENCHMARKS.md): `GPU_CNN_WEB_QUERY='run=bench&no-check=1' cargo test --release
/// --test web -- --ignored any_query --nocapture` prints the page's JSON (and `GPU_CNN_WEB_SECONDS` bounds the wait,
/// 1,800 s by default).
#[test]
#[ignore]
fn any_query() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let query = std::env::var("GPU_CNN_WEB_QUERY").expect("GPU_CNN_WEB_QUERY, e.g. run=bench&no-check=1");
    let seconds = std::env::var("GPU_CNN_WEB_SECONDS").map_or(1800, |s| s.parse().expect("GPU_CNN_WEB_SECONDS"));
    let t = std::time::Instant::now();
    let Some((web, _browser)) = run_page("any_query", &query, Duration::from_secs(seconds)) else { return };
    println!("any_query: ?{query}: {:.1} s\n{web}", t.elapsed().as_secs_f64());
}
