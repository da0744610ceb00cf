//! Fully connected layer y = x·Wᵀ + b (`reference::dense`): forward (optionally with ReLU), the input gradient
//! (optionally with the backward of the ReLU, or of the max-pool and ReLU, that produced the input) and the weight
//! gradient, in both kernel families.
//!
//! Shaders: `dense_forward.wgsl`, `dense_backward_input.wgsl`, `dense_backward_weight.wgsl` and their `_subgroup`
//! variants (simd family), `dense_forward_tiled.wgsl`, `dense_backward_input_tiled.wgsl`,
//! `dense_backward_weight_tiled.wgsl` (tiled family).

use super::plan::{c, f32_bytes, flag, Lowered, Plan, Pool, Source, Temp};
use super::pool;
use super::tiles::{self, tiled_shader};
use crate::gpu::family::{Caps, Family};
use crate::gpu::shader::{shader, Shader};

/// The dense layer's kernels: the simd family's (with 8-lane subgroup variants) and the tiled family's.
pub const SHADERS: &[Shader] = &[
    shader!(
        "dense_forward.wgsl" + ["step.wgsl"],
        ["dense_forward"],
        [Read, Read, ReadWrite, Step],
        Some(Family::Simd),
        wg 8,
        shared 0
    ),
    shader!(
        "dense_forward_subgroup.wgsl" + ["step.wgsl"],
        ["dense_forward_subgroup"],
        [Read, Read, ReadWrite, Step],
        Some(Family::Simd),
        wg 64,
        shared 0,
        subgroups
    ),
    shader!(
        "dense_backward_input.wgsl" + ["step.wgsl"],
        ["dense_backward_input"],
        [Read, Read, Read, ReadWrite, Step],
        Some(Family::Simd),
        wg 8,
        shared 0
    ),
    shader!(
        "dense_backward_input_subgroup.wgsl" + ["step.wgsl"],
        ["dense_backward_input_subgroup"],
        [Read, Read, Read, ReadWrite, Step],
        Some(Family::Simd),
        wg 64,
        shared 0,
        subgroups
    ),
    shader!(
        "dense_backward_weight.wgsl" + ["step.wgsl"],
        ["dense_backward_weight"],
        [Read, Read, ReadWrite, Step],
        Some(Family::Simd),
        wg 8,
        shared 0
    ),
    shader!(
        "dense_backward_weight_subgroup.wgsl" + ["step.wgsl"],
        ["dense_backward_weight_subgroup"],
        [Read, Read, ReadWrite, Step],
        Some(Family::Simd),
        wg 64,
        shared 0,
        subgroups
    ),
    tiled_shader!(
        "dense_forward_tiled.wgsl",
        ["dense_forward_tiled", "dense_forward_tiled_reduce"],
        [Read, Read, ReadWrite, Step, ReadWrite]
    ),
    tiled_shader!(
        "dense_backward_input_tiled.wgsl",
        ["dense_backward_input_tiled"],
        [Read, Read, Read, ReadWrite, Step]
    ),
    tiled_shader!("dense_backward_weight_tiled.wgsl", ["dense_backward_weight_tiled"], [Read, Read, ReadWrite, Step]),
];

