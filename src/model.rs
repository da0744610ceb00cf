//! The study's network: its shapes, its one contiguous parameter vector and PyTorch's default initialization.
//!
//! Parameters live in one flat `f32` vector in PyTorch's `state_dict` order (`conv1.weight`, `conv1.bias`, `conv2.weight`,
//! `conv2.bias`, `fc1.weight`, `fc1.bias`, `fc2.weight`, `fc2.bias`), each tensor row-major with PyTorch's shape. The GPU
//! keeps the same layout in one buffer, so the optimizer is one kernel over one buffer (as in llm.c).

use rand::RngCore;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// Input image side (MNIST: 28×28, one channel).
pub const IMAGE_SIDE: usize = 28;
/// Pixels per image.
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// conv1 output channels; its feature maps are 28×28.
pub const C1: usize = 16;
/// Side of conv1's output (padding 1 keeps 28).
pub const H1: usize = 28;
/// Side after the first 2×2 max-pool.
pub const P1: usize = 14;
/// conv2 output channels; its feature maps are 14×14.
pub const C2: usize = 32;
/// Side after the second 2×2 max-pool.
pub const P2: usize = 7;
/// Flattened features into fc1, channel-major (C, H, W) as PyTorch flattens.
pub const FLAT: usize = C2 * P2 * P2;
/// fc1 width.
pub const HIDDEN: usize = 128;
/// Output classes.
pub const CLASSES: usize = 10;

/// Input normalization (PyTorch's `transforms.Normalize((0.1307,), (0.3081,))`).
pub const MNIST_MEAN: f32 = 0.1307;
pub const MNIST_STD: f32 = 0.3081;

/// Default seed for initialization and shuffling.
pub const DEFAULT_SEED: u64 = 42;

/// One named parameter tensor inside the flat parameter vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamTensor {
    /// PyTorch's name, e.g. `conv1.weight`.
    pub name: &'static str,
    /// PyTorch's shape.
    pub shape: &'static [usize],
    /// Offset in elements into the flat parameter vector.
    pub offset: usize,
    /// Fan-in used by PyTorch's default initialization (bound 1/sqrt(fan_in)).
    pub fan_in: usize,
}

impl ParamTensor {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

const fn tensor(name: &'static str, shape: &'static [usize], offset: usize, fan_in: usize) -> ParamTensor {
    ParamTensor { name, shape, offset, fan_in }
}

pub const CONV1_W: usize = 0;
pub const CONV1_B: usize = CONV1_W + C1 * 9;
pub const CONV2_W: usize = CONV1_B + C1;
pub const CONV2_B: usize = CONV2_W + C2 * C1 * 9;
pub const FC1_W: usize = CONV2_B + C2;
pub const FC1_B: usize = FC1_W + HIDDEN * FLAT;
pub const FC2_W: usize = FC1_B + HIDDEN;
pub const FC2_B: usize = FC2_W + CLASSES * HIDDEN;
/// Total number of parameters (206,922).
pub const PARAM_COUNT: usize = FC2_B + CLASSES;

/// The eight tensors, in PyTorch's `state_dict` order.
pub const PARAM_TENSORS: [ParamTensor; 8] = [
    tensor("conv1.weight", &[C1, 1, 3, 3], CONV1_W, 9),
    tensor("conv1.bias", &[C1], CONV1_B, 9),
    tensor("conv2.weight", &[C2, C1, 3, 3], CONV2_W, C1 * 9),
    tensor("conv2.bias", &[C2], CONV2_B, C1 * 9),
    tensor("fc1.weight", &[HIDDEN, FLAT], FC1_W, FLAT),
    tensor("fc1.bias", &[HIDDEN], FC1_B, FLAT),
    tensor("fc2.weight", &[CLASSES, HIDDEN], FC2_W, HIDDEN),
    tensor("fc2.bias", &[CLASSES], FC2_B, HIDDEN),
];

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
pub fn init_params(seed: u64) -> Vec<f32> {
    let mut rng = rng(seed);
    let mut params = vec![0.0f32; PARAM_COUNT];
    for t in PARAM_TENSORS {
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

/// Normalize one u8 pixel as the study does: scale to [0, 1], then (x - mean) / std.
pub fn normalize_pixel(p: u8) -> f32 {
    (p as f32 / 255.0 - MNIST_MEAN) / MNIST_STD
}

/// Multiply-adds per image for each layer's forward pass (1 MAC = 2 FLOPs).
pub const FORWARD_MACS: usize = C1 * H1 * H1 * 9 + C2 * P1 * P1 * C1 * 9 + FLAT * HIDDEN + HIDDEN * CLASSES;
/// FLOPs per trained image: forward, plus weight gradients for every layer and input gradients for all but conv1.
pub const TRAIN_FLOPS_PER_IMAGE: usize = 2 * (3 * FORWARD_MACS - C1 * H1 * H1 * 9);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_contiguous_and_pytorch_sized() {
        let mut next = 0;
        for t in PARAM_TENSORS {
            assert_eq!(t.offset, next, "{}", t.name);
            next += t.len();
        }
        assert_eq!(next, PARAM_COUNT);
        assert_eq!(PARAM_COUNT, 206_922);
        assert_eq!(FLAT, 1568);
    }

    #[test]
    fn init_is_seeded_and_bounded() {
        let a = init_params(1);
        assert_eq!(a, init_params(1));
        assert_ne!(a, init_params(2));
        for t in PARAM_TENSORS {
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
