//! 2-D convolution, K×K kernel, zero padding P, stride 1, as PyTorch's `Conv2d(cin, cout, K, padding=P)`.
//!
//! Shapes (`Conv2dShape`): input `x` `[n, cin, h, w]`, weight `[cout, cin, k, k]`, bias `[cout]`, output `y`
//! `[n, cout, oh, ow]` with `oh = h + 2·pad − k + 1` (the study's 3×3, padding 1: as large as the input). A tap that
//! falls in the padding contributes nothing, so the loops below simply skip it.
//!
//! ```text
//! y[i, co, oy, ox] = b[co] + Σ_ci Σ_ky Σ_kx w[co, ci, ky, kx] · x[i, ci, oy + ky − pad, ox + kx − pad]
//! ```
//!
//! The kernels: `conv2d_forward` (no ReLU; that is `relu_forward`), `conv2d_backward_input` (the gradient with respect to
//! `x`, a "full" correlation with the flipped kernel) and `conv2d_backward_weight` (gradients of `w` and `b`, summed over
//! the batch).

use num_traits::Float;
use std::ops::Range;

/// The shapes of one convolution over a batch: `n` images of `cin` planes `h` × `w`, `cout` filters `k` × `k`,
/// padding `pad`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    pub n: usize,
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub pad: usize,
}

impl Conv2dShape {
    /// The study's kind: 3×3, padding 1.
    pub fn same3(n: usize, cin: usize, cout: usize, h: usize, w: usize) -> Conv2dShape {
        Conv2dShape { n, cin, cout, h, w, k: 3, pad: 1 }
    }

    /// Output height and width.
    pub fn out_hw(&self) -> (usize, usize) {
        (self.h + 2 * self.pad + 1 - self.k, self.w + 2 * self.pad + 1 - self.k)
    }

    pub fn input_len(&self) -> usize {
        self.n * self.cin * self.h * self.w
    }

    pub fn output_len(&self) -> usize {
        let (oh, ow) = self.out_hw();
        self.n * self.cout * oh * ow
    }

    pub fn weight_len(&self) -> usize {
        self.cout * self.cin * self.k * self.k
    }

    /// For kernel tap `t` (0..k) along an axis with `len` input and `out` output positions: the output positions
    /// whose input position `o + t − pad` is inside the image, and those input positions.
    fn taps(&self, t: usize, len: usize, out: usize) -> (Range<usize>, Range<usize>) {
        let start = self.pad.saturating_sub(t);
        let end = (len + self.pad).saturating_sub(t).min(out).max(start);
        (start..end, (start + t - self.pad)..(end + t - self.pad))
    }

    fn check(&self, x: usize, w: usize, y: usize) {
        assert!(self.k >= 1 && self.pad < self.k, "conv2d: {self:?}: padding must be less than the kernel side");
        assert!(
            self.h + 2 * self.pad >= self.k && self.w + 2 * self.pad >= self.k,
            "conv2d: {self:?}: kernel too large"
        );
        assert_eq!(x, self.input_len(), "conv2d: input length");
        assert_eq!(w, self.weight_len(), "conv2d: weight length");
        assert_eq!(y, self.output_len(), "conv2d: output length");
    }
}

