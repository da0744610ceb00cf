// conv2d_backward_weight: gradients of a 3×3, padding-1 convolution's weight and bias, summed over the batch.
//
// Bindings (group 0):
//   0 x       f32 layer input [n, CIN, H, W], W even, read as pairs     read
//   1 dy      f32 output gradient [n, COUT, H, W], read as pairs        read
//   2 grads   f32 all gradients; dw [COUT, CIN, 3, 3] at W_OFF,
//             db [COUT] at B_OFF                                         write
//   3 step    uniform: n (batch length)
//   4 partials f32 per-part sums [SPLIT, COUT, CIN, 10] (used only with SPLIT > 1)   read_write
// conv2d_backward_weight: one workgroup per (block of CO_B = 16 output channels, pair of input channels ci, ci + 1):
// its 2·160 sums are the nine taps and the bias of each (output channel, input channel) pair. Each thread takes every
// WG-th row segment (sample, row, 16 pixels held as a mat4x4) of the n·H rows and accumulates, for each channel co of the block,
//   dw[co, ci, ky, kx] += Σ_x dy[b, co, y, x] · x[b, ci, y + ky − 1, x + kx − 1]   and   db[co] += Σ_x dy[b, co, y, x]
// (likewise for ci + 1): the 3·18 input values around the segment are loaded once per input channel for all 16 output
// channels, and each dy value once for the 2·9 taps. A fixed-order reduction in workgroup memory then sums the threads'
// partial sums: no atomics, deterministic. A lone last input channel (CIN odd) is computed twice and stored once;
// with CIN = 1 the second channel is compiled out.
// With SPLIT > 1 (for layers with few channel blocks, which would otherwise run on one core) each block's rows are
// split over SPLIT workgroups: part p takes the segments p·WG + lid, (p + SPLIT)·WG + lid, ... and stores its sums in
// partials[p] instead of grads; conv2d_backward_weight_reduce then adds the SPLIT parts in order (one thread per sum)
// and stores them in grads. Still no atomics and a fixed order: deterministic.
//
// Written for lavapipe/llvmpipe (see conv2d_forward.wgsl): the hot loop uses constant indices only.

override CIN: u32 = 16u;
override COUT: u32 = 32u;
override H: u32 = 14u;
override W: u32 = 14u;
override W_OFF: u32 = 0u;
override B_OFF: u32 = 0u;
override SPLIT: u32 = 1u;

const PX: u32 = 16u; // pixels per row segment
const CO_B: u32 = 16u; // output channels per workgroup (the host's conv2d::simd::CO_B)
const TERMS: u32 = 10u; // nine taps and the bias per channel
const ROUND: u32 = 4u; // channels reduced per round through workgroup memory
const WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> x: array<vec2<f32>>; // read as pairs (W even)
@group(0) @binding(1) var<storage, read> dy: array<vec2<f32>>; // read as pairs (W even)
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;
@group(0) @binding(3) var<uniform> step: Step; // shaders/step.wgsl, appended by the host
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;

var<workgroup> partial: array<f32, 2560>; // ROUND * TERMS * WG

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

// The three windows of input row `row` under the taps kx = 0, 1, 2 of the 16 pixels from ox (18 values, 10 pairs).
fn windows(row: u32, ox: i32, ok: bool) -> array<mat4x4<f32>, 3> {
    let p0 = ldx2(row, ox - 2, ok);
    let p1 = ldx2(row, ox, ok);
    let p2 = ldx2(row, ox + 2, ok);
    let p3 = ldx2(row, ox + 4, ok);
    let p4 = ldx2(row, ox + 6, ok);
    let p5 = ldx2(row, ox + 8, ok);
    let p6 = ldx2(row, ox + 10, ok);
    let p7 = ldx2(row, ox + 12, ok);
    let p8 = ldx2(row, ox + 14, ok);
    let p9 = ldx2(row, ox + 16, ok);
    let v = array<f32, 18>(
        p0.y, p1.x, p1.y, p2.x, p2.y, p3.x, p3.y, p4.x, p4.y, p5.x, p5.y, p6.x, p6.y, p7.x, p7.y, p8.x, p8.y, p9.x,
    );
    return array<mat4x4<f32>, 3>(
        mat4x4<f32>(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15]),
        mat4x4<f32>(v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15], v[16]),
        mat4x4<f32>(v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15], v[16], v[17]),
    );
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

