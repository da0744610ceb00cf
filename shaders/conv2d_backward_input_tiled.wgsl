// conv2d_backward_input_tiled: the gradient of a KSIZE×KSIZE, padding PAD convolution with respect to its input, as an
// implicit matrix product for GPUs (the tiled kernel family):
//   dx[b, ci, y, x] = Σ_k W[co, ci, ky, kx]·dy[b, co, y + PAD − ky, x + PAD − kx],  k = (co, ky, kx)  (0 outside the
//   OH × OW output, OH = H + 2·PAD − KSIZE + 1)
// M = CIN, N = n·H·W input pixels (p = (b·H + y)·W + x), K = COUT·KSIZE². One workgroup per tile of BM channels × BN
// pixels.
// With ROUTE, the layer's input was the 2×2 max-pool of a ReLU output `a` [n, CIN, 2H, 2W] (the previous layer's
// conv2d_forward with RELU and POOL): the epilogue routes each dx value to its window's first maximum in `a` and
// writes the whole window of the previous layer's pre-pool gradient (0 elsewhere, and everywhere if the maximum is
// not > 0): maxpool_backward and relu_backward fused, so dx itself is never stored. With RELU (the layer's input was
// the previous convolution's ReLU output `a` [n, CIN, H, W], not pooled), dx is masked by a > 0 (relu_backward fused).
//
// Bindings (group 0):
//   0 dy      f32 gradient of the output [n, COUT, OH, OW]                read
//   1 params  f32 all parameters; weight [COUT, CIN, KSIZE, KSIZE] at
//             W_OFF                                                       read
//   2 dx      f32 gradient of the input [n, CIN, H, W]; with ROUTE the
//             previous layer's pre-pool gradient [n, CIN, 2H, 2W]         write
//   3 step    uniform: n (batch length)
//   4 a       f32 the previous layer's ReLU output: [n, CIN, 2H, 2W]
//             with ROUTE, [n, CIN, H, W] with RELU (any buffer else)     read

override CIN: u32 = 16u;
override COUT: u32 = 32u;
override H: u32 = 14u;
override W: u32 = 14u;
override KSIZE: u32 = 3u;
override PAD: u32 = 1u;
override W_OFF: u32 = 0u;
override ROUTE: bool = false;
override RELU: bool = false;

@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform> step: Step; // shaders/step.wgsl, appended by the host
@group(0) @binding(4) var<storage, read> a: array<f32>;

const A_K_FAST: bool = true; // the KSIZE² taps of one (co, ci) are contiguous
const B_K_FAST: bool = false; // neighbouring pixels are neighbouring words

// Row m of A: input channel m (w: 1 if it exists).
fn a_row(m: u32) -> vec4<u32> {
    return vec4<u32>(m, 0u, 0u, select(0u, 1u, m < CIN));
}

fn a_at(row: vec4<u32>, k: u32) -> f32 {
    if row.w == 0u {
        return 0.0;
    }
    let taps = KSIZE * KSIZE;
    return params[W_OFF + (k / taps * CIN + row.x) * taps + k % taps];
}

// The output's height and width.
fn out_h() -> u32 {
    return H + 2u * PAD + 1u - KSIZE;
}

fn out_w() -> u32 {
    return W + 2u * PAD + 1u - KSIZE;
}

// Column p of B: input pixel p (x: its sample's first dy word; y, z: its row and column; w: 1 if the pixel exists).
fn b_col(p: u32) -> vec4<u32> {
    return vec4<u32>(p / (H * W) * COUT * out_h() * out_w(), p / W % H, p % W, select(0u, 1u, p < step.n * H * W));
}

fn b_at(col: vec4<u32>, k: u32) -> f32 {
    let taps = KSIZE * KSIZE;
    let oy = i32(col.y) + i32(PAD) - i32(k % taps / KSIZE);
    let ox = i32(col.z) + i32(PAD) - i32(k % KSIZE);
    let oh = out_h();
    let ow = out_w();
    if col.w == 0u || oy < 0 || oy >= i32(oh) || ox < 0 || ox >= i32(ow) {
        return 0.0;
    }
    return dy[col.x + (k / taps * oh + u32(oy)) * ow + u32(ox)];
}

// The tile core (tile_product, tile_at, the workgroup tiles, WG, GM, RM, KS, BK) and pool_relu_route are
// shaders/tile_core.wgsl: the host appends it to this file (kernels.rs, `tile_core`).

@compute @workgroup_size(WG)
fn conv2d_backward_input_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let bm = tile_bm();
    let bn = tile_bn();
    let m_tiles = (CIN + bm - 1u) / bm;
    let pixels = step.n * H * W;
    let g = wid.x + wid.y * nwg.x;
    if g >= m_tiles * ((pixels + bn - 1u) / bn) {
        return;
    }
    let m0 = g % m_tiles * bm;
    let n0 = g / m_tiles * bn;
    tile_product(m0, n0, 0u, COUT * KSIZE * KSIZE, lid);

    for (var e = lid; e < bm * bn; e += WG) {
        let ci = m0 + e / bn;
        let p = n0 + e % bn;
        if ci >= CIN || p >= pixels {
            continue;
        }
        let v = tile_at(e / bn, e % bn);
        let b = p / (H * W);
        let yy = p / W % H;
        let xx = p % W;
        if !ROUTE {
            let i = ((b * CIN + ci) * H + yy) * W + xx;
            dx[i] = select(v, select(0.0, v, a[i] > 0.0), RELU);
            continue;
        }
        // The window (2yy .. 2yy + 1, 2xx .. 2xx + 1) of the previous layer's [2H, 2W] plane.
        let top = ((b * CIN + ci) * 2u * H + 2u * yy) * 2u * W + 2u * xx;
        let bottom = top + 2u * W;
        let r = pool_relu_route(vec4<f32>(a[top], a[top + 1u], a[bottom], a[bottom + 1u]), v);
        dx[top] = r.x;
        dx[top + 1u] = r.y;
        dx[bottom] = r.z;
        dx[bottom + 1u] = r.w;
    }
}
