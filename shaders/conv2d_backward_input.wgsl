// conv2d_backward_input: gradient of a 3×3, padding-1 convolution with respect to its input.
//
// Bindings (group 0):
//   0 dy      f32 output gradient [n, COUT, H, W], W even, read as pairs read
//   1 params  uniform: the parameters' first WEIGHT_VEC4S·4 floats;
//             weight [COUT, CIN, 3, 3] at W_OFF                        read
//   2 dx      f32 input gradient [n, CIN, H, W]                          write
//   3 step    uniform: n (batch length)
// dx[b, ci, y, x] = Σ_co Σ_ky,kx dy[b, co, y + 1 − ky, x + 1 − kx] · w[co, ci, ky, kx]: a convolution of dy with the
// flipped, transposed kernel. Each thread computes a tile of CI_B = 16 input channels × PX = 16 pixels of one row (a
// row segment, held as a mat4x4: column q is pixels 4q..4q+3; conv2d_forward's tiles are two rows of 8 channels): per
// output channel and kernel row it loads the 18 dy values of the segment and its halo once and each weight once.
// Threads are ordered (channel block, sample, row, segment).
//
// Written for lavapipe/llvmpipe (see conv2d_forward.wgsl): the tile is spelled out by hand with constant indices.
// Threads past the end compute a clamped duplicate tile and skip the stores.

override CIN: u32 = 16u;
override COUT: u32 = 32u;
override H: u32 = 14u;
override W: u32 = 14u;
override W_OFF: u32 = 0u;

const PX: u32 = 16u; // pixels per row segment (the host's conv2d::simd::PX)
const CI_B: u32 = 16u; // input channels per thread (the host's conv2d::simd::CO_B)
const WG: u32 = 64u;
const WEIGHT_VEC4S: u32 = 1200u; // the uniform window of the parameters (the host's kernels::WEIGHT_WINDOW_BYTES / 16)

@group(0) @binding(0) var<storage, read> dy: array<vec2<f32>>; // read as pairs (W even)
@group(0) @binding(1) var<uniform> params: array<vec4<f32>, WEIGHT_VEC4S>;
@group(0) @binding(2) var<storage, read_write> dx: array<vec2<f32>>; // stored as pairs (W even)
@group(0) @binding(3) var<uniform> step: Step; // shaders/step.wgsl, appended by the host

// The three windows of row `iy` of the plane at `plane` under the taps kx = 0, 1, 2 of the 16 pixels from ox; a row
// outside the image, and columns outside it, read as 0 (the padding). The 18 values come as 10 aligned pairs (see
// conv2d_forward.wgsl).
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

// The pair dy[row + ix], dy[row + ix + 1] (ix even) if it is inside the row and the row inside the image (`ok`), else 0.
// (`&`, not `&&`: Tint and naga turn a short-circuit into branches, two per load, and SwiftShader's compiler did not
// finish a kernel with dozens of such loads in minutes; with `&` it takes seconds.)
fn ld2(row: u32, ix: i32, ok: bool) -> vec2<f32> {
    let v = dy[(row + u32(clamp(ix, 0, i32(W) - 2))) / 2u];
    return select(vec2<f32>(0.0), v, ok & (ix >= 0) & (ix < i32(W)));
}

// The three taps w, w + 1, w + 2 of one kernel row of one channel pair, flipped: window k meets tap 2 − k.
fn wrow(w: u32) -> vec3<f32> {
    return vec3<f32>(param(w + 2u), param(w + 1u), param(w));
}

// Parameter i, read through the uniform window (see conv2d_forward.wgsl).
fn param(i: u32) -> f32 {
    return params[i / 4u][i % 4u];
}

// One kernel row applied to the three windows of a row.
fn taps(q: vec3<f32>, a: mat4x4<f32>, b: mat4x4<f32>, c: mat4x4<f32>) -> mat4x4<f32> {
    return q.x * a + q.y * b + q.z * c;
}

fn put(ci: u32, out: u32, ox0: u32, m: mat4x4<f32>) {
    if ci >= CIN {
        return;
    }
    // Pairs (W and ox0 even: a pair is wholly inside or outside the row).
    let o = (out + ci * H * W) / 2u;
    for (var q = 0u; q < PX / 2u; q++) {
        if ox0 + 2u * q < W {
            dx[o + q] = vec2<f32>(m[q / 2u][(q % 2u) * 2u], m[q / 2u][(q % 2u) * 2u + 1u]);
        }
    }
}

