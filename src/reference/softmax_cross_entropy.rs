//! Softmax followed by cross-entropy with integer labels, as PyTorch's `CrossEntropyLoss` (mean over the batch).
//!
//! Shapes: `logits` `[n, k]`, `labels` `[n]` (each `< k`), per-sample `losses` `[n]`, `dlogits` `[n, k]`.
//!
//! Numerically stable: with `m = max_c z[c]` for a row `z`,
//!
//! ```text
//! loss      = log Σ_c exp(z[c] − m) + m − z[label]              (= −log softmax(z)[label])
//! dlogits   = (softmax(z) − onehot(label)) / n                  (the gradient of the MEAN loss)
//! ```
//!
//! with `softmax(z)[c] = exp(z[c] − m) / Σ_c' exp(z[c'] − m)`. The `1/n` of the mean enters here and nowhere else: every
//! gradient upstream is then the gradient of the mean loss.

use num_traits::Float;

fn check_shapes(logits: usize, labels: &[u8], n: usize, k: usize) {
    assert_eq!(logits, n * k, "softmax_cross_entropy: logits length");
    assert_eq!(labels.len(), n, "softmax_cross_entropy: labels length");
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= k) {
        panic!("softmax_cross_entropy: label {bad} out of range for {k} classes");
    }
}

/// The row's maximum `m` and `Σ_c exp(z[c] − m)`.
fn max_and_sum_exp<T: Float>(row: &[T]) -> (T, T) {
    let m = row.iter().fold(T::neg_infinity(), |m, &z| m.max(z));
    let sum = row.iter().fold(T::zero(), |s, &z| s + (z - m).exp());
    (m, sum)
}

/// Per-sample loss `−log softmax(logits[i])[labels[i]]`; `losses` `[n]` is overwritten.
pub fn softmax_cross_entropy_forward<T: Float>(logits: &[T], labels: &[u8], losses: &mut [T], n: usize, k: usize) {
    check_shapes(logits.len(), labels, n, k);
    assert_eq!(losses.len(), n, "softmax_cross_entropy: losses length");
    for i in 0..n {
        let row = &logits[i * k..][..k];
        let (m, sum) = max_and_sum_exp(row);
        losses[i] = sum.ln() + m - row[labels[i] as usize];
    }
}

/// The gradient of the mean loss with respect to the logits, `(softmax − onehot) / n`; `dlogits` `[n, k]` is overwritten.
pub fn softmax_cross_entropy_backward<T: Float>(logits: &[T], labels: &[u8], dlogits: &mut [T], n: usize, k: usize) {
    check_shapes(logits.len(), labels, n, k);
    assert_eq!(dlogits.len(), n * k, "softmax_cross_entropy: dlogits length");
    let n_t = T::from(n).expect("n fits in T");
    for i in 0..n {
        let row = &logits[i * k..][..k];
        let (m, sum) = max_and_sum_exp(row);
        for c in 0..k {
            let p = (row[c] - m).exp() / sum;
            let onehot = if c == labels[i] as usize { T::one() } else { T::zero() };
            dlogits[i * k + c] = (p - onehot) / n_t;
        }
    }
}

/// The index of the row's largest value; the first maximum wins (used for accuracy).
pub fn argmax<T: Float>(row: &[T]) -> usize {
    assert!(!row.is_empty(), "argmax of an empty row");
    let mut best = 0;
    for (c, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = c;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Agreement to 1e-12: `1000 + ln 3` itself is only stored to about 1e-13.
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn equal_logits_cost_ln_k() {
        let mut losses = [f64::NAN; 2];
        softmax_cross_entropy_forward(&[0.3; 20], &[0, 9], &mut losses, 2, 10);
        assert!(losses.iter().all(|&l| close(l, 10f64.ln())), "{losses:?}");
        // softmax = 1/10 everywhere; gradient of the mean over n = 2: (0.1 − onehot) / 2.
        let mut d = [f64::NAN; 20];
        softmax_cross_entropy_backward(&[0.3; 20], &[0, 9], &mut d, 2, 10);
        for (idx, &v) in d.iter().enumerate() {
            let expected = if idx == 0 || idx == 19 { -0.45 } else { 0.05 };
            assert!(close(v, expected), "dlogits[{idx}] = {v}");
        }
    }

    #[test]
    fn two_classes_by_hand_and_stable_for_huge_logits() {
        // z = [0, ln 3] → softmax [1/4, 3/4]: label 0 costs ln 4, label 1 costs ln(4/3). Shifting by 1000 changes nothing.
        for shift in [0.0, 1000.0, -1000.0] {
            let z = [shift, shift + 3f64.ln(), shift, shift + 3f64.ln()];
            let mut losses = [f64::NAN; 2];
            softmax_cross_entropy_forward(&z, &[0, 1], &mut losses, 2, 2);
            assert!(close(losses[0], 4f64.ln()) && close(losses[1], (4.0f64 / 3.0).ln()), "{shift}: {losses:?}");
            let mut d = [f64::NAN; 4];
            softmax_cross_entropy_backward(&z, &[0, 1], &mut d, 2, 2);
            let expected = [(0.25 - 1.0) / 2.0, 0.75 / 2.0, 0.25 / 2.0, (0.75 - 1.0) / 2.0];
            assert!(d.iter().zip(expected).all(|(&a, b)| close(a, b)), "{shift}: {d:?}");
        }
    }

    #[test]
    fn argmax_first_maximum_wins() {
        assert_eq!(argmax(&[1.0f32, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[2.0f32, 2.0]), 0);
        assert_eq!(argmax(&[-5.0f32]), 0);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn labels_must_be_classes() {
        let mut losses = [0.0f32; 1];
        softmax_cross_entropy_forward(&[0.0f32; 10], &[10], &mut losses, 1, 10);
    }
}
