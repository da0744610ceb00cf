// tile_core: the matrix-product tile every *_tiled.wgsl kernel shares. WGSL has no include, so the host appends
// this file to each of them (kernels.rs, `shader!(… tile_core)`); module-scope declarations may come in any order.
// A kernel supplies the operands: a_row / a_at, b_col / b_at and the constants A_K_FAST / B_K_FAST.
//
// The workgroup computes a BM × BN tile of C[m, n] = Σ_k A(m, k)·B(k, n), stepping through K BK at a time: its 64
// invocations copy the A and B tiles into workgroup memory, then each multiplies an RM × RN block of the tile in
// registers (rows tm + GM·i, columns tn + GN·j, so neighbouring invocations read neighbouring words). The operands
// come from each kernel's a_at(a_row(m), k) and b_at(b_col(n), k): a_row / b_col turn a row or column into what its
// loads need (decoded once per invocation where the invocation keeps one row or column), A_K_FAST / B_K_FAST say
// whether consecutive addresses run along k. The tiles are double-buffered: while the workgroup multiplies step s's
// tiles, each invocation already holds step s + 1's values in registers (their loads in flight during the
// arithmetic) and stores them into the other buffer, so one barrier per step suffices. With KS > 1 the invocations
// form KS slices that each take BK / KS of every step, and the slices' sums are added in slice order. The tile ends
// in workgroup memory (tile_at) for the kernel's epilogue, over the words the A and B tiles used.
// The register block is RM ≤ 4 vec4 accumulators with constant indices (RN = 4 columns each), so it stays in
// registers on every compiler and rows past RM cost nothing; so are the prefetched values (at most 8 of A and 16 of
// B per invocation: BM·BK / 64 and BN·BK / 64). BM = GM·RM ≤ 32, GN = 64 / (KS·GM), BN = 4·GN ≤ 64,
// BK·(BM + 1) ≤ 528, BK·(BN + 1) ≤ 1040, BK divides 64 and KS divides BK: the host's `tiles` module picks them.
// Last, `pool_relu_route`: the max-pool and ReLU backward the input-gradient kernels fuse into their epilogue.

const WG: u32 = 64u;
// Words of one A tile and of one B tile (the host's tiles::A_WORDS, B_WORDS).
const A_WORDS: u32 = 528u;
const B_WORDS: u32 = 1040u;

override GM: u32 = 8u;
override RM: u32 = 4u;
override KS: u32 = 1u;
override BK: u32 = 16u;

// Two A tiles [k][m] and two B tiles [k][n] (rows padded by one word), buffer s % 2 holding step s; after the product,
// the C tile [m][n] (BM·(BN + 1) ≤ 2080 words) over them.
var<workgroup> tile_mem: array<f32, 3136>;

fn tile_gn() -> u32 {
    return WG / (KS * GM);
}

fn tile_bm() -> u32 {
    return GM * RM;
}

fn tile_bn() -> u32 {
    return tile_gn() * 4u;
}

// Where buffer `buf`'s A and B tiles start in tile_mem.
fn a_base(buf: u32) -> u32 {
    return buf * A_WORDS;
}

fn b_base(buf: u32) -> u32 {
    return 2u * A_WORDS + buf * B_WORDS;
}

// C[m][n] of the tile (m, n relative to the tile), once tile_product has returned.
fn tile_at(m: u32, n: u32) -> f32 {
    return tile_mem[m * (tile_bn() + 1u) + n];
}

// Up to four words of an A tile row, `stride` apart, as one vec4 (0 beyond `count`).
fn tile_a4(i: u32, stride: u32, count: u32) -> vec4<f32> {
    var v = vec4<f32>(tile_mem[i], 0.0, 0.0, 0.0);
    if count > 1u {
        v.y = tile_mem[i + stride];
    }
    if count > 2u {
        v.z = tile_mem[i + 2u * stride];
        v.w = tile_mem[i + 3u * stride];
    }
    return v;
}

fn tile_b4(i: u32, stride: u32) -> vec4<f32> {
    return vec4<f32>(tile_mem[i], tile_mem[i + stride], tile_mem[i + 2u * stride], tile_mem[i + 3u * stride]);
}

