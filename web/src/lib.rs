//! gpu-cnn in a browser: the same engine, host code and WGSL kernels as the command line, on the page's WebGPU.
//!
//! The page (`web/index.html`, `web/app.js`) fetches the project's MNIST files and calls [`run`] with one of the
//! CLI's commands (`forward-only`, `train`, `check`, `bench`) and its options; `run` resolves to exactly the JSON that
//! `gpu-cnn <command> --json` prints. While it runs, `on_event(kind, text, bytes)` tells the page what happens:
//!
//! - `"log"`: a line of the log the CLI prints on stderr;
//! - `"epoch-start"`: `{"epoch", "epochs", "steps"}` (epochs counted from 1);
//! - `"step"`: `{"epoch", "step", "steps", "loss", "accuracy"}`, the running metrics of the epoch;
//! - `"epoch"`: the epoch's report (the keys of `epochs.jsonl`);
//! - `"file"`: a file the run wrote (`text` its name, `bytes` its content): the pictures the CLI writes into
//!   `outputs/`, and `steps.csv` / `epochs.jsonl`. During training, `filters_after.png` and `activations_after.png`
//!   come after every epoch.
//!
//! [`stop`] ends a training run after the chunk of steps in flight, as Ctrl-C does natively.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use gpu_cnn::check::{self, CheckOptions};
use gpu_cnn::data::{self, Mnist};
use gpu_cnn::engine::Metrics;
use gpu_cnn::gpu::{self, AdapterSelection, Family, Gpu, OpenOptions};
use gpu_cnn::measure::bench::{self, Adapters, BenchConfig};
use gpu_cnn::measure::tables;
use gpu_cnn::report::StudyReport;
use gpu_cnn::run::{self, DeviceChoice, EpochReport, Options};
use wasm_bindgen::prelude::*;

thread_local! {
    /// The page's event callback while a command runs.
    static EVENTS: RefCell<Option<js_sys::Function>> = const { RefCell::new(None) };
    /// Set by the page's Stop (`stop`); training stops after the chunk of steps in flight.
    static STOP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Stops a training run after the chunk of steps in flight, as Ctrl-C does natively: the run then writes the pictures
/// of the network as it stands and resolves to an error that says where it stopped and what it had learned.
#[wasm_bindgen]
pub fn stop() {
    STOP.with(|s| s.set(true));
}

/// Tells the page something (see the module's documentation); a page without a callback hears nothing.
fn emit(kind: &str, text: &str, bytes: Option<&[u8]>) {
    EVENTS.with(|events| {
        if let Some(f) = events.borrow().as_ref() {
            let bytes = bytes.map_or(JsValue::UNDEFINED, |b| js_sys::Uint8Array::from(b).into());
            let _ = f.call3(&JsValue::NULL, &kind.into(), &text.into(), &bytes);
        }
    });
}

/// The engine's log (what the CLI prints on stderr) to the page and the browser's console.
struct PageLog;

impl log::Log for PageLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info && m.target().starts_with("gpu_cnn")
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = record.args().to_string();
            web_sys::console::log_1(&line.as_str().into());
            emit("log", &line, None);
        }
    }
    fn flush(&self) {}
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    if log::set_logger(&PageLog).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
    // What the engine writes into its output directory natively comes to the page.
    gpu_cnn::atomic::set_page_sink(Some(Box::new(|path: &Path, bytes: &[u8]| {
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        emit("file", &name, Some(bytes));
    })));
}

/// The adapter the page's WebGPU gives, as `gpu-cnn adapters --json` describes one, with the kernels the engine
/// chooses for it (the `adapter` object of every result). Fails with advice where the browser has no WebGPU.
/// `name`: what the page read from `GPUAdapterInfo` (vendor and architecture), used where wgpu has no name.
#[wasm_bindgen]
pub async fn adapter(name: String) -> Result<String, JsError> {
    if !name.is_empty() {
        gpu::adapter::name_browser_adapter(&name);
    }
    let gpu = open(None).await.map_err(js)?;
    Ok(serde_json::to_string(&gpu.info(&gpu.caps))?)
}

/// Runs `command` with `options` (a JSON object of the query string's values: `epochs`, `train-limit`, `test-limit`, `batch-size`,
/// `seed`, `lr`, `momentum`, `arch`, `kernels`, `quick`, `repeats`, `min-seconds`, `no-check`) on `files` (an object of
/// file name → Uint8Array: MNIST's four IDX files and `SHA256SUMS`), telling the page what happens through `on_event`.
/// Resolves to the JSON `gpu-cnn <command> --json` prints.
#[wasm_bindgen]
pub async fn run(
    command: String,
    options: String,
    files: js_sys::Object,
    on_event: js_sys::Function,
) -> Result<String, JsError> {
    EVENTS.with(|e| *e.borrow_mut() = Some(on_event));
    STOP.with(|s| s.set(false));
    let result = run_command(&command, &options, &files).await;
    EVENTS.with(|e| *e.borrow_mut() = None);
    result.map_err(js)
}

fn js(e: anyhow::Error) -> JsError {
    JsError::new(&format!("{e:#}"))
}