// Publishes one channel's ten sums as slot c (0..ROUND) of this round. `v` is a copy, so the loop's indexing does not
// move the accumulators out of registers.
fn publish(c: u32, v: array<f32, TERMS>, lid: u32) {
    for (var t = 0u; t < TERMS; t++) {
        partial[(c * TERMS + t) * WG + lid] = v[t];
    }
}

// After ROUND publish calls: thread t < ROUND·TERMS adds up sum t over the WG threads in lane order and stores it
// (channels co .. co + ROUND) in grads, or with SPLIT > 1 in part `part` of partials.
fn reduce(co: u32, ci: u32, part: u32, lid: u32) {
    workgroupBarrier();
    if lid < ROUND * TERMS {
        var s = 0.0;
        for (var l = 0u; l < WG; l++) {
            s += partial[lid * WG + l];
        }
        let c = co + lid / TERMS;
        let tap = lid % TERMS;
        if SPLIT > 1u {
            if c < COUT && ci < CIN {
                partials[((part * COUT + c) * CIN + ci) * TERMS + tap] = s;
            }
        } else if c < COUT && ci < CIN {
            if tap < 9u {
                grads[W_OFF + (c * CIN + ci) * 9u + tap] = s;
            } else if ci == 0u {
                grads[B_OFF + c] = s;
            }
        }
    }
    workgroupBarrier();
}

// The nine windows (3 input rows × 3 taps) of input channel ci's rows y − 1, y, y + 1 at the segment from ox.
fn windows9(b: u32, ci: u32, y: u32, ox: i32) -> array<mat4x4<f32>, 9> {
    let plane = (b * CIN + ci) * H * W;
    let y0 = i32(y) - 1;
    let x0 = windows(plane + u32(max(y0, 0)) * W, ox, y0 >= 0);
    let x1 = windows(plane + y * W, ox, true);
    let x2 = windows(plane + min(y + 1u, H - 1u) * W, ox, y + 1u < H);
    return array<mat4x4<f32>, 9>(x0[0], x0[1], x0[2], x1[0], x1[1], x1[2], x2[0], x2[1], x2[2]);
}

