//! A second WGSL compiler checks our shaders: Tint, in headless Chromium's WebGPU (on SwiftShader, no GPU needed).
//! Every shader module the engine creates must compile there (subgroup shaders as they are, with `enable subgroups;`),
//! and every compute pipeline it creates, with the engine's bind group layouts and override constants, must be
//! created, each within `MAX_SECONDS` (a pipeline that takes minutes to create is a hang to a user of a web build).
//! Prints each pipeline's creation time, slowest first. Skips where `chromium-headless-shell` is not installed
//! (`GPU_CNN_REQUIRE_BROWSER=1` makes that a failure).
//!
//! Every pipeline is created, both families (measured 2026-12-06: all 60 in 44 s, the slowest 3.4 s; 62 in 37 s with
//! the classifier head). Until then three of the simd family's weight-gradient pipelines never finished (Chrome's GPU
//! process grew to 13 GB and died after 120–160 s): their load helpers combined the padding tests with WGSL's
//! short-circuit `&&`, which Tint lowers to branches, and SwiftShader's compiler did not cope with the 60 such loads of
//! a hot loop, straight-line. With a non-short-circuit `&` they take 1.3–3.4 s.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::browser::{chromium, Browser, Server};
use gpu_cnn::gpu::net::lower::all_pipeline_specs;
use gpu_cnn::gpu::ops::shaders;
use gpu_cnn::gpu::shader::{Access, STEP_BYTES, WEIGHT_WINDOW_BYTES};
use serde_json::{json, Value};

/// The most one pipeline may take to create in Chrome, in seconds.
const MAX_SECONDS: f64 = 10.0;
/// A pipeline not created in this long (`GPU_CNN_BROWSER_PIPELINE_SECONDS` to change it) is a failure: the test starts a
/// fresh browser for the pipelines after it (the GPU process is still busy with it; Chrome's GPU watchdog kills a GPU
/// process that is busy for minutes, and after three such crashes WebGPU is gone for the browser's life).
const PIPELINE_TIMEOUT: Duration = Duration::from_secs(60);
/// All of it, every browser together (unless `GPU_CNN_BROWSER_PIPELINE_SECONDS` is set).
const TOTAL_TIMEOUT: Duration = Duration::from_secs(20 * 60);

const PAGE: &str = include_str!("pages/pipelines.html");

/// One browser at a time: the tests in this file would otherwise share two cores and skew each other's times.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// A module for the page: its file, source, bindings (as `Access` names) and subgroup use.
fn module_json(file: &str, source: &str, bindings: &[Access], subgroups: bool) -> Value {
    let names: Vec<String> = bindings.iter().map(|a| format!("{a:?}")).collect();
    let min_sizes: Vec<u64> = bindings
        .iter()
        .map(|a| match a {
            Access::Step => STEP_BYTES,
            Access::Weights => WEIGHT_WINDOW_BYTES,
            _ => 0,
        })
        .collect();
    json!({ "file": file, "source": source, "bindings": names, "min_binding_sizes": min_sizes, "subgroups": subgroups })
}

fn pipeline_timeout() -> Duration {
    match std::env::var("GPU_CNN_BROWSER_PIPELINE_SECONDS") {
        Ok(v) => Duration::from_secs(v.parse().expect("GPU_CNN_BROWSER_PIPELINE_SECONDS: whole seconds")),
        Err(_) => PIPELINE_TIMEOUT,
    }
}

/// What the page reported: the first browser's adapter, features, limits and modules, every pipeline, and why each
/// browser but the last stopped early.
struct Report {
    first: Value,
    pipelines: Vec<Value>,
    stops: Vec<String>,
    uncaptured: Vec<Value>,
    /// The end of the last browser's stderr.
    log: String,
}

