//! 2-D convolution, 3×3 kernel, padding 1, stride 1 (so the output is as large as the input), as PyTorch's `Conv2d`.
//!
//! Shapes: input `x` `[n, cin, h, wd]`, weight `w` `[cout, cin, 3, 3]`, bias `b` `[cout]`, output `y` `[n, cout, h, wd]`.
//! Padding is zeros: a tap that falls outside the image contributes nothing, so the loops below simply skip it.
//!
//! ```text
//! y[i, co, oy, ox] = b[co] + Σ_ci Σ_ky Σ_kx w[co, ci, ky, kx] · x[i, ci, oy + ky − 1, ox + kx − 1]
//! ```
//!
//! The kernels: `conv2d_forward` (no ReLU; that is `relu_forward`), `conv2d_backward_input` (the gradient with respect to
//! `x`, a "full" correlation with the flipped kernel) and `conv2d_backward_weight` (gradients of `w` and `b`, summed over
//! the batch).

use num_traits::Float;
use std::ops::Range;

/// Kernel side (3×3).
const K: usize = 3;

/// For kernel tap `k` (0..3) along an axis of length `len`, with padding 1: the output positions `o` whose input position
/// `o + k − 1` is inside the image, and those input positions. Taps that would read the zero padding are left out.
fn tap_ranges(k: usize, len: usize) -> (Range<usize>, Range<usize>) {
    let out = (1usize.saturating_sub(k))..(len + 1 - k).min(len);
    let inp = (out.start + k - 1)..(out.end + k - 1);
    (out, inp)
}

#[allow(clippy::too_many_arguments)]
fn check_shapes(x: usize, w: usize, y: usize, n: usize, cin: usize, cout: usize, h: usize, wd: usize) {
    assert_eq!(x, n * cin * h * wd, "conv2d: input length");
    assert_eq!(w, cout * cin * K * K, "conv2d: weight length");
    assert_eq!(y, n * cout * h * wd, "conv2d: output length");
}

