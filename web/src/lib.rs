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

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use gpu_cnn::bench::{self, Adapters, BenchConfig};
use gpu_cnn::check::{self, CheckOptions};
use gpu_cnn::data::{self, Mnist};
use gpu_cnn::device::DeviceInfo;
use gpu_cnn::engine::Metrics;
use gpu_cnn::gpu::ops::Family;
use gpu_cnn::gpu::{self, AdapterSelection};
use gpu_cnn::model::{self, Arch};
use gpu_cnn::report::StudyReport;
use gpu_cnn::study::{self, DeviceChoice, TrainOptions};
use gpu_cnn::train::EpochReport;
use wasm_bindgen::prelude::*;

thread_local! {
    /// The page's event callback while a command runs.
    static EVENTS: RefCell<Option<js_sys::Function>> = const { RefCell::new(None) };
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
        gpu::name_browser_adapter(&name);
    }
    let gpu = open(None).await.map_err(js)?;
    Ok(serde_json::to_string(&DeviceInfo::of(&gpu.adapter, &gpu.caps))?)
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
    let result = run_command(&command, &options, &files).await;
    EVENTS.with(|e| *e.borrow_mut() = None);
    result.map_err(js)
}

fn js(e: anyhow::Error) -> JsError {
    JsError::new(&format!("{e:#}"))
}

/// The query string's options, each parsed where it is used so that a bad one is named.
struct Options(HashMap<String, String>);

const KNOWN: [&str; 13] = [
    "epochs",
    "train-limit",
    "test-limit",
    "batch-size",
    "seed",
    "lr",
    "momentum",
    "arch",
    "kernels",
    "quick",
    "repeats",
    "min-seconds",
    "no-check",
];

impl Options {
    fn parse(json: &str) -> Result<Options> {
        let map: HashMap<String, String> =
            serde_json::from_str(json).context("options: expected a JSON object of strings")?;
        if let Some(k) = map.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            bail!("unknown option `{k}` (known: {})", KNOWN.join(", "));
        }
        Ok(Options(map))
    }

    fn get<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        self.0.get(key).map(|v| v.parse::<T>().map_err(|e| anyhow!("{key}={v}: {e}"))).transpose()
    }

    fn flag(&self, key: &str) -> Result<bool> {
        match self.0.get(key).map(String::as_str) {
            None | Some("0") | Some("false") => Ok(false),
            Some("") | Some("1") | Some("true") => Ok(true),
            Some(v) => bail!("{key}={v}: expected 1 or 0"),
        }
    }

    fn arch(&self) -> Result<Option<Arch>> {
        self.0.get("arch").map(|a| Arch::parse(a).map_err(|e| anyhow!("arch={a}: {e}"))).transpose()
    }

    fn kernels(&self) -> Result<Option<Family>> {
        self.0.get("kernels").map(|k| Family::parse(k).map_err(|e| anyhow!("kernels={k}: {e}"))).transpose()
    }
}

/// Opens the page's adapter, refusing plainly where there is none (natively the engine would fall back to the CPU
/// reference, which a page cannot run).
async fn open(kernels: Option<Family>) -> Result<gpu::Gpu> {
    match study::open_gpu(&AdapterSelection::default(), kernels).await {
        Ok(g) => Ok(g),
        Err(gpu::GpuError::NoAdapter { .. }) => bail!(
            "this browser gives no WebGPU adapter: use a browser with WebGPU enabled (Chrome or Edge 113+, Safari 26+, \
             Firefox 141+ on Windows), or run the same study natively with `cargo run --release`"
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
    let test_limit = o.get("test-limit")?;
    if test_limit == Some(0) {
        bail!("test-limit must be at least 1");
    }
    let files = files(files_obj)?;
    let d = data::load_fetched(Path::new("data/mnist"), &files)?.limit_test(test_limit);
    log::info!("data: data/mnist ({} training, {} test images)", d.train.len(), d.test.len());
    Ok(d)
}

async fn run_command(command: &str, options: &str, files: &js_sys::Object) -> Result<String> {
    let o = Options::parse(options)?;
    let device = DeviceChoice::Gpu { selection: AdapterSelection::default(), kernels: o.kernels()? };
    let out = Path::new("outputs");
    match command {
        "forward-only" => {
            open(o.kernels()?).await?; // no adapter: say so (natively it would be the CPU reference)
            let data = load(files, &o)?;
            let arch = o.arch()?.unwrap_or_default();
            let seed = o.get("seed")?.unwrap_or(model::DEFAULT_SEED);
            let e = study::forward_only(&device, &data, &arch, seed, out).await?;
            Ok(serde_json::to_string(&e)?)
        }
        "train" => {
            open(o.kernels()?).await?;
            let data = load(files, &o)?;
            let d = TrainOptions::default();
            let opts = TrainOptions {
                arch: o.arch()?,
                epochs: o.get("epochs")?.unwrap_or(d.epochs),
                batch_size: o.get("batch-size")?.unwrap_or(d.batch_size),
                lr: o.get("lr")?.unwrap_or(d.lr),
                momentum: o.get("momentum")?.unwrap_or(d.momentum),
                seed: o.get("seed")?.unwrap_or(d.seed),
                train_limit: o.get("train-limit")?,
                out_dir: out.into(),
                ..d
            };
            if opts.epochs == 0 || opts.batch_size == 0 || opts.train_limit == Some(0) {
                bail!("epochs, batch-size and train-limit must be at least 1");
            }
            let run = study::train(&device, &data, &opts, &mut PageProgress::default()).await?;
            Ok(serde_json::to_string(&StudyReport::new(run))?)
        }
        "check" => {
            let gpu = open(o.kernels()?).await?;
            let opts = CheckOptions { quick: o.flag("quick")?, arch: o.arch()?, ..Default::default() };
            log::info!("check: {} ({} kernels)", gpu.adapter.line(), gpu.caps.describe());
            let report = check::run(gpu, opts).await;
            log::info!("{}", check::table(&report));
            Ok(serde_json::to_string(&[report])?)
        }
        "bench" => {
            open(o.kernels()?).await?;
            let data = load(files, &o)?;
            let cfg = BenchConfig {
                batch_sizes: vec![o.get("batch-size")?.unwrap_or(study::DEFAULT_BATCH_SIZE)],
                steps: None,
                min_seconds: o.get("min-seconds")?.unwrap_or(1.0),
                repeats: o.get("repeats")?.unwrap_or(3),
                command: format!("web ?run=bench {options}"),
                check: !o.flag("no-check")?,
                arch: study::arch_for_data(o.arch()?.as_ref(), &data)?,
            };
            let results = bench::run(&Adapters::One(AdapterSelection::default()), o.kernels()?, &data, &cfg).await?;
            log::info!("\n{}", bench::table(&results));
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

impl study::Progress for PageProgress {
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
        true
    }
    fn epoch_report(&mut self, report: &EpochReport) {
        emit("epoch", &serde_json::to_string(report).unwrap_or_default(), None);
    }
    fn live_pictures(&self) -> bool {
        true
    }
}
