// conv2d_forward_tiled: 3×3 convolution, padding 1, stride 1, plus bias, optionally fused with ReLU and with the 2×2
// max-pool that follows it, as an implicit matrix product for GPUs (the tiled kernel family):
//   C[co, p] = Σ_k W[co, k]·X(k, p),  k = (ci, ky, kx),  X(k, p) = x[b, ci, y + ky − 1, x + kx − 1] (0 outside)
// M = COUT, N = n·H·W pixels, K = CIN·9. The input is gathered straight into workgroup memory (no im2col buffer).
//
// Bindings (group 0):
//   0 x       f32 input [n, CIN, H, W]                                   read
//   1 params  f32 all parameters; weight [COUT, CIN, 3, 3] at W_OFF,
//             bias [COUT] at B_OFF                                       read
//   2 y       f32 output [n, COUT, H, W] (stored when !POOL or step.full) write
//   3 step    uniform: n (batch length), full (store y too)
//   4 pooled  f32 max-pooled output [n, COUT, H/2, W/2] (POOL only)      write
// With POOL (H, W even) the pixels are numbered window by window, p = ((b·H/2 + py)·W/2 + px)·4 + q with q the
// position in the 2×2 window in row-major order, so a tile holds whole windows (BN is a multiple of 4) and the
// epilogue takes each window's maximum from workgroup memory (after bias and ReLU; ties to the first, as in the
// reference and maxpool_backward). One workgroup per tile of BM channels × BN pixels.

struct Step {
    start: u32,
    n: u32,
    index: u32,
    full: u32,
}

override CIN: u32 = 1u;
override COUT: u32 = 16u;
override H: u32 = 28u;
override W: u32 = 28u;
override W_OFF: u32 = 0u;
override B_OFF: u32 = 0u;
override RELU: bool = true;
override POOL: bool = true;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> step: Step;
@group(0) @binding(4) var<storage, read_write> pooled: array<f32>;

const A_K_FAST: bool = true; // a weight row is contiguous in k
const B_K_FAST: bool = false; // neighbouring pixels are neighbouring words

// The sample, row and column of pixel p.
fn pixel(p: u32) -> vec3<u32> {
    if POOL {
        let win = p / 4u;
        let q = p % 4u;
        let pw = W / 2u;
        let ph = H / 2u;
        return vec3<u32>(win / (ph * pw), (win / pw) % ph * 2u + q / 2u, win % pw * 2u + q % 2u);
    }
    return vec3<u32>(p / (H * W), (p / W) % H, p % W);
}

fn a_at(m: u32, k: u32) -> f32 {
    if m >= COUT {
        return 0.0;
    }
    return params[W_OFF + m * CIN * 9u + k];
}

fn b_at(k: u32, p: u32) -> f32 {
    if p >= step.n * H * W {
        return 0.0;
    }
    let px = pixel(p);
    let ci = k / 9u;
    let iy = i32(px.y) + i32(k % 9u / 3u) - 1;
    let ix = i32(px.z) + i32(k % 3u) - 1;
    if iy < 0 || iy >= i32(H) || ix < 0 || ix >= i32(W) {
        return 0.0;
    }
    return x[((px.x * CIN + ci) * H + u32(iy)) * W + u32(ix)];
}

// ---- tile core: identical in every *_tiled.wgsl (tests/shaders.rs checks it) ----
// The workgroup computes a BM × BN tile of C[m, n] = Σ_k A(m, k)·B(k, n), stepping through K BK at a time: its 64
// invocations copy the A and B tiles into workgroup memory (a_at and b_at, defined by each kernel, read the operands;
// A_K_FAST / B_K_FAST say along which index consecutive invocations read consecutive addresses), then each invocation
// multiplies an RM × RN block of the tile in registers (rows tm + GM·r, columns tn + GN·c: neighbouring invocations
// read neighbouring words of workgroup memory). With KS > 1 the invocations form KS slices that each take BK / KS of
// every step; the slices' sums are added in slice order. The tile ends in c_tile for the kernel's epilogue.
// BM = GM·RM ≤ 32, GN = 64 / (KS·GM), BN = GN·RN ≤ 64, RM·RN ≤ 16: the host's `tiles` module picks them.

const WG: u32 = 64u;
const BK: u32 = 16u;
const MAX_BM: u32 = 32u;
const MAX_BN: u32 = 64u;

override GM: u32 = 8u;
override RM: u32 = 4u;
override RN: u32 = 4u;
override KS: u32 = 1u;

