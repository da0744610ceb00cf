// conv2d_forward_subgroup: conv2d_forward (3×3 convolution, padding 1, bias, ReLU, optionally the fused 2×2 max-pool)
// for adapters whose subgroups are exactly 8 invocations wide, such as lavapipe's 8-lane SIMD. Same bindings, step
// block, constants and results as conv2d_forward.wgsl; the host picks this kernel where the adapter has subgroups of
// 8 and conv2d_forward elsewhere.
//
// Bindings (group 0):
//   0 x       f32 input [n, CIN, H, W], W even, read as pairs           read
//   1 params  uniform: the parameters' first WEIGHT_VEC4S·4 floats;
//             weight [COUT, CIN, 3, 3] at W_OFF, bias [COUT] at B_OFF  read
//   2 y       f32 output [n, COUT, H, W]                                 write
//   3 step    uniform: n (batch length), full (store y)
//   4 pooled  f32 max-pooled output [n, COUT, H/2, W/2] (POOL only)      write
// The lanes of a subgroup are 8 output channels of one tile (2 rows × PX = 16 pixels of one sample), so the tile's
// input is the same for all of them: per input channel the 8 lanes load its 4 input rows (40 aligned pairs) together,
// 5 pairs each, and pass them round with subgroupShuffle. On lavapipe a load is a loop over the 8 lanes while a
// shuffle with a constant lane is one extract: per input value this costs ~1/5 of each lane loading it itself
// (measured 0.97 vs 5.45 ns per value). Each lane then loads its own channel's 9 weights and keeps 2 × 16
// accumulators. A workgroup is 8 subgroups: 8 tiles of one block of 8 channels. Lanes of a channel past COUT compute a
// clamped duplicate and skip the stores; a subgroup past the last tile returns as a whole.


enable subgroups;

override CIN: u32 = 1u;
override COUT: u32 = 16u;
override H: u32 = 28u;
override W: u32 = 28u;
override W_OFF: u32 = 0u;
override B_OFF: u32 = 0u;
override RELU: bool = true;
override POOL: bool = false;

const PX: u32 = 16u; // pixels per row segment (the host's conv2d::simd::PX)
const SG: u32 = 8u; // subgroup width = output channels per block = tiles per workgroup (the host's conv2d::simd::SUBGROUP)
const WG: u32 = 64u;
const WEIGHT_VEC4S: u32 = 1200u; // the uniform window of the parameters (the host's kernels::WEIGHT_WINDOW_BYTES / 16)

@group(0) @binding(0) var<storage, read> x: array<vec2<f32>>; // [n, CIN, H, W] as pairs (W even)
@group(0) @binding(1) var<uniform> params: array<vec4<f32>, WEIGHT_VEC4S>;
@group(0) @binding(2) var<storage, read_write> y: array<vec2<f32>>; // stored as pairs (W even)
@group(0) @binding(3) var<uniform> step: Step; // shaders/step.wgsl, appended by the host
@group(0) @binding(4) var<storage, read_write> pooled: array<f32>;

// The pair x[row + ix], x[row + ix + 1] (ix even) if it is inside the row and the row inside the image (`ok`), else 0.
// (`&`, not `&&`: Tint and naga turn a short-circuit into branches, two per load, and SwiftShader's compiler did not
// finish a kernel with dozens of such loads in minutes; with `&` it takes seconds.)
fn ld2(row: u32, ix: i32, ok: bool) -> vec2<f32> {
    let v = x[(row + u32(clamp(ix, 0, i32(W) - 2))) / 2u];
    return select(vec2<f32>(0.0), v, ok & (ix >= 0) & (ix < i32(W)));
}

// The three taps w, w + 1, w + 2 of one kernel row of one channel.
fn wrow(w: u32) -> vec3<f32> {
    return vec3<f32>(param(w), param(w + 1u), param(w + 2u));
}

// Parameter i, read through the uniform window.
fn param(i: u32) -> f32 {
    return params[i / 4u][i % 4u];
}

// This lane's share of the tile's input for one channel: pairs lane, lane + 8, …, lane + 32 of the 40 (4 input rows
// iy − 1 … iy + 2 × 10 pairs from column ox − 2).
fn load_share(plane: u32, iy: i32, ox: i32, lane: u32) -> array<vec2<f32>, 5> {
    return array<vec2<f32>, 5>(share(plane, iy, ox, lane), share(plane, iy, ox, lane + 8u),
        share(plane, iy, ox, lane + 16u), share(plane, iy, ox, lane + 24u), share(plane, iy, ox, lane + 32u));
}

// Pair p of the tile's 40.
fn share(plane: u32, iy: i32, ox: i32, p: u32) -> vec2<f32> {
    let r = i32(p / 10u);
    let yy = iy - 1 + r;
    let row = plane + u32(clamp(yy, 0, i32(H) - 1)) * W;
    return ld2(row, ox - 2 + 2 * i32(p % 10u), (yy >= 0) & (yy < i32(H)));
}

// Pair p (a constant after inlining) of the tile's 40, from the lane that loaded it.
fn pair(s: array<vec2<f32>, 5>, p: u32) -> vec2<f32> {
    return subgroupShuffle(s[p / 8u], p % 8u);
}

