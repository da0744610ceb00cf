//! Wall-clock time of each training-step op on the default adapter (a developer tool; `gpu-cnn bench` is the product).
fn main() -> anyhow::Result<()> {
    let data = gpu_cnn::data::load(&gpu_cnn::data::default_data_dir())?;
    let train = data.train.take(6400);
    let gpu = gpu_cnn::gpu::Gpu::open(&Default::default())?;
    eprintln!("{}", gpu.adapter.line());
    let batch: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(64);
    let mut net =
        gpu_cnn::gpu::network::GpuNetwork::new(gpu, batch, Some(&train), &data.test, &gpu_cnn::model::init_params(1))?;
    let ops = net.profile_ops(20)?;
    let total: f64 = ops.iter().map(|o| o.1).sum();
    for (name, s) in &ops {
        println!("{:>9.3} ms  {:5.1} %  {name}", s * 1e3, 100.0 * s / total);
    }
    println!("{:>9.3} ms per step = {:.0} images/s", total * 1e3, batch as f64 / total);
    Ok(())
}
