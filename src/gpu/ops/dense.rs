//! Fully connected layer y = x·Wᵀ + b (`reference::dense`): forward (optionally with ReLU), the input gradient
//! (optionally with the backward of the ReLU, or of the max-pool and ReLU, that produced the input) and the weight
//! gradient, in both kernel families.
//!
//! Shaders: `dense_forward.wgsl`, `dense_backward_input.wgsl`, `dense_backward_weight.wgsl` and their `_subgroup`
//! variants (simd family), `dense_forward_tiled.wgsl`, `dense_backward_input_tiled.wgsl`,
//! `dense_backward_weight_tiled.wgsl` (tiled family).

pub use super::Source;
use super::{c, f32_bytes, flag, maxpool, tiles, Caps, Family, Lowered, Plan, Temp};

/// One dense layer: its sizes and where its weight [OUT, IN] and bias sit in the parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dense {
    pub inp: usize,
    pub out: usize,
    pub w_off: usize,
    pub b_off: usize,
}

impl Dense {
    pub fn flops(&self, n: usize) -> f64 {
        2.0 * (n * self.inp * self.out) as f64
    }

    fn weights(&self) -> usize {
        self.inp * self.out + self.out
    }
}

/// The simd family's thread tiling (mirrors `T` and the subgroup tiles in its shaders).
pub mod simd {
    /// Each thread of the plain kernels computes a `T`×`T` tile.
    pub const T: usize = 16;
    /// Threads per workgroup of the plain kernels.
    pub const WG: u32 = 8;
    /// Threads per workgroup of the subgroup kernels.
    pub const SUBGROUP_WG: u32 = 64;
    /// Subgroup width, and the samples × output features of one subgroup's tile.
    pub const SUBGROUP: usize = 8;
    pub const SUBGROUP_SAMPLES: usize = 16;
    pub const SUBGROUP_OUTPUTS: usize = 32;

    /// Threads of dense_forward (`out` features) or dense_backward_input (`out` = the layer's inputs) for n samples.
    pub fn threads(n: usize, out: usize) -> u64 {
        (n.div_ceil(T) * out.div_ceil(T)) as u64
    }

    /// Threads of dense_backward_weight: one per T×T tile of the [OUT, IN + 1] gradient (column IN is the bias).
    pub fn backward_weight_threads(inp: usize, out: usize) -> u64 {
        ((inp + 1).div_ceil(T) * out.div_ceil(T)) as u64
    }

    /// Workgroups of dense_backward_weight_subgroup.
    pub fn backward_weight_subgroup_groups(inp: usize, out: usize) -> u64 {
        ((inp + 1).div_ceil(SUBGROUP_OUTPUTS) * out.div_ceil(SUBGROUP_SAMPLES)).div_ceil(SUBGROUP) as u64
    }

    /// Threads of dense_forward_subgroup or dense_backward_input_subgroup for n samples: one subgroup per tile.
    pub fn subgroup_threads(n: usize, out: usize) -> u64 {
        (n.div_ceil(SUBGROUP_SAMPLES) * out.div_ceil(SUBGROUP_OUTPUTS) * SUBGROUP) as u64
    }
}

/// The simd family's subgroup kernels read vec4s: the sizes and offsets they index by must be multiples of 4.
fn vec4_ok(values: &[usize]) -> bool {
    values.iter().all(|v| v.is_multiple_of(4))
}

/// dense_forward: `x` → `y`, optionally with ReLU. A tiled product too small to fill the GPU (fc1 at batch 64: 64 ×
/// 128 outputs over 1,568 inputs) splits its K over workgroups instead, and a second dispatch adds the parts in order
/// with the bias and ReLU.
pub fn forward(caps: Caps, s: &Dense, batch: usize, relu: bool, x: &str, y: &str) -> Lowered {
    let s = *s;
    let k = vec![c("IN", s.inp), c("OUT", s.out), c("W_OFF", s.w_off), c("B_OFF", s.b_off), flag("RELU", relu)];
    let flops = move |n| s.flops(n);
    let bytes = move |n: usize| f32_bytes(n * s.inp + s.weights() + n * s.out);
    let plan = match caps.family {
        Family::Simd if caps.subgroups_of_8 && vec4_ok(&[s.inp, s.w_off]) => {
            Plan::new("dense_forward_subgroup", k, &[x, "params", y, "step"])
                .threads(simd::SUBGROUP_WG, move |n| simd::subgroup_threads(n, s.out))
        }
        Family::Simd => {
            Plan::new("dense_forward", k, &[x, "params", y, "step"]).threads(simd::WG, move |n| simd::threads(n, s.out))
        }
        Family::Tiled => {
            let parts = format!("{y}.forward parts");
            let args = [x, "params", y, "step", &parts];
            let direct = tiles::choose(batch, s.out, 1);
            let (t, split) = tiles::choose_split(batch, s.out, s.inp);
            // Split only products big enough to be worth a second dispatch (fc2's 64 × 10 × 128 is not).
            let small = batch * s.out * s.inp < 1 << 20;
            if (direct.ks == 1 && direct.groups(batch, s.out) >= tiles::TARGET_GROUPS) || split == 1 || small {
                let t = direct.deepest(s.inp);
                let plan =
                    Plan::new("dense_forward_tiled", [k, vec![c("SPLIT", 1)], t.constants().into()].concat(), &args)
                        .groups(move |n| t.groups(n, s.out));
                return Lowered { plans: vec![plan.work(flops, bytes)], temps: vec![Temp { name: parts, floats: 1 }] };
            }
            let t = t.deepest(s.inp.div_ceil(split));
            let k = [k, vec![c("SPLIT", split)], t.constants().into()].concat();
            let main = Plan::new("dense_forward_tiled", k.clone(), &args)
                .groups(move |n| t.groups(n, s.out) * split as u64)
                .work(flops, move |n| bytes(n) + f32_bytes(split * n * s.out));
            let reduce = Plan::new("dense_forward_tiled_reduce", k, &args)
                .threads(tiles::WG, move |n| (n * s.out) as u64)
                .work(|_| 0.0, move |n| f32_bytes((split + 1) * n * s.out + s.out));
            return Lowered {
                plans: vec![main, reduce],
                temps: vec![Temp { name: parts, floats: split * batch * s.out }],
            };
        }
    };
    Lowered::one(plan.work(flops, bytes))
}

