//! The 2×2 pools' backward where an input-gradient kernel does not fuse it: the gradient of a pooled input carried
//! back through its pool and the ReLU before (`plan::Source::PooledRelu`), by `maxpool` or `avgpool`.

use super::plan::{Lowered, Pool};
use super::{avgpool, maxpool};

/// The backward of `pool` over [n, C, H, W] with the ReLU before it: `a` the ReLU output the pool read, `dy` the pooled
/// gradient, `dx` the gradient of `a`'s pre-activation. Labelled with the layer that owns the pool (`conv2` for
/// `a` = `conv2.out`), not the layer whose input gradient it finishes.
pub fn backward_through(pool: Pool, ch: usize, h: usize, w: usize, a: &str, dy: &str, dx: &str) -> Lowered {
    let owner = a.split('.').next().unwrap_or(a);
    match pool {
        Pool::Max => maxpool::backward(ch, h, w, true, a, dy, dx),
        Pool::Avg => avgpool::backward(ch, h, w, true, a, dy, dx),
    }
    .layer(owner)
}