// Adds (or with `first` stores) one row of the register block into row `row` of the C tile.
fn tile_put(row: u32, tn: u32, v: vec4<f32>, first: bool) {
    let gn = tile_gn();
    let i = row * (tile_bn() + 1u) + tn;
    let old = vec4<f32>(tile_mem[i], tile_mem[i + gn], tile_mem[i + 2u * gn], tile_mem[i + 3u * gn]);
    let sum = select(old + v, v, first);
    tile_mem[i] = sum.x;
    tile_mem[i + gn] = sum.y;
    tile_mem[i + 2u * gn] = sum.z;
    tile_mem[i + 3u * gn] = sum.w;
}

// Values of A and of B each invocation loads per step: the tiles' BM·BK and BN·BK words over 64 invocations.
fn a_loads() -> u32 {
    return tile_bm() * BK / WG;
}

fn b_loads() -> u32 {
    return tile_bn() * BK / WG;
}

// The (k, m) in the tile of the i-th A value invocation `lid` loads, as its index in an A tile: with A_K_FAST the
// workgroup's neighbours take neighbouring k (one row each), otherwise neighbouring m (the invocation keeps row
// lid % BM: `a_mine`).
fn a_slot(i: u32, lid: u32) -> vec2<u32> {
    let bm = tile_bm();
    if A_K_FAST {
        return vec2<u32>(lid % BK, lid / BK + i * (WG / BK));
    }
    return vec2<u32>(lid / bm + i * (WG / bm), lid % bm);
}

fn b_slot(i: u32, lid: u32) -> vec2<u32> {
    let bn = tile_bn();
    if B_K_FAST {
        return vec2<u32>(lid % BK, lid / BK + i * (WG / BK));
    }
    return vec2<u32>(lid / bn + i * (WG / bn), lid % bn);
}

// The i-th A value invocation `lid` loads for the step at k (0 past k1, or past the invocation's share).
fn a_fetch(i: u32, lid: u32, m0: u32, k: u32, k1: u32, a_mine: vec4<u32>) -> f32 {
    let at = a_slot(i, lid);
    if i >= a_loads() || k + at.x >= k1 {
        return 0.0;
    }
    if A_K_FAST {
        return a_at(a_row(m0 + at.y), k + at.x);
    }
    return a_at(a_mine, k + at.x);
}

fn b_fetch(i: u32, lid: u32, n0: u32, k: u32, k1: u32, b_mine: vec4<u32>) -> f32 {
    let at = b_slot(i, lid);
    if i >= b_loads() || k + at.x >= k1 {
        return 0.0;
    }
    if B_K_FAST {
        return b_at(b_col(n0 + at.y), k + at.x);
    }
    return b_at(b_mine, k + at.x);
}

// Four of an invocation's values, i0 .. i0 + 3, as one vec4 of registers.
fn a_fetch4(i0: u32, lid: u32, m0: u32, k: u32, k1: u32, a_mine: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(
        a_fetch(i0, lid, m0, k, k1, a_mine),
        a_fetch(i0 + 1u, lid, m0, k, k1, a_mine),
        a_fetch(i0 + 2u, lid, m0, k, k1, a_mine),
        a_fetch(i0 + 3u, lid, m0, k, k1, a_mine),
    );
}

fn b_fetch4(i0: u32, lid: u32, n0: u32, k: u32, k1: u32, b_mine: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(
        b_fetch(i0, lid, n0, k, k1, b_mine),
        b_fetch(i0 + 1u, lid, n0, k, k1, b_mine),
        b_fetch(i0 + 2u, lid, n0, k, k1, b_mine),
        b_fetch(i0 + 3u, lid, n0, k, k1, b_mine),
    );
}

// Stores values i0 .. i0 + 3 of an invocation into buffer `buf`'s A (or B) tile.
fn a_store4(buf: u32, i0: u32, lid: u32, v: vec4<f32>) {
    for (var q = 0u; q < 4u; q++) {
        if i0 + q < a_loads() {
            let at = a_slot(i0 + q, lid);
            tile_mem[a_base(buf) + at.x * (tile_bm() + 1u) + at.y] = v[q];
        }
    }
}

