//! The fused classifier head (the tiled family's, where the device takes it) against the reference's ops composed.

use super::harness::{abs, random, random_labels, to_f64, Harness};
use super::pool::relu_output;
use super::{compare, compare_exact, entry, Rows, EPS32, RTOL};
use crate::gpu::ops::classifier_head;
use crate::gpu::ops::dense::Dense;
use crate::gpu::ops::softmax_cross_entropy::StatsLayout;
use crate::gpu::Caps;
use crate::reference as r;

/// The fused classifier head (tiled family, where the device takes it) against the reference's dense forward, softmax
/// cross-entropy, dense weight and input gradients and ReLU backward, composed: the metrics, predictions, the
/// gradients of the layer and of its input. Batches of one, of one chunk, across chunks (the kernel walks the batch
/// in chunks of 64) and an awkward layer.
pub async fn classifier_head(t: &Harness, variants: &[Caps], quick: bool, rows: &mut Rows) {
    let shapes: &[(usize, usize, usize)] =
        if quick { &[(64, 128, 10)] } else { &[(1, 128, 10), (64, 128, 10), (300, 128, 10), (70, 37, 7)] };
    for (case, &(n, inp, out)) in shapes.iter().enumerate() {
        let seed = 1200 + case as u64;
        let h = relu_output(n * inp, seed);
        let (w_off, b_off) = (3, 5 + out * inp);
        let params = random(b_off + out + 2, -0.3, 0.3, seed + 1);
        let labels = random_labels(n, out as u32, seed + 2);
        let (w, b) = (to_f64(&params[w_off..w_off + out * inp]), to_f64(&params[b_off..b_off + out]));
        let mut logits = vec![0.0f64; n * out];
        r::dense_forward(&to_f64(&h), &w, &b, &mut logits, n, inp, out);
        let mut losses = vec![0.0f64; n];
        r::softmax_cross_entropy_forward(&logits, &labels, &mut losses, n, out);
        let mut dz = vec![0.0f64; n * out];
        r::softmax_cross_entropy_backward(&logits, &labels, &mut dz, n, out);
        let (mut dw, mut db) = (vec![0.0f64; out * inp], vec![0.0f64; out]);
        r::dense_backward_weight(&to_f64(&h), &dz, &mut dw, &mut db, n, inp, out);
        let mut dh_pre = vec![0.0f64; n * inp];
        r::dense_backward_input(&dz, &w, &mut dh_pre, n, inp, out);
        let mut dh = vec![0.0f64; n * inp];
        r::relu_backward(&to_f64(&h), &dh_pre, &mut dh);
        // Bounds from sums of |terms|, with room for dz's own rounding (a few ulps of each element).
        let dz_abs: Vec<f32> = dz.iter().map(|v| v.abs() as f32).collect();
        let (mut dw_abs, mut db_abs) = (vec![0.0f64; out * inp], vec![0.0f64; out]);
        r::dense_backward_weight(&abs(&h), &to_f64(&dz_abs), &mut dw_abs, &mut db_abs, n, inp, out);
        let mut dh_abs = vec![0.0f64; n * inp];
        r::dense_backward_input(
            &to_f64(&dz_abs),
            &w.iter().map(|v| v.abs()).collect::<Vec<_>>(),
            &mut dh_abs,
            n,
            inp,
            out,
        );
        let tol = |sum_abs: &[f64], k: usize| {
            let sum_abs = sum_abs.to_vec();
            move |i: usize| (4.0 * (k as f64).sqrt() + 16.0) * EPS32 * sum_abs[i] + 1e-30
        };
        let preds: Vec<u32> = logits.chunks(out).map(|r| r::argmax(r) as u32).collect();
        let correct = preds.iter().zip(&labels).filter(|(p, l)| **p == **l as u32).count();
        let loss_sum: f64 = losses.iter().sum();
        let layout = StatsLayout::new(4);
        let start = 5u32;
        for caps in variants.iter().filter(|c| c.head) {
            let s = Dense { inp, out, w_off, b_off };
            let op = classifier_head::train(&s, layout, "h", "y", "dh");
            let (k, v) = (entry(&op), caps.describe());
            let (hb, pb) = (t.buffer_f32(&h), t.buffer_f32(&params));
            let lb = t.buffer_u32(&labels.iter().map(|&l| l as u32).collect::<Vec<_>>());
            let (gb, dhb) = (t.poisoned(params.len()), t.poisoned(n * inp));
            let mut stats = vec![u32::MAX; layout.words(n + start as usize)];
            stats[..4].copy_from_slice(&[1.5f32.to_bits(), 2.0f32.to_bits(), 3.0f32.to_bits(), 0]);
            let sb = t.buffer_u32(&stats);
            t.set_step(start, n as u32, 2, false);
            let bufs = [("h", &hb), ("params", &pb), ("y", &lb), ("grads", &gb), ("dh", &dhb), ("stats", &sb)];
            t.run(&op, n, &bufs).await;
            let what = format!("n={n} in={inp} out={out}");
            let got = t.read_u32(&sb, stats.len()).await;
            let f = |i: usize| f32::from_bits(got[i]);
            let loss_tol = 1e-6 * loss_sum.abs() + 1e-5;
            rows.add(k, &v, compare(&format!("{what} loss sum"), &[f(0) - 1.5], &[loss_sum], &|_| loss_tol, 0.0));
            let want_counts = [(2 + correct) as f32, (3 + n) as f32];
            rows.add(k, &v, compare_exact(&format!("{what} correct and count"), &[f(1), f(2)], &want_counts));
            let step_loss = [f(layout.losses + 2)];
            rows.add(k, &v, compare(&format!("{what} step loss"), &step_loss, &[loss_sum / n as f64], &|_| 1e-5, 0.0));
            let first = layout.preds + start as usize;
            let mut c = compare_exact(&format!("{what} predictions"), &[], &[]);
            if got[first..first + n] != preds[..] {
                c.failure = Some(format!("{what}: predictions differ from the reference's argmax"));
            }
            rows.add(k, &v, c);
            let grads = t.read(&gb, params.len()).await;
            let gw = &grads[w_off..w_off + out * inp];
            rows.add(k, &v, compare(&format!("{what} dw"), gw, &dw, &tol(&dw_abs, n), RTOL));
            let gbias = &grads[b_off..b_off + out];
            rows.add(k, &v, compare(&format!("{what} db"), gbias, &db, &tol(&db_abs, n), RTOL));
            let mut c = compare_exact(&what, &[], &[]);
            let outside = grads[..w_off].iter().chain(&grads[w_off + out * inp..b_off]).chain(&grads[b_off + out..]);
            if outside.clone().any(|v| !v.is_nan()) {
                c.failure = Some(format!("{what}: wrote outside its gradients"));
            }
            rows.add(k, &v, c);
            let got_dh = t.read(&dhb, n * inp).await;
            rows.add(k, &v, compare(&format!("{what} dh"), &got_dh, &dh, &tol(&dh_abs, out), RTOL));
        }
    }
}
