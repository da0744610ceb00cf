//! Convolution, stride 1 (`reference::conv2d`): forward (with bias, ReLU and a 2×2 max-pool fused), the input gradient
//! and the weight gradient, in both kernel families: the simd family's kernels are 3×3 with padding 1, the tiled
//! family's any K×K (K ≤ 7) with any padding below K.
//!
//! Shaders: `conv2d_forward.wgsl`, `conv2d_forward_subgroup.wgsl`, `conv2d_backward_input.wgsl`,
//! `conv2d_backward_weight.wgsl`, `conv2d_backward_weight_subgroup.wgsl` (simd family) and `conv2d_forward_tiled.wgsl`,
//! `conv2d_backward_input_tiled.wgsl`, `conv2d_backward_weight_tiled.wgsl` (tiled family).

use super::plan::{c, f32_bytes, flag, Lowered, Plan, Pool, Source, Temp};
use super::tiles::{self, tiled_shader, Tiles};
use super::{avgpool, pool};
use crate::gpu::family::{Caps, Family};
use crate::gpu::shader::{shader, Shader};

/// The convolution's kernels: the simd family's (with 8-lane subgroup variants) and the tiled family's.
pub const SHADERS: &[Shader] = &[
    shader!(
        "conv2d_forward.wgsl" + ["step.wgsl"],
        ["conv2d_forward"],
        [Read, Weights, ReadWrite, Step, ReadWrite],
        Some(Family::Simd),
        wg 64,
        shared 0
    ),
    shader!(
        "conv2d_forward_subgroup.wgsl" + ["step.wgsl"],
        ["conv2d_forward_subgroup"],
        [Read, Weights, ReadWrite, Step, ReadWrite],
        Some(Family::Simd),
        wg 64,
        shared 0,
        subgroups
    ),
    shader!(
        "conv2d_backward_input.wgsl" + ["step.wgsl"],
        ["conv2d_backward_input"],
        [Read, Weights, ReadWrite, Step],
        Some(Family::Simd),
        wg 64,
        shared 0
    ),
    shader!(
        "conv2d_backward_weight.wgsl" + ["step.wgsl"],
        ["conv2d_backward_weight", "conv2d_backward_weight_reduce"],
        [Read, Read, ReadWrite, Step, ReadWrite],
        Some(Family::Simd),
        wg 64,
        shared 10240
    ),
    shader!(
        "conv2d_backward_weight_subgroup.wgsl" + ["step.wgsl"],
        ["conv2d_backward_weight_subgroup"],
        [Read, Read, ReadWrite, Step, ReadWrite],
        Some(Family::Simd),
        wg 64,
        shared 10240,
        subgroups
    ),
    tiled_shader!("conv2d_forward_tiled.wgsl", ["conv2d_forward_tiled"], [Read, Read, ReadWrite, Step, ReadWrite]),
    tiled_shader!(
        "conv2d_backward_input_tiled.wgsl",
        ["conv2d_backward_input_tiled"],
        [Read, Read, ReadWrite, Step, Read]
    ),
    tiled_shader!(
        "conv2d_backward_weight_tiled.wgsl",
        ["conv2d_backward_weight_tiled", "conv2d_backward_weight_tiled_reduce"],
        [Read, Read, ReadWrite, Step, ReadWrite]
    ),
];

/// Shapes a kernel cannot take: the simd convolutions read their rows as aligned pairs, so W must be even; the tiled
/// forward's fused 2×2 max-pool needs even H and W. `get` reads an override constant (0 where unset).
pub fn check_shape(entry: &str, get: &dyn Fn(&str) -> f64) -> Result<(), String> {
    if !entry.contains("_tiled") && !(get("W") as u64).is_multiple_of(2) {
        return Err(format!("{entry}: W = {} must be even (the kernel reads its rows as pairs)", get("W")));
    }
    // The tiled kernels' kernel side and padding (3 and 1 where not given, as in their shaders).
    let (k, pad) = if get("KSIZE") > 0.0 { (get("KSIZE"), get("PAD")) } else { (3.0, 1.0) };
    let (oh, ow) = (get("H") + 2.0 * pad + 1.0 - k, get("W") + 2.0 * pad + 1.0 - k);
    if oh < 1.0 || ow < 1.0 || pad >= k {
        return Err(format!(
            "{entry}: a {k}×{k} kernel with padding {pad} does not fit a {}×{} map",
            get("H"),
            get("W")
        ));
    }
    if entry == "conv2d_forward_tiled" && get("POOL") != 0.0 && (oh as u64 % 2 == 1 || ow as u64 % 2 == 1) {
        return Err(format!("{entry}: the output, {oh}×{ow}, must have even sides for the fused 2×2 max-pool"));
    }
    Ok(())
}

