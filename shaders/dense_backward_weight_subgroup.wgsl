// dense_backward_weight_subgroup: dense_backward_weight (dw[o, i] = Σ_b dy[b, o] · x[b, i], db[o] = Σ_b dy[b, o],
// summed over the batch in sample order) for adapters whose subgroups are exactly 8 invocations wide, such as
// lavapipe's 8-lane SIMD. Same bindings, constants and results as dense_backward_weight.wgsl; the host picks this
// kernel where the adapter has subgroups of 8 and the shape suits it (IN, OUT, W_OFF and B_OFF multiples of 4).
//
// Bindings (group 0):
//   0 x      f32 the layer's input [n, IN], read as vec4s                 read
//   1 dy     f32 output gradient [n, OUT], read as vec4s                  read
//   2 grads  f32 all gradients, written as vec4s; dw [OUT, IN] at W_OFF,
//            db [OUT] at B_OFF                                           write
//   3 step   uniform: n (batch length)
// A subgroup computes a tile of 16 outputs × 32 columns of [dw | db] (column IN is the bias, x = 1): lane l owns
// columns i0 + 4l … i0 + 4l + 3 (one vec4 of each x row) for the 16 outputs (16 vec4 accumulators). Per sample each lane
// loads its x vec4, the subgroup loads the 16 dy values once (4 vec4s, lanes 0–3) and passes them round with
// subgroupShuffle (see dense_forward_subgroup.wgsl). A workgroup is 8 subgroups, 8 tiles. A partial tile computes
// clamped duplicates and skips those stores; a subgroup past the last tile returns as a whole.


enable subgroups;

override IN: u32 = 1568u;
override OUT: u32 = 128u;
override W_OFF: u32 = 0u;
override B_OFF: u32 = 0u;

const SG: u32 = 8u; // subgroup width (the host's dense::simd::SUBGROUP)
const TO: u32 = 16u; // outputs per tile (the host's dense::simd::SUBGROUP_SAMPLES)
const TI: u32 = 32u; // columns per tile (the host's dense::simd::SUBGROUP_OUTPUTS)
const WG: u32 = 64u; // 8 subgroups

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> grads: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> step: Step; // shaders/step.wgsl, appended by the host

// acc[q] (column c: output o0 + 4q + c, over this lane's 4 columns) += g[q][c] · xv.
fn fma16(acc: ptr<function, array<mat4x4<f32>, 4>>, g: array<vec4<f32>, 4>, xv: vec4<f32>) {
    (*acc)[0] += mat4x4<f32>(xv * g[0].x, xv * g[0].y, xv * g[0].z, xv * g[0].w);
    (*acc)[1] += mat4x4<f32>(xv * g[1].x, xv * g[1].y, xv * g[1].z, xv * g[1].w);
    (*acc)[2] += mat4x4<f32>(xv * g[2].x, xv * g[2].y, xv * g[2].z, xv * g[2].w);
    (*acc)[3] += mat4x4<f32>(xv * g[3].x, xv * g[3].y, xv * g[3].z, xv * g[3].w);
}

// Stores outputs o0 + 4q … o0 + 4q + 3 of this lane's columns from i (weights), or their biases (i = IN).
fn put(o: u32, i: u32, m: mat4x4<f32>) {
    if i == IN {
        if o < OUT {
            grads[(B_OFF + o) / 4u] = vec4<f32>(m[0].x, m[1].x, m[2].x, m[3].x);
        }
        return;
    }
    for (var c = 0u; c < 4u; c++) {
        if o + c < OUT {
            grads[(W_OFF + (o + c) * IN + i) / 4u] = m[c];
        }
    }
}

@compute @workgroup_size(WG)
fn dense_backward_weight_subgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_id) sid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let iblocks = (IN + 1u + TI - 1u) / TI; // IN weight columns and the bias column
    let tiles = iblocks * ((OUT + TO - 1u) / TO);
    let t = (wid.x + wid.y * nwg.x) * (WG / SG) + sid;
    if t >= tiles {
        return; // the whole subgroup
    }
    let i = (t % iblocks) * TI + 4u * lane; // this lane's first column
    let o0 = (t / iblocks) * TO;
    let bias = i == IN;
    let xcol = min(i, IN - 4u) / 4u;
    let gcol = min(o0 + 4u * (lane % 4u), OUT - 4u) / 4u; // lanes 0–3 load the tile's dy; 4–7 repeat them
    let in4 = IN / 4u;
    let out4 = OUT / 4u;

    var acc: array<mat4x4<f32>, 4>;
    for (var b = 0u; b < step.n; b++) {
        let mine = dy[b * out4 + gcol];
        let g = array<vec4<f32>, 4>(
            subgroupShuffle(mine, 0u), subgroupShuffle(mine, 1u), subgroupShuffle(mine, 2u), subgroupShuffle(mine, 3u),
        );
        let xv = select(x[b * in4 + xcol], vec4<f32>(1.0, 0.0, 0.0, 0.0), bias);
        fma16(&acc, g, xv);
    }
    if i > IN {
        return;
    }
    put(o0, i, acc[0]);
    put(o0 + 4u, i, acc[1]);
    put(o0 + 8u, i, acc[2]);
    put(o0 + 12u, i, acc[3]);
}
