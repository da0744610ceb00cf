// conv2d_backward_weight_tiled: the gradient of a KSIZE×KSIZE, padding PAD convolution with respect to its weights and
// bias, as an implicit matrix product for GPUs (the tiled kernel family):
//   dW[co, j] = Σ_p dy[b, co, y, x]·X(j, p),  j = (ci, ky, kx),  X(j, p) = x[b, ci, y + ky − PAD, x + kx − PAD];
//   db[co] = Σ_p dy[b, co, y, x]  (column j = CIN·KSIZE², against ones)
// M = COUT, N = CIN·KSIZE² + 1, K = n·OH·OW output pixels (p = (b·OH + y)·OW + x, OH = H + 2·PAD − KSIZE + 1). The
// reduction over the batch is split over SPLIT
// workgroups per tile (split-K: the grid grows with SPLIT, which the host sizes to fill the GPU); each stores its sums
// in partials[s], and conv2d_backward_weight_tiled_reduce adds the SPLIT parts in order (deterministic). With
// SPLIT = 1 the tile is stored in grads directly.
//
// Bindings (group 0):
//   0 x         f32 the layer's input [n, CIN, H, W]                       read
//   1 dy        f32 gradient of the output [n, COUT, OH, OW]               read
//   2 grads     f32 all gradients; weight [COUT, CIN, KSIZE, KSIZE] at
//               W_OFF, bias [COUT] at B_OFF                                 write
//   3 step      uniform: n (batch length)
//   4 partials  f32 [SPLIT, COUT, CIN·KSIZE² + 1] (SPLIT > 1)              read_write

override CIN: u32 = 16u;
override COUT: u32 = 32u;
override H: u32 = 14u;
override W: u32 = 14u;
override KSIZE: u32 = 3u;
override PAD: u32 = 1u;
override W_OFF: u32 = 0u;
override B_OFF: u32 = 0u;
override SPLIT: u32 = 1u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;
@group(0) @binding(3) var<uniform> step: Step; // shaders/step.wgsl, appended by the host
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;

const A_K_FAST: bool = true; // a plane of dy is contiguous in p
const B_K_FAST: bool = true; // so is a plane of x

// Row m of A: output channel m (w: 1 if it exists).
fn a_row(m: u32) -> vec4<u32> {
    return vec4<u32>(m, 0u, 0u, select(0u, 1u, m < COUT));
}

// The output's height and width, and the taps of one (output, input) channel pair.
fn out_h() -> u32 {
    return H + 2u * PAD + 1u - KSIZE;
}

fn out_w() -> u32 {
    return W + 2u * PAD + 1u - KSIZE;
}

fn taps() -> u32 {
    return KSIZE * KSIZE;
}

fn a_at(row: vec4<u32>, p: u32) -> f32 {
    if row.w == 0u {
        return 0.0;
    }
    let plane = out_h() * out_w();
    return dy[(p / plane * COUT + row.x) * plane + p % plane];
}

// Column j of B: (input channel, tap row, tap column) of a weight, or the bias column (w: 1 weight, 2 bias, 0 none).
fn b_col(j: u32) -> vec4<u32> {
    let kind = select(select(0u, 2u, j == CIN * taps()), 1u, j < CIN * taps());
    return vec4<u32>(j / taps(), j % taps() / KSIZE, j % KSIZE, kind);
}

fn b_at(col: vec4<u32>, p: u32) -> f32 {
    if col.w != 1u {
        return select(0.0, 1.0, col.w == 2u);
    }
    let oh = out_h();
    let ow = out_w();
    let iy = i32(p / ow % oh) + i32(col.y) - i32(PAD);
    let ix = i32(p % ow) + i32(col.z) - i32(PAD);
    if iy < 0 || iy >= i32(H) || ix < 0 || ix >= i32(W) {
        return 0.0;
    }
    return x[((p / (oh * ow) * CIN + col.x) * H + u32(iy)) * W + u32(ix)];
}

// The tile core (tile_product, tile_at, the workgroup tiles, WG, GM, RM, KS, BK) is shaders/tile_core.wgsl: the
// host appends it to this file (kernels.rs, `tile_core`).

@compute @workgroup_size(WG)
fn conv2d_backward_weight_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let bm = tile_bm();
    let bn = tile_bn();
    let cols = CIN * taps() + 1u;
    let m_tiles = (COUT + bm - 1u) / bm;
    let n_tiles = (cols + bn - 1u) / bn;
    let g = wid.x + wid.y * nwg.x;
    if g >= m_tiles * n_tiles * SPLIT {
        return;
    }
    let m0 = g % m_tiles * bm;
    let n0 = g / m_tiles % n_tiles * bn;
    let part = g / (m_tiles * n_tiles);
    let pixels = step.n * out_h() * out_w();
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
        } else if j < CIN * taps() {
            grads[W_OFF + co * CIN * taps() + j] = v;
        } else {
            grads[B_OFF + co] = v;
        }
    }
}

// conv2d_backward_weight_tiled_reduce (SPLIT > 1): one workgroup per weight or bias: invocation l adds parts l, l + 64,
// ... in order, then a fixed tree adds the 64 sums (deterministic), and the result goes to grads.
@compute @workgroup_size(WG)
fn conv2d_backward_weight_tiled_reduce(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = wid.x + wid.y * nwg.x;
    let cols = CIN * taps() + 1u;
    if t >= COUT * cols {
        return;
    }
    var s = 0.0;
    for (var p = lid; p < SPLIT; p += WG) {
        s += partials[p * COUT * cols + t];
    }
    tile_mem[lid] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            tile_mem[lid] += tile_mem[lid + stride];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        let co = t / cols;
        let j = t % cols;
        if j < CIN * taps() {
            grads[W_OFF + co * CIN * taps() + j] = tile_mem[0];
        } else {
            grads[B_OFF + co] = tile_mem[0];
        }
    }
}