fn b_store4(buf: u32, i0: u32, lid: u32, v: vec4<f32>) {
    for (var q = 0u; q < 4u; q++) {
        if i0 + q < b_loads() {
            let at = b_slot(i0 + q, lid);
            tile_mem[b_base(buf) + at.x * (tile_bn() + 1u) + at.y] = v[q];
        }
    }
}

// Sums A(m0 + m, k)·B(k, n0 + n) over k in [k0, k1) into the C tile. Called with the same arguments by the whole
// workgroup.
fn tile_product(m0: u32, n0: u32, k0: u32, k1: u32, lid: u32) {
    let gn = tile_gn();
    let bm = tile_bm();
    let bn = tile_bn();
    let slice = lid / (GM * gn);
    let tm = lid % GM;
    let tn = (lid / GM) % gn;
    let per = BK / KS;
    let steps = (max(k1, k0) - k0 + BK - 1u) / BK;
    // Where an invocation loads along m or n, it keeps one row of A or column of B: decode it once.
    let a_mine = a_row(m0 + lid % bm);
    let b_mine = b_col(n0 + lid % bn);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // The first step's tiles; then, in each step, the next one's values in registers while this one is multiplied.
    var pa0 = a_fetch4(0u, lid, m0, k0, k1, a_mine);
    var pa1 = a_fetch4(4u, lid, m0, k0, k1, a_mine);
    var pb0 = b_fetch4(0u, lid, n0, k0, k1, b_mine);
    var pb1 = b_fetch4(4u, lid, n0, k0, k1, b_mine);
    var pb2 = b_fetch4(8u, lid, n0, k0, k1, b_mine);
    var pb3 = b_fetch4(12u, lid, n0, k0, k1, b_mine);
    a_store4(0u, 0u, lid, pa0);
    a_store4(0u, 4u, lid, pa1);
    b_store4(0u, 0u, lid, pb0);
    b_store4(0u, 4u, lid, pb1);
    b_store4(0u, 8u, lid, pb2);
    b_store4(0u, 12u, lid, pb3);
    workgroupBarrier();
    for (var s = 0u; s < steps; s++) {
        let buf = s % 2u;
        let next = k0 + (s + 1u) * BK;
        let more = s + 1u < steps;
        if more {
            pa0 = a_fetch4(0u, lid, m0, next, k1, a_mine);
            pa1 = a_fetch4(4u, lid, m0, next, k1, a_mine);
            pb0 = b_fetch4(0u, lid, n0, next, k1, b_mine);
            pb1 = b_fetch4(4u, lid, n0, next, k1, b_mine);
            pb2 = b_fetch4(8u, lid, n0, next, k1, b_mine);
            pb3 = b_fetch4(12u, lid, n0, next, k1, b_mine);
        }
        for (var kk = slice * per; kk < (slice + 1u) * per; kk++) {
            let a = tile_a4(a_base(buf) + kk * (bm + 1u) + tm, GM, RM);
            let b = tile_b4(b_base(buf) + kk * (bn + 1u) + tn, gn);
            acc0 = fma(vec4<f32>(a.x), b, acc0);
            if RM > 1u {
                acc1 = fma(vec4<f32>(a.y), b, acc1);
            }
            if RM > 2u {
                acc2 = fma(vec4<f32>(a.z), b, acc2);
                acc3 = fma(vec4<f32>(a.w), b, acc3);
            }
        }
        if more {
            a_store4(1u - buf, 0u, lid, pa0);
            a_store4(1u - buf, 4u, lid, pa1);
            b_store4(1u - buf, 0u, lid, pb0);
            b_store4(1u - buf, 4u, lid, pb1);
            b_store4(1u - buf, 8u, lid, pb2);
            b_store4(1u - buf, 12u, lid, pb3);
        }
        // Step s + 1's tiles are stored, and nobody reads step s's any more (the C tile goes over them after the last).
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
