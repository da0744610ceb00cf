//! softmax_cross_entropy's kernels against `reference::softmax_cross_entropy`: the running metrics, each step's loss,
//! the predictions and (backward) the gradient of the mean loss.

use super::harness::{random, random_labels, to_f64, Harness};
use super::{compare, compare_exact, entry, Rows};
use crate::gpu::ops::softmax_cross_entropy::{self, StatsLayout};
use crate::reference as r;

pub async fn softmax_cross_entropy(t: &Harness, quick: bool, rows: &mut Rows) {
    let k_classes = 10;
    let batches: &[usize] = if quick { &[64] } else { &[1, 3, 64, 300] };
    for (case, &n) in batches.iter().enumerate() {
        let seed = 1000 + case as u64;
        let logits = random(n * k_classes, -4.0, 4.0, seed);
        let labels = random_labels(n, k_classes as u32, seed + 1);
        let mut losses = vec![0.0f64; n];
        r::softmax_cross_entropy_forward(&to_f64(&logits), &labels, &mut losses, n, k_classes);
        let mut dlogits = vec![0.0f64; n * k_classes];
        r::softmax_cross_entropy_backward(&to_f64(&logits), &labels, &mut dlogits, n, k_classes);
        let preds: Vec<u32> = logits.chunks(k_classes).map(|r| r::argmax(r) as u32).collect();
        let correct = preds.iter().zip(&labels).filter(|(p, l)| **p == **l as u32).count();
        let loss_sum: f64 = losses.iter().sum();
        let layout = StatsLayout::new(4);
        let start = 5u32; // predictions land at start + b
        for backward in [true, false] {
            let op = softmax_cross_entropy::loss(backward, k_classes, layout, "logits", "y", "dlogits");
            let kernel = entry(&op);
            let lb = t.buffer_u32(&labels.iter().map(|&l| l as u32).collect::<Vec<_>>());
            let (xb, db) = (t.buffer_f32(&logits), t.poisoned(n * k_classes));
            // The metrics are running totals the kernel adds to; the rest of the stats poisoned.
            let mut stats = vec![u32::MAX; layout.words(n + start as usize)];
            stats[..4].copy_from_slice(&[1.5f32.to_bits(), 2.0f32.to_bits(), 3.0f32.to_bits(), 0]);
            let sb = t.buffer_u32(&stats);
            t.set_step(start, n as u32, 2, false);
            t.run(&op, n, &[("logits", &xb), ("y", &lb), ("dlogits", &db), ("stats", &sb)]).await;
            let got = t.read_u32(&sb, stats.len()).await;
            let f = |i: usize| f32::from_bits(got[i]);
            let what = format!("n={n}");
            // The running totals: loss within 1e-6 relative, counts exact.
            let loss_tol = 1e-6 * loss_sum.abs() + 1e-5;
            let c = compare(&format!("{what} loss sum"), &[f(0) - 1.5], &[loss_sum], &|_| loss_tol, 0.0);
            rows.add(kernel, "both", c);
            let counts = [f(1), f(2)];
            let want_counts = [(2 + correct) as f32, (3 + n) as f32];
            rows.add(kernel, "both", compare_exact(&format!("{what} correct and count"), &counts, &want_counts));
            let step_loss = f(layout.losses + 2);
            let c = compare(&format!("{what} step loss"), &[step_loss], &[loss_sum / n as f64], &|_| 1e-5, 0.0);
            rows.add(kernel, "both", c);
            let first = layout.preds + start as usize;
            let mut c = compare_exact(&format!("{what} predictions"), &[], &[]);
            if got[first..first + n] != preds[..] {
                c.failure = Some(format!("{what}: predictions differ from the reference's argmax"));
            } else if got[layout.preds..first].iter().any(|&v| v != u32::MAX) {
                c.failure = Some(format!("{what}: wrote predictions before `start`"));
            }
            rows.add(kernel, "both", c);
            let grad = t.read(&db, n * k_classes).await;
            if backward {
                // Each gradient element is (softmax − onehot)/n: a ratio of exp sums, rtol a few ulps of 1/n.
                rows.add(
                    kernel,
                    "both",
                    compare(&format!("{what} dlogits"), &grad, &dlogits, &|_| 4e-7 / n as f64, 1e-5),
                );
            } else {
                let mut c = compare_exact(&format!("{what} dlogits untouched"), &[], &[]);
                if grad.iter().any(|v| !v.is_nan()) {
                    c.failure = Some(format!("{kernel} must not write dlogits"));
                }
                rows.add(kernel, "both", c);
            }
        }
    }
}
