// conv2d_forward: 3×3 convolution, padding 1, stride 1, plus bias, optionally fused with ReLU.
//
// Bindings (group 0):
//   0 x       f32 input [n, CIN, H, W]                                   read
//   1 params  f32 all parameters; weight [COUT, CIN, 3, 3] at W_OFF,
//             bias [COUT] at B_OFF                                      read
//   2 y       f32 output [n, COUT, H, W]                                 write
//   3 step    uniform: n (batch length)
// Each thread computes one output pixel for a block of CO_BLOCK output channels: the 3×3×CIN input patch is read once
// and reused for every channel of the block (implicit GEMM, register-blocked over output channels).

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

const CO_BLOCK: u32 = 16u;
const WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> step: Step;

@compute @workgroup_size(WG)
fn conv2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let hw = H * W;
    let pixels = step.n * hw;
    let blocks = (COUT + CO_BLOCK - 1u) / CO_BLOCK;
    if i >= pixels * blocks {
        return;
    }
    let co0 = (i / pixels) * CO_BLOCK;
    let q = i % pixels;
    let b = q / hw;
    let pix = q % hw;
    let oy = i32(pix / W);
    let ox = i32(pix % W);

    var acc: array<f32, CO_BLOCK>;
    for (var j = 0u; j < CO_BLOCK; j++) {
        acc[j] = 0.0;
    }
    for (var ci = 0u; ci < CIN; ci++) {
        let xbase = (b * CIN + ci) * hw;
        for (var k = 0u; k < 9u; k++) {
            let iy = oy + i32(k / 3u) - 1;
            let ix = ox + i32(k % 3u) - 1;
            if iy < 0 || iy >= i32(H) || ix < 0 || ix >= i32(W) {
                continue;
            }
            let xv = x[xbase + u32(iy) * W + u32(ix)];
            let wbase = W_OFF + ci * 9u + k;
            for (var j = 0u; j < CO_BLOCK; j++) {
                let co = min(co0 + j, COUT - 1u);
                acc[j] += xv * params[wbase + co * CIN * 9u];
            }
        }
    }
    for (var j = 0u; j < CO_BLOCK; j++) {
        let co = co0 + j;
        if co < COUT {
            var v = acc[j] + params[B_OFF + co];
            if RELU {
                v = max(v, 0.0);
            }
            y[(b * COUT + co) * hw + pix] = v;
        }
    }
}
