// conv2d_forward_tiled: KSIZE×KSIZE convolution, padding PAD, stride 1, plus bias, optionally fused with ReLU and with
// the 2×2 max-pool that follows it, as an implicit matrix product for GPUs (the tiled kernel family):
//   C[co, p] = Σ_k W[co, k]·X(k, p),  k = (ci, ky, kx),  X(k, p) = x[b, ci, y + ky − PAD, x + kx − PAD] (0 outside)
// M = COUT, N = n·OH·OW output pixels (OH = H + 2·PAD − KSIZE + 1), K = CIN·KSIZE². The input is gathered straight
// into workgroup memory (no im2col buffer).
//
// Bindings (group 0):
//   0 x       f32 input [n, CIN, H, W]                                   read
//   1 params  f32 all parameters; weight [COUT, CIN, KSIZE, KSIZE] at
//             W_OFF, bias [COUT] at B_OFF                                read
//   2 y       f32 output [n, COUT, OH, OW] (stored when !POOL or
//             step.full)                                                 write
//   3 step    uniform: n (batch length), full (store y too)
//   4 pooled  f32 max-pooled output [n, COUT, OH/2, OW/2] (POOL only)    write
// With POOL (OH, OW even) the pixels are numbered window by window, p = ((b·OH/2 + py)·OW/2 + px)·4 + q with q the
// position in the 2×2 window in row-major order, so a tile holds whole windows (BN is a multiple of 4) and the
// epilogue takes each window's maximum from workgroup memory (after bias and ReLU; ties to the first, as in the
// reference and maxpool_backward). One workgroup per tile of BM channels × BN pixels.

override CIN: u32 = 1u;
override COUT: u32 = 16u;
override H: u32 = 28u;
override W: u32 = 28u;
override KSIZE: u32 = 3u;
override PAD: u32 = 1u;
override W_OFF: u32 = 0u;
override B_OFF: u32 = 0u;
override RELU: bool = true;
override POOL: bool = true;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> step: Step; // shaders/step.wgsl, appended by the host
@group(0) @binding(4) var<storage, read_write> pooled: array<f32>;

const A_K_FAST: bool = true; // a weight row is contiguous in k
const B_K_FAST: bool = false; // neighbouring pixels are neighbouring words

// The output's height and width.
fn out_h() -> u32 {
    return H + 2u * PAD + 1u - KSIZE;
}

fn out_w() -> u32 {
    return W + 2u * PAD + 1u - KSIZE;
}

// The sample, row and column of output pixel p.
fn pixel(p: u32) -> vec3<u32> {
    let oh = out_h();
    let ow = out_w();
    if POOL {
        let win = p / 4u;
        let q = p % 4u;
        let pw = ow / 2u;
        let ph = oh / 2u;
        return vec3<u32>(win / (ph * pw), (win / pw) % ph * 2u + q / 2u, win % pw * 2u + q % 2u);
    }
    return vec3<u32>(p / (oh * ow), (p / ow) % oh, p % ow);
}

// Row m of A: output channel m's weights (x: where they start; w: 1 if the channel exists).
fn a_row(m: u32) -> vec4<u32> {
    return vec4<u32>(W_OFF + m * CIN * KSIZE * KSIZE, 0u, 0u, select(0u, 1u, m < COUT));
}

fn a_at(row: vec4<u32>, k: u32) -> f32 {
    if row.w == 0u {
        return 0.0;
    }
    return params[row.x + k];
}

// Column p of B: output pixel p (x: its sample's first input word; y, z: its row and column; w: 1 if it exists).
fn b_col(p: u32) -> vec4<u32> {
    let px = pixel(p);
    return vec4<u32>(px.x * CIN * H * W, px.y, px.z, select(0u, 1u, p < step.n * out_h() * out_w()));
}

fn b_at(col: vec4<u32>, k: u32) -> f32 {
    let taps = KSIZE * KSIZE;
    let iy = i32(col.y) + i32(k % taps / KSIZE) - i32(PAD);
    let ix = i32(col.z) + i32(k % KSIZE) - i32(PAD);
    if col.w == 0u || iy < 0 || iy >= i32(H) || ix < 0 || ix >= i32(W) {
        return 0.0;
    }
    return x[col.x + (k / taps * H + u32(iy)) * W + u32(ix)];
}

// The tile core (tile_product, tile_at, the workgroup tiles, WG, GM, RM, KS, BK) is shaders/tile_core.wgsl: the
// host appends it to this file (kernels.rs, `tile_core`).

@compute @workgroup_size(WG)
fn conv2d_forward_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let bm = tile_bm();
    let bn = tile_bn();
    let m_tiles = (COUT + bm - 1u) / bm;
    let oh = out_h();
    let ow = out_w();
    let pixels = step.n * oh * ow;
    let g = wid.x + wid.y * nwg.x;
    if g >= m_tiles * ((pixels + bn - 1u) / bn) {
        return;
    }
    let m0 = g % m_tiles * bm;
    let n0 = g / m_tiles * bn;
    tile_product(m0, n0, 0u, CIN * KSIZE * KSIZE, lid);

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
                y[((px.x * COUT + co) * oh + px.y) * ow + px.z] = v;
            }
            if q == 0u || v > best {
                best = v;
            }
        }
        if POOL {
            let px = pixel(p0);
            pooled[((px.x * COUT + co) * (oh / 2u) + px.y / 2u) * (ow / 2u) + px.z / 2u] = best;
        }
    }
}
