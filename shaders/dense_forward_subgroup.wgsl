// dense_forward_subgroup: dense_forward (y = x · wᵀ + b, optionally fused with ReLU) for adapters whose subgroups are
// exactly 8 invocations wide, such as lavapipe's 8-lane SIMD. Same bindings, constants and results as
// dense_forward.wgsl; the host picks this kernel where the adapter has subgroups of 8.
//
// Bindings (group 0):
//   0 x       f32 input [n, IN], IN a multiple of 4, read as vec4s      read
//   1 params  f32 all parameters, read as vec4s; weight [OUT, IN] at
//             W_OFF (a multiple of 4), bias [OUT] at B_OFF              read
//   2 y       f32 output [n, OUT]                                        write
//   3 step    uniform: n (batch length)
// A subgroup computes a tile of 16 samples × 32 output features: lane l owns features o0 + l, o0 + l + 8, o0 + l + 16,
// o0 + l + 24 for all 16 samples (4 mat4x4 accumulators). Per 4 input features each lane loads its 4 weight rows'
// vec4s, and the 8 lanes load the 16 samples' vec4s together (2 each) and pass them round with subgroupShuffle (on
// lavapipe a load loops over the lanes, a shuffle with a constant lane is one extract each component). A workgroup is
// 8 subgroups, 8 tiles. A partial tile repeats its last sample or feature (clamped loads) and skips those stores; a
// subgroup past the last tile returns as a whole.


enable subgroups;

override IN: u32 = 1568u;
override OUT: u32 = 128u;
override W_OFF: u32 = 0u;
override B_OFF: u32 = 0u;
override RELU: bool = true;

const SG: u32 = 8u; // subgroup width (the host's dense::simd::SUBGROUP)
const TS: u32 = 16u; // samples per tile (the host's dense::simd::SUBGROUP_SAMPLES)
const TO: u32 = 32u; // output features per tile (the host's dense::simd::SUBGROUP_OUTPUTS)
const WG: u32 = 64u; // 8 subgroups

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> params: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> step: Step; // shaders/step.wgsl, appended by the host

// Parameter i, out of the vec4 view.
fn param(i: u32) -> f32 {
    return params[i / 4u][i % 4u];
}

// Sample s's four inputs (s a constant after inlining), from the lane that loaded them.
fn sample(lo: vec4<f32>, hi: vec4<f32>, s: u32) -> vec4<f32> {
    if s < SG {
        return subgroupShuffle(lo, s);
    }
    return subgroupShuffle(hi, s - SG);
}

// Adds input feature c (0…3) of the 16 samples (as four vec4s, samples 4q…4q+3 in the q-th) times the weights w.
fn fma4(acc: ptr<function, array<mat4x4<f32>, 4>>, xs: array<vec4<f32>, 4>, w: vec4<f32>) {
    (*acc)[0] += mat4x4<f32>(xs[0] * w.x, xs[1] * w.x, xs[2] * w.x, xs[3] * w.x);
    (*acc)[1] += mat4x4<f32>(xs[0] * w.y, xs[1] * w.y, xs[2] * w.y, xs[3] * w.y);
    (*acc)[2] += mat4x4<f32>(xs[0] * w.z, xs[1] * w.z, xs[2] * w.z, xs[3] * w.z);
    (*acc)[3] += mat4x4<f32>(xs[0] * w.w, xs[1] * w.w, xs[2] * w.w, xs[3] * w.w);
}

// Feature c of the 16 samples' vec4s, as four vec4s of samples.
fn column(v: array<vec4<f32>, 16>, c: u32) -> array<vec4<f32>, 4> {
    return array<vec4<f32>, 4>(
        vec4<f32>(v[0][c], v[1][c], v[2][c], v[3][c]),
        vec4<f32>(v[4][c], v[5][c], v[6][c], v[7][c]),
        vec4<f32>(v[8][c], v[9][c], v[10][c], v[11][c]),
        vec4<f32>(v[12][c], v[13][c], v[14][c], v[15][c]),
    );
}

// Stores feature o's 16 samples from b0 (m: column q = samples 4q…4q+3).
fn put(b0: u32, o: u32, m: mat4x4<f32>) {
    if o >= OUT {
        return;
    }
    let bias = param(B_OFF + o);
    for (var s = 0u; s < TS; s++) {
        if b0 + s < step.n {
            var v = m[s / 4u][s % 4u] + bias;
            if RELU {
                v = max(v, 0.0);
            }
            y[(b0 + s) * OUT + o] = v;
        }
    }
}

@compute @workgroup_size(WG)
fn dense_forward_subgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_id) sid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let oblocks = (OUT + TO - 1u) / TO;
    let tiles = oblocks * ((step.n + TS - 1u) / TS);
    let t = (wid.x + wid.y * nwg.x) * (WG / SG) + sid;
    if t >= tiles {
        return; // the whole subgroup
    }
    let o0 = (t % oblocks) * TO;
    let b0 = (t / oblocks) * TS;
    let k4 = IN / 4u;
    // This lane's two sample rows (loaded for the whole subgroup) and four weight rows, in vec4s.
    let xlo = min(b0 + lane, step.n - 1u) * k4;
    let xhi = min(b0 + lane + SG, step.n - 1u) * k4;
    let w0 = (W_OFF + min(o0 + lane, OUT - 1u) * IN) / 4u;
    let w1 = (W_OFF + min(o0 + lane + 8u, OUT - 1u) * IN) / 4u;
    let w2 = (W_OFF + min(o0 + lane + 16u, OUT - 1u) * IN) / 4u;
    let w3 = (W_OFF + min(o0 + lane + 24u, OUT - 1u) * IN) / 4u;

    // acc[j]: feature o0 + lane + 8j; column q of it: samples b0 + 4q … b0 + 4q + 3.
    var acc0: array<mat4x4<f32>, 4>;
    for (var k = 0u; k < k4; k++) {
        let lo = x[xlo + k];
        let hi = x[xhi + k];
        let xs = array<vec4<f32>, 16>(
            sample(lo, hi, 0u), sample(lo, hi, 1u), sample(lo, hi, 2u), sample(lo, hi, 3u),
            sample(lo, hi, 4u), sample(lo, hi, 5u), sample(lo, hi, 6u), sample(lo, hi, 7u),
            sample(lo, hi, 8u), sample(lo, hi, 9u), sample(lo, hi, 10u), sample(lo, hi, 11u),
            sample(lo, hi, 12u), sample(lo, hi, 13u), sample(lo, hi, 14u), sample(lo, hi, 15u),
        );
        // w[c]: input feature k·4 + c of this lane's four weight rows.
        let r0 = params[w0 + k];
        let r1 = params[w1 + k];
        let r2 = params[w2 + k];
        let r3 = params[w3 + k];
        fma4(&acc0, column(xs, 0u), vec4<f32>(r0.x, r1.x, r2.x, r3.x));
        fma4(&acc0, column(xs, 1u), vec4<f32>(r0.y, r1.y, r2.y, r3.y));
        fma4(&acc0, column(xs, 2u), vec4<f32>(r0.z, r1.z, r2.z, r3.z));
        fma4(&acc0, column(xs, 3u), vec4<f32>(r0.w, r1.w, r2.w, r3.w));
    }
    put(b0, o0 + lane, acc0[0]);
    put(b0, o0 + lane + 8u, acc0[1]);
    put(b0, o0 + lane + 16u, acc0[2]);
    put(b0, o0 + lane + 24u, acc0[3]);
}