/// The query string's options (a JSON object of strings), parsed and checked as the command line checks them.
fn options(json: &str) -> Result<Options> {
    let map: HashMap<String, String> =
        serde_json::from_str(json).context("options: expected a JSON object of strings")?;
    Options::from_pairs(map.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(|e| anyhow!(e))
}

/// Opens the page's adapter, refusing plainly where there is none (natively the engine would fall back to the CPU
/// reference, which a page cannot run).
async fn open(kernels: Option<Family>) -> Result<Gpu> {
    match Gpu::open_with(&AdapterSelection::default(), OpenOptions::with_kernels(kernels)?).await {
        Ok(g) => Ok(g),
        Err(gpu::GpuError::NoAdapter { .. }) => bail!(
            "this browser gives no WebGPU adapter: use a browser with WebGPU enabled (Chrome or Edge 113+, Safari 26+, \
             Firefox 141+ on Windows), or run the same study natively with `cargo run --release -- compare`"
        ),
        Err(e) => Err(e.into()),
    }
}

fn files(files: &js_sys::Object) -> Result<HashMap<String, Vec<u8>>> {
    let mut out = HashMap::new();
    for entry in js_sys::Object::entries(files).iter() {
        let pair = js_sys::Array::from(&entry);
        let name = pair.get(0).as_string().ok_or_else(|| anyhow!("files: a name is not a string"))?;
        let bytes = pair.get(1).dyn_into::<js_sys::Uint8Array>().map_err(|_| anyhow!("files: {name} is not bytes"))?;
        out.insert(name, bytes.to_vec());
    }
    Ok(out)
}

/// MNIST from the page's files, its test set shortened by `test-limit` (as the CLI's `--test-limit`).
fn load(files_obj: &js_sys::Object, o: &Options) -> Result<Mnist> {
    let files = files(files_obj)?;
    let d = data::load_fetched(Path::new("data/mnist"), &files)?.limit_test(o.test_limit);
    log::info!("data: data/mnist ({} training, {} test images)", d.train.len(), d.test.len());
    Ok(d)
}

async fn run_command(command: &str, options_json: &str, files: &js_sys::Object) -> Result<String> {
    let o = options(options_json)?;
    let device = DeviceChoice::Gpu { selection: AdapterSelection::default(), kernels: o.kernels };
    let out = Path::new("outputs");
    match command {
        "forward-only" => {
            open(o.kernels).await?; // no adapter: say so (natively it would be the CPU reference)
            let data = load(files, &o)?;
            let arch = o.arch.clone().unwrap_or_default();
            let e = run::forward_only(&device, &data, &arch, o.seed, out).await?;
            Ok(serde_json::to_string(&e)?)
        }
        "train" => {
            open(o.kernels).await?;
            let data = load(files, &o)?;
            let outcome = run::train(&device, &data, &o.train(out.into()), &mut PageProgress::default()).await?;
            Ok(serde_json::to_string(&StudyReport::new(outcome))?)
        }
        "check" => {
            let gpu = open(o.kernels).await?;
            let opts = CheckOptions { quick: o.quick, arch: o.arch.clone(), ..Default::default() };
            log::info!("check: {} ({} kernels)", gpu.adapter.line(), gpu.caps.describe());
            let report = check::run(gpu, opts).await;
            log::info!("{}", check::table(&report));
            Ok(serde_json::to_string(&[report])?)
        }
        "bench" => {
            open(o.kernels).await?;
            let data = load(files, &o)?;
            let cfg = BenchConfig {
                batch_sizes: vec![o.batch_size],
                steps: None,
                min_seconds: o.min_seconds,
                repeats: o.repeats,
                warmup: o.warmup,
                command: format!("web ?run=bench {options_json}"),
                check: !o.no_check,
                arch: run::arch_for_data(o.arch.as_ref(), &data)?,
            };
            let results = bench::run(&Adapters::One(AdapterSelection::default()), o.kernels, &data, &cfg).await?;
            log::info!("\n{}", tables::table(&results));
            Ok(serde_json::to_string(&results)?)
        }
        other => bail!("unknown command `{other}` (forward-only, train, check or bench)"),
    }
}

/// Training as it goes, to the page.
#[derive(Default)]
struct PageProgress {
    epoch: usize,
    steps: usize,
}

impl run::Progress for PageProgress {
    fn epoch_started(&mut self, epoch: usize, epochs: usize, steps: usize) {
        (self.epoch, self.steps) = (epoch + 1, steps);
        emit(
            "epoch-start",
            &serde_json::json!({ "epoch": epoch + 1, "epochs": epochs, "steps": steps }).to_string(),
            None,
        );
    }
    fn step(&mut self, done: usize, running: &Metrics) -> bool {
        let m = serde_json::json!({
            "epoch": self.epoch,
            "step": done,
            "steps": self.steps,
            "loss": running.mean_loss(),
            "accuracy": running.accuracy(),
        });
        emit("step", &m.to_string(), None);
        !STOP.with(|s| s.get())
    }
    fn epoch_report(&mut self, report: &EpochReport) {
        emit("epoch", &serde_json::to_string(report).unwrap_or_default(), None);
    }
    fn live_pictures(&self) -> bool {
        true
    }
}
