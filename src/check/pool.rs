//! What the input-gradient checks share where a layer's input came from a 2×2 pool of a ReLU output: the route each
//! element of the pool input's gradient takes (`route`), inputs with ties (`relu_output`), and the comparison.

use super::harness::random;
use super::{compare, Comparison, RTOL};
use crate::model::Pool;
use crate::reference as r;

/// Where each element of the gradient of a pool input `a` [n, c, 2h, 2w] (a ReLU output) comes from, given the
/// pooled gradient [n, c, h, w]: its index there and the factor it is scaled by (1 for a max-pool's window maximum,
/// 1/4 for an average pool), or None for an exact 0, as maxpool_backward (avgpool_backward) and relu_backward define it.
pub(super) fn route(pool: Pool, a: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<Option<(usize, f64)>> {
    let idx: Vec<f32> = (0..n * c * h * w).map(|i| i as f32).collect();
    let (mut src, mut open) = (vec![0.0f32; a.len()], vec![0.0f32; a.len()]);
    let ones = vec![1.0f32; idx.len()];
    let scale = match pool {
        Pool::Max => {
            r::maxpool_backward(a, &idx, &mut src, n, c, 2 * h, 2 * w);
            r::maxpool_backward(a, &ones, &mut open, n, c, 2 * h, 2 * w);
            1.0
        }
        Pool::Avg => {
            // Every element's window: its index, four times over, scaled back.
            let four: Vec<f32> = idx.iter().map(|i| 4.0 * i).collect();
            r::avgpool_backward(&four, &mut src, n, c, 2 * h, 2 * w);
            open.fill(1.0);
            0.25
        }
    };
    let mut relu = vec![0.0f32; a.len()];
    r::relu_backward(a, &open, &mut relu);
    relu.iter().zip(&src).map(|(&m, &s)| (m != 0.0).then_some((s as usize, scale))).collect()
}

/// A ReLU output with ties: about a quarter of the values 0, and neighbours made equal every 7 values.
pub(super) fn relu_output(len: usize, seed: u64) -> Vec<f32> {
    let mut a: Vec<f32> = random(len, -0.5, 1.5, seed).iter().map(|v| v.max(0.0)).collect();
    for i in (0..len.saturating_sub(1)).step_by(7) {
        a[i + 1] = a[i];
    }
    a
}

/// A routed gradient against the reference dx through `via`: routed elements within their share of dx's tolerance,
/// the rest exactly 0.
pub(super) fn compare_routed(
    what: &str,
    got: &[f32],
    via: &[Option<(usize, f64)>],
    want: &[f64],
    tol: &dyn Fn(usize) -> f64,
) -> Comparison {
    let reference: Vec<f64> = via.iter().map(|v| v.map_or(0.0, |(i, s)| s * want[i])).collect();
    compare(what, got, &reference, &|j| via[j].map_or(0.0, |(i, s)| s * tol(i)), RTOL)
}