// The three windows (taps kx = 0, 1, 2) of input row r (0…3) of the tile.
fn windows(s: array<vec2<f32>, 5>, r: u32) -> array<mat4x4<f32>, 3> {
    let b = 10u * r;
    let p0 = pair(s, b);
    let p1 = pair(s, b + 1u);
    let p2 = pair(s, b + 2u);
    let p3 = pair(s, b + 3u);
    let p4 = pair(s, b + 4u);
    let p5 = pair(s, b + 5u);
    let p6 = pair(s, b + 6u);
    let p7 = pair(s, b + 7u);
    let p8 = pair(s, b + 8u);
    let p9 = pair(s, b + 9u);
    let v = array<f32, 18>(
        p0.y, p1.x, p1.y, p2.x, p2.y, p3.x, p3.y, p4.x, p4.y, p5.x, p5.y, p6.x, p6.y, p7.x, p7.y, p8.x, p8.y, p9.x,
    );
    return array<mat4x4<f32>, 3>(
        mat4x4<f32>(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15]),
        mat4x4<f32>(v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15], v[16]),
        mat4x4<f32>(v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15], v[16], v[17]),
    );
}

// One kernel row applied to the three windows of a row.
fn taps(q: vec3<f32>, a: mat4x4<f32>, b: mat4x4<f32>, c: mat4x4<f32>) -> mat4x4<f32> {
    return q.x * a + q.y * b + q.z * c;
}

// Bias and ReLU.
fn act(v: f32, bias: f32) -> f32 {
    if RELU {
        return max(v + bias, 0.0);
    }
    return v + bias;
}

// Stores channel co's two rows (m0 at row yy, m1 at row yy + 1 if inside the image) and, with POOL, their 2×2 maxima.
fn put(co: u32, b: u32, yy: u32, ox0: u32, m0: mat4x4<f32>, m1: mat4x4<f32>) {
    if co >= COUT {
        return;
    }
    let bias = param(B_OFF + co);
    if !POOL || step.full != 0u {
        // Pairs (W and ox0 even: a pair is wholly inside or outside the row).
        let out = ((b * COUT + co) * H * W + yy * W + ox0) / 2u;
        for (var q = 0u; q < PX / 2u; q++) {
            if ox0 + 2u * q < W {
                let c = q / 2u;
                let r = (q % 2u) * 2u;
                y[out + q] = vec2<f32>(act(m0[c][r], bias), act(m0[c][r + 1u], bias));
                if yy + 1u < H {
                    y[out + W / 2u + q] = vec2<f32>(act(m1[c][r], bias), act(m1[c][r + 1u], bias));
                }
            }
        }
    }
    if POOL {
        let ow = W / 2u;
        let out = (b * COUT + co) * (H / 2u) * ow + (yy / 2u) * ow + ox0 / 2u;
        for (var p = 0u; p < PX / 2u; p++) {
            if ox0 / 2u + p < ow {
                let l = 2u * p;
                let r = l + 1u;
                var m = act(m0[l / 4u][l % 4u], bias);
                let v1 = act(m0[r / 4u][r % 4u], bias);
                m = select(m, v1, v1 > m);
                let v2 = act(m1[l / 4u][l % 4u], bias);
                m = select(m, v2, v2 > m);
                let v3 = act(m1[r / 4u][r % 4u], bias);
                m = select(m, v3, v3 > m);
                pooled[out + p] = m;
            }
        }
    }
}

@compute @workgroup_size(WG)
fn conv2d_forward_subgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_id) sid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let segs = (W + PX - 1u) / PX;
    let pairs = (H + 1u) / 2u;
    let tiles = step.n * pairs * segs;
    let per_block = (tiles + SG - 1u) / SG; // workgroups per channel block: one tile per subgroup
    let g = wid.x + wid.y * nwg.x;
    if g >= per_block * ((COUT + SG - 1u) / SG) {
        return;
    }
    let t = (g % per_block) * SG + sid;
    if t >= tiles {
        return; // the whole subgroup
    }
    let co = (g / per_block) * SG + lane;
    let b = t / (pairs * segs);
    let yy = ((t / segs) % pairs) * 2u;
    let ox0 = (t % segs) * PX;
    let ox = i32(ox0);
    let iy = i32(yy);
    let wo = W_OFF + min(co, COUT - 1u) * CIN * 9u;

    // acc0, acc1: this lane's channel at rows yy and yy + 1. Output row 0 meets kernel row k at input row k, output
    // row 1 at input row k + 1 (of the tile's 4).
    var acc0 = mat4x4<f32>();
    var acc1 = mat4x4<f32>();
    for (var ci = 0u; ci < CIN; ci++) {
        let s = load_share((b * CIN + ci) * H * W, iy, ox, lane);
        let k0 = wrow(wo + ci * 9u);
        let k1 = wrow(wo + ci * 9u + 3u);
        let k2 = wrow(wo + ci * 9u + 6u);
        let r0 = windows(s, 0u);
        acc0 += taps(k0, r0[0], r0[1], r0[2]);
        let r1 = windows(s, 1u);
        acc0 += taps(k1, r1[0], r1[1], r1[2]);
        acc1 += taps(k0, r1[0], r1[1], r1[2]);
        let r2 = windows(s, 2u);
        acc0 += taps(k2, r2[0], r2[1], r2[2]);
        acc1 += taps(k1, r2[0], r2[1], r2[2]);
        let r3 = windows(s, 3u);
        acc1 += taps(k2, r3[0], r3[1], r3[2]);
    }
    put(co, b, yy, ox0, acc0, acc1);
}