/// Serves the page with `modules` and `pipelines` and lets a fresh browser create them; after a pipeline that is not
/// created in time (or a lost device), a fresh browser goes on with the next one.
fn run_page(test: &str, modules: Vec<Value>, pipelines: Vec<Value>) -> Option<Report> {
    let program = chromium(test)?;
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let n = pipelines.len();
    let data = json!({ "modules": modules, "pipelines": pipelines,
                       "pipeline_timeout_ms": pipeline_timeout().as_millis() as u64 });
    let server = Server::start(vec![
        ("/", "text/html; charset=utf-8", PAGE.as_bytes().to_vec()),
        ("/data.json", "application/json", data.to_string().into_bytes()),
    ]);
    // With a longer timeout per pipeline (to learn how long the slow ones take), as long as that could take.
    let total = match std::env::var("GPU_CNN_BROWSER_PIPELINE_SECONDS") {
        Ok(_) => pipeline_timeout() * (n as u32 + 1),
        Err(_) => TOTAL_TIMEOUT,
    };
    let t0 = Instant::now();
    let mut report = Report {
        first: Value::Null,
        pipelines: Vec::new(),
        stops: Vec::new(),
        uncaptured: Vec::new(),
        log: String::new(),
    };
    loop {
        let from = report.pipelines.len();
        let mut browser = Browser::start(&program, &[]);
        browser.open(&server.url(&format!("/?from={from}")));
        let left = total.saturating_sub(t0.elapsed());
        let mut result = browser.wait_for_json("result", left, "status", Duration::from_secs(15), |_, status| {
            eprintln!("{test}: {:4.0} s: {status}", t0.elapsed().as_secs_f64());
        });
        report.log = browser.log_tail(60);
        if let Some(fatal) = result.get("fatal") {
            panic!("{test}: the page failed: {}\nthe browser's stderr, last lines:\n{}", fatal, report.log);
        }
        report.pipelines.extend(result["pipelines"].as_array_mut().map(std::mem::take).unwrap_or_default());
        report.uncaptured.extend(result["uncaptured"].as_array_mut().map(std::mem::take).unwrap_or_default());
        if report.first.is_null() {
            report.first = result.clone();
        }
        let Some(why) = result["stopped"].as_str() else { return Some(report) };
        let name = report.pipelines.last().map(pipeline_name).unwrap_or_default();
        report.stops.push(format!("{name}: {why}"));
        if report.pipelines.len() >= n {
            return Some(report);
        }
        assert!(report.pipelines.len() > from, "{test}: the page stopped before a pipeline: {why}");
        eprintln!("{test}: {name}: {why}; a fresh browser for the rest");
    }
}

fn constants_text(c: &Value) -> String {
    let pairs = c.as_object().map(|o| o.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>());
    pairs.unwrap_or_default().join(" ")
}

fn pipeline_name(p: &Value) -> String {
    format!("{} {}", p["entry"].as_str().unwrap_or_default(), constants_text(&p["constants"]))
}

/// Every pipeline `all_pipeline_specs` lists (`GPU_CNN_BROWSER_PIPELINES=text|text…`: only those whose name, the entry
/// point and its constants as `NAME=value` as the table shows them, contains one of the texts).
#[test]
fn every_pipeline_is_created_in_chrome() {
    let test = "every_pipeline_is_created_in_chrome";
    let t0 = Instant::now();
    let only = std::env::var("GPU_CNN_BROWSER_PIPELINES").unwrap_or_default();
    let pipelines: Vec<Value> = all_pipeline_specs()
        .iter()
        .map(|s| {
            // Whole numbers as integers, as the page shows them (and as WebGPU takes any number).
            let number = |v: f64| if v.fract() == 0.0 { json!(v as i64) } else { json!(v) };
            let constants: serde_json::Map<String, Value> =
                s.constants.iter().map(|(k, v)| (k.to_string(), number(*v))).collect();
            json!({ "file": s.file, "entry": s.entry, "constants": constants })
        })
        .filter(|p| only.split('|').any(|text| pipeline_name(p).contains(text)))
        .collect();
    // Every module the pipelines use.
    let mut files: Vec<&str> = pipelines.iter().map(|p| p["file"].as_str().expect("file")).collect();
    files.sort();
    files.dedup();
    let modules: Vec<Value> = files
        .iter()
        .map(|f| {
            let s = shaders().find(|s| s.file == *f).expect("a shader per file");
            module_json(s.file, s.source, s.bindings, s.subgroups)
        })
        .collect();
    let n = pipelines.len();
    let Some(report) = run_page(test, modules, pipelines) else { return };

    let first = &report.first;
    eprintln!("{test}: adapter {}", first["adapter"]);
    eprintln!("{test}: features {}, limits {}", first["features"], first["limits"]);
    let mut failures = Vec::new();
    for m in first["modules"].as_array().expect("modules") {
        let file = m["file"].as_str().unwrap_or_default();
        for w in m["warnings"].as_array().into_iter().flatten() {
            eprintln!("{test}: {}", w.as_str().unwrap_or_default());
        }
        if m["skipped"] == true {
            eprintln!("{test}: module {file} skipped (the adapter has no subgroups)");
        } else if m["ok"] != true {
            failures.push(format!("module {file}: {}", m["errors"]));
        }
    }
    let mut rows: Vec<&Value> = report.pipelines.iter().collect();
    rows.sort_by(|a, b| b["ms"].as_f64().unwrap_or(-1.0).total_cmp(&a["ms"].as_f64().unwrap_or(-1.0)));
    let total: f64 = rows.iter().filter_map(|r| r["ms"].as_f64()).sum::<f64>() / 1e3;
    let skipped = rows.iter().filter(|r| r["skipped"] == true).count();
    eprintln!("{test}: {} pipelines ({skipped} skipped) in {total:.1} s; slowest first:", rows.len());
    for r in &rows {
        let name = pipeline_name(r);
        let state = match (r["skipped"] == true, r["ok"] == true) {
            (true, _) => "skipped",
            (false, true) => "ok",
            (false, false) => "FAILED",
        };
        let secs = r["ms"].as_f64().map(|ms| format!("{:8.3} s", ms / 1e3)).unwrap_or_else(|| "       - s".into());
        eprintln!("{secs}  {state:7} {name}");
        if r["skipped"] == true {
            continue;
        }
        if r["ok"] != true {
            failures.push(format!("pipeline {name}: {}", r["error"].as_str().unwrap_or_default()));
        } else if r["ms"].as_f64().unwrap_or_default() / 1e3 > MAX_SECONDS {
            let secs = r["ms"].as_f64().unwrap_or_default() / 1e3;
            failures.push(format!("pipeline {name}: {secs:.1} s to create (at most {MAX_SECONDS} s)"));
        }
    }
    for e in &report.uncaptured {
        failures.push(format!("uncaptured WebGPU error: {e}"));
    }
    for s in &report.stops {
        eprintln!("{test}: a browser stopped after {s}");
    }
    if !report.uncaptured.is_empty() || report.stops.iter().any(|s| !s.contains("not created within")) {
        eprintln!("{test}: the last browser's stderr, last lines:\n{}", report.log);
    }
    eprintln!("{test}: {:.0} s in all, {} browsers", t0.elapsed().as_secs_f64(), report.stops.len() + 1);
    assert!(rows.len() == n, "the page reported {} of {n} pipelines", rows.len());
    assert!(failures.is_empty(), "{test}: {} failures:\n{}", failures.len(), failures.join("\n"));
}

