//! 3×3 convolution, padding 1, stride 1 (`reference::conv2d`): forward (with bias, ReLU and the 2×2 max-pool fused),
//! the input gradient and the weight gradient, in both kernel families.
//!
//! Shaders: `conv2d_forward.wgsl`, `conv2d_forward_subgroup.wgsl`, `conv2d_backward_input.wgsl`,
//! `conv2d_backward_weight.wgsl`, `conv2d_backward_weight_subgroup.wgsl` (simd family) and `conv2d_forward_tiled.wgsl`,
//! `conv2d_backward_input_tiled.wgsl`, `conv2d_backward_weight_tiled.wgsl` (tiled family).

use super::tiles::{self, Tiles};
use super::{c, f32_bytes, flag, maxpool, Caps, Family, Lowered, Plan, Source, Temp};

/// One convolution layer: channels, plane size, and where its weight [COUT, CIN, 3, 3] and bias sit in the parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv {
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub w_off: usize,
    pub b_off: usize,
}

impl Conv {
    fn shape(&self) -> [(&'static str, f64); 4] {
        [c("CIN", self.cin), c("COUT", self.cout), c("H", self.h), c("W", self.w)]
    }

    /// FLOPs of one pass (forward, input gradient or weight gradient) over n samples.
    pub fn flops(&self, n: usize) -> f64 {
        2.0 * (n * self.cin * self.cout * 9 * self.h * self.w) as f64
    }

    fn input(&self, n: usize) -> usize {
        n * self.cin * self.h * self.w
    }

    fn output(&self, n: usize) -> usize {
        n * self.cout * self.h * self.w
    }

    fn weights(&self) -> usize {
        self.cout * self.cin * 9 + self.cout
    }
}

/// The simd family's thread tiling (mirrors the constants at the top of its shaders).
pub mod simd {
    /// Pixels of one row per thread (a row segment).
    pub const PX: usize = 16;
    /// Input channels per thread of conv2d_backward_input (one row segment each).
    pub const CO_B: usize = 16;
    /// Output channels per thread of conv2d_forward (two row segments each: rows 2i and 2i + 1).
    pub const FORWARD_CO_B: usize = 8;
    /// conv2d_forward_subgroup: the subgroup width = output channels per block = tiles per workgroup;
    /// conv2d_backward_weight_subgroup: output channels per workgroup.
    pub const SUBGROUP: usize = 8;
    /// Input channels per workgroup of conv2d_backward_weight_subgroup.
    pub const SUBGROUP_CI_B: usize = 4;
    /// Threads per workgroup of conv2d_forward and conv2d_backward_input (their `WG`).
    pub const WG: usize = 64;
    /// Taps of one (output, input) channel pair in the weight-gradient partial sums: 9 weights and the bias.
    pub const TERMS: usize = 10;

    /// Workgroups of conv2d_backward_weight_subgroup with SPLIT = 1; with SPLIT = s, s times as many.
    pub fn backward_weight_subgroup_groups(cin: usize, cout: usize) -> u64 {
        (cout.div_ceil(SUBGROUP) * cin.div_ceil(SUBGROUP_CI_B)) as u64
    }

    /// Workgroups of conv2d_forward_subgroup for a batch of n: per block of SUBGROUP output channels, one workgroup
    /// per SUBGROUP tiles (pairs of rows × segments).
    pub fn forward_subgroup_groups(n: usize, cout: usize, h: usize, w: usize) -> u64 {
        cout.div_ceil(SUBGROUP) as u64 * (n as u64 * forward_tiles_per_sample(h, w)).div_ceil(SUBGROUP as u64)
    }

    /// Threads per sample of conv2d_forward on an `h`×`w` plane: one per pair of rows and segment.
    pub fn forward_tiles_per_sample(h: usize, w: usize) -> u64 {
        (h.div_ceil(2) * w.div_ceil(PX)) as u64
    }

    /// Workgroups of conv2d_forward for a batch of n.
    pub fn forward_groups(n: usize, cout: usize, h: usize, w: usize) -> u64 {
        cout.div_ceil(FORWARD_CO_B) as u64 * (n as u64 * forward_tiles_per_sample(h, w)).div_ceil(WG as u64)
    }

    /// Workgroups of conv2d_backward_weight with SPLIT = 1 (one per block of CO_B output channels and pair of input
    /// channels); with SPLIT = s, s times as many.
    pub fn backward_weight_groups(cin: usize, cout: usize) -> u64 {
        (cout.div_ceil(CO_B) * cin.div_ceil(2)) as u64
    }

