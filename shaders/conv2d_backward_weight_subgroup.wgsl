// conv2d_backward_weight_subgroup: conv2d_backward_weight (gradients of a 3×3, padding-1 convolution's weight and
// bias, summed over the batch) for adapters whose subgroups are exactly 8 invocations wide, such as lavapipe's 8-lane
// SIMD. Same bindings, constants and results as conv2d_backward_weight.wgsl (whose conv2d_backward_weight_reduce adds
// the parts up when SPLIT > 1); the host picks this kernel where the adapter has subgroups of 8.
//
// Bindings (group 0):
//   0 x       f32 layer input [n, CIN, H, W], W even, read as pairs     read
//   1 dy      f32 output gradient [n, COUT, H, W], read as pairs        read
//   2 grads   f32 all gradients; dw [COUT, CIN, 3, 3] at W_OFF,
//             db [COUT] at B_OFF                                         write
//   3 step    uniform: n (batch length)
//   4 partials f32 per-part sums [SPLIT, COUT, CIN, 10] (SPLIT > 1 only)   read_write
// A workgroup (8 subgroups) owns a block of 8 output channels × CI_B = 4 input channels (and part `part` of the rows
// when SPLIT > 1). The lanes of a subgroup are its 8 output channels; the subgroup walks row segments (sample, row,
// 16 pixels), subgroup s of part p taking segments (p·8 + s), (p·8 + s) + 8·SPLIT, … Per segment each lane loads its
// own channel's 16 dy values (8 pairs) and, for each of the 4 input channels, the 8 lanes load the 3 input rows around
// the segment (30 pairs) together and pass them round with subgroupShuffle (on lavapipe a load loops over the lanes,
// a shuffle with a constant lane is one extract). Each lane keeps the 4 × 10 sums (nine taps and the bias) of its
// (output channel, input channel) pairs. At the end the 8 subgroups' sums are added in subgroup order through
// workgroup memory: no atomics, deterministic. With CIN = 1 the three other input channels are compiled out; a
// partial block computes clamped duplicates and skips their stores.


enable subgroups;

override CIN: u32 = 16u;
override COUT: u32 = 32u;
override H: u32 = 14u;
override W: u32 = 14u;
override W_OFF: u32 = 0u;
override B_OFF: u32 = 0u;
override SPLIT: u32 = 1u;

const PX: u32 = 16u; // pixels per row segment
const SG: u32 = 8u; // subgroup width = output channels per workgroup (the host's conv2d::simd::SUBGROUP)
const CI_B: u32 = 4u; // input channels per workgroup (the host's conv2d::simd::SUBGROUP_CI_B)
const TERMS: u32 = 10u; // nine taps and the bias per channel pair
const SUMS: u32 = 40u; // CI_B * TERMS per lane
const WG: u32 = 64u; // 8 subgroups

@group(0) @binding(0) var<storage, read> x: array<vec2<f32>>; // read as pairs (W even)
@group(0) @binding(1) var<storage, read> dy: array<vec2<f32>>; // read as pairs (W even)
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;
@group(0) @binding(3) var<uniform> step: Step; // shaders/step.wgsl, appended by the host
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;

var<workgroup> partial: array<f32, 2560>; // [subgroup][SUMS][lane]: 8 · 40 · 8

// The pair x[row + ix], x[row + ix + 1] (ix even) if it is inside the row and the row inside the image (`ok`), else 0
// (the padding). W, rows and segments are even, so a pair is aligned and wholly inside or outside the row.
// (`&`, not `&&`: Tint and naga turn a short-circuit into branches, two per load, and SwiftShader's compiler did not
// finish a kernel with dozens of such loads in minutes; with `&` it takes seconds.)
fn ldx2(row: u32, ix: i32, ok: bool) -> vec2<f32> {
    let v = x[(row + u32(clamp(ix, 0, i32(W) - 2))) / 2u];
    return select(vec2<f32>(0.0), v, ok & (ix >= 0) & (ix < i32(W)));
}

// The pair dy[row + ix], dy[row + ix + 1] (ix even), or 0 past the end of the row.
fn ldy2(row: u32, ix: u32) -> vec2<f32> {
    return select(vec2<f32>(0.0), dy[(row + min(ix, W - 2u)) / 2u], ix < W);
}

// This lane's share of the 30 pairs (3 input rows y − 1 … y + 1 × 10 pairs from column ox − 2) of channel plane
// `plane`: pairs lane, lane + 8, lane + 16, lane + 24 (the last only for lanes < 6).
fn load_share(plane: u32, y: u32, ox: i32, lane: u32) -> array<vec2<f32>, 4> {
    return array<vec2<f32>, 4>(share(plane, y, ox, lane), share(plane, y, ox, lane + 8u),
        share(plane, y, ox, lane + 16u), share(plane, y, ox, min(lane + 24u, 29u)));
}

// Pair p of the 30.
fn share(plane: u32, y: u32, ox: i32, p: u32) -> vec2<f32> {
    let yy = i32(y) - 1 + i32(p / 10u);
    let row = plane + u32(clamp(yy, 0, i32(H) - 1)) * W;
    return ldx2(row, ox - 2 + 2 * i32(p % 10u), (yy >= 0) & (yy < i32(H)));
}

// Pair p (a constant after inlining) of the 30, from the lane that loaded it.
fn pair(s: array<vec2<f32>, 4>, p: u32) -> vec2<f32> {
    return subgroupShuffle(s[p / 8u], p % 8u);
}