/// Shapes a kernel cannot take: the simd family's subgroup kernels read vec4s, so the sizes and offsets they index by
/// must be multiples of 4 (fc1's 1,568 and 128 are; fc2's 10 outputs are not, so fc2 takes the plain kernels).
pub fn check_shape(entry: &str, get: &dyn Fn(&str) -> f64) -> Result<(), String> {
    let vec4: &[&str] = match entry {
        "dense_forward_subgroup" => &["IN", "W_OFF"],
        "dense_backward_input_subgroup" => &["IN", "OUT", "W_OFF"],
        "dense_backward_weight_subgroup" => &["IN", "OUT", "W_OFF", "B_OFF"],
        _ => &[],
    };
    for &name in vec4 {
        if !(get(name) as u64).is_multiple_of(4) {
            return Err(format!("{entry}: {name} = {} must be a multiple of 4 (the kernel reads vec4s)", get(name)));
        }
    }
    Ok(())
}

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
            let direct = tiles::choose(batch, s.out, 1).deepest(s.inp);
            let (t, split) = tiles::choose_split(batch, s.out, s.inp);
            // Unsplit where that fills the GPU in short chains; split only products big enough to be worth a second
            // dispatch (fc2's 64 × 10 × 128 is not).
            let fills = direct.ks == 1 && direct.groups(batch, s.out) >= tiles::TARGET_GROUPS;
            let short = tiles::steps(direct, s.inp, 1) <= tiles::MAX_STEPS;
            let small = batch * s.out * s.inp < 1 << 20;
            if (fills && short) || split == 1 || small {
                let t = direct;
                let plan =
                    Plan::new("dense_forward_tiled", [k, vec![c("SPLIT", 1)], t.constants().into()].concat(), &args)
                        .groups(move |n| t.groups(n, s.out))
                        .steps(move |_| tiles::steps(t, s.inp, 1));
                return Lowered { plans: vec![plan.work(flops, bytes)], temps: vec![Temp { name: parts, floats: 1 }] };
            }
            let t = t.deepest(s.inp.div_ceil(split));
            let k = [k, vec![c("SPLIT", split)], t.constants().into()].concat();
            let main = Plan::new("dense_forward_tiled", k.clone(), &args)
                .groups(move |n| t.groups(n, s.out) * split as u64)
                .steps(move |_| tiles::steps(t, s.inp, split))
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
/// gradient with respect to the pre-pool activation (a max-pool fused in the tiled kernel; otherwise the pool's
/// backward after it, `pool::backward_through`).
pub fn backward_input(caps: Caps, s: &Dense, batch: usize, dy: &str, dx: &str, source: Source) -> Lowered {
    let s = *s;
    let flops = move |n| s.flops(n);
    let bytes = move |n: usize| f32_bytes(n * s.out + s.weights() + 2 * n * s.inp);
    let (relu, pooled) = match source {
        Source::Plain => (None, None),
        Source::Relu(x) => (Some(x), None),
        Source::PooledRelu { a, ph, pw, pool } => (None, Some((a, ph, pw, pool))),
    };
    let fused = pooled.filter(|p| p.3 == Pool::Max && caps.family == Family::Tiled);
    let after = pooled.filter(|_| fused.is_none());
    let out = match after {
        Some(_) => format!("{dx}.pooled"),
        None => dx.to_string(),
    };
    let plan = match caps.family {
        Family::Simd => {
            let k = vec![c("IN", s.inp), c("OUT", s.out), c("W_OFF", s.w_off), flag("RELU", relu.is_some())];
            let args = [dy, "params", relu.unwrap_or(dy), &out, "step"];
            if caps.subgroups_of_8 && vec4_ok(&[s.inp, s.out, s.w_off]) {
                Plan::new("dense_backward_input_subgroup", k, &args)
                    .threads(simd::SUBGROUP_WG, move |n| simd::subgroup_threads(n, s.inp))
            } else {
                Plan::new("dense_backward_input", k, &args).threads(simd::WG, move |n| simd::threads(n, s.inp))
            }
            .work(flops, bytes)
        }
        Family::Tiled => {
            let t = tiles::choose(batch, s.inp, 1).deepest(s.out);
            let (x, ph, pw) = match (fused, relu) {
                (Some((a, ph, pw, _)), _) => (a, ph, pw),
                (None, Some(x)) => (x, 1, 1),
                (None, None) => (dy, 1, 1),
            };
            let mut k = vec![c("IN", s.inp), c("OUT", s.out), c("W_OFF", s.w_off), flag("RELU", relu.is_some())];
            k.extend([flag("ROUTE", fused.is_some()), c("PH", ph), c("PW", pw)]);
            k.extend(t.constants());
            let routed = if fused.is_some() { 8 } else { 0 };
            Plan::new("dense_backward_input_tiled", k, &[dy, "params", x, &out, "step"])
                .groups(move |n| t.groups(n, s.inp))
                .steps(move |_| tiles::steps(t, s.out, 1))
                .work(flops, move |n| bytes(n) + f32_bytes(routed * n * s.inp))
        }
    };
    let lowered = Lowered::one(plan);
    match after {
        Some((a, ph, pw, p)) => {
            let back = pool::backward_through(p, s.inp / (ph * pw), 2 * ph, 2 * pw, a, &out, dx);
            Lowered { temps: vec![Temp { name: out.clone(), floats: batch * s.inp }], ..lowered }.then(back)
        }
        None => lowered,
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
            Plan::new("dense_backward_weight_tiled", [k, t.constants().into()].concat(), &args)
                .groups(move |_| groups)
                .steps(move |n| tiles::steps(t, n, 1))
        }
    };
    Lowered::one(plan.work(move |n| s.flops(n), move |n| f32_bytes(n * (s.inp + s.out) + s.weights())))
}
