// conv2d_backward_weight_tiled: the gradient of a 3×3, padding 1 convolution with respect to its weights and bias, as
// an implicit matrix product for GPUs (the tiled kernel family):
//   dW[co, j] = Σ_p dy[b, co, y, x]·X(j, p),  j = (ci, ky, kx),  X(j, p) = x[b, ci, y + ky − 1, x + kx − 1];
//   db[co] = Σ_p dy[b, co, y, x]  (column j = CIN·9, against ones)
// M = COUT, N = CIN·9 + 1, K = n·H·W pixels (p = (b·H + y)·W + x). The reduction over the batch is split over SPLIT
// workgroups per tile (split-K: the grid grows with SPLIT, which the host sizes to fill the GPU); each stores its sums
// in partials[s], and conv2d_backward_weight_tiled_reduce adds the SPLIT parts in order (deterministic). With
// SPLIT = 1 the tile is stored in grads directly.
//
// Bindings (group 0):
//   0 x         f32 the layer's input [n, CIN, H, W]                       read
//   1 dy        f32 gradient of the output [n, COUT, H, W]                 read
//   2 grads     f32 all gradients; weight [COUT, CIN, 3, 3] at W_OFF,
//               bias [COUT] at B_OFF                                        write
//   3 step      uniform: n (batch length)
//   4 partials  f32 [SPLIT, COUT, CIN·9 + 1] (SPLIT > 1)                   read_write

struct Step {
    start: u32,
    n: u32,
    index: u32,
    _pad: u32,
}

override CIN: u32 = 16u;
override COUT: u32 = 32u;
override H: u32 = 14u;
override W: u32 = 14u;
override W_OFF: u32 = 0u;
override B_OFF: u32 = 0u;
override SPLIT: u32 = 1u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;
@group(0) @binding(3) var<uniform> step: Step;
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;

const A_K_FAST: bool = true; // a plane of dy is contiguous in p
const B_K_FAST: bool = true; // so is a plane of x

fn a_at(m: u32, p: u32) -> f32 {
    if m >= COUT {
        return 0.0;
    }
    return dy[(p / (H * W) * COUT + m) * H * W + p % (H * W)];
}

fn b_at(p: u32, j: u32) -> f32 {
    if j >= CIN * 9u {
        return select(0.0, 1.0, j == CIN * 9u);
    }
    let iy = i32(p / W % H) + i32(j % 9u / 3u) - 1;
    let ix = i32(p % W) + i32(j % 3u) - 1;
    if iy < 0 || iy >= i32(H) || ix < 0 || ix >= i32(W) {
        return 0.0;
    }
    return x[((p / (H * W) * CIN + j / 9u) * H + u32(iy)) * W + u32(ix)];
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
fn conv2d_backward_weight_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let bm = tile_bm();
    let bn = tile_bn();
    let cols = CIN * 9u + 1u;
    let m_tiles = (COUT + bm - 1u) / bm;
    let n_tiles = (cols + bn - 1u) / bn;
    let g = wid.x + wid.y * nwg.x;
    if g >= m_tiles * n_tiles * SPLIT {
        return;
    }
    let m0 = g % m_tiles * bm;
    let n0 = g / m_tiles % n_tiles * bn;
    let part = g / (m_tiles * n_tiles);
    let pixels = step.n * H * W;
    let chunk = ((pixels + SPLIT - 1u) / SPLIT + BK - 1u) / BK * BK;
    let k0 = min(part * chunk, pixels);
    tile_product(m0, n0, k0, min(k0 + chunk, pixels), lid);

    for (var e = lid; e < bm * bn; e += WG) {
        let co = m0 + e / bn;
        let j = n0 + e % bn;
        if co >= COUT || j >= cols {
            continue;
        }
        let v = tile_at(e / bn, e % bn);
        if SPLIT > 1u {
            partials[(part * COUT + co) * cols + j] = v;
        } else if j < CIN * 9u {
            grads[W_OFF + co * CIN * 9u + j] = v;
        } else {
            grads[B_OFF + co] = v;
        }
    }
}

// conv2d_backward_weight_tiled_reduce (SPLIT > 1): invocation t adds partials[0..SPLIT][t] in part order and stores
// it in grads (one invocation per weight and bias).
@compute @workgroup_size(WG)
fn conv2d_backward_weight_tiled_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    let cols = CIN * 9u + 1u;
    if t >= COUT * cols {
        return;
    }
    var s = 0.0;
    for (var p = 0u; p < SPLIT; p++) {
        s += partials[p * COUT * cols + t];
    }
    let co = t / cols;
    let j = t % cols;
    if j < CIN * 9u {
        grads[W_OFF + co * CIN * 9u + j] = s;
    } else {
        grads[B_OFF + co] = s;
    }
}
