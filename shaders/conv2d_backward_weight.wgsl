// conv2d_backward_weight: gradients of a 3×3, padding-1 convolution's weight and bias, summed over the batch.
//
// Bindings (group 0):
//   0 x       f32 layer input [n, CIN, H, W]                              read
//   1 dy      f32 output gradient [n, COUT, H, W]                         read
//   2 grads   f32 all gradients; dw [COUT, CIN, 3, 3] at W_OFF,
//             db [COUT] at B_OFF                                         write
//   3 step    uniform: n (batch length)
// One workgroup per (co, ci) pair: its threads stride over the n·H·W output positions, each accumulating the nine
// products dy[b, co, y, x] · x[b, ci, y + ky − 1, x + kx − 1] (and Σ dy for the bias, in the ci = 0 workgroup), then a
// fixed-order tree reduction in workgroup memory gives the sums. No atomics, so results are deterministic.

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

const WG: u32 = 256u;
const TERMS: u32 = 10u; // nine weight taps and the bias

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;
@group(0) @binding(3) var<uniform> step: Step;

var<workgroup> partial: array<f32, 2560>; // WG * TERMS

@compute @workgroup_size(WG)
fn conv2d_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let pair = wid.x; // co * CIN + ci
    let co = pair / CIN;
    let ci = pair % CIN;
    let hw = H * W;
    let positions = step.n * hw;

    var acc: array<f32, TERMS>;
    for (var t = 0u; t < TERMS; t++) {
        acc[t] = 0.0;
    }
    for (var q = lid; q < positions; q += WG) {
        let b = q / hw;
        let pix = q % hw;
        let oy = i32(pix / W);
        let ox = i32(pix % W);
        let g = dy[(b * COUT + co) * hw + pix];
        let xbase = (b * CIN + ci) * hw;
        for (var k = 0u; k < 9u; k++) {
            let iy = oy + i32(k / 3u) - 1;
            let ix = ox + i32(k % 3u) - 1;
            if iy >= 0 && iy < i32(H) && ix >= 0 && ix < i32(W) {
                acc[k] += g * x[xbase + u32(iy) * W + u32(ix)];
            }
        }
        acc[9] += g;
    }
    for (var t = 0u; t < TERMS; t++) {
        partial[t * WG + lid] = acc[t];
    }
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            for (var t = 0u; t < TERMS; t++) {
                partial[t * WG + lid] += partial[t * WG + lid + stride];
            }
        }
        workgroupBarrier();
    }
    if lid < 9u {
        grads[W_OFF + pair * 9u + lid] = partial[lid * WG];
    }
    if lid == 9u && ci == 0u {
        grads[B_OFF + co] = partial[9u * WG];
    }
}
