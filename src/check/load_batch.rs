//! load_batch against the data's own pixels, normalized as `model::Normalization` does.

use super::harness::Harness;
use super::{compare, compare_exact, Rows};
use crate::gpu::ops::load_batch;
use crate::model::{ImageShape, Normalization};

pub async fn load_batch(t: &Harness, rows: &mut Rows) {
    let count = 37;
    // MNIST's images and normalization, and a three-channel shape whose byte counts are not multiples of 4.
    let odd = ImageShape { channels: 3, height: 5, width: 7 };
    for (shape, norm) in [(ImageShape::MNIST, Normalization::MNIST), (odd, Normalization { mean: 0.2, std: 0.7 })] {
        let px = shape.pixels();
        let images: Vec<u8> = (0..count * px).map(|i| ((i * 7919 + 13) % 256) as u8).collect();
        let labels: Vec<u8> = (0..count).map(|i| (i * 3 % 10) as u8).collect();
        let order: Vec<u32> = (0..count as u32).rev().collect();
        let data: Vec<u8> = images.iter().chain(&labels).copied().collect();
        let db = t.gpu.storage_init("data", &crate::gpu::device::pack_u8(&data)).expect("a check buffer");
        let ob = t.buffer_u32(&order);
        let op = load_batch::load(count, px, norm, "data", "order", "x", "y");
        for (start, n) in [(0usize, 1usize), (3, 5), (30, 7)] {
            let (xb, yb) = (t.poisoned(n * px), t.buffer_u32(&vec![u32::MAX; n]));
            t.set_step(start as u32, n as u32, 0, false);
            t.run(&op, n, &[("data", &db), ("order", &ob), ("x", &xb), ("y", &yb)]).await;
            let mut want_x = Vec::new();
            let mut want_y = Vec::new();
            for b in 0..n {
                let s = order[start + b] as usize;
                want_x.extend(images[s * px..(s + 1) * px].iter().map(|&p| norm.apply(p) as f64));
                want_y.push(labels[s] as f32);
            }
            let what = format!("{shape} start={start} n={n}");
            // Two f32 operations (a division by 255 and by the std): within a few ulps.
            let x = compare(&format!("{what} x"), &t.read(&xb, n * px).await, &want_x, &|_| 1e-6, 1e-6);
            rows.add("load_batch", "both", x);
            let got_y: Vec<f32> = t.read_u32(&yb, n).await.iter().map(|&v| v as f32).collect();
            rows.add("load_batch", "both", compare_exact(&format!("{what} labels"), &got_y, &want_y));
        }
    }
}
