//! ReLU, elementwise: `y = max(x, 0)`.
//!
//! The backward pass reads the ReLU's OUTPUT `y` (as the GPU does, so the pre-activation need not be kept): the
//! gradient passes where `y > 0` and is zero elsewhere, including at `x = 0` (PyTorch's choice of subgradient).
//! Both kernels are checked exactly against this file.

use num_traits::Float;

/// `y = x` where `x > 0`, else `0`; `y` is overwritten.
pub fn relu_forward<T: Float>(x: &[T], y: &mut [T]) {
    assert_eq!(x.len(), y.len(), "relu: output length");
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv = if xv > T::zero() { xv } else { T::zero() };
    }
}

/// `dx = dy` where `y > 0`, else `0`, with `y` the ReLU's output; `dx` is overwritten.
pub fn relu_backward<T: Float>(y: &[T], dy: &[T], dx: &mut [T]) {
    assert_eq!(y.len(), dy.len(), "relu: output gradient length");
    assert_eq!(y.len(), dx.len(), "relu: input gradient length");
    for ((dxv, &yv), &dyv) in dx.iter_mut().zip(y).zip(dy) {
        *dxv = if yv > T::zero() { dyv } else { T::zero() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_clamps_negatives_to_zero() {
        let mut y = [f32::NAN; 5];
        relu_forward(&[-2.0, -0.0, 0.0, 0.5, 3.0], &mut y);
        assert_eq!(y, [0.0, 0.0, 0.0, 0.5, 3.0]);
    }

    #[test]
    fn backward_passes_the_gradient_only_where_the_output_is_positive() {
        let mut dx = [f32::NAN; 4];
        relu_backward(&[0.0, 0.5, 0.0, 3.0], &[1.0, 2.0, 3.0, -4.0], &mut dx);
        assert_eq!(dx, [0.0, 2.0, 0.0, -4.0]);
    }
}