/// One convolution layer: channels, input plane, kernel side and padding, and where its weight [COUT, CIN, K, K] and
/// bias sit in the parameters. Its output plane is `oh()` × `ow()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv {
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub pad: usize,
    pub w_off: usize,
    pub b_off: usize,
}

impl Conv {
    /// A 3×3, padding-1 convolution (the study's, and the only one the simd kernels take).
    pub fn same3(cin: usize, cout: usize, h: usize, w: usize, w_off: usize, b_off: usize) -> Conv {
        Conv { cin, cout, h, w, k: 3, pad: 1, w_off, b_off }
    }

    pub fn oh(&self) -> usize {
        self.h + 2 * self.pad + 1 - self.k
    }

    pub fn ow(&self) -> usize {
        self.w + 2 * self.pad + 1 - self.k
    }

    /// The override constants of its shape: the simd kernels' (3×3, padding 1 only), or the tiled ones' with the
    /// kernel side and padding.
    fn shape(&self, family: Family) -> Vec<(&'static str, f64)> {
        let mut k = vec![c("CIN", self.cin), c("COUT", self.cout), c("H", self.h), c("W", self.w)];
        match family {
            Family::Simd => assert!((self.k, self.pad) == (3, 1), "the simd kernels are 3×3, padding 1 (gpu::caps)"),
            Family::Tiled => k.extend([c("KSIZE", self.k), c("PAD", self.pad)]),
        }
        k
    }

    /// FLOPs of one pass (forward, input gradient or weight gradient) over n samples.
    pub fn flops(&self, n: usize) -> f64 {
        2.0 * (n * self.cin * self.cout * self.k * self.k * self.oh() * self.ow()) as f64
    }

    fn input(&self, n: usize) -> usize {
        n * self.cin * self.h * self.w
    }

    fn output(&self, n: usize) -> usize {
        n * self.cout * self.oh() * self.ow()
    }

    fn weights(&self) -> usize {
        self.cout * self.cin * self.k * self.k + self.cout
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

/// conv2d_forward with bias, optionally ReLU and a 2×2 pool: `x` → `y` (the pre-pool output) and `pooled`. A max-pool
/// is fused into the kernel (which then stores `y` only where the step block's `full` is set); an average pool runs
/// after it (`avgpool::forward`). `batch`: the largest n it will run with (the tiled family sizes its tiles for it).
#[allow(clippy::too_many_arguments)]
pub fn forward(
    caps: Caps,
    s: &Conv,
    batch: usize,
    relu: bool,
    pool: Option<Pool>,
    x: &str,
    y: &str,
    pooled: &str,
) -> Lowered {
    let s = *s;
    let (oh, ow) = (s.oh(), s.ow());
    let max = pool == Some(Pool::Max);
    let mut k = s.shape(caps.family);
    k.extend([c("W_OFF", s.w_off), c("B_OFF", s.b_off), flag("RELU", relu), flag("POOL", max)]);
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
            let t = tiles::choose(s.cout, batch * oh * ow, if max { 4 } else { 1 }).deepest(s.cin * s.k * s.k);
            k.extend(t.constants());
            Plan::new("conv2d_forward_tiled", k, &[x, "params", y, "step", pooled])
                .groups(move |n| t.groups(s.cout, n * oh * ow))
                .steps(move |_| tiles::steps(t, s.cin * s.k * s.k, 1))
        }
    };
    let out = move |n: usize| s.output(n) + if max { s.output(n) / 4 } else { 0 };
    let conv = Lowered::one(plan.work(move |n| s.flops(n), move |n| f32_bytes(s.input(n) + s.weights() + out(n))));
    match pool {
        Some(Pool::Avg) => conv.then(avgpool::forward(s.cout, oh, ow, y, pooled)),
        _ => conv,
    }
}

