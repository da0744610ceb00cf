// conv2d_forward: 3×3 convolution, padding 1, stride 1, plus bias, optionally fused with ReLU and with the 2×2
// max-pool that follows it.
//
// Bindings (group 0):
//   0 x       f32 input [n, CIN, H, W], W even, read as pairs           read
//   1 params  uniform: the parameters' first WEIGHT_VEC4S·4 floats;
//             weight [COUT, CIN, 3, 3] at W_OFF, bias [COUT] at B_OFF  read
//   2 y       f32 output [n, COUT, H, W]                                 write
//   3 step    uniform: n (batch length), full (store y)
//   4 pooled  f32 max-pooled output [n, COUT, H/2, W/2] (POOL only)      write
// Each thread computes a tile of CO_B = 8 output channels × 2 rows × PX = 16 pixels (two row segments, each held as a
// mat4x4: column q is pixels 4q..4q+3). Per input channel it loads the 4 input rows the two output rows need (18
// values each: the segment and its halo) once each, in a loop: input row k meets kernel row k of output row 0 and
// kernel row k − 1 of output row 1 (BENCHMARKS.md has why a loop, not four loads spelled out).
// Threads are ordered (channel block, sample, row pair, segment).
// With POOL (H and W even), the thread also takes the maximum of each 2×2 window of its tile (after bias and ReLU: the
// values it stores in y; ties go to the first in row-major order, as in the reference maxpool_forward and in
// maxpool_backward) and stores it in `pooled`, which saves a max-pool pass over y. y is then stored only when
// step.full is non-zero: training needs it for the backward pass, evaluation does not.
//
// Written for lavapipe/llvmpipe, where every storage load or store is a loop over the SIMD lanes, loops are not
// unrolled and a local array indexed by anything but a constant lives in memory: the tile is spelled out by hand with
// constant indices, so the accumulators stay in registers (or LLVM's spill slots) and the loads per multiply-add are
// few. The weights come through a uniform binding: lavapipe turns a uniform load into a plain gather, cheaper than a
// storage load. Threads past the end compute a clamped duplicate tile and skip the stores.

override CIN: u32 = 1u;
override COUT: u32 = 16u;
override H: u32 = 28u;
override W: u32 = 28u;
override W_OFF: u32 = 0u;
override B_OFF: u32 = 0u;
override RELU: bool = true;
override POOL: bool = false;

const PX: u32 = 16u; // pixels per row segment (the host's conv2d::simd::PX)
const CO_B: u32 = 8u; // output channels per thread (the host's conv2d::simd::FORWARD_CO_B)
const WG: u32 = 64u;
const WEIGHT_VEC4S: u32 = 1200u; // the uniform window of the parameters (the host's kernels::WEIGHT_WINDOW_BYTES / 16)

@group(0) @binding(0) var<storage, read> x: array<vec2<f32>>; // [n, CIN, H, W] as pairs (W even)
@group(0) @binding(1) var<uniform> params: array<vec4<f32>, WEIGHT_VEC4S>;
@group(0) @binding(2) var<storage, read_write> y: array<vec2<f32>>; // stored as pairs (W even)
@group(0) @binding(3) var<uniform> step: Step; // shaders/step.wgsl, appended by the host
@group(0) @binding(4) var<storage, read_write> pooled: array<f32>;

// The three windows of row `iy` of the plane at `plane` under the taps kx = 0, 1, 2 of the 16 pixels from ox; a row
// outside the image, and columns outside it, read as 0 (the padding). The 18 values come as 10 pairs (W, ox and the
// plane are even, so each pair is aligned and wholly inside or outside the row): 10 loads instead of 18.
fn windows(plane: u32, iy: i32, ox: i32) -> array<mat4x4<f32>, 3> {
    let row = plane + u32(clamp(iy, 0, i32(H) - 1)) * W;
    let ok = (iy >= 0) & (iy < i32(H));
    let p0 = ld2(row, ox - 2, ok);
    let p1 = ld2(row, ox, ok);
    let p2 = ld2(row, ox + 2, ok);
    let p3 = ld2(row, ox + 4, ok);
    let p4 = ld2(row, ox + 6, ok);
    let p5 = ld2(row, ox + 8, ok);
    let p6 = ld2(row, ox + 10, ok);
    let p7 = ld2(row, ox + 12, ok);
    let p8 = ld2(row, ox + 14, ok);
    let p9 = ld2(row, ox + 16, ok);
    let v = array<f32, 18>(
        p0.y, p1.x, p1.y, p2.x, p2.y, p3.x, p3.y, p4.x, p4.y, p5.x, p5.y, p6.x, p6.y, p7.x, p7.y, p8.x, p8.y, p9.x,
    );
    return array<mat4x4<f32>, 3>(
        mat4x4<f32>(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15]),
        mat4x4<f32>(v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15], v[16]),
        mat4x4<f32>(v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15], v[16], v[17]),
    );
}

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