/// `y = conv(x, w) + b`; `y` is overwritten. Sums in the order bias, then `ci`, `ky`, `kx`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward<T: Float>(
    x: &[T],
    w: &[T],
    b: &[T],
    y: &mut [T],
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    wd: usize,
) {
    check_shapes(x.len(), w.len(), y.len(), n, cin, cout, h, wd);
    assert_eq!(b.len(), cout, "conv2d: bias length");
    let plane = h * wd;
    for i in 0..n {
        for co in 0..cout {
            let y_plane = &mut y[(i * cout + co) * plane..][..plane];
            y_plane.fill(b[co]);
            for ci in 0..cin {
                let x_plane = &x[(i * cin + ci) * plane..][..plane];
                for ky in 0..K {
                    let (oys, iys) = tap_ranges(ky, h);
                    for kx in 0..K {
                        let (oxs, ixs) = tap_ranges(kx, wd);
                        let wv = w[((co * cin + ci) * K + ky) * K + kx];
                        for (oy, iy) in oys.clone().zip(iys.clone()) {
                            let y_row = &mut y_plane[oy * wd..][oxs.clone()];
                            let x_row = &x_plane[iy * wd..][ixs.clone()];
                            for (yv, &xv) in y_row.iter_mut().zip(x_row) {
                                *yv = *yv + wv * xv;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The gradient with respect to the input, given `dy` `[n, cout, h, wd]`; `dx` `[n, cin, h, wd]` is overwritten:
///
/// ```text
/// dx[i, ci, iy, ix] = Σ_co Σ_ky Σ_kx w[co, ci, ky, kx] · dy[i, co, iy − ky + 1, ix − kx + 1]
/// ```
///
/// (terms whose `dy` position is outside the image are zero). Sums in the order `co`, `ky`, `kx`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward_input<T: Float>(
    dy: &[T],
    w: &[T],
    dx: &mut [T],
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    wd: usize,
) {
    check_shapes(dx.len(), w.len(), dy.len(), n, cin, cout, h, wd);
    let plane = h * wd;
    for i in 0..n {
        for ci in 0..cin {
            let dx_plane = &mut dx[(i * cin + ci) * plane..][..plane];
            dx_plane.fill(T::zero());
            for co in 0..cout {
                let dy_plane = &dy[(i * cout + co) * plane..][..plane];
                for ky in 0..K {
                    let (oys, iys) = tap_ranges(ky, h);
                    for kx in 0..K {
                        let (oxs, ixs) = tap_ranges(kx, wd);
                        let wv = w[((co * cin + ci) * K + ky) * K + kx];
                        for (oy, iy) in oys.clone().zip(iys.clone()) {
                            let dx_row = &mut dx_plane[iy * wd..][ixs.clone()];
                            let dy_row = &dy_plane[oy * wd..][oxs.clone()];
                            for (dxv, &dyv) in dx_row.iter_mut().zip(dy_row) {
                                *dxv = *dxv + wv * dyv;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The gradients with respect to the weight and the bias, summed over the batch; `dw` `[cout, cin, 3, 3]` and `db`
/// `[cout]` are overwritten:
///
/// ```text
/// dw[co, ci, ky, kx] = Σ_i Σ_oy Σ_ox dy[i, co, oy, ox] · x[i, ci, oy + ky − 1, ox + kx − 1]
/// db[co]             = Σ_i Σ_oy Σ_ox dy[i, co, oy, ox]
/// ```
///
/// Sums in the order `i`, then row by row (`oy`, `ox`).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward_weight<T: Float>(
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    db: &mut [T],
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    wd: usize,
) {
    check_shapes(x.len(), dw.len(), dy.len(), n, cin, cout, h, wd);
    assert_eq!(db.len(), cout, "conv2d: bias gradient length");
    let plane = h * wd;
    dw.fill(T::zero());
    db.fill(T::zero());
    for i in 0..n {
        for co in 0..cout {
            let dy_plane = &dy[(i * cout + co) * plane..][..plane];
            db[co] = dy_plane.iter().fold(db[co], |acc, &d| acc + d);
            for ci in 0..cin {
                let x_plane = &x[(i * cin + ci) * plane..][..plane];
                for ky in 0..K {
                    let (oys, iys) = tap_ranges(ky, h);
                    for kx in 0..K {
                        let (oxs, ixs) = tap_ranges(kx, wd);
                        let mut acc = dw[((co * cin + ci) * K + ky) * K + kx];
                        for (oy, iy) in oys.clone().zip(iys.clone()) {
                            let dy_row = &dy_plane[oy * wd..][oxs.clone()];
                            let x_row = &x_plane[iy * wd..][ixs.clone()];
                            acc = dy_row.iter().zip(x_row).fold(acc, |a, (&d, &xv)| a + d * xv);
                        }
                        dw[((co * cin + ci) * K + ky) * K + kx] = acc;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 3×3 image 1..9, row-major.
    const X: [f64; 9] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];

    #[test]
    fn tap_ranges_skip_the_padding() {
        assert_eq!(tap_ranges(0, 5), (1..5, 0..4));
        assert_eq!(tap_ranges(1, 5), (0..5, 0..5));
        assert_eq!(tap_ranges(2, 5), (0..4, 1..5));
    }

    #[test]
    fn forward_with_a_ones_kernel_sums_each_padded_neighbourhood() {
        let mut y = [f64::NAN; 9];
        conv2d_forward(&X, &[1.0; 9], &[0.5], &mut y, 1, 1, 1, 3, 3);
        // Corner: 1+2+4+5 = 12; edge (0,1): 1+2+3+4+5+6 = 21; centre: 45; and so on, plus the bias 0.5.
        let expected = [12.0, 21.0, 16.0, 27.0, 45.0, 33.0, 24.0, 39.0, 28.0].map(|v| v + 0.5);
        assert_eq!(y, expected);
    }

    #[test]
    fn forward_top_left_tap_shifts_the_image_down_and_right() {
        // Only w[0, 0, 0, 0] = 1: y[oy, ox] = x[oy − 1, ox − 1], zero where that falls in the padding.
        let mut w = [0.0; 9];
        w[0] = 1.0;
        let mut y = [f64::NAN; 9];
        conv2d_forward(&X, &w, &[0.0], &mut y, 1, 1, 1, 3, 3);
        assert_eq!(y, [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 4.0, 5.0]);
    }

    #[test]
    fn forward_indexes_channels_and_batch() {
        // Two images, two input and two output channels, 1×2 feature maps. Centre taps only:
        // out0 = 1·in1 + 10, out1 = 2·in0 − 1.
        let mut w = [0.0; 2 * 2 * 9];
        let centre = |co: usize, ci: usize| (co * 2 + ci) * 9 + 4;
        w[centre(0, 1)] = 1.0;
        w[centre(1, 0)] = 2.0;
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]; // [n=2, cin=2, 1, 2]
        let mut y = [f64::NAN; 8];
        conv2d_forward(&x, &w, &[10.0, -1.0], &mut y, 2, 2, 2, 1, 2);
        assert_eq!(y, [13.0, 14.0, 1.0, 3.0, 17.0, 18.0, 9.0, 11.0]);
    }

    #[test]
    fn backward_input_counts_the_outputs_each_pixel_feeds() {
        // With a ones kernel and dy = 1, dx[p] is the number of outputs whose window covers p.
        let mut dx = [f64::NAN; 9];
        conv2d_backward_input(&[1.0; 9], &[1.0; 9], &mut dx, 1, 1, 1, 3, 3);
        assert_eq!(dx, [4.0, 6.0, 4.0, 6.0, 9.0, 6.0, 4.0, 6.0, 4.0]);
    }

    #[test]
    fn backward_input_flips_the_kernel() {
        // Only the top-left tap: y[oy, ox] = x[oy − 1, ox − 1], so dx[iy, ix] = dy[iy + 1, ix + 1].
        let mut w = [0.0; 9];
        w[0] = 1.0;
        let mut dx = [f64::NAN; 9];
        conv2d_backward_input(&X, &w, &mut dx, 1, 1, 1, 3, 3);
        assert_eq!(dx, [5.0, 6.0, 0.0, 8.0, 9.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn backward_weight_correlates_input_and_output_gradient() {
        // dy = 1: dw[ky, kx] sums x over the part of the image tap (ky, kx) reads; db sums dy. Two identical images double it.
        let x2: Vec<f64> = X.iter().chain(X.iter()).copied().collect();
        let (mut dw, mut db) = ([f64::NAN; 9], [f64::NAN; 1]);
        conv2d_backward_weight(&x2, &[1.0; 18], &mut dw, &mut db, 2, 1, 1, 3, 3);
        let one_image = [12.0, 21.0, 16.0, 27.0, 45.0, 33.0, 24.0, 39.0, 28.0];
        assert_eq!(dw, one_image.map(|v| 2.0 * v));
        assert_eq!(db, [18.0]);
    }
}
