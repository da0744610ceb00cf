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
@group(0) @binding(4) var<uniform> step: Step; // shaders/step.wgsl, appended by the host

const A_K_FAST: bool = true; // a sample's output gradients are contiguous
const B_K_FAST: bool = false; // a weight row is contiguous in i

// Row b of A: sample b's output gradients (x: the first; w: 1 if the sample exists).
fn a_row(b: u32) -> vec4<u32> {
    return vec4<u32>(b * OUT, 0u, 0u, select(0u, 1u, b < step.n));
}

fn a_at(row: vec4<u32>, o: u32) -> f32 {
    if row.w == 0u {
        return 0.0;
    }
    return dy[row.x + o];
}

// Column i of B: input i's weights, one per output (x: the first; w: 1 if the input exists).
fn b_col(i: u32) -> vec4<u32> {
    return vec4<u32>(W_OFF + i, 0u, 0u, select(0u, 1u, i < IN));
}

fn b_at(col: vec4<u32>, o: u32) -> f32 {
    if col.w == 0u {
        return 0.0;
    }
    return params[col.x + o * IN];
}

// The tile core (tile_product, tile_at, the workgroup tiles, WG, GM, RM, KS, BK) and pool_relu_route are
// shaders/tile_core.wgsl: the host appends it to this file (kernels.rs, `tile_core`).

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
        let r = pool_relu_route(vec4<f32>(x[top], x[top + 1u], x[bottom], x[bottom + 1u]), v);
        dx[top] = r.x;
        dx[top + 1u] = r.y;
        dx[bottom] = r.z;
        dx[bottom + 1u] = r.w;
    }
}
