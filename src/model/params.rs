//! The parameters of a network as one flat vector: PyTorch's names and shapes in `state_dict` order, PyTorch's default
//! initialization, and the seeded randomness of a run (initialization, every epoch's sample order).
//!
//! Parameters live in one flat `f32` vector (`conv1.weight`, `conv1.bias`, …, `fcN.bias`), each tensor row-major with
//! PyTorch's shape. The GPU keeps the same layout in one buffer, so the optimizer is one kernel over one buffer (as in
//! llm.c).

use rand::RngCore;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::Arch;

/// Default seed for initialization and shuffling.
pub const DEFAULT_SEED: u64 = 42;

/// The named, seeded generator used for everything random (initialization, shuffling). Not `StdRng`, whose algorithm may
/// change between `rand` versions.
pub type Rng = Xoshiro256PlusPlus;

pub fn rng(seed: u64) -> Rng {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// Uniform in [0, 1) from the top 24 bits of one draw (exact in f32, independent of `rand`'s distribution code).
pub fn uniform01(rng: &mut Rng) -> f32 {
    (rng.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// PyTorch's default initialization for Conv2d and Linear: weights and biases uniform in ±1/sqrt(fan_in), drawn tensor by
/// tensor in `state_dict` order from `Xoshiro256PlusPlus::seed_from_u64(seed)`.
pub fn init_params(arch: &Arch, seed: u64) -> Vec<f32> {
    let mut rng = rng(seed);
    let mut params = vec![0.0f32; arch.param_count()];
    for t in arch.tensors() {
        let bound = 1.0 / (t.fan_in as f32).sqrt();
        for p in &mut params[t.range()] {
            *p = (2.0 * uniform01(&mut rng) - 1.0) * bound;
        }
    }
    params
}

/// A permutation of `0..n` by Fisher–Yates from `rng` (own code, so the order is fixed across `rand` versions).
pub fn shuffled_indices(n: usize, rng: &mut Rng) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        idx.swap(i, j);
    }
    idx
}

/// The order of epoch `epoch` (0-based): a permutation drawn from a generator seeded by (seed, epoch) alone, so a run
/// resumed at an epoch boundary sees the same orders as an uninterrupted one.
pub fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<u32> {
    let mut rng = rng(seed ^ 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(epoch as u64 + 1));
    shuffled_indices(n, &mut rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_is_seeded_and_bounded() {
        let arch = Arch::study();
        let a = init_params(&arch, 1);
        assert_eq!(a, init_params(&arch, 1));
        assert_ne!(a, init_params(&arch, 2));
        for t in arch.tensors() {
            let bound = 1.0 / (t.fan_in as f32).sqrt();
            let s = &a[t.range()];
            assert!(s.iter().all(|v| v.abs() <= bound), "{}", t.name);
            // Spread over the interval, not collapsed: the largest magnitude is near the bound.
            let max = s.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(max > 0.5 * bound, "{}", t.name);
        }
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut r = rng(3);
        let mut p = shuffled_indices(1000, &mut r);
        assert_ne!(p[..10], (0..10).collect::<Vec<u32>>()[..]);
        p.sort();
        assert_eq!(p, (0..1000).collect::<Vec<u32>>());
    }
}