// One kernel row applied to the three windows of a row.
fn taps(q: vec3<f32>, a: mat4x4<f32>, b: mat4x4<f32>, c: mat4x4<f32>) -> mat4x4<f32> {
    return q.x * a + q.y * b + q.z * c;
}

// acc[j] += kernel row `kr` of channel j applied to the windows `a` of one input row.
fn row_one(acc: ptr<function, array<mat4x4<f32>, CO_B>>, wo: array<u32, CO_B>, kr: u32, a: array<mat4x4<f32>, 3>) {
    (*acc)[0] += taps(wrow(wo[0] + kr), a[0], a[1], a[2]);
    (*acc)[1] += taps(wrow(wo[1] + kr), a[0], a[1], a[2]);
    (*acc)[2] += taps(wrow(wo[2] + kr), a[0], a[1], a[2]);
    (*acc)[3] += taps(wrow(wo[3] + kr), a[0], a[1], a[2]);
    (*acc)[4] += taps(wrow(wo[4] + kr), a[0], a[1], a[2]);
    (*acc)[5] += taps(wrow(wo[5] + kr), a[0], a[1], a[2]);
    (*acc)[6] += taps(wrow(wo[6] + kr), a[0], a[1], a[2]);
    (*acc)[7] += taps(wrow(wo[7] + kr), a[0], a[1], a[2]);
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
fn conv2d_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // The channel block comes from the workgroup id alone, so it is uniform across the workgroup.
    let segs = (W + PX - 1u) / PX;
    let pairs = (H + 1u) / 2u;
    let tiles = step.n * pairs * segs;
    let per_block = (tiles + WG - 1u) / WG;
    let g = wid.x + wid.y * nwg.x;
    if g >= per_block * ((COUT + CO_B - 1u) / CO_B) {
        return;
    }
    let co0 = (g / per_block) * CO_B;
    let i = (g % per_block) * WG + lid;
    let r = min(i, tiles - 1u);
    let b = r / (pairs * segs);
    let yy = ((r / segs) % pairs) * 2u;
    let ox0 = (r % segs) * PX;
    let ox = i32(ox0);
    let iy = i32(yy);

    // Weight offset of each channel of the block (clamped: a partial block repeats the last channel).
    var wo: array<u32, CO_B>;
    for (var j = 0u; j < CO_B; j++) {
        wo[j] = W_OFF + min(co0 + j, COUT - 1u) * CIN * 9u;
    }
    let offs = array<u32, CO_B>(wo[0], wo[1], wo[2], wo[3], wo[4], wo[5], wo[6], wo[7]);

    // acc0[j], acc1[j]: channel co0 + j at rows yy and yy + 1.
    var acc0: array<mat4x4<f32>, CO_B>;
    var acc1: array<mat4x4<f32>, CO_B>;
    for (var ci = 0u; ci < CIN; ci++) {
        let plane = (b * CIN + ci) * H * W;
        // Input rows yy − 1 … yy + 2; output row 0 meets kernel row k at input row yy − 1 + k, output row 1 at yy + k.
        let kr = ci * 9u;
        for (var k = 0u; k < 4u; k++) {
            let rk = windows(plane, iy - 1 + i32(k), ox);
            if k < 3u {
                row_one(&acc0, offs, kr + 3u * k, rk);
            }
            if k > 0u {
                row_one(&acc1, offs, kr + 3u * (k - 1u), rk);
            }
        }
    }
    if i >= tiles {
        return;
    }
    put(co0, b, yy, ox0, acc0[0], acc1[0]);
    put(co0 + 1u, b, yy, ox0, acc0[1], acc1[1]);
    put(co0 + 2u, b, yy, ox0, acc0[2], acc1[2]);
    put(co0 + 3u, b, yy, ox0, acc0[3], acc1[3]);
    put(co0 + 4u, b, yy, ox0, acc0[4], acc1[4]);
    put(co0 + 5u, b, yy, ox0, acc0[5], acc1[5]);
    put(co0 + 6u, b, yy, ox0, acc0[6], acc1[6]);
    put(co0 + 7u, b, yy, ox0, acc0[7], acc1[7]);
}