@compute @workgroup_size(WG)
fn conv2d_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let part = wid.x % SPLIT;
    let block = wid.x / SPLIT;
    let cpairs = (CIN + 1u) / 2u;
    let ci = (block % cpairs) * 2u;
    let ci1 = min(ci + 1u, CIN - 1u); // a lone last channel is computed twice and stored once
    let co0 = (block / cpairs) * CO_B;
    let segs = (W + PX - 1u) / PX;
    let rows = step.n * H * segs;

    // acc[j]: channel co0 + j with input channel ci; acc1[j]: with ci + 1.
    var acc: array<array<f32, TERMS>, CO_B>;
    var acc1: array<array<f32, TERMS>, CO_B>;
    for (var r = part * WG + lid; r < rows; r += WG * SPLIT) {
        let b = r / (H * segs);
        let y = (r / segs) % H;
        let ox0 = (r % segs) * PX;
        var win = windows9(b, ci, y, i32(ox0));
        let g0 = dy_row(b, co0, y, ox0);
        let g1 = dy_row(b, co0 + 1u, y, ox0);
        let g2 = dy_row(b, co0 + 2u, y, ox0);
        let g3 = dy_row(b, co0 + 3u, y, ox0);
        let g4 = dy_row(b, co0 + 4u, y, ox0);
        let g5 = dy_row(b, co0 + 5u, y, ox0);
        let g6 = dy_row(b, co0 + 6u, y, ox0);
        let g7 = dy_row(b, co0 + 7u, y, ox0);
        let g8 = dy_row(b, co0 + 8u, y, ox0);
        let g9 = dy_row(b, co0 + 9u, y, ox0);
        let g10 = dy_row(b, co0 + 10u, y, ox0);
        let g11 = dy_row(b, co0 + 11u, y, ox0);
        let g12 = dy_row(b, co0 + 12u, y, ox0);
        let g13 = dy_row(b, co0 + 13u, y, ox0);
        let g14 = dy_row(b, co0 + 14u, y, ox0);
        let g15 = dy_row(b, co0 + 15u, y, ox0);
        acc[0] = accumulate(acc[0], g0, &win);
        acc[1] = accumulate(acc[1], g1, &win);
        acc[2] = accumulate(acc[2], g2, &win);
        acc[3] = accumulate(acc[3], g3, &win);
        acc[4] = accumulate(acc[4], g4, &win);
        acc[5] = accumulate(acc[5], g5, &win);
        acc[6] = accumulate(acc[6], g6, &win);
        acc[7] = accumulate(acc[7], g7, &win);
        acc[8] = accumulate(acc[8], g8, &win);
        acc[9] = accumulate(acc[9], g9, &win);
        acc[10] = accumulate(acc[10], g10, &win);
        acc[11] = accumulate(acc[11], g11, &win);
        acc[12] = accumulate(acc[12], g12, &win);
        acc[13] = accumulate(acc[13], g13, &win);
        acc[14] = accumulate(acc[14], g14, &win);
        acc[15] = accumulate(acc[15], g15, &win);
        // A single input channel (CIN = 1, a compile-time constant) has no second one.
        if CIN > 1u {
            var win1 = windows9(b, ci1, y, i32(ox0));
            acc1[0] = accumulate(acc1[0], g0, &win1);
            acc1[1] = accumulate(acc1[1], g1, &win1);
            acc1[2] = accumulate(acc1[2], g2, &win1);
            acc1[3] = accumulate(acc1[3], g3, &win1);
            acc1[4] = accumulate(acc1[4], g4, &win1);
            acc1[5] = accumulate(acc1[5], g5, &win1);
            acc1[6] = accumulate(acc1[6], g6, &win1);
            acc1[7] = accumulate(acc1[7], g7, &win1);
            acc1[8] = accumulate(acc1[8], g8, &win1);
            acc1[9] = accumulate(acc1[9], g9, &win1);
            acc1[10] = accumulate(acc1[10], g10, &win1);
            acc1[11] = accumulate(acc1[11], g11, &win1);
            acc1[12] = accumulate(acc1[12], g12, &win1);
            acc1[13] = accumulate(acc1[13], g13, &win1);
            acc1[14] = accumulate(acc1[14], g14, &win1);
            acc1[15] = accumulate(acc1[15], g15, &win1);
        }
    }

    // Reduce ROUND channels (ROUND·TERMS sums) at a time through workgroup memory, in a fixed order.
    publish(0u, acc[0], lid);
    publish(1u, acc[1], lid);
    publish(2u, acc[2], lid);
    publish(3u, acc[3], lid);
    reduce(co0, ci, part, lid);
    publish(0u, acc[4], lid);
    publish(1u, acc[5], lid);
    publish(2u, acc[6], lid);
    publish(3u, acc[7], lid);
    reduce(co0 + 4u, ci, part, lid);
    publish(0u, acc[8], lid);
    publish(1u, acc[9], lid);
    publish(2u, acc[10], lid);
    publish(3u, acc[11], lid);
    reduce(co0 + 8u, ci, part, lid);
    publish(0u, acc[12], lid);
    publish(1u, acc[13], lid);
    publish(2u, acc[14], lid);
    publish(3u, acc[15], lid);
    reduce(co0 + 12u, ci, part, lid);
    if CIN > 1u {
        publish(0u, acc1[0], lid);
        publish(1u, acc1[1], lid);
        publish(2u, acc1[2], lid);
        publish(3u, acc1[3], lid);
        reduce(co0, ci + 1u, part, lid);
        publish(0u, acc1[4], lid);
        publish(1u, acc1[5], lid);
        publish(2u, acc1[6], lid);
        publish(3u, acc1[7], lid);
        reduce(co0 + 4u, ci + 1u, part, lid);
        publish(0u, acc1[8], lid);
        publish(1u, acc1[9], lid);
        publish(2u, acc1[10], lid);
        publish(3u, acc1[11], lid);
        reduce(co0 + 8u, ci + 1u, part, lid);
        publish(0u, acc1[12], lid);
        publish(1u, acc1[13], lid);
        publish(2u, acc1[14], lid);
        publish(3u, acc1[15], lid);
        reduce(co0 + 12u, ci + 1u, part, lid);
    }
}

// conv2d_backward_weight_reduce (SPLIT > 1): thread t sums partials[0..SPLIT][t] in part order and stores it as tap
// t % 10 of (output channel, input channel) t / 10 in grads (tap 9, the bias, only from input channel 0).
@compute @workgroup_size(WG)
fn conv2d_backward_weight_reduce(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    let sums = COUT * CIN * TERMS;
    if t >= sums {
        return;
    }
    var s = 0.0;
    for (var p = 0u; p < SPLIT; p++) {
        s += partials[p * sums + t];
    }
    let pair = t / TERMS; // co * CIN + ci
    let tap = t % TERMS;
    if tap < 9u {
        grads[W_OFF + pair * 9u + tap] = s;
    } else if pair % CIN == 0u {
        grads[B_OFF + pair / CIN] = s;
    }
}
