// dense_backward_input_tiled: the gradient of a fully connected layer with respect to its input, as a matrix product
// tiled through workgroup memory for GPUs (the tiled kernel family):
//   dx[b, i] = Σ_o dy[b, o]·W[o, i]    M = n samples, N = IN, K = OUT
// optionally fused with the backward of what produced the input: with RELU, dx is masked by x > 0 (x the layer's
// input, a ReLU output); with ROUTE, the input was the flattened 2×2 max-pool of a ReLU output `a` [n, C, 2·PH, 2·PW]
// (IN = C·PH·PW, as the conv layers before a dense layer produce it): each dx value goes to its window's first maximum
// in `a`, and the whole window of the pre-pool gradient is written (0 elsewhere, and everywhere if the maximum is not
// > 0): maxpool_backward and relu_backward fused, so dx itself is never stored.
//
// Bindings (group 0):
//   0 dy      f32 gradient of the output [n, OUT]                        read
//   1 params  f32 all parameters; weight [OUT, IN] at W_OFF              read
//   2 x       f32 the layer's input [n, IN] (RELU), or with ROUTE the
//             pre-pool ReLU output a [n, C, 2·PH, 2·PW]                 read
//   3 dx      f32 gradient of the input [n, IN]; with ROUTE the pre-pool
//             gradient [n, C, 2·PH, 2·PW]                               write
//   4 step    uniform: n (batch length)

struct Step {
    start: u32,
    n: u32,
    index: u32,
    _pad: u32,
}

override IN: u32 = 1568u;
override OUT: u32 = 128u;
override W_OFF: u32 = 0u;
override RELU: bool = false;
override ROUTE: bool = false;
override PH: u32 = 7u;
override PW: u32 = 7u;

@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(4) var<uniform> step: Step;

const A_K_FAST: bool = true; // a sample's output gradients are contiguous
const B_K_FAST: bool = false; // a weight row is contiguous in i

fn a_at(b: u32, o: u32) -> f32 {
    if b >= step.n {
        return 0.0;
    }
    return dy[b * OUT + o];
}

fn b_at(o: u32, i: u32) -> f32 {
    if i >= IN {
        return 0.0;
    }
    return params[W_OFF + o * IN + i];
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
fn dense_backward_input_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let bm = tile_bm();
    let bn = tile_bn();
    let m_tiles = (step.n + bm - 1u) / bm;
    let g = wid.x + wid.y * nwg.x;
    if g >= m_tiles * ((IN + bn - 1u) / bn) {
        return;
    }
    let m0 = g % m_tiles * bm;
    let n0 = g / m_tiles * bn;
    tile_product(m0, n0, 0u, OUT, lid);

    for (var e = lid; e < bm * bn; e += WG) {
        let b = m0 + e / bn;
        let i = n0 + e % bn;
        if b >= step.n || i >= IN {
            continue;
        }
        let v = tile_at(e / bn, e % bn);
        if !ROUTE {
            dx[b * IN + i] = select(v, select(0.0, v, x[b * IN + i] > 0.0), RELU);
            continue;
        }
        // Input i is (channel, py, px) of the pooled plane; its window in the [2·PH, 2·PW] plane.
        let plane = b * (IN / (PH * PW)) + i / (PH * PW);
        let top = (plane * 2u * PH + i / PW % PH * 2u) * 2u * PW + i % PW * 2u;
        let bottom = top + 2u * PW;
        let w4 = vec4<f32>(x[top], x[top + 1u], x[bottom], x[bottom + 1u]);
        var arg = 0u;
        var best = w4.x;
        for (var q = 1u; q < 4u; q++) {
            if w4[q] > best {
                best = w4[q];
                arg = q;
            }
        }
        let g2 = select(0.0, v, best > 0.0);
        dx[top] = select(0.0, g2, arg == 0u);
        dx[top + 1u] = select(0.0, g2, arg == 1u);
        dx[bottom] = select(0.0, g2, arg == 2u);
        dx[bottom + 1u] = select(0.0, g2, arg == 3u);
    }
}
