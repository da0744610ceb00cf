//! 2×2 max-pooling with stride 2, as PyTorch's `MaxPool2d(2)`.
//!
//! Shapes: input `x` `[n, c, h, wd]` with `h` and `wd` even, output `y` `[n, c, h/2, wd/2]`.
//!
//! Ties: the window is scanned in row-major order (top-left, top-right, bottom-left, bottom-right) and the maximum is
//! replaced only by a strictly greater value, so the FIRST maximum wins, as in PyTorch's CPU kernel. The backward pass
//! routes each `dy` to exactly that element. Both kernels are checked exactly (tolerance 0) against this file.

use num_traits::Float;

fn check_shapes(x: usize, y: usize, n: usize, c: usize, h: usize, wd: usize) {
    assert!(h.is_multiple_of(2) && wd.is_multiple_of(2), "maxpool: h and wd must be even, got {h}×{wd}");
    assert_eq!(x, n * c * h * wd, "maxpool: input length");
    assert_eq!(y, n * c * (h / 2) * (wd / 2), "maxpool: output length");
}

/// The flat index into `x` of the maximum of the 2×2 window whose top-left corner is `(2·py, 2·px)` in the plane that
/// starts at `plane_start`; the first maximum in row-major order wins.
fn window_argmax<T: Float>(x: &[T], plane_start: usize, wd: usize, py: usize, px: usize) -> usize {
    let top_left = plane_start + 2 * py * wd + 2 * px;
    let mut best = top_left;
    for idx in [top_left + 1, top_left + wd, top_left + wd + 1] {
        if x[idx] > x[best] {
            best = idx;
        }
    }
    best
}

/// `y[i, c, py, px] = max of x[i, c, 2py..2py+2, 2px..2px+2]`; `y` is overwritten.
pub fn maxpool_forward<T: Float>(x: &[T], y: &mut [T], n: usize, c: usize, h: usize, wd: usize) {
    check_shapes(x.len(), y.len(), n, c, h, wd);
    let (ph, pw) = (h / 2, wd / 2);
    for plane in 0..n * c {
        for py in 0..ph {
            for px in 0..pw {
                y[(plane * ph + py) * pw + px] = x[window_argmax(x, plane * h * wd, wd, py, px)];
            }
        }
    }
}

/// The gradient with respect to the input: `dx` `[n, c, h, wd]` is overwritten with zeros except at each window's argmax
/// (as defined by `maxpool_forward`, computed again from `x`), which gets that window's `dy`.
pub fn maxpool_backward<T: Float>(x: &[T], dy: &[T], dx: &mut [T], n: usize, c: usize, h: usize, wd: usize) {
    check_shapes(x.len(), dy.len(), n, c, h, wd);
    assert_eq!(dx.len(), x.len(), "maxpool: input gradient length");
    let (ph, pw) = (h / 2, wd / 2);
    dx.fill(T::zero());
    for plane in 0..n * c {
        for py in 0..ph {
            for px in 0..pw {
                // Windows do not overlap (stride = size), so each element of dx is written at most once.
                dx[window_argmax(x, plane * h * wd, wd, py, px)] = dy[(plane * ph + py) * pw + px];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One 4×4 plane: four windows with maxima 6 (bottom-right), 8 (top-left), −1 (top-right), 9 (top-left).
    #[rustfmt::skip]
    const X: [f64; 16] = [
         1.0,  2.0,    8.0,  3.0,
         5.0,  6.0,    7.0,  0.0,
        -4.0, -1.0,    9.0,  2.0,
        -3.0, -2.0,    4.0,  5.0,
    ];

    #[test]
    fn forward_takes_each_window_max() {
        let mut y = [f64::NAN; 4];
        maxpool_forward(&X, &mut y, 1, 1, 4, 4);
        assert_eq!(y, [6.0, 8.0, -1.0, 9.0]);
    }

    #[test]
    fn backward_routes_dy_to_the_argmax() {
        let mut dx = [f64::NAN; 16];
        maxpool_backward(&X, &[10.0, 20.0, 30.0, 40.0], &mut dx, 1, 1, 4, 4);
        #[rustfmt::skip]
        let expected = [
            0.0,  0.0,    20.0, 0.0,
            0.0,  10.0,   0.0,  0.0,
            0.0,  30.0,   40.0, 0.0,
            0.0,  0.0,    0.0,  0.0,
        ];
        assert_eq!(dx, expected);
    }

    #[test]
    fn ties_go_to_the_first_maximum_in_row_major_order() {
        // Window 0: all equal → top-left. Window 1: top-right and bottom-left tie → top-right.
        // Two channels, each 2×4, so the plane offset is exercised too.
        #[rustfmt::skip]
        let x = [
            3.0, 3.0,   1.0, 7.0,
            3.0, 3.0,   7.0, 2.0,
            // channel 1: bottom-left and bottom-right tie → bottom-left; zeros everywhere → top-left.
            0.0, 1.0,   0.0, 0.0,
            5.0, 5.0,   0.0, 0.0,
        ];
        let mut y = [f64::NAN; 4];
        maxpool_forward(&x, &mut y, 1, 2, 2, 4);
        assert_eq!(y, [3.0, 7.0, 5.0, 0.0]);
        let mut dx = [f64::NAN; 16];
        maxpool_backward(&x, &[1.0, 2.0, 3.0, 4.0], &mut dx, 1, 2, 2, 4);
        #[rustfmt::skip]
        let expected = [
            1.0, 0.0,   0.0, 2.0,
            0.0, 0.0,   0.0, 0.0,
            0.0, 0.0,   4.0, 0.0,
            3.0, 0.0,   0.0, 0.0,
        ];
        assert_eq!(dx, expected);
    }
}
