// dense_forward_tiled: fully connected layer y = x·Wᵀ + b (PyTorch Linear), optionally fused with ReLU, as a matrix
// product tiled through workgroup memory for GPUs (the tiled kernel family):
//   C[b, o] = Σ_i x[b, i]·W[o, i]    M = n samples, N = OUT, K = IN
// One workgroup per tile of BM samples × BN features. A product too small to fill the GPU (few samples, long K)
// splits K over SPLIT workgroups per tile, each storing its sums in parts[s]; dense_forward_tiled_reduce then adds
// the SPLIT parts in order, with the bias and ReLU (deterministic).
//
// Bindings (group 0):
//   0 x       f32 input [n, IN]                                          read
//   1 params  f32 all parameters; weight [OUT, IN] at W_OFF, bias [OUT]
//             at B_OFF                                                  read
//   2 y       f32 output [n, OUT]                                        write
//   3 step    uniform: n (batch length)
//   4 parts   f32 [SPLIT, n, OUT] (SPLIT > 1)                            read_write

override IN: u32 = 1568u;
override OUT: u32 = 128u;
override W_OFF: u32 = 0u;
override B_OFF: u32 = 0u;
override RELU: bool = true;
override SPLIT: u32 = 1u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> step: Step; // shaders/step.wgsl, appended by the host
@group(0) @binding(4) var<storage, read_write> parts: array<f32>;

const A_K_FAST: bool = true; // a sample's inputs are contiguous
const B_K_FAST: bool = true; // so is a weight row

// Row b of A: sample b's inputs (x: the first; w: 1 if the sample exists).
fn a_row(b: u32) -> vec4<u32> {
    return vec4<u32>(b * IN, 0u, 0u, select(0u, 1u, b < step.n));
}

fn a_at(row: vec4<u32>, i: u32) -> f32 {
    if row.w == 0u {
        return 0.0;
    }
    return x[row.x + i];
}

// Column o of B: feature o's weights (x: the first; w: 1 if the feature exists).
fn b_col(o: u32) -> vec4<u32> {
    return vec4<u32>(W_OFF + o * IN, 0u, 0u, select(0u, 1u, o < OUT));
}

fn b_at(col: vec4<u32>, i: u32) -> f32 {
    if col.w == 0u {
        return 0.0;
    }
    return params[col.x + i];
}

// The tile core (tile_product, tile_at, the workgroup tiles, WG, GM, RM, KS, BK) is shaders/tile_core.wgsl: the
// host appends it to this file (kernels.rs, `tile_core`).

@compute @workgroup_size(WG)
fn dense_forward_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let bm = tile_bm();
    let bn = tile_bn();
    let m_tiles = (step.n + bm - 1u) / bm;
    let n_tiles = (OUT + bn - 1u) / bn;
    let g = wid.x + wid.y * nwg.x;
    if g >= m_tiles * n_tiles * SPLIT {
        return;
    }
    let m0 = g % m_tiles * bm;
    let n0 = g / m_tiles % n_tiles * bn;
    let part = g / (m_tiles * n_tiles);
    let chunk = ((IN + SPLIT - 1u) / SPLIT + BK - 1u) / BK * BK;
    let k0 = min(part * chunk, IN);
    tile_product(m0, n0, k0, min(k0 + chunk, IN), lid);

    for (var e = lid; e < bm * bn; e += WG) {
        let b = m0 + e / bn;
        let o = n0 + e % bn;
        if b >= step.n || o >= OUT {
            continue;
        }
        if SPLIT > 1u {
            parts[(part * step.n + b) * OUT + o] = tile_at(e / bn, e % bn);
            continue;
        }
        var v = tile_at(e / bn, e % bn) + params[B_OFF + o];
        if RELU {
            v = max(v, 0.0);
        }
        y[b * OUT + o] = v;
    }
}

// dense_forward_tiled_reduce (SPLIT > 1): invocation (b, o) adds parts[0..SPLIT][b][o] in part order, then the bias
// and ReLU.
@compute @workgroup_size(WG)
fn dense_forward_tiled_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    if t >= step.n * OUT {
        return;
    }
    var v = 0.0;
    for (var p = 0u; p < SPLIT; p++) {
        v += parts[p * step.n * OUT + t];
    }
    v += params[B_OFF + t % OUT];
    if RELU {
        v = max(v, 0.0);
    }
    y[t] = v;
}