/// `y = conv(x, w) + b`; `y` is overwritten. Sums in the order bias, then `ci`, `ky`, `kx`.
pub fn conv2d_forward<T: Float>(x: &[T], w: &[T], b: &[T], y: &mut [T], s: &Conv2dShape) {
    s.check(x.len(), w.len(), y.len());
    assert_eq!(b.len(), s.cout, "conv2d: bias length");
    let (k, (oh, ow)) = (s.k, s.out_hw());
    let (plane, out_plane) = (s.h * s.w, oh * ow);
    for i in 0..s.n {
        for co in 0..s.cout {
            let y_plane = &mut y[(i * s.cout + co) * out_plane..][..out_plane];
            y_plane.fill(b[co]);
            for ci in 0..s.cin {
                let x_plane = &x[(i * s.cin + ci) * plane..][..plane];
                for ky in 0..k {
                    let (oys, iys) = s.taps(ky, s.h, oh);
                    for kx in 0..k {
                        let (oxs, ixs) = s.taps(kx, s.w, ow);
                        let wv = w[((co * s.cin + ci) * k + ky) * k + kx];
                        for (oy, iy) in oys.clone().zip(iys.clone()) {
                            let y_row = &mut y_plane[oy * ow..][oxs.clone()];
                            let x_row = &x_plane[iy * s.w..][ixs.clone()];
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

/// The gradient with respect to the input, given `dy` `[n, cout, oh, ow]`; `dx` `[n, cin, h, w]` is overwritten:
///
/// ```text
/// dx[i, ci, iy, ix] = Σ_co Σ_ky Σ_kx w[co, ci, ky, kx] · dy[i, co, iy − ky + pad, ix − kx + pad]
/// ```
///
/// (terms whose `dy` position is outside the output are zero). Sums in the order `co`, `ky`, `kx`.
pub fn conv2d_backward_input<T: Float>(dy: &[T], w: &[T], dx: &mut [T], s: &Conv2dShape) {
    s.check(dx.len(), w.len(), dy.len());
    let (k, (oh, ow)) = (s.k, s.out_hw());
    let (plane, out_plane) = (s.h * s.w, oh * ow);
    for i in 0..s.n {
        for ci in 0..s.cin {
            let dx_plane = &mut dx[(i * s.cin + ci) * plane..][..plane];
            dx_plane.fill(T::zero());
            for co in 0..s.cout {
                let dy_plane = &dy[(i * s.cout + co) * out_plane..][..out_plane];
                for ky in 0..k {
                    let (oys, iys) = s.taps(ky, s.h, oh);
                    for kx in 0..k {
                        let (oxs, ixs) = s.taps(kx, s.w, ow);
                        let wv = w[((co * s.cin + ci) * k + ky) * k + kx];
                        for (oy, iy) in oys.clone().zip(iys.clone()) {
                            let dx_row = &mut dx_plane[iy * s.w..][ixs.clone()];
                            let dy_row = &dy_plane[oy * ow..][oxs.clone()];
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

/// The gradients with respect to the weight and the bias, summed over the batch; `dw` `[cout, cin, k, k]` and `db`
/// `[cout]` are overwritten:
///
/// ```text
/// dw[co, ci, ky, kx] = Σ_i Σ_oy Σ_ox dy[i, co, oy, ox] · x[i, ci, oy + ky − pad, ox + kx − pad]
/// db[co]             = Σ_i Σ_oy Σ_ox dy[i, co, oy, ox]
/// ```
///
/// Sums in the order `i`, then row by row (`oy`, `ox`).
pub fn conv2d_backward_weight<T: Float>(x: &[T], dy: &[T], dw: &mut [T], db: &mut [T], s: &Conv2dShape) {
    s.check(x.len(), dw.len(), dy.len());
    assert_eq!(db.len(), s.cout, "conv2d: bias gradient length");
    let (k, (oh, ow)) = (s.k, s.out_hw());
    let (plane, out_plane) = (s.h * s.w, oh * ow);
    dw.fill(T::zero());
    db.fill(T::zero());
    for i in 0..s.n {
        for co in 0..s.cout {
            let dy_plane = &dy[(i * s.cout + co) * out_plane..][..out_plane];
            db[co] = dy_plane.iter().fold(db[co], |acc, &d| acc + d);
            for ci in 0..s.cin {
                let x_plane = &x[(i * s.cin + ci) * plane..][..plane];
                for ky in 0..k {
                    let (oys, iys) = s.taps(ky, s.h, oh);
                    for kx in 0..k {
                        let (oxs, ixs) = s.taps(kx, s.w, ow);
                        let at = ((co * s.cin + ci) * k + ky) * k + kx;
                        let mut acc = dw[at];
                        for (oy, iy) in oys.clone().zip(iys.clone()) {
                            let dy_row = &dy_plane[oy * ow..][oxs.clone()];
                            let x_row = &x_plane[iy * s.w..][ixs.clone()];
                            acc = dy_row.iter().zip(x_row).fold(acc, |a, (&d, &xv)| a + d * xv);
                        }
                        dw[at] = acc;
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

    fn one(h: usize, w: usize) -> Conv2dShape {
        Conv2dShape::same3(1, 1, 1, h, w)
    }

    #[test]
    fn taps_skip_the_padding() {
        let s = one(5, 5);
        assert_eq!(s.taps(0, 5, 5), (1..5, 0..4));
        assert_eq!(s.taps(1, 5, 5), (0..5, 0..5));
        assert_eq!(s.taps(2, 5, 5), (0..4, 1..5));
        // 5×5 unpadded over 7: 3 outputs, each tap reads input o + t.
        let v = Conv2dShape { k: 5, pad: 0, ..one(7, 7) };
        assert_eq!(v.out_hw(), (3, 3));
        assert_eq!(v.taps(0, 7, 3), (0..3, 0..3));
        assert_eq!(v.taps(4, 7, 3), (0..3, 4..7));
        // 5×5 padding 2 over 2: taps that would only ever read padding are empty.
        let tiny = Conv2dShape { k: 5, pad: 2, ..one(2, 2) };
        assert_eq!(tiny.taps(0, 2, 2), (2..2, 0..0));
        assert_eq!(tiny.taps(2, 2, 2), (0..2, 0..2));
        assert_eq!(tiny.taps(4, 2, 2), (0..0, 2..2));
    }

    #[test]
    fn forward_with_a_ones_kernel_sums_each_padded_neighbourhood() {
        let mut y = [f64::NAN; 9];
        conv2d_forward(&X, &[1.0; 9], &[0.5], &mut y, &one(3, 3));
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
        conv2d_forward(&X, &w, &[0.0], &mut y, &one(3, 3));
        assert_eq!(y, [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 4.0, 5.0]);
    }

    #[test]
    fn forward_unpadded_and_wider_kernels() {
        // 3×3 unpadded over the 3×3 image: one output, the whole sum.
        let mut y = [f64::NAN; 1];
        conv2d_forward(&X, &[1.0; 9], &[0.0], &mut y, &Conv2dShape { pad: 0, ..one(3, 3) });
        assert_eq!(y, [45.0]);
        // 1×1: a per-pixel scale.
        let mut y = [f64::NAN; 9];
        conv2d_forward(&X, &[2.0], &[1.0], &mut y, &Conv2dShape { k: 1, pad: 0, ..one(3, 3) });
        assert_eq!(y, X.map(|v| 2.0 * v + 1.0));
        // 5×5 padding 2, only the centre tap: the identity.
        let mut w = [0.0; 25];
        w[12] = 1.0;
        let mut y = [f64::NAN; 9];
        conv2d_forward(&X, &w, &[0.0], &mut y, &Conv2dShape { k: 5, pad: 2, ..one(3, 3) });
        assert_eq!(y, X);
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
        conv2d_forward(&x, &w, &[10.0, -1.0], &mut y, &Conv2dShape::same3(2, 2, 2, 1, 2));
        assert_eq!(y, [13.0, 14.0, 1.0, 3.0, 17.0, 18.0, 9.0, 11.0]);
    }

    #[test]
    fn backward_input_counts_the_outputs_each_pixel_feeds() {
        // With a ones kernel and dy = 1, dx[p] is the number of outputs whose window covers p.
        let mut dx = [f64::NAN; 9];
        conv2d_backward_input(&[1.0; 9], &[1.0; 9], &mut dx, &one(3, 3));
        assert_eq!(dx, [4.0, 6.0, 4.0, 6.0, 9.0, 6.0, 4.0, 6.0, 4.0]);
        // Unpadded 2×2 over 3×3: the four 2×2 windows.
        let mut dx = [f64::NAN; 9];
        conv2d_backward_input(&[1.0; 4], &[1.0; 4], &mut dx, &Conv2dShape { k: 2, pad: 0, ..one(3, 3) });
        assert_eq!(dx, [1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0]);
    }

    #[test]
    fn backward_input_flips_the_kernel() {
        // Only the top-left tap: y[oy, ox] = x[oy − 1, ox − 1], so dx[iy, ix] = dy[iy + 1, ix + 1].
        let mut w = [0.0; 9];
        w[0] = 1.0;
        let mut dx = [f64::NAN; 9];
        conv2d_backward_input(&X, &w, &mut dx, &one(3, 3));
        assert_eq!(dx, [5.0, 6.0, 0.0, 8.0, 9.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn backward_weight_correlates_input_and_output_gradient() {
        // dy = 1: dw[ky, kx] sums x over the part of the image tap (ky, kx) reads; db sums dy. Two identical images double it.
        let x2: Vec<f64> = X.iter().chain(X.iter()).copied().collect();
        let (mut dw, mut db) = ([f64::NAN; 9], [f64::NAN; 1]);
        conv2d_backward_weight(&x2, &[1.0; 18], &mut dw, &mut db, &Conv2dShape::same3(2, 1, 1, 3, 3));
        let one_image = [12.0, 21.0, 16.0, 27.0, 45.0, 33.0, 24.0, 39.0, 28.0];
        assert_eq!(dw, one_image.map(|v| 2.0 * v));
        assert_eq!(db, [18.0]);
        // Unpadded 2×2 over 3×3, dy = 1 on the four outputs: each tap sums the 2×2 block it reads.
        let (mut dw, mut db) = ([f64::NAN; 4], [f64::NAN; 1]);
        conv2d_backward_weight(&X, &[1.0; 4], &mut dw, &mut db, &Conv2dShape { k: 2, pad: 0, ..one(3, 3) });
        assert_eq!((dw, db), ([12.0, 16.0, 24.0, 28.0], [4.0]));
    }
}
