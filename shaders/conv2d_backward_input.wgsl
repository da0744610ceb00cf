// conv2d_backward_input: gradient of a 3×3, padding-1 convolution with respect to its input.
//
// Bindings (group 0):
//   0 dy      f32 output gradient [n, COUT, H, W]                        read
//   1 params  f32 all parameters; weight [COUT, CIN, 3, 3] at W_OFF      read
//   2 dx      f32 input gradient [n, CIN, H, W]                          write
//   3 step    uniform: n (batch length)
// dx[b, ci, y, x] = Σ_co Σ_ky,kx dy[b, co, y + 1 − ky, x + 1 − kx] · w[co, ci, ky, kx].
// Each thread computes one input pixel for a block of CI_BLOCK input channels, reading each dy value once.

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

const CI_BLOCK: u32 = 16u;
const WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform> step: Step;

@compute @workgroup_size(WG)
fn conv2d_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let hw = H * W;
    let pixels = step.n * hw;
    let blocks = (CIN + CI_BLOCK - 1u) / CI_BLOCK;
    if i >= pixels * blocks {
        return;
    }
    let ci0 = (i / pixels) * CI_BLOCK;
    let q = i % pixels;
    let b = q / hw;
    let pix = q % hw;
    let py = i32(pix / W);
    let px = i32(pix % W);

    var acc: array<f32, CI_BLOCK>;
    for (var j = 0u; j < CI_BLOCK; j++) {
        acc[j] = 0.0;
    }
    for (var co = 0u; co < COUT; co++) {
        let dybase = (b * COUT + co) * hw;
        for (var k = 0u; k < 9u; k++) {
            let oy = py + 1 - i32(k / 3u);
            let ox = px + 1 - i32(k % 3u);
            if oy < 0 || oy >= i32(H) || ox < 0 || ox >= i32(W) {
                continue;
            }
            let g = dy[dybase + u32(oy) * W + u32(ox)];
            let wbase = W_OFF + co * CIN * 9u + k;
            for (var j = 0u; j < CI_BLOCK; j++) {
                let ci = min(ci0 + j, CIN - 1u);
                acc[j] += g * params[wbase + ci * 9u];
            }
        }
    }
    for (var j = 0u; j < CI_BLOCK; j++) {
        let ci = ci0 + j;
        if ci < CIN {
            dx[(b * CIN + ci) * hw + pix] = acc[j];
        }
    }
}
