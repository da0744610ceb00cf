//! gpu-cnn as a library: train the study's network for one epoch on the best adapter (or the CPU reference when
//! there is none), saving the weights as PyTorch's `load_state_dict` takes them, and the pictures.
//!
//!     cargo run --release --example train [-- EPOCHS]

use gpu_cnn::run::{self, DeviceChoice, TrainOptions};
use pollster::FutureExt;

fn main() -> anyhow::Result<()> {
    let epochs = std::env::args().nth(1).map_or(Ok(1), |s| s.parse())?;
    let data = run::load_data(None)?; // data/mnist, or GPU_CNN_DATA
    let opts = TrainOptions {
        epochs,
        out_dir: "outputs/example".into(), // pictures, steps.csv, epochs.jsonl
        save: Some("outputs/example/model.safetensors".into()), // and model.momentum.safetensors beside it
        ..Default::default()
    };
    let outcome = run::train(&DeviceChoice::default(), &data, &opts, &mut ()).block_on()?;

    println!("device: {}", outcome.adapter.line());
    for e in &outcome.epochs {
        println!("epoch {}: train loss {:.4}, test accuracy {:.2} %", e.epoch, e.train_loss, 100.0 * e.test_accuracy);
    }
    println!(
        "random weights {:.2} % -> trained {:.2} %",
        100.0 * outcome.forward_only_test_accuracy,
        100.0 * outcome.test_accuracy
    );
    Ok(())
}