// The three windows (taps kx = 0, 1, 2) of input row r (0…2) around the segment.
fn windows(s: array<vec2<f32>, 4>, r: u32) -> array<mat4x4<f32>, 3> {
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

// The nine windows (3 rows × 3 taps) of input channel ci around the segment, loaded by the subgroup together.
fn windows9(b: u32, ci: u32, y: u32, ox: i32, lane: u32) -> array<mat4x4<f32>, 9> {
    let s = load_share((b * CIN + min(ci, CIN - 1u)) * H * W, y, ox, lane);
    let r0 = windows(s, 0u);
    let r1 = windows(s, 1u);
    let r2 = windows(s, 2u);
    return array<mat4x4<f32>, 9>(r0[0], r0[1], r0[2], r1[0], r1[1], r1[2], r2[0], r2[1], r2[2]);
}

// The 16 dy values of channel co's row segment (co clamped: a partial block repeats the last channel, never written).
fn dy_row(b: u32, co: u32, y: u32, ox0: u32) -> mat4x4<f32> {
    let row = (b * COUT + min(co, COUT - 1u)) * H * W + y * W;
    let o = ox0;
    let p0 = ldy2(row, o);
    let p1 = ldy2(row, o + 2u);
    let p2 = ldy2(row, o + 4u);
    let p3 = ldy2(row, o + 6u);
    let p4 = ldy2(row, o + 8u);
    let p5 = ldy2(row, o + 10u);
    let p6 = ldy2(row, o + 12u);
    let p7 = ldy2(row, o + 14u);
    return mat4x4<f32>(p0.x, p0.y, p1.x, p1.y, p2.x, p2.y, p3.x, p3.y, p4.x, p4.y, p5.x, p5.y, p6.x, p6.y, p7.x, p7.y);
}

fn dot16(a: mat4x4<f32>, b: mat4x4<f32>) -> f32 {
    return dot(a[0], b[0]) + dot(a[1], b[1]) + dot(a[2], b[2]) + dot(a[3], b[3]);
}

// One channel's ten sums (the nine taps and the bias) plus one row segment's products.
fn accumulate(a: array<f32, TERMS>, g: mat4x4<f32>, win: ptr<function, array<mat4x4<f32>, 9>>) -> array<f32, TERMS> {
    let one = vec4<f32>(1.0);
    return array<f32, TERMS>(
        a[0] + dot16(g, (*win)[0]),
        a[1] + dot16(g, (*win)[1]),
        a[2] + dot16(g, (*win)[2]),
        a[3] + dot16(g, (*win)[3]),
        a[4] + dot16(g, (*win)[4]),
        a[5] + dot16(g, (*win)[5]),
        a[6] + dot16(g, (*win)[6]),
        a[7] + dot16(g, (*win)[7]),
        a[8] + dot16(g, (*win)[8]),
        a[9] + dot(g[0], one) + dot(g[1], one) + dot(g[2], one) + dot(g[3], one),
    );
}

// Publishes one channel pair's ten sums as sums c·10 … c·10 + 9 of this lane in this subgroup's slot.
fn publish(sid: u32, lane: u32, c: u32, v: array<f32, TERMS>) {
    for (var t = 0u; t < TERMS; t++) {
        partial[(sid * SUMS + c * TERMS + t) * SG + lane] = v[t];
    }
}

@compute @workgroup_size(WG)
fn conv2d_backward_weight_subgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let part = wid.x % SPLIT;
    let block = wid.x / SPLIT;
    let cblocks = (CIN + CI_B - 1u) / CI_B;
    let ci0 = (block % cblocks) * CI_B;
    let co0 = (block / cblocks) * SG;
    let co = co0 + lane;
    let segs = (W + PX - 1u) / PX;
    let rows = step.n * H * segs;

    var a0: array<f32, TERMS>;
    var a1: array<f32, TERMS>;
    var a2: array<f32, TERMS>;
    var a3: array<f32, TERMS>;
    for (var r = part * SG + sid; r < rows; r += SG * SPLIT) {
        let b = r / (H * segs);
        let y = (r / segs) % H;
        let ox0 = (r % segs) * PX;
        let g = dy_row(b, co, y, ox0);
        var w0 = windows9(b, ci0, y, i32(ox0), lane);
        a0 = accumulate(a0, g, &w0);
        // A single input channel (CIN = 1, a compile-time constant) has no others.
        if CIN > 1u {
            var w1 = windows9(b, ci0 + 1u, y, i32(ox0), lane);
            a1 = accumulate(a1, g, &w1);
            var w2 = windows9(b, ci0 + 2u, y, i32(ox0), lane);
            a2 = accumulate(a2, g, &w2);
            var w3 = windows9(b, ci0 + 3u, y, i32(ox0), lane);
            a3 = accumulate(a3, g, &w3);
        }
    }

    // Add the 8 subgroups' sums in subgroup order: thread lid takes sums lid, lid + 64, … of the 8 lanes × SUMS.
    publish(sid, lane, 0u, a0);
    publish(sid, lane, 1u, a1);
    publish(sid, lane, 2u, a2);
    publish(sid, lane, 3u, a3);
    workgroupBarrier();
    for (var i = lid; i < SUMS * SG; i += WG) {
        var s = 0.0;
        for (var k = 0u; k < WG / SG; k++) {
            s += partial[k * SUMS * SG + i];
        }
        let l = i % SG; // the lane: output channel co0 + l
        let c = i / SG / TERMS; // input channel ci0 + c
        let tap = (i / SG) % TERMS;
        let oc = co0 + l;
        let ic = ci0 + c;
        if oc < COUT && ic < CIN && (CIN > 1u || c == 0u) {
            if SPLIT > 1u {
                partials[((part * COUT + oc) * CIN + ic) * TERMS + tap] = s;
            } else if tap < 9u {
                grads[W_OFF + (oc * CIN + ic) * 9u + tap] = s;
            } else if ic == 0u {
                grads[B_OFF + oc] = s;
            }
        }
    }
}
