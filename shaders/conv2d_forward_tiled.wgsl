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

// Row m of A: output channel m's weights (x: where they start; w: 1 if the channel exists).
fn a_row(m: u32) -> vec4<u32> {
    return vec4<u32>(W_OFF + m * CIN * 9u, 0u, 0u, select(0u, 1u, m < COUT));
}

fn a_at(row: vec4<u32>, k: u32) -> f32 {
    if row.w == 0u {
        return 0.0;
    }
    return params[row.x + k];
}

// Column p of B: pixel p (x: its sample's first input word; y, z: its row and column; w: 1 if the pixel exists).
fn b_col(p: u32) -> vec4<u32> {
    let px = pixel(p);
    return vec4<u32>(px.x * CIN * H * W, px.y, px.z, select(0u, 1u, p < step.n * H * W));
}

fn b_at(col: vec4<u32>, k: u32) -> f32 {
    let iy = i32(col.y) + i32(k % 9u / 3u) - 1;
    let ix = i32(col.z) + i32(k % 3u) - 1;
    if col.w == 0u || iy < 0 || iy >= i32(H) || ix < 0 || ix >= i32(W) {
        return 0.0;
    }
    return x[col.x + (k / 9u * H + u32(iy)) * W + u32(ix)];
}

// ---- tile core: identical in every *_tiled.wgsl (tests/shaders.rs checks it) ----
// The workgroup computes a BM × BN tile of C[m, n] = Σ_k A(m, k)·B(k, n), stepping through K BK at a time: its 64
// invocations copy the A and B tiles into workgroup memory, then each multiplies an RM × RN block of the tile in
// registers (rows tm + GM·i, columns tn + GN·j, so neighbouring invocations read neighbouring words). The operands
// come from each kernel's a_at(a_row(m), k) and b_at(b_col(n), k): a_row / b_col turn a row or column into what its
// loads need (decoded once per invocation where the invocation keeps one row or column), A_K_FAST / B_K_FAST say
// whether consecutive addresses run along k. With KS > 1 the invocations form KS slices that each take BK / KS of
// every step, and the slices' sums are added in slice order. The tile ends in c_tile for the kernel's epilogue.
// The register block is RM ≤ 4 vec4 accumulators with constant indices (RN = 4 columns each), so it stays in
// registers on every compiler and rows past RM cost nothing. BM = GM·RM ≤ 32, GN = 64 / (KS·GM), BN = 4·GN ≤ 64,
// BK·(BM + 1) ≤ 528, BK·(BN + 1) ≤ 1040, BK divides 64 and KS divides BK: the host's `tiles` module picks them.

const WG: u32 = 64u;

override GM: u32 = 8u;
override RM: u32 = 4u;
override KS: u32 = 1u;
override BK: u32 = 16u;

var<workgroup> a_tile: array<f32, 528>; // [k][m], rows padded by one word
var<workgroup> b_tile: array<f32, 1040>; // [k][n]
var<workgroup> c_tile: array<f32, 2080>; // [m][n]

fn tile_gn() -> u32 {
    return WG / (KS * GM);
}

fn tile_bm() -> u32 {
    return GM * RM;
}

fn tile_bn() -> u32 {
    return tile_gn() * 4u;
}

// c_tile[m][n] of the tile (m, n relative to the tile).
fn tile_at(m: u32, n: u32) -> f32 {
    return c_tile[m * (tile_bn() + 1u) + n];
}

// Up to four words of a tile row, `stride` apart, as one vec4 (0 beyond `count`).
fn tile_a4(i: u32, stride: u32, count: u32) -> vec4<f32> {
    var v = vec4<f32>(a_tile[i], 0.0, 0.0, 0.0);
    if count > 1u {
        v.y = a_tile[i + stride];
    }
    if count > 2u {
        v.z = a_tile[i + 2u * stride];
        v.w = a_tile[i + 3u * stride];
    }
    return v;
}

fn tile_b4(i: u32, stride: u32) -> vec4<f32> {
    return vec4<f32>(b_tile[i], b_tile[i + stride], b_tile[i + 2u * stride], b_tile[i + 3u * stride]);
}

// Adds (or with `first` stores) one row of the register block into c_tile row `row`.
fn tile_put(row: u32, tn: u32, v: vec4<f32>, first: bool) {
    let gn = tile_gn();
    let i = row * (tile_bn() + 1u) + tn;
    let old = vec4<f32>(c_tile[i], c_tile[i + gn], c_tile[i + 2u * gn], c_tile[i + 3u * gn]);
    let sum = select(old + v, v, first);
    c_tile[i] = sum.x;
    c_tile[i + gn] = sum.y;
    c_tile[i + 2u * gn] = sum.z;
    c_tile[i + 3u * gn] = sum.w;
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
    // Where an invocation loads along k, it keeps one row of A or column of B: decode it once.
    let a_mine = a_row(m0 + lid % bm);
    let b_mine = b_col(n0 + lid % bn);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k = k0; k < k1; k += BK) {
        if A_K_FAST {
            let kk = lid % BK;
            for (var m = lid / BK; m < bm; m += WG / BK) {
                var v = 0.0;
                if k + kk < k1 {
                    v = a_at(a_row(m0 + m), k + kk);
                }
                a_tile[kk * (bm + 1u) + m] = v;
            }
        } else {
            for (var kk = lid / bm; kk < BK; kk += WG / bm) {
                var v = 0.0;
                if k + kk < k1 {
                    v = a_at(a_mine, k + kk);
                }
                a_tile[kk * (bm + 1u) + lid % bm] = v;
            }
        }
        if B_K_FAST {
            let kk = lid % BK;
            for (var n = lid / BK; n < bn; n += WG / BK) {
                var v = 0.0;
                if k + kk < k1 {
                    v = b_at(b_col(n0 + n), k + kk);
                }
                b_tile[kk * (bn + 1u) + n] = v;
            }
        } else {
            for (var kk = lid / bn; kk < BK; kk += WG / bn) {
                var v = 0.0;
                if k + kk < k1 {
                    v = b_at(b_mine, k + kk);
                }
                b_tile[kk * (bn + 1u) + lid % bn] = v;
            }
        }
        workgroupBarrier();
        for (var kk = slice * per; kk < (slice + 1u) * per; kk++) {
            let a = tile_a4(kk * (bm + 1u) + tm, GM, RM);
            let b = tile_b4(kk * (bn + 1u) + tn, gn);
            acc0 = fma(vec4<f32>(a.x), b, acc0);
            if RM > 1u {
                acc1 = fma(vec4<f32>(a.y), b, acc1);
            }
            if RM > 2u {
                acc2 = fma(vec4<f32>(a.z), b, acc2);
                acc3 = fma(vec4<f32>(a.w), b, acc3);
            }
        }
        workgroupBarrier();
    }
    for (var s = 0u; s < KS; s++) {
        if slice == s {
            tile_put(tm, tn, acc0, s == 0u);
            if RM > 1u {
                tile_put(tm + GM, tn, acc1, s == 0u);
            }
            if RM > 2u {
                tile_put(tm + 2u * GM, tn, acc2, s == 0u);
                tile_put(tm + 3u * GM, tn, acc3, s == 0u);
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
