//! The web page (`web/`): the engine compiled to wasm32 with its WGSL kernels on the browser's WebGPU, driven in
//! headless Chromium (SwiftShader, no GPU needed) through the page's test contract: `?run=<command>&<options>` runs
//! the command on load and writes the JSON `gpu-cnn <command> --json` prints into `<pre id="result">` (on failure a
//! JSON object with an `error` key). Checked: a short training run whose random weights are at chance and evaluate as
//! the native engine's do, and which learns as the native engine does from the same seed and data; `check` passing;
//! a bad option named; a screenshot of the page with its pictures; Stop; a saved bench merged with a native one.
//! (SwiftShader runs its default, the simd kernels, at about 95 training and 340 test images a second, so the runs
//! are short: 2,048 training images.)
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
    // 2,000 test images: SwiftShader evaluates about 340 images/s with the simd kernels.
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
    let Some((web, mut browser)) = run_page(test, "run=check&quick=1", Duration::from_secs(600)) else { return };
    no_error(test, &web);
    // On a software adapter (SwiftShader) the page's training defaults are short, and it says so.
    if web[0]["adapter"]["device_type"] == "cpu" {
        let limits =
            browser.eval("[document.getElementById('train-limit').value, document.getElementById('test-limit').value]");
        assert_eq!(limits, serde_json::json!(["2048", "2000"]), "{test}: the software adapter's defaults");
        let note = browser.text("software-note").unwrap_or_default();
        assert!(note.contains("2,048") && note.contains("CPU"), "{test}: {note}");
        assert_eq!(browser.eval("document.getElementById('software-note').hidden"), Value::Bool(false));
    }
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

/// Stop in the middle of a training run: the run ends after the steps already sent to the GPU (at most two chunks of
/// 32 steps past the last step the page showed: the one running and the one queued behind it), says where it stopped
/// and what the network had learned, and shows the pictures of the network as it stands.
#[test]
fn the_page_stops_a_training_run() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let test = "stop_in_the_browser";
    let Some((server, program)) = page(test) else { return };
    let mut browser = Browser::start(&program, &[]);
    // 256 steps of 8 images: 8 chunks of 32 steps.
    let (steps, chunk) = (256, 32);
    browser.open(&server.url("/web/index.html?run=train&epochs=1&train-limit=2048&batch-size=8&test-limit=200"));
    let t0 = std::time::Instant::now();
    // "epoch 1: step 32/256, loss …"
    let step_of = |line: &str| -> Option<usize> {
        line.split("step ").nth(1).and_then(|r| r.split('/').next()).and_then(|n| n.parse().ok())
    };
    while step_of(&browser.text("line").unwrap_or_default()).is_none() {
        assert!(t0.elapsed() < Duration::from_secs(600), "{test}: no step shown");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Read the step shown and press Stop in one go (the page cannot move on in between).
    let pressed = browser.eval(
        "(() => { const stop = document.getElementById('stop'); const was = stop.disabled; \
         const line = document.getElementById('line').textContent; stop.click(); return [line, was]; })()",
    );
    assert_eq!(pressed[1], Value::Bool(false), "{test}: Stop was disabled during training");
    let shown = step_of(pressed[0].as_str().unwrap_or_default()).expect("a step shown");
    eprintln!("{test}: Stop pressed at step {shown} after {:.0} s", t0.elapsed().as_secs_f64());
    let web = browser.wait_for_json("result", Duration::from_secs(600), "line", Duration::from_secs(20), |t, line| {
        eprintln!("{test}: {:.0} s: {line}", t.as_secs_f64());
    });
    drop(server);
    let error = web["error"].as_str().unwrap_or_else(|| panic!("{test}: the run was not stopped: {web}"));
    eprintln!("{test}: {error}");
    // "interrupted during epoch 1 after step N: the network as it stands, X % on the test set"
    let after: usize = error
        .strip_prefix("interrupted during epoch 1 after step ")
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{test}: {error}"));
    assert!(after >= shown && after <= shown + 2 * chunk && after < steps, "{test}: shown {shown}, stopped at {after}");
    assert!(error.contains("% on the test set"), "{test}: {error}");
    assert_eq!(browser.eval("document.body.dataset.state"), Value::String("stopped".into()));
    // The pictures of the network as it stands, beside the random weights' ones.
    let shown = browser.eval("[...document.querySelectorAll('#gallery img')].filter(i => i.naturalWidth > 0).length");
    assert!(shown.as_u64().unwrap_or(0) >= 8, "{test}: {shown} pictures shown");
    let names = browser.eval("[...document.querySelectorAll('#gallery img')].map(i => i.alt || i.title).join(' ')");
    assert!(names.as_str().is_some_and(|n| n.contains("filters_after")), "{test}: {names}");
}

/// A bench in the page, saved with "Save result", merges with a native one in `bench-report` (table and plots).
#[test]
fn the_page_saves_a_bench_that_merges_with_a_native_one() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let test = "saved_bench_in_the_browser";
    let query = "run=bench&no-check=1&batch-size=16&repeats=2&warmup=0&min-seconds=0.1&test-limit=256";
    let Some((web, mut browser)) = run_page(test, query, Duration::from_secs(900)) else { return };
    no_error(test, &web);
    assert_eq!(browser.eval("document.getElementById('save').disabled"), Value::Bool(false), "Save is enabled");
    let saved = browser.eval("window.saveResult()");
    let saved = saved.as_str().expect("the saved text");
    let parsed: Value = serde_json::from_str(saved).expect("the saved file is JSON");
    assert_eq!(parsed, web, "the saved file is the JSON the page shows");
    let r = &parsed[0];
    assert_eq!(r["schema_version"], 3, "{r}");
    assert!(r["train_images_per_sec"]["mean"].as_f64().is_some_and(|m| m > 0.0), "{r}");

    let dir = tempfile::tempdir().unwrap();
    let (page_file, native_file) = (dir.path().join("page.json"), dir.path().join("native.json"));
    std::fs::write(&page_file, saved).unwrap();
    let gpu_cnn = || {
        let mut c = assert_cmd::Command::cargo_bin("gpu-cnn").unwrap();
        c.current_dir(env!("CARGO_MANIFEST_DIR"));
        c
    };
    let native = gpu_cnn()
        .args(["bench", "--no-check", "--steps", "1", "--repeats", "1", "--min-seconds", "0.1", "--json", "--out"])
        .arg(&native_file)
        .assert();
    if !native.get_output().status.success() {
        return eprintln!("{test}: no native bench here: {}", String::from_utf8_lossy(&native.get_output().stderr));
    }
    let plots = dir.path().join("plots");
    let out = gpu_cnn().arg("bench-report").arg(&page_file).arg(&native_file).arg("--plot").arg(&plots).assert();
    let table = String::from_utf8_lossy(&out.success().get_output().stdout).into_owned();
    let header = table.lines().next().unwrap_or_default();
    assert_eq!(header.matches(" | ").count(), 2, "{test}: two results side by side:\n{table}");
    assert!(header.contains("(webgpu)"), "{test}: the page's result is a column:\n{table}");
    let pngs = std::fs::read_dir(&plots)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "png"));
    assert!(pngs.count() >= 3, "{test}: the plots");
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
