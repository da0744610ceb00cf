//! A fully connected layer, as PyTorch's `Linear`: `y = x·wᵀ + b`.
//!
//! Shapes: input `x` `[n, inp]`, weight `w` `[out, inp]` (PyTorch's layout: one row per output), bias `b` `[out]`,
//! output `y` `[n, out]`.
//!
//! ```text
//! y[i, o] = b[o] + Σ_j w[o, j] · x[i, j]
//! ```
//!
//! The loops run so that the innermost one walks contiguous memory: a dot product of two rows in the forward pass, a
//! scaled row added to another ("axpy") in both backward passes.

use num_traits::Float;

fn check_shapes(x: usize, w: usize, y: usize, n: usize, inp: usize, out: usize) {
    assert_eq!(x, n * inp, "dense: input length");
    assert_eq!(w, out * inp, "dense: weight length");
    assert_eq!(y, n * out, "dense: output length");
}

/// `y = x·wᵀ + b`; `y` is overwritten. Sums in the order bias, then `j` ascending.
pub fn dense_forward<T: Float>(x: &[T], w: &[T], b: &[T], y: &mut [T], n: usize, inp: usize, out: usize) {
    check_shapes(x.len(), w.len(), y.len(), n, inp, out);
    assert_eq!(b.len(), out, "dense: bias length");
    for i in 0..n {
        let x_row = &x[i * inp..][..inp];
        for o in 0..out {
            let w_row = &w[o * inp..][..inp];
            y[i * out + o] = w_row.iter().zip(x_row).fold(b[o], |acc, (&wv, &xv)| acc + wv * xv);
        }
    }
}

/// The gradient with respect to the input, `dx = dy·w`; `dx` `[n, inp]` is overwritten:
///
/// ```text
/// dx[i, j] = Σ_o dy[i, o] · w[o, j]
/// ```
pub fn dense_backward_input<T: Float>(dy: &[T], w: &[T], dx: &mut [T], n: usize, inp: usize, out: usize) {
    check_shapes(dx.len(), w.len(), dy.len(), n, inp, out);
    for i in 0..n {
        let dx_row = &mut dx[i * inp..][..inp];
        dx_row.fill(T::zero());
        for o in 0..out {
            let g = dy[i * out + o];
            let w_row = &w[o * inp..][..inp];
            for (dxv, &wv) in dx_row.iter_mut().zip(w_row) {
                *dxv = *dxv + g * wv;
            }
        }
    }
}

/// The gradients with respect to the weight and the bias, summed over the batch, `dw = dyᵀ·x` and `db = Σ_i dy[i]`;
/// `dw` `[out, inp]` and `db` `[out]` are overwritten:
///
/// ```text
/// dw[o, j] = Σ_i dy[i, o] · x[i, j]
/// db[o]    = Σ_i dy[i, o]
/// ```
pub fn dense_backward_weight<T: Float>(
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    db: &mut [T],
    n: usize,
    inp: usize,
    out: usize,
) {
    check_shapes(x.len(), dw.len(), dy.len(), n, inp, out);
    assert_eq!(db.len(), out, "dense: bias gradient length");
    for o in 0..out {
        let dw_row = &mut dw[o * inp..][..inp];
        dw_row.fill(T::zero());
        db[o] = T::zero();
        for i in 0..n {
            let g = dy[i * out + o];
            let x_row = &x[i * inp..][..inp];
            for (dwv, &xv) in dw_row.iter_mut().zip(x_row) {
                *dwv = *dwv + g * xv;
            }
            db[o] = db[o] + g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `w` `[out = 3, inp = 2]`.
    const W: [f64; 6] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];

    #[test]
    fn forward_by_hand() {
        // Two samples: [1, 2] and [−1, 0].
        let mut y = [f64::NAN; 6];
        dense_forward(&[1.0, 2.0, -1.0, 0.0], &W, &[0.5, 0.0, -1.0], &mut y, 2, 2, 3);
        assert_eq!(y, [5.5, 11.0, 16.0, -0.5, -3.0, -6.0]);
    }

    #[test]
    fn backward_input_is_dy_times_w() {
        let mut dx = [f64::NAN; 4];
        dense_backward_input(&[1.0, 0.0, -1.0, 0.0, 2.0, 0.0], &W, &mut dx, 2, 2, 3);
        // Sample 0: [1 − 5, 2 − 6]; sample 1: 2·[3, 4].
        assert_eq!(dx, [-4.0, -4.0, 6.0, 8.0]);
    }

    #[test]
    fn backward_weight_sums_outer_products_over_the_batch() {
        let (mut dw, mut db) = ([f64::NAN; 6], [f64::NAN; 3]);
        let x = [1.0, 2.0, -1.0, 0.0];
        let dy = [1.0, 0.0, -1.0, 0.0, 2.0, 3.0];
        dense_backward_weight(&x, &dy, &mut dw, &mut db, 2, 2, 3);
        // dw[o] = dy[0, o]·[1, 2] + dy[1, o]·[−1, 0].
        assert_eq!(dw, [1.0, 2.0, -2.0, 0.0, -4.0, -2.0]);
        assert_eq!(db, [1.0, 2.0, 2.0]);
    }
}
