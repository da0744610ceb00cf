// conv2d_forward: 3×3 convolution, padding 1, stride 1, plus bias, optionally fused with ReLU.
//
// Bindings (group 0):
//   0 x       f32 input [n, CIN, H, W]                                   read
//   1 params  f32 all parameters; weight [COUT, CIN, 3, 3] at W_OFF,
//             bias [COUT] at B_OFF                                      read
//   2 y       f32 output [n, COUT, H, W]                                 write
//   3 step    uniform: n (batch length)
// Each thread computes a tile of CO_B output channels × PX pixels of one output row (a row segment): per input
// channel and kernel row it loads PX + 2 input values once and uses each for up to 3·CO_B products, and each weight
// for PX products (2D register blocking: on a CPU-backed adapter every load is a per-lane gather, so loads per
// multiply-add decide the speed). Threads are ordered (channel block, sample, row, segment).
// Threads past the end compute a clamped duplicate tile and skip the stores, so every loop stays uniform.

struct Step {
    start: u32,
    n: u32,
    index: u32,
    _pad: u32,
}

override CIN: u32 = 1u;
override COUT: u32 = 16u;
override H: u32 = 28u;
override W: u32 = 28u;
override W_OFF: u32 = 0u;
override B_OFF: u32 = 0u;
override RELU: bool = true;

const PX: u32 = 14u; // pixels per thread (a row segment); the host's conv2d::PX
const CO_B: u32 = 16u; // output channels per thread; the host's conv2d::CO_B
const WG: u32 = 64u;

// Pixels and channels a thread really uses (constant once the overrides are set, so the loops unroll).
const SEG: u32 = min(PX, W);
const NCO: u32 = min(CO_B, COUT);

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> step: Step;

@compute @workgroup_size(WG)
fn conv2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let segs = (W + SEG - 1u) / SEG;
    let rows = step.n * H * segs;
    let total = rows * ((COUT + NCO - 1u) / NCO);
    let t = min(i, total - 1u);
    let co0 = (t / rows) * NCO;
    let r = t % rows;
    let b = r / (H * segs);
    let oy = (r / segs) % H;
    let ox0 = (r % segs) * SEG;

    var acc: array<array<f32, PX>, CO_B>;
    for (var ci = 0u; ci < CIN; ci++) {
        let plane = (b * CIN + ci) * H * W;
        for (var ky = 0u; ky < 3u; ky++) {
            let iy = i32(oy + ky) - 1;
            let row_ok = iy >= 0 && iy < i32(H);
            let row = plane + u32(clamp(iy, 0, i32(H) - 1)) * W;
            // The input row segment with its one-pixel halo; padding reads as 0.
            var xs: array<f32, PX + 2u>;
            for (var p = 0u; p < SEG + 2u; p++) {
                let ix = i32(ox0 + p) - 1;
                let v = x[row + u32(clamp(ix, 0, i32(W) - 1))];
                xs[p] = select(0.0, v, row_ok && ix >= 0 && ix < i32(W));
            }
            for (var j = 0u; j < NCO; j++) {
                let wrow = W_OFF + (min(co0 + j, COUT - 1u) * CIN + ci) * 9u + ky * 3u;
                for (var kx = 0u; kx < 3u; kx++) {
                    let w = params[wrow + kx];
                    for (var p = 0u; p < SEG; p++) {
                        acc[j][p] += w * xs[p + kx];
                    }
                }
            }
        }
    }
    if i >= total {
        return;
    }
    for (var j = 0u; j < NCO; j++) {
        let co = co0 + j;
        if co < COUT {
            let bias = params[B_OFF + co];
            let out = (b * COUT + co) * H * W + oy * W + ox0;
            for (var p = 0u; p < SEG; p++) {
                if ox0 + p < W {
                    var v = acc[j][p] + bias;
                    if RELU {
                        v = max(v, 0.0);
                    }
                    y[out + p] = v;
                }
            }
        }
    }
}
