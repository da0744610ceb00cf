// tile_core: the matrix-product tile every *_tiled.wgsl kernel shares. WGSL has no include, so the host appends
// this file to each of them (kernels.rs, `shader!(… tile_core)`); module-scope declarations may come in any order.
// A kernel supplies the operands: a_row / a_at, b_col / b_at and the constants A_K_FAST / B_K_FAST.
//
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
// Last, `pool_relu_route`: the max-pool and ReLU backward the input-gradient kernels fuse into their epilogue.

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

// The 2×2 max-pool and ReLU backward of one pooled gradient `v` (both input-gradient kernels' ROUTE epilogue): `w4`
// holds the window's ReLU outputs (top-left, top-right, bottom-left, bottom-right); `v` goes to the first maximum if it
// is positive (ReLU let it through), 0 everywhere else, as reference::maxpool_backward and relu_backward do.
fn pool_relu_route(w4: vec4<f32>, v: f32) -> vec4<f32> {
    var arg = 0u;
    var best = w4.x;
    for (var q = 1u; q < 4u; q++) {
        if w4[q] > best {
            best = w4[q];
            arg = q;
        }
    }
    let g = select(0.0, v, best > 0.0);
    return vec4<f32>(select(0.0, g, arg == 0u), select(0.0, g, arg == 1u), select(0.0, g, arg == 2u), select(0.0, g, arg == 3u));
}
