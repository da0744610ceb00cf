//! 2×2 average pooling with stride 2, as PyTorch's `AvgPool2d(2)`.
//!
//! Shapes: input `x` `[n, c, h, wd]` with `h` and `wd` even, output `y` `[n, c, h/2, wd/2]`.
//!
//! The window is summed in row-major order (top-left, top-right, bottom-left, bottom-right) and the sum scaled by 1/4,
//! an exact power of two, so the kernels that sum in the same order agree bit for bit: both are checked exactly
//! against this file. The backward pass gives each of the window's four elements a quarter of its `dy`.

use num_traits::Float;

fn check_shapes(x: usize, y: usize, n: usize, c: usize, h: usize, wd: usize) {
    assert!(h.is_multiple_of(2) && wd.is_multiple_of(2), "avgpool: h and wd must be even, got {h}×{wd}");
    assert_eq!(x, n * c * h * wd, "avgpool: input length");
    assert_eq!(y, n * c * (h / 2) * (wd / 2), "avgpool: output length");
}

fn quarter<T: Float>() -> T {
    T::from(0.25).expect("0.25 fits")
}

/// `y[i, c, py, px] = (x[2py, 2px] + x[2py, 2px + 1] + x[2py + 1, 2px] + x[2py + 1, 2px + 1]) / 4` in each plane;
/// `y` is overwritten.
pub fn avgpool_forward<T: Float>(x: &[T], y: &mut [T], n: usize, c: usize, h: usize, wd: usize) {
    check_shapes(x.len(), y.len(), n, c, h, wd);
    let (ph, pw) = (h / 2, wd / 2);
    for plane in 0..n * c {
        for py in 0..ph {
            for px in 0..pw {
                let tl = plane * h * wd + 2 * py * wd + 2 * px;
                let sum = x[tl] + x[tl + 1] + x[tl + wd] + x[tl + wd + 1];
                y[(plane * ph + py) * pw + px] = sum * quarter();
            }
        }
    }
}

/// The gradient with respect to the input: each element of `dx` `[n, c, h, wd]` is a quarter of its window's `dy`;
/// `dx` is overwritten.
pub fn avgpool_backward<T: Float>(dy: &[T], dx: &mut [T], n: usize, c: usize, h: usize, wd: usize) {
    check_shapes(dx.len(), dy.len(), n, c, h, wd);
    let (ph, pw) = (h / 2, wd / 2);
    for plane in 0..n * c {
        for iy in 0..h {
            for ix in 0..wd {
                dx[(plane * h + iy) * wd + ix] = dy[(plane * ph + iy / 2) * pw + ix / 2] * quarter();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One 4×4 plane: window means 3.5, 4.5, −2.5, 5.
    #[rustfmt::skip]
    const X: [f64; 16] = [
         1.0,  2.0,    8.0,  3.0,
         5.0,  6.0,    7.0,  0.0,
        -4.0, -1.0,    9.0,  2.0,
        -3.0, -2.0,    4.0,  5.0,
    ];

    #[test]
    fn forward_takes_each_window_mean() {
        let mut y = [f64::NAN; 4];
        avgpool_forward(&X, &mut y, 1, 1, 4, 4);
        assert_eq!(y, [3.5, 4.5, -2.5, 5.0]);
    }

    #[test]
    fn backward_shares_dy_among_the_window() {
        let mut dx = [f64::NAN; 16];
        avgpool_backward(&[4.0, 8.0, -12.0, 16.0], &mut dx, 1, 1, 4, 4);
        #[rustfmt::skip]
        let expected = [
             1.0,  1.0,    2.0, 2.0,
             1.0,  1.0,    2.0, 2.0,
            -3.0, -3.0,    4.0, 4.0,
            -3.0, -3.0,    4.0, 4.0,
        ];
        assert_eq!(dx, expected);
        // Two channels of 2×4: the plane offset is exercised too.
        let mut dx = [f64::NAN; 16];
        avgpool_backward(&[4.0, 8.0, 12.0, 16.0], &mut dx, 1, 2, 2, 4);
        assert_eq!(dx[..4], [1.0, 1.0, 2.0, 2.0]);
        assert_eq!(dx[8..12], [3.0, 3.0, 4.0, 4.0]);
    }
}