var<workgroup> a_tile: array<f32, 528>; // BK × (MAX_BM + 1): [k][m], rows padded by one word
var<workgroup> b_tile: array<f32, 1040>; // BK × (MAX_BN + 1): [k][n]
var<workgroup> c_tile: array<f32, 2080>; // MAX_BM × (MAX_BN + 1): [m][n]

fn tile_gn() -> u32 {
    return WG / (KS * GM);
}

fn tile_bm() -> u32 {
    return GM * RM;
}

fn tile_bn() -> u32 {
    return tile_gn() * RN;
}

// c_tile[m][n] of the tile (m, n relative to the tile).
fn tile_at(m: u32, n: u32) -> f32 {
    return c_tile[m * (tile_bn() + 1u) + n];
}

// Sums A(m0 + m, k)·B(k, n0 + n) over k in [k0, k1) into c_tile. Called with the same arguments by the whole workgroup.
fn tile_product(m0: u32, n0: u32, k0: u32, k1: u32, lid: u32) {
    let gn = tile_gn();
    let bm = tile_bm();
    let bn = tile_bn();
    let slice = lid / (GM * gn);
    let tm = lid % GM;
    let tn = (lid / GM) % gn;
    let per = BK / KS;
    var acc: array<f32, 16>;
    for (var k = k0; k < k1; k += BK) {
        for (var e = lid; e < BK * bm; e += WG) {
            var m = e / BK;
            var kk = e % BK;
            if !A_K_FAST {
                m = e % bm;
                kk = e / bm;
            }
            var v = 0.0;
            if k + kk < k1 {
                v = a_at(m0 + m, k + kk);
            }
            a_tile[kk * (bm + 1u) + m] = v;
        }
        for (var e = lid; e < BK * bn; e += WG) {
            var n = e / BK;
            var kk = e % BK;
            if !B_K_FAST {
                n = e % bn;
                kk = e / bn;
            }
            var v = 0.0;
            if k + kk < k1 {
                v = b_at(k + kk, n0 + n);
            }
            b_tile[kk * (bn + 1u) + n] = v;
        }
        workgroupBarrier();
        for (var kk = slice * per; kk < (slice + 1u) * per; kk++) {
            for (var r = 0u; r < RM; r++) {
                let a = a_tile[kk * (bm + 1u) + tm + GM * r];
                for (var c = 0u; c < RN; c++) {
                    acc[r * RN + c] = fma(a, b_tile[kk * (bn + 1u) + tn + gn * c], acc[r * RN + c]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var s = 0u; s < KS; s++) {
        if slice == s {
            for (var r = 0u; r < RM; r++) {
                for (var c = 0u; c < RN; c++) {
                    let i = (tm + GM * r) * (bn + 1u) + tn + gn * c;
                    c_tile[i] = select(c_tile[i] + acc[r * RN + c], acc[r * RN + c], s == 0u);
                }
            }
        }
        workgroupBarrier();
    }
}
// ---- end of the tile core ----

@compute @workgroup_size(WG)
fn conv2d_forward_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let bm = tile_bm();
    let bn = tile_bn();
    let m_tiles = (COUT + bm - 1u) / bm;
    let pixels = step.n * H * W;
    let g = wid.x + wid.y * nwg.x;
    if g >= m_tiles * ((pixels + bn - 1u) / bn) {
        return;
    }
    let m0 = g % m_tiles * bm;
    let n0 = g / m_tiles * bn;
    tile_product(m0, n0, 0u, CIN * 9u, lid);

    // Epilogue: bias, ReLU, store, and with POOL the maximum of each window.
    let per = select(1u, 4u, POOL); // pixels per item
    for (var e = lid; e < bm * (bn / per); e += WG) {
        let m = e / (bn / per);
        let co = m0 + m;
        let p0 = n0 + e % (bn / per) * per;
        if co >= COUT || p0 >= pixels {
            continue;
        }
        let bias = params[B_OFF + co];
        var best = 0.0;
        for (var q = 0u; q < per; q++) {
            var v = tile_at(m, p0 - n0 + q) + bias;
            if RELU {
                v = max(v, 0.0);
            }
            let px = pixel(p0 + q);
            if !POOL || step.full != 0u {
                y[((px.x * COUT + co) * H + px.y) * W + px.z] = v;
            }
            if q == 0u || v > best {
                best = v;
            }
        }
        if POOL {
            let px = pixel(p0);
            pooled[((px.x * COUT + co) * (H / 2u) + px.y / 2u) * (W / 2u) + px.z / 2u] = best;
        }
    }
}