    /// Workgroups of conv2d_backward_input (`channels` = input channels) for a batch of n.
    pub fn backward_input_groups(n: usize, channels: usize, h: usize, w: usize) -> u64 {
        channels.div_ceil(CO_B) as u64 * (n as u64 * (h * w.div_ceil(PX)) as u64).div_ceil(WG as u64)
    }
}

/// Where the simd family's kernels can go: they read rows as aligned pairs, so widths must be even.
pub fn check_shape(s: &Conv) -> Result<(), String> {
    if !s.w.is_multiple_of(2) {
        return Err(format!("conv2d: W = {} must be even (the simd kernels read rows as pairs)", s.w));
    }
    Ok(())
}

/// conv2d_forward with bias, optionally ReLU and the 2×2 max-pool: `x` → `y` (the pre-pool output, stored where the
/// step block's `full` is set, or always without `pool`) and `pooled`. `batch`: the largest n it will run with (the
/// tiled family sizes its tiles for it).
#[allow(clippy::too_many_arguments)]
pub fn forward(caps: Caps, s: &Conv, batch: usize, relu: bool, pool: bool, x: &str, y: &str, pooled: &str) -> Lowered {
    let s = *s;
    let mut k: Vec<_> = s.shape().into();
    k.extend([c("W_OFF", s.w_off), c("B_OFF", s.b_off), flag("RELU", relu), flag("POOL", pool)]);
    let plan = match caps.family {
        Family::Simd => {
            type Sizing = fn(usize, usize, usize, usize) -> u64;
            let (entry, groups): (_, Sizing) = if caps.subgroups_of_8 {
                ("conv2d_forward_subgroup", simd::forward_subgroup_groups)
            } else {
                ("conv2d_forward", simd::forward_groups)
            };
            Plan::new(entry, k, &[x, "params", y, "step", pooled]).groups(move |n| groups(n, s.cout, s.h, s.w))
        }
        Family::Tiled => {
            let t = tiles::choose(s.cout, batch * s.h * s.w, if pool { 4 } else { 1 }).deepest(s.cin * 9);
            k.extend(t.constants());
            Plan::new("conv2d_forward_tiled", k, &[x, "params", y, "step", pooled])
                .groups(move |n| t.groups(s.cout, n * s.h * s.w))
        }
    };
    let out = move |n: usize| s.output(n) + if pool { s.output(n) / 4 } else { 0 };
    Lowered::one(plan.work(move |n| s.flops(n), move |n| f32_bytes(s.input(n) + s.weights() + out(n))))
}

/// The input gradient `dy` → `dx`, carried back through what produced the input (`source`): with `Relu(a)` (the
/// convolution before, unpooled) `dx` is masked by a > 0; with `PooledRelu { a, .. }` the input was the 2×2 max-pool of
/// the ReLU output `a` [n, CIN, 2H, 2W], and `dx` receives the gradient with respect to `a`'s pre-activation. Both are
/// fused into the tiled kernel; the simd family routes with a separate maxpool_backward and has no ReLU-only mask
/// (`gpu::network::fits` keeps such networks off it).
pub fn backward_input(caps: Caps, s: &Conv, batch: usize, dy: &str, dx: &str, source: Source) -> Lowered {
    let s = *s;
    let flops = move |n| s.flops(n);
    // `extra`: what the mask or the routing reads and writes beyond dx, in input-sized tensors.
    let (relu, route, a, extra) = match source {
        Source::Plain => (false, None, dy, 0),
        Source::Relu(a) => (true, None, a, 1),
        Source::PooledRelu { a, ph, pw } => {
            assert_eq!((ph, pw), (s.h, s.w), "a convolution's routed input is its own map");
            (false, Some(a), a, 8)
        }
    };
    let bytes = move |n: usize| f32_bytes(s.output(n) + s.weights() + s.input(n) + extra * s.input(n));
    let mut k: Vec<_> = s.shape().into();
    k.push(c("W_OFF", s.w_off));
    match caps.family {
        Family::Simd => {
            assert!(!relu, "the simd family has no ReLU-masked convolution input gradient (gpu::network::fits)");
            let out = match route {
                Some(_) => format!("{dx}.pooled"),
                None => dx.to_string(),
            };
            let plan = Plan::new("conv2d_backward_input", k, &[dy, "params", &out, "step"])
                .groups(move |n| simd::backward_input_groups(n, s.cin, s.h, s.w))
                .work(flops, move |n| f32_bytes(s.output(n) + s.weights() + s.input(n)));
            let lowered = Lowered::one(plan);
            match route {
                Some(a) => {
                    let pool = maxpool::backward(s.cin, 2 * s.h, 2 * s.w, true, a, &out, dx);
                    Lowered { temps: vec![Temp { name: out.clone(), floats: s.input(batch) }], ..lowered }.then(pool)
                }
                None => lowered,
            }
        }
        Family::Tiled => {
            let t = tiles::choose(s.cin, batch * s.h * s.w, 1).deepest(s.cout * 9);
            k.extend([flag("ROUTE", route.is_some()), flag("RELU", relu)]);
            k.extend(t.constants());
            Lowered::one(
                Plan::new("conv2d_backward_input_tiled", k, &[dy, "params", dx, "step", a])
                    .groups(move |n| t.groups(s.cin, n * s.h * s.w))
                    .work(flops, bytes),
            )
        }
    }
}

/// The weight and bias gradients from the layer's input `x` and output gradient `dy`, stored into `grads` at the
/// layer's offsets. Layers with few channel blocks (simd) or any layer (tiled) split the reduction over the batch over
/// several workgroups and add the parts in order in a second dispatch.
pub fn backward_weight(caps: Caps, s: &Conv, batch: usize, x: &str, dy: &str, grads: &str, layer: &str) -> Lowered {
    let s = *s;
    let flops = move |n| s.flops(n);
    let partials = format!("{layer}.weight-gradient parts");
    let mut k: Vec<_> = s.shape().into();
    k.extend([c("W_OFF", s.w_off), c("B_OFF", s.b_off)]);
    match caps.family {
        Family::Simd => {
            let (entry, blocks) = if caps.subgroups_of_8 {
                ("conv2d_backward_weight_subgroup", simd::backward_weight_subgroup_groups(s.cin, s.cout))
            } else {
                ("conv2d_backward_weight", simd::backward_weight_groups(s.cin, s.cout))
            };
            // A layer of one or two channel blocks would run on one or two cores: split its rows over 8 workgroups.
            let split = if blocks <= 2 { 8 } else { 1 };
            k.push(c("SPLIT", split));
            let args = [x, dy, grads, "step", &partials];
            let bytes = move |n: usize| f32_bytes(s.input(n) + s.output(n) + s.weights() * split);
            let main = Plan::new(entry, k.clone(), &args).groups(move |_| blocks * split as u64).work(flops, bytes);
            let floats = if split > 1 { split * s.cout * s.cin * simd::TERMS } else { 1 };
            let mut lowered = Lowered { plans: vec![main], temps: vec![Temp { name: partials.clone(), floats }] };
            if split > 1 {
                let sums = s.cout * s.cin * simd::TERMS;
                lowered.plans.push(
                    Plan::new("conv2d_backward_weight_reduce", k, &args)
                        .threads(simd::WG as u32, move |_| sums as u64)
                        .work(|_| 0.0, move |_| f32_bytes(sums * split + s.weights())),
                );
            }
            lowered
        }
        Family::Tiled => {
            let cols = s.cin * 9 + 1;
            let (t, split): (Tiles, usize) = tiles::choose_split(s.cout, cols, batch * s.h * s.w);
            let tile_count = t.groups(s.cout, cols);
            let t = t.deepest((batch * s.h * s.w).div_ceil(split));
            k.push(c("SPLIT", split));
            k.extend(t.constants());
            let args = [x, dy, grads, "step", &partials];
            let bytes = move |n: usize| f32_bytes(s.input(n) + s.output(n) + s.weights() * split);
            let main =
                Plan::new("conv2d_backward_weight_tiled", k.clone(), &args).groups(move |_| tile_count * split as u64);
            let floats = if split > 1 { split * s.cout * cols } else { 1 };
            let mut lowered =
                Lowered { plans: vec![main.work(flops, bytes)], temps: vec![Temp { name: partials.clone(), floats }] };
            if split > 1 {
                let sums = s.cout * cols;
                lowered.plans.push(
                    Plan::new("conv2d_backward_weight_tiled_reduce", k, &args)
                        .groups(move |_| sums as u64)
                        .work(|_| 0.0, move |_| f32_bytes(sums * split + s.weights())),
                );
            }
            lowered
        }
    }
}