/// The input gradient `dy` → `dx`, through what produced the input (`source`): with `PooledRelu`, `dx` receives the
/// gradient with respect to the pre-pool activation (fused in the tiled kernel, a maxpool_backward after it in simd).
pub fn backward_input(caps: Caps, s: &Dense, batch: usize, dy: &str, dx: &str, source: Source) -> Lowered {
    let s = *s;
    let flops = move |n| s.flops(n);
    let bytes = move |n: usize| f32_bytes(n * s.out + s.weights() + 2 * n * s.inp);
    match caps.family {
        Family::Simd => {
            let (relu, mask, out) = match source {
                Source::Plain => (false, dy.to_string(), dx.to_string()),
                Source::Relu(x) => (true, x.to_string(), dx.to_string()),
                Source::PooledRelu { .. } => (false, dy.to_string(), format!("{dx}.pooled")),
            };
            let k = vec![c("IN", s.inp), c("OUT", s.out), c("W_OFF", s.w_off), flag("RELU", relu)];
            let args = [dy, "params", &mask, &out, "step"];
            let plan = if caps.subgroups_of_8 && vec4_ok(&[s.inp, s.out, s.w_off]) {
                Plan::new("dense_backward_input_subgroup", k, &args)
                    .threads(simd::SUBGROUP_WG, move |n| simd::subgroup_threads(n, s.inp))
            } else {
                Plan::new("dense_backward_input", k, &args).threads(simd::WG, move |n| simd::threads(n, s.inp))
            };
            let lowered = Lowered::one(plan.work(flops, bytes));
            match source {
                Source::PooledRelu { a, ph, pw } => {
                    let c = s.inp / (ph * pw);
                    let pool = maxpool::backward(c, 2 * ph, 2 * pw, true, a, &out, dx);
                    Lowered { temps: vec![Temp { name: out, floats: batch * s.inp }], ..lowered }.then(pool)
                }
                _ => lowered,
            }
        }
        Family::Tiled => {
            let t = tiles::choose(batch, s.inp, 1).deepest(s.out);
            let (relu, route, x, ph, pw) = match source {
                Source::Plain => (false, false, dy, 1, 1),
                Source::Relu(x) => (true, false, x, 1, 1),
                Source::PooledRelu { a, ph, pw } => (false, true, a, ph, pw),
            };
            let mut k = vec![c("IN", s.inp), c("OUT", s.out), c("W_OFF", s.w_off), flag("RELU", relu)];
            k.extend([flag("ROUTE", route), c("PH", ph), c("PW", pw)]);
            k.extend(t.constants());
            let routed = if route { 8 } else { 0 };
            Lowered::one(
                Plan::new("dense_backward_input_tiled", k, &[dy, "params", x, dx, "step"])
                    .groups(move |n| t.groups(n, s.inp))
                    .work(flops, move |n| bytes(n) + f32_bytes(routed * n * s.inp)),
            )
        }
    }
}

/// The weight and bias gradients from the layer's input `x` and output gradient `dy`, stored into `grads`.
pub fn backward_weight(caps: Caps, s: &Dense, batch: usize, x: &str, dy: &str, grads: &str) -> Lowered {
    let s = *s;
    let k = vec![c("IN", s.inp), c("OUT", s.out), c("W_OFF", s.w_off), c("B_OFF", s.b_off)];
    let args = [x, dy, grads, "step"];
    let plan = match caps.family {
        Family::Simd if caps.subgroups_of_8 && vec4_ok(&[s.inp, s.out, s.w_off, s.b_off]) => {
            let groups = simd::backward_weight_subgroup_groups(s.inp, s.out);
            Plan::new("dense_backward_weight_subgroup", k, &args).groups(move |_| groups)
        }
        Family::Simd => {
            let threads = simd::backward_weight_threads(s.inp, s.out);
            Plan::new("dense_backward_weight", k, &args).threads(simd::WG, move |_| threads)
        }
        Family::Tiled => {
            let t = tiles::choose(s.out, s.inp + 1, 1).deepest(batch);
            let groups = t.groups(s.out, s.inp + 1);
            Plan::new("dense_backward_weight_tiled", [k, t.constants().into()].concat(), &args).groups(move |_| groups)
        }
    };
    Lowered::one(plan.work(move |n| s.flops(n), move |n| f32_bytes(n * (s.inp + s.out) + s.weights())))
}
