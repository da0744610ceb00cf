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

override IN: u32 = 1568u;
override OUT: u32 = 128u;
override W_OFF: u32 = 0u;
override B_OFF: u32 = 0u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;
@group(0) @binding(3) var<uniform> step: Step; // shaders/step.wgsl, appended by the host

const A_K_FAST: bool = false; // a sample's output gradients are contiguous in o
const B_K_FAST: bool = false; // a sample's inputs are contiguous in i

// Row o of A: output o (w: 1 if it exists).
fn a_row(o: u32) -> vec4<u32> {
    return vec4<u32>(o, 0u, 0u, select(0u, 1u, o < OUT));
}

fn a_at(row: vec4<u32>, b: u32) -> f32 {
    if row.w == 0u {
        return 0.0;
    }
    return dy[b * OUT + row.x];
}

// Column i of B: input i, or the bias column i = IN against ones (w: 1 input, 2 bias, 0 none).
fn b_col(i: u32) -> vec4<u32> {
    return vec4<u32>(i, 0u, 0u, select(select(0u, 2u, i == IN), 1u, i < IN));
}

fn b_at(col: vec4<u32>, b: u32) -> f32 {
    if col.w != 1u {
        return select(0.0, 1.0, col.w == 2u);
    }
    return x[b * IN + col.x];
}

// The tile core (tile_product, tile_at, the workgroup tiles, WG, GM, RM, KS, BK) is shaders/tile_core.wgsl: the
// host appends it to this file (kernels.rs, `tile_core`).

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