@compute @workgroup_size(WG)
fn conv2d_backward_input(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // The channel block comes from the workgroup id alone, so it is uniform across the workgroup (drivers that notice
    // may load each weight once; lavapipe does not, hence the uniform-buffer window).
    let segs = (W + PX - 1u) / PX;
    let tiles = step.n * H * segs;
    let per_block = (tiles + WG - 1u) / WG;
    let g = wid.x + wid.y * nwg.x;
    if g >= per_block * ((CIN + CI_B - 1u) / CI_B) {
        return;
    }
    let ci0 = (g / per_block) * CI_B;
    let i = (g % per_block) * WG + lid;
    let r = min(i, tiles - 1u);
    let b = r / (H * segs);
    let y = (r / segs) % H;
    let ox0 = (r % segs) * PX;
    let ox = i32(ox0);

    // Weight offset of each channel of the block (clamped: a partial block repeats the last channel).
    var wo: array<u32, CI_B>;
    for (var j = 0u; j < CI_B; j++) {
        wo[j] = W_OFF + min(ci0 + j, CIN - 1u) * 9u;
    }
    let w0 = wo[0]; let w1 = wo[1]; let w2 = wo[2]; let w3 = wo[3];
    let w4 = wo[4]; let w5 = wo[5]; let w6 = wo[6]; let w7 = wo[7];
    let w8 = wo[8]; let w9 = wo[9]; let w10 = wo[10]; let w11 = wo[11];
    let w12 = wo[12]; let w13 = wo[13]; let w14 = wo[14]; let w15 = wo[15];

    // acc[j]: channel ci0 + j.
    var acc: array<mat4x4<f32>, CI_B>;
    for (var co = 0u; co < COUT; co++) {
        let plane = (b * COUT + co) * H * W;
        // dy row y − 1 + k meets kernel row 2 − k.
        for (var k = 0u; k < 3u; k++) {
            let win = windows(plane, i32(y + k) - 1, ox);
            let a = win[0];
            let bb = win[1];
            let c = win[2];
            let kr = co * CIN * 9u + (2u - k) * 3u;
            acc[0] += taps(wrow(w0 + kr), a, bb, c);
            acc[1] += taps(wrow(w1 + kr), a, bb, c);
            acc[2] += taps(wrow(w2 + kr), a, bb, c);
            acc[3] += taps(wrow(w3 + kr), a, bb, c);
            acc[4] += taps(wrow(w4 + kr), a, bb, c);
            acc[5] += taps(wrow(w5 + kr), a, bb, c);
            acc[6] += taps(wrow(w6 + kr), a, bb, c);
            acc[7] += taps(wrow(w7 + kr), a, bb, c);
            acc[8] += taps(wrow(w8 + kr), a, bb, c);
            acc[9] += taps(wrow(w9 + kr), a, bb, c);
            acc[10] += taps(wrow(w10 + kr), a, bb, c);
            acc[11] += taps(wrow(w11 + kr), a, bb, c);
            acc[12] += taps(wrow(w12 + kr), a, bb, c);
            acc[13] += taps(wrow(w13 + kr), a, bb, c);
            acc[14] += taps(wrow(w14 + kr), a, bb, c);
            acc[15] += taps(wrow(w15 + kr), a, bb, c);
        }
    }
    if i >= tiles {
        return;
    }
    let out = b * CIN * H * W + y * W + ox0;
    put(ci0, out, ox0, acc[0]);
    put(ci0 + 1u, out, ox0, acc[1]);
    put(ci0 + 2u, out, ox0, acc[2]);
    put(ci0 + 3u, out, ox0, acc[3]);
    put(ci0 + 4u, out, ox0, acc[4]);
    put(ci0 + 5u, out, ox0, acc[5]);
    put(ci0 + 6u, out, ox0, acc[6]);
    put(ci0 + 7u, out, ox0, acc[7]);
    put(ci0 + 8u, out, ox0, acc[8]);
    put(ci0 + 9u, out, ox0, acc[9]);
    put(ci0 + 10u, out, ox0, acc[10]);
    put(ci0 + 11u, out, ox0, acc[11]);
    put(ci0 + 12u, out, ox0, acc[12]);
    put(ci0 + 13u, out, ox0, acc[13]);
    put(ci0 + 14u, out, ox0, acc[14]);
    put(ci0 + 15u, out, ox0, acc[15]);
}