/// The input gradient `dy` → `dx`, carried back through what produced the input (`source`): with `Relu(a)` (the
/// convolution before, unpooled) `dx` is masked by a > 0; with `PooledRelu { a, pool, .. }` the input was the 2×2 pool
/// of the ReLU output `a` [n, CIN, 2H, 2W], and `dx` receives the gradient with respect to `a`'s pre-activation. The
/// tiled kernel fuses the mask and the max-pool's routing; otherwise the pool's backward runs after it
/// (`pool::backward_through`). The simd family has no ReLU-only mask (`gpu::caps::for_arch` keeps such networks off it).
pub fn backward_input(caps: Caps, s: &Conv, batch: usize, dy: &str, dx: &str, source: Source) -> Lowered {
    let s = *s;
    let flops = move |n| s.flops(n);
    // `fused`: the max-pool routed in the tiled kernel; `after`: a pool's backward run after the kernel.
    let (relu, pooled) = match source {
        Source::Plain => (None, None),
        Source::Relu(a) => (Some(a), None),
        Source::PooledRelu { a, ph, pw, pool } => {
            assert_eq!((ph, pw), (s.h, s.w), "a convolution's routed input is its own map");
            (None, Some((a, pool)))
        }
    };
    let fused = match pooled {
        Some((a, Pool::Max)) if caps.family == Family::Tiled => Some(a),
        _ => None,
    };
    let after = pooled.filter(|_| fused.is_none());
    // What the mask or the routing reads and writes beyond dx, in input-sized tensors.
    let extra = if fused.is_some() { 8 } else { relu.map_or(0, |_| 1) };
    let bytes = move |n: usize| f32_bytes(s.output(n) + s.weights() + s.input(n) + extra * s.input(n));
    let out = match after {
        Some(_) => format!("{dx}.pooled"),
        None => dx.to_string(),
    };
    let mut k = s.shape(caps.family);
    k.push(c("W_OFF", s.w_off));
    let plan = match caps.family {
        Family::Simd => {
            assert!(relu.is_none(), "the simd family has no ReLU-masked convolution input gradient (gpu::caps)");
            Plan::new("conv2d_backward_input", k, &[dy, "params", &out, "step"])
                .groups(move |n| simd::backward_input_groups(n, s.cin, s.h, s.w))
        }
        Family::Tiled => {
            let t = tiles::choose(s.cin, batch * s.h * s.w, 1).deepest(s.cout * s.k * s.k);
            k.extend([flag("ROUTE", fused.is_some()), flag("RELU", relu.is_some())]);
            k.extend(t.constants());
            let a = fused.or(relu).unwrap_or(dy);
            Plan::new("conv2d_backward_input_tiled", k, &[dy, "params", &out, "step", a])
                .groups(move |n| t.groups(s.cin, n * s.h * s.w))
                .steps(move |_| tiles::steps(t, s.cout * s.k * s.k, 1))
        }
    };
    let lowered = Lowered::one(plan.work(flops, bytes));
    match after {
        Some((a, p)) => {
            let back = pool::backward_through(p, s.cin, 2 * s.h, 2 * s.w, a, &out, dx);
            Lowered { temps: vec![Temp { name: out.clone(), floats: s.input(batch) }], ..lowered }.then(back)
        }
        None => lowered,
    }
}

/// The weight and bias gradients from the layer's input `x` and output gradient `dy`, stored into `grads` at the
/// layer's offsets. Layers with few channel blocks (simd) or any layer (tiled) split the reduction over the batch over
/// several workgroups and add the parts in order in a second dispatch.
pub fn backward_weight(caps: Caps, s: &Conv, batch: usize, x: &str, dy: &str, grads: &str, layer: &str) -> Lowered {
    let s = *s;
    let flops = move |n| s.flops(n);
    let partials = format!("{layer}.weight-gradient parts");
    let mut k = s.shape(caps.family);
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
            let cols = s.cin * s.k * s.k + 1;
            let pixels = batch * s.oh() * s.ow();
            let (t, split): (Tiles, usize) = tiles::choose_split(s.cout, cols, pixels);
            let tile_count = t.groups(s.cout, cols);
            let t = t.deepest(pixels.div_ceil(split));
            k.push(c("SPLIT", split));
            k.extend(t.constants());
            let args = [x, dy, grads, "step", &partials];
            let bytes = move |n: usize| f32_bytes(s.input(n) + s.output(n) + s.weights() * split);
            let main = Plan::new("conv2d_backward_weight_tiled", k.clone(), &args)
                .groups(move |_| tile_count * split as u64)
                .steps(move |n| tiles::steps(t, n * s.oh() * s.ow(), split));
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
