//! Stochastic gradient descent with momentum, PyTorch's `torch.optim.SGD(lr, momentum)` (no dampening, no Nesterov, no
//! weight decay):
//!
//! ```text
//! v ← μ·v + g
//! w ← w − lr·v
//! ```
//!
//! One call updates the whole flat parameter vector (the GPU does the same in one kernel over one buffer). With `v`
//! starting at zero, the first step is plain SGD, as in PyTorch.

use num_traits::Float;

/// One step over all parameters: updates the weights `w` and the momentum buffer `v` in place from the gradient `g`.
pub fn sgd_step<T: Float>(w: &mut [T], g: &[T], v: &mut [T], lr: T, momentum: T) {
    assert_eq!(w.len(), g.len(), "sgd: gradient length");
    assert_eq!(w.len(), v.len(), "sgd: momentum length");
    for ((wv, &gv), vv) in w.iter_mut().zip(g).zip(v.iter_mut()) {
        *vv = momentum * *vv + gv;
        *wv = *wv - lr * *vv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_steps_by_hand() {
        let (mut w, mut v) = ([1.0f64, -2.0], [0.0f64, 0.0]);
        // Step 1: v = 0.9·0 + g = g; w = w − 0.1·g.
        sgd_step(&mut w, &[0.5, -1.0], &mut v, 0.1, 0.9);
        assert_eq!(v, [0.5, -1.0]);
        assert!((w[0] - 0.95).abs() < 1e-15 && (w[1] + 1.9).abs() < 1e-15, "{w:?}");
        // Step 2: v = 0.9·0.5 + 0.5 = 0.95 and 0.9·(−1) + 2 = 1.1; w = 0.95 − 0.095 = 0.855 and −1.9 − 0.11 = −2.01.
        sgd_step(&mut w, &[0.5, 2.0], &mut v, 0.1, 0.9);
        assert!((v[0] - 0.95).abs() < 1e-15 && (v[1] - 1.1).abs() < 1e-15, "{v:?}");
        assert!((w[0] - 0.855).abs() < 1e-15 && (w[1] + 2.01).abs() < 1e-15, "{w:?}");
    }

    #[test]
    fn zero_momentum_is_plain_sgd() {
        let (mut w, mut v) = ([3.0f32], [7.0f32]);
        sgd_step(&mut w, &[2.0], &mut v, 0.5, 0.0);
        assert_eq!((w, v), ([2.0], [2.0]));
    }
}