/// The harness sees Tint's errors and the pipeline errors: two invalid modules (a subgroup builtin without
/// `enable subgroups;`, a type error) are reported with Tint's messages, a valid module's pipeline with a binding the
/// layout declares read-only (the shader writes it) or with an override constant the shader lacks is refused, and the
/// valid module with its own layout builds.
#[test]
fn a_broken_shader_is_rejected_by_tint() {
    let test = "a_broken_shader_is_rejected_by_tint";
    let body = "@group(0) @binding(0) var<storage, read_write> out: array<f32>;\n@compute @workgroup_size(64)\n";
    let main = |statement: &str| format!("{body}fn main(@builtin(local_invocation_index) i: u32) {{ {statement} }}\n");
    let modules = [
        module_json("valid.wgsl", &main("out[i] = f32(i);"), &[Access::ReadWrite], false),
        module_json("read_only_layout.wgsl", &main("out[i] = f32(i);"), &[Access::Read], false),
        module_json("no_enable.wgsl", &main("out[i] = subgroupAdd(f32(i));"), &[Access::ReadWrite], false),
        module_json("type_error.wgsl", &main("out[i] = i;"), &[Access::ReadWrite], false),
    ];
    let pipeline = |file: &str, constants: Value| json!({ "file": file, "entry": "main", "constants": constants });
    let pipelines = vec![
        pipeline("valid.wgsl", json!({})),
        pipeline("valid.wgsl", json!({ "NO_SUCH_CONSTANT": 1 })),
        pipeline("read_only_layout.wgsl", json!({})),
        pipeline("no_enable.wgsl", json!({})),
        pipeline("type_error.wgsl", json!({})),
    ];
    let Some(report) = run_page(test, modules.to_vec(), pipelines) else { return };
    let result = &report.first;
    let modules = result["modules"].as_array().expect("modules");
    let pipelines = &report.pipelines;
    for m in modules {
        eprintln!("{test}: module {}: ok {}, errors {}", m["file"], m["ok"], m["errors"]);
    }
    for p in pipelines {
        eprintln!("{test}: pipeline {} {}: ok {}, error {}", p["file"], p["constants"], p["ok"], p["error"]);
    }
    let ok = |v: &Value| v["ok"] == true;
    assert!(ok(&modules[0]) && ok(&modules[1]) && ok(&pipelines[0]), "the valid module or its pipeline failed");
    for (m, expected) in [(&modules[2], "subgroups"), (&modules[3], "f32")] {
        let errors = m["errors"].to_string();
        assert!(!ok(m) && errors.contains(expected), "{}: not rejected as expected: {errors}", m["file"]);
    }
    let expected = ["NO_SUCH_CONSTANT", "ReadOnlyStorage", "subgroupAdd", "cannot assign"];
    for (p, expected) in pipelines[1..].iter().zip(expected) {
        let error = p["error"].as_str().unwrap_or_default();
        assert!(
            !ok(p) && error.contains(expected),
            "pipeline {} {}: not refused as expected",
            p["file"],
            p["constants"]
        );
    }
}
