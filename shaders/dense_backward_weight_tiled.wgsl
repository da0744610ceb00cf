// dense_backward_weight_tiled: the gradient of a fully connected layer with respect to its weight and bias, as a
// matrix product tiled through workgroup memory for GPUs (the tiled kernel family):
//   dW[o, i] = Σ_b dy[b, o]·x[b, i],  db[o] = Σ_b dy[b, o]  (column i = IN, against ones)
// M = OUT, N = IN + 1, K = n samples. One workgroup per tile of BM outputs × BN columns of [weight | bias].
//
// Bindings (group 0):
//   0 x       f32 the layer's input [n, IN]                              read
//   1 dy      f32 gradient of the output [n, OUT]                        read
//   2 grads   f32 all gradients; weight [OUT, IN] at W_OFF, bias [OUT]
//             at B_OFF                                                  write
//   3 step    uniform: n (batch length)

struct Step {
    start: u32,
    n: u32,
    index: u32,
    _pad: u32,
}

override IN: u32 = 1568u;
override OUT: u32 = 128u;
override W_OFF: u32 = 0u;
override B_OFF: u32 = 0u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;
@group(0) @binding(3) var<uniform> step: Step;

const A_K_FAST: bool = false; // a sample's output gradients are contiguous in o
const B_K_FAST: bool = false; // a sample's inputs are contiguous in i

fn a_at(o: u32, b: u32) -> f32 {
    if o >= OUT {
        return 0.0;
    }
    return dy[b * OUT + o];
}

fn b_at(b: u32, i: u32) -> f32 {
    if i >= IN {
        return select(0.0, 1.0, i == IN);
    }
    return x[b * IN + i];
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
fn dense_backward_weight_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let bm = tile_bm();
    let bn = tile_bn();
    let m_tiles = (OUT + bm - 1u) / bm;
    let g = wid.x + wid.y * nwg.x;
    if g >= m_tiles * ((IN + bn) / bn) {
        return;
    }
    let m0 = g % m_tiles * bm;
    let n0 = g / m_tiles * bn;
    tile_product(m0, n0, 0u, step.n, lid);

    for (var e = lid; e < bm * bn; e += WG) {
        let o = m0 + e / bn;
        let i = n0 + e % bn;
        if o >= OUT || i > IN {
            continue;
        }
        let v = tile_at(e / bn, e % bn);
        if i < IN {
            grads[W_OFF + o * IN + i] = v;
        } else {
            grads[B_OFF + o] = v;
        }
    }
}
