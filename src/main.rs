//! `gpu-cnn`: the command line. It parses arguments (`cli`), calls the library (`run`, `check`, `measure`) and
//! prints: human output on stderr, the result on stdout (`--json`: as JSON). The library is async (for the browser); every call
//! here runs it to the end with `pollster::block_on`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use clap::Parser;
use log::info;
use pollster::block_on;

use gpu_cnn::checkpoint::{self, Checkpoint};
use gpu_cnn::engine::Metrics;
use gpu_cnn::gpu::{self, AdapterSummary, Gpu};
use gpu_cnn::measure::{bench, peak, tables};
use gpu_cnn::model::{self, Arch};
use gpu_cnn::run::{self, TrainError};
use gpu_cnn::{check, data, viz};

mod cli;

use cli::{BenchArgs, Cli, Command, TrainArgs};

/// Set by Ctrl-C (SIGINT) during training; the training loop checks it between chunks of steps.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// True while epochs run: the time a Ctrl-C should end gracefully (finish the steps in flight, save) rather than at once.
static TRAINING: AtomicBool = AtomicBool::new(false);

fn on_ctrl_c() {
    if TRAINING.load(Ordering::SeqCst) && !INTERRUPTED.swap(true, Ordering::SeqCst) {
        eprintln!("\ninterrupt: finishing the steps in flight (Ctrl-C again to quit at once)");
    } else {
        eprintln!("\ninterrupted");
        std::process::exit(130);
    }
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`gpu-cnn completions bash | head`) would panic; restore
    // the default a Unix tool has: the process ends quietly.
    #[cfg(unix)]
    // SAFETY: called first, before any thread starts; SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    init_logging(cli.quiet, cli.verbose);
    // Installed first, so a Ctrl-C at any point is seen by the training loop rather than killing a half-written save.
    let _ = ctrlc::set_handler(on_ctrl_c);
    let json = cli.command.json();
    let result = run_command(cli.command);
    if let (true, Err(e)) = (json, &result) {
        // `--json`: a failure is JSON on stdout too, as the page gives it (the exit code stays the error's).
        println!("{}", serde_json::json!({ "error": one_line(e) }));
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // After Ctrl-C (the steps in flight finished, the checkpoint and pictures written): 128 + SIGINT, as shells
        // expect of an interrupted command.
        Err(e) if e.chain().any(|c| matches!(c.downcast_ref::<TrainError>(), Some(TrainError::Interrupted { .. }))) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The logger: gpu-cnn's own messages as plain lines on stderr ("warning: ", "error: " before the worse ones), other
/// crates' (wgpu's, naga's) with their level and origin. `RUST_LOG` chooses what shows unless -q or -v is given.
fn init_logging(quiet: bool, verbose: u8) {
    use std::io::Write;
    let default = match (quiet, verbose) {
        (true, _) => "error,gpu_cnn=warn",
        (false, 0) => "warn,gpu_cnn=info",
        (false, 1) => "info,gpu_cnn=debug",
        _ => "debug,gpu_cnn=trace",
    };
    let spec =
        if quiet || verbose > 0 { default.to_string() } else { std::env::var("RUST_LOG").unwrap_or(default.into()) };
    env_logger::Builder::new()
        .parse_filters(&spec)
        .format(|buf, r| {
            let ours = r.target().starts_with("gpu_cnn");
            match (ours, r.level()) {
                (true, log::Level::Info) => writeln!(buf, "{}", r.args()),
                (true, log::Level::Warn) => writeln!(buf, "warning: {}", r.args()),
                (true, log::Level::Error) => writeln!(buf, "error: {}", r.args()),
                (true, level) => writeln!(buf, "{}: {}", level.as_str().to_lowercase(), r.args()),
                (false, level) => writeln!(buf, "{} [{}] {}", level.as_str().to_lowercase(), r.target(), r.args()),
            }
        })
        .target(env_logger::Target::Stderr)
        .init();
}

/// The error and its causes on one line (`a: b: c`), without repeating a cause already in the message.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}

/// Prints the result: `json` on stdout with `--json` (and the table, for the eye, on stderr), else the table on
/// stdout.
fn print_result(json: Option<String>, table: &str) {
    match json {
        Some(j) => {
            println!("{j}");
            info!("\n{table}");
        }
        None => println!("{table}"),
    }
}

fn run_command(command: Command) -> Result<()> {
    match command {
        Command::Adapters { backend, json } => adapters(backend, json),
        Command::ForwardOnly(a) => {
            let (d, r) = (&a.data, &a.run);
            let data = d.load_data()?;
            let arch = d.arch.clone().unwrap_or_default();
            let e = block_on(run::forward_only(&d.device_choice(), &data, &arch, r.seed, &r.out_dir))?;
            if d.json {
                println!("{}", serde_json::to_string(&e)?);
            }
            Ok(())
        }
        Command::Eval { data: d, checkpoint } => {
            let data = d.load_data()?;
            let e = block_on(run::evaluate_checkpoint(&d.device_choice(), &data, d.arch.as_ref(), &checkpoint))?;
            if d.json {
                println!("{}", serde_json::to_string(&e)?);
            }
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "gpu-cnn",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Train(t) => train(&t, false),
        Command::Compare(t) => train(&t, true),
        Command::SaveLoop { path } => save_loop(&path),
        Command::Bench(b) => bench(&b),
        Command::BenchReport { files, plot, compare } => bench_report(&files, plot.as_deref(), compare.as_deref()),
        Command::Peak { adapter, repeats, json } => {
            let g = block_on(Gpu::open(&adapter.selection()))?;
            info!("peak: {}", g.adapter.line());
            let r = block_on(peak::peak(&g, repeats))?;
            print_result(json.then(|| serde_json::to_string(&r)).transpose()?, &peak::table(std::slice::from_ref(&r)));
            Ok(())
        }
        Command::Check { adapter, all_adapters, all_variants, quick, kernels, arch, json } => {
            let opts = check::CheckOptions { all_variants, quick, arch };
            let each = |r: &check::CheckReport| {
                let table = check::table(r);
                if json {
                    info!("{table}\n");
                } else {
                    println!("{table}\n");
                }
            };
            let reports = block_on(check::run_adapters(
                &adapter.selection(),
                all_adapters,
                kernels.and_then(|k| k.0),
                &opts,
                each,
            ))?;
            if json {
                println!("{}", serde_json::to_string(&reports)?);
            }
            let failed: Vec<String> = reports.iter().filter(|r| !r.passed).map(|r| r.adapter.line()).collect();
            if !failed.is_empty() {
                bail!("check failed on {}", failed.join("; "));
            }
            Ok(())
        }
    }
}

/// `adapters`: every adapter of the selected backends (`--backend`, else `WGPU_BACKEND`), a line each (with `--json`
/// an array of objects, limits and features included). A backend filter that matches nothing is an error.
fn adapters(backend: Option<wgpu::Backends>, json: bool) -> Result<()> {
    let selection = gpu::AdapterSelection { adapter: None, backend };
    let all: Vec<AdapterSummary> =
        block_on(gpu::adapter::enumerate_selected(&selection))?.into_iter().map(|(s, _)| s).collect();
    if json {
        println!("{}", serde_json::to_string(&all)?);
        return Ok(());
    }
    if all.is_empty() {
        info!("no GPU adapter found. On Debian/Ubuntu, `apt-get install mesa-vulkan-drivers` provides a software Vulkan adapter (lavapipe); `--device cpu` runs on the CPU reference.");
    }
    for s in &all {
        println!("{}: {}", s.index, s.line());
        println!("   {}", s.details());
    }
    Ok(())
}

/// The progress bar of each epoch (where messages show: not with -q), and Ctrl-C: while epochs run, a first Ctrl-C
/// stops the run after the steps in flight.
#[derive(Default)]
struct Bar(Option<indicatif::ProgressBar>);

impl run::Progress for Bar {
    fn epoch_started(&mut self, epoch: usize, epochs: usize, steps: usize) {
        TRAINING.store(true, Ordering::SeqCst);
        let target = if log::log_enabled!(log::Level::Info) {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        };
        let bar = indicatif::ProgressBar::with_draw_target(Some(steps as u64), target);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} steps, {msg} ({elapsed}, eta {eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, epochs));
        self.0 = Some(bar);
    }
    fn step(&mut self, done: usize, running: &Metrics) -> bool {
        if let Some(bar) = &self.0 {
            bar.set_position(done as u64);
            bar.set_message(format!("loss {:.4}", running.mean_loss()));
        }
        !INTERRUPTED.load(Ordering::SeqCst)
    }
    fn epoch_ended(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
    fn epochs_finished(&mut self) {
        TRAINING.store(false, Ordering::SeqCst);
    }
}

/// `train` and `compare`: the run, and its report as JSON on stdout with --json.
fn train(t: &TrainArgs, compare: bool) -> Result<()> {
    let (d, out_dir) = (&t.data, &t.run.out_dir);
    let data = d.load_data()?;
    let outcome = block_on(run::train(&d.device_choice(), &data, &t.options(), &mut Bar::default()))?;
    let report = gpu_cnn::report::StudyReport::new(outcome);
    if compare {
        report.write(out_dir).with_context(|| format!("writing the report into {}", out_dir.display()))?;
        info!("report: {}", out_dir.join("report.md").display());
        // The result: the study's table on stdout (with --json, the JSON there and the table on stderr).
        print_result(d.json.then(|| serde_json::to_string(&report)).transpose()?, &format!("\n{}", report.table()));
    } else if d.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

fn bench(b: &BenchArgs) -> Result<()> {
    let data = data::load(&b.data_dir.clone().unwrap_or_else(data::default_data_dir))?;
    let cfg = bench::BenchConfig {
        batch_sizes: if b.batch_sizes.is_empty() { vec![b.batch_size] } else { b.batch_sizes.clone() },
        steps: b.steps,
        min_seconds: b.min_seconds,
        repeats: b.repeats,
        warmup: b.warmup,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        check: !b.no_check,
        arch: run::arch_for_data(Some(&b.arch), &data)?,
    };
    let which = if b.all_adapters {
        bench::Adapters::All { backend: b.adapter.backend }
    } else {
        bench::Adapters::One(b.adapter.selection())
    };
    let results = block_on(bench::run(&which, b.kernels.and_then(|k| k.0), &data, &cfg))?;
    if let Some(p) = &b.out {
        let json = serde_json::to_string_pretty(&results)?;
        gpu_cnn::atomic::write_atomic(p, json.as_bytes())
            .map_err(|e| e.source)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    print_result(b.json.then(|| serde_json::to_string(&results)).transpose()?, &tables::table(&results));
    Ok(())
}

fn bench_report(files: &[PathBuf], plot: Option<&Path>, compare: Option<&[PathBuf]>) -> Result<()> {
    if let Some([old, new]) = compare {
        let pairs = bench::compare_files(old, new)?;
        println!("{}", tables::compare_table(&pairs));
        if let Some(dir) = plot {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            for (i, (o, n)) in pairs.iter().enumerate() {
                let path = dir.join(format!("bench_compare_{i}.png"));
                viz::compare_png(&path, o, n)?;
                info!("wrote {}", path.display());
            }
        }
        if files.is_empty() {
            return Ok(());
        }
    }
    let mut all: Vec<bench::BenchResult> = Vec::new();
    for f in files {
        all.extend(bench::read_results(f)?);
    }
    println!("{}", tables::table(&all));
    if let Some(dir) = plot {
        for p in viz::bench_pictures(dir, &all)? {
            info!("wrote {}", p.display());
        }
    }
    Ok(())
}

/// Saves a fresh checkpoint to `path` in a tight loop (values change every time) until the process is killed: the
/// robustness test kills it at random moments and checks that `path` always loads.
fn save_loop(path: &Path) -> Result<()> {
    let arch = Arch::study();
    let mut params = model::init_params(&arch, 1);
    for i in 0u64.. {
        params[0] = i as f32;
        let mut metadata = std::collections::BTreeMap::new();
        metadata.insert("iteration".to_string(), i.to_string());
        checkpoint::save(path, &Checkpoint { arch: arch.clone(), params: params.clone(), metadata })?;
        if i == 0 {
            eprintln!("saving");
        }
    }
    Ok(())
}
