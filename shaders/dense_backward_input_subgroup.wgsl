// dense_backward_input_subgroup: dense_backward_input (dx = dy · w, optionally fused with the backward of the ReLU
// that produced the input: dx = 0 where x ≤ 0) for adapters whose subgroups are exactly 8 invocations wide, such as
// lavapipe's 8-lane SIMD. Same bindings, constants and results as dense_backward_input.wgsl; the host picks this
// kernel where the adapter has subgroups of 8 and the shape suits it (IN, OUT and W_OFF multiples of 4).
//
// Bindings (group 0):
//   0 dy      f32 output gradient [n, OUT], read as vec4s                read
//   1 params  f32 all parameters, read as vec4s; weight [OUT, IN] at
//             W_OFF                                                     read
//   2 x       f32 the layer's input [n, IN] (only for the ReLU mask)     read
//   3 dx      f32 input gradient [n, IN], written as vec4s              write
//   4 step    uniform: n (batch length)
// A subgroup computes a tile of 16 samples × 32 input features: lane l owns features i0 + 4l … i0 + 4l + 3 (one vec4
// of each weight row) for all 16 samples (4 mat4x4 accumulators). Per 4 output features each lane loads its 4 weight
// vec4s, and the 8 lanes load the 16 samples' dy vec4s together (2 each) and pass them round with subgroupShuffle (see
// dense_forward_subgroup.wgsl). A workgroup is 8 subgroups, 8 tiles. A partial tile repeats its last sample or
// features (clamped loads) and skips those stores; a subgroup past the last tile returns as a whole.


enable subgroups;

override IN: u32 = 1568u;
override OUT: u32 = 128u;
override W_OFF: u32 = 0u;
override RELU: bool = false;

const SG: u32 = 8u; // subgroup width (the host's dense::simd::SUBGROUP)
const TS: u32 = 16u; // samples per tile (the host's dense::simd::SUBGROUP_SAMPLES)
const TI: u32 = 32u; // input features per tile (the host's dense::simd::SUBGROUP_OUTPUTS)
const WG: u32 = 64u; // 8 subgroups

@group(0) @binding(0) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> params: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dx: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> step: Step; // shaders/step.wgsl, appended by the host

// Sample s's four dy values (s a constant after inlining), from the lane that loaded them.
fn sample(lo: vec4<f32>, hi: vec4<f32>, s: u32) -> vec4<f32> {
    if s < SG {
        return subgroupShuffle(lo, s);
    }
    return subgroupShuffle(hi, s - SG);
}

// Adds output feature c of the 16 samples (four vec4s, samples 4q…4q+3 in the q-th) times the weights w (one per
// owned input feature).
fn fma4(acc: ptr<function, array<mat4x4<f32>, 4>>, g: array<vec4<f32>, 4>, w: vec4<f32>) {
    (*acc)[0] += mat4x4<f32>(g[0] * w.x, g[1] * w.x, g[2] * w.x, g[3] * w.x);
    (*acc)[1] += mat4x4<f32>(g[0] * w.y, g[1] * w.y, g[2] * w.y, g[3] * w.y);
    (*acc)[2] += mat4x4<f32>(g[0] * w.z, g[1] * w.z, g[2] * w.z, g[3] * w.z);
    (*acc)[3] += mat4x4<f32>(g[0] * w.w, g[1] * w.w, g[2] * w.w, g[3] * w.w);
}

// Component c of the 16 samples' vec4s, as four vec4s of samples.
fn column(v: array<vec4<f32>, 16>, c: u32) -> array<vec4<f32>, 4> {
    return array<vec4<f32>, 4>(
        vec4<f32>(v[0][c], v[1][c], v[2][c], v[3][c]),
        vec4<f32>(v[4][c], v[5][c], v[6][c], v[7][c]),
        vec4<f32>(v[8][c], v[9][c], v[10][c], v[11][c]),
        vec4<f32>(v[12][c], v[13][c], v[14][c], v[15][c]),
    );
}

@compute @workgroup_size(WG)
fn dense_backward_input_subgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_id) sid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let iblocks = (IN + TI - 1u) / TI;
    let tiles = iblocks * ((step.n + TS - 1u) / TS);
    let t = (wid.x + wid.y * nwg.x) * (WG / SG) + sid;
    if t >= tiles {
        return; // the whole subgroup
    }
    let i = (t % iblocks) * TI + 4u * lane; // this lane's first input feature
    let b0 = (t / iblocks) * TS;
    let o4 = OUT / 4u;
    // This lane's two dy rows (loaded for the whole subgroup), and its column of the weights, in vec4s.
    let glo = min(b0 + lane, step.n - 1u) * o4;
    let ghi = min(b0 + lane + SG, step.n - 1u) * o4;
    let wcol = (W_OFF + min(i, IN - 4u)) / 4u;
    let wrow = IN / 4u; // vec4s per weight row

    // acc[j]: input feature i + j; column q of it: samples b0 + 4q … b0 + 4q + 3.
    var acc: array<mat4x4<f32>, 4>;
    for (var k = 0u; k < o4; k++) {
        let lo = dy[glo + k];
        let hi = dy[ghi + k];
        let g = array<vec4<f32>, 16>(
            sample(lo, hi, 0u), sample(lo, hi, 1u), sample(lo, hi, 2u), sample(lo, hi, 3u),
            sample(lo, hi, 4u), sample(lo, hi, 5u), sample(lo, hi, 6u), sample(lo, hi, 7u),
            sample(lo, hi, 8u), sample(lo, hi, 9u), sample(lo, hi, 10u), sample(lo, hi, 11u),
            sample(lo, hi, 12u), sample(lo, hi, 13u), sample(lo, hi, 14u), sample(lo, hi, 15u),
        );
        let w = wcol + 4u * k * wrow; // output feature 4k's row
        fma4(&acc, column(g, 0u), params[w]);
        fma4(&acc, column(g, 1u), params[w + wrow]);
        fma4(&acc, column(g, 2u), params[w + 2u * wrow]);
        fma4(&acc, column(g, 3u), params[w + 3u * wrow]);
    }
    if i >= IN {
        return;
    }
    // Sample b0 + s of the 4 features, one vec4 store each (masked by the ReLU's input).
    for (var s = 0u; s < TS; s++) {
        let b = b0 + s;
        if b < step.n {
            let e = (b * IN + i) / 4u;
            let v = vec4<f32>(acc[0][s / 4u][s % 4u], acc[1][s / 4u][s % 4u], acc[2][s / 4u][s % 4u], acc[3][s / 4u][s % 4u]);
            if RELU {
                dx[e] = select(vec4<f32>(0.0), v, x[e] > vec4<f32>(0.0));
            } else {
                dx[e] = v;
            }
        }
    }
}
