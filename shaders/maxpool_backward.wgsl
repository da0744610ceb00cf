// maxpool_backward: gradient of a 2×2, stride-2 max-pool, optionally fused with the backward of the ReLU before it.
//
// Bindings (group 0):
//   0 x     f32 pool input [n, C, H, W] (for the network: the ReLU output)   read
//   1 dy    f32 gradient of the pool output [n, C, H/2, W/2]                 read
//   2 dx    f32 gradient of the pool input [n, C, H, W]                      write
//   3 step  uniform: n (batch length)
// Each thread owns one input element (a gather, so no atomics): it gets dy of its window if it is the window's first
// maximum (strict >, as in maxpool_forward), else 0. With RELU, elements whose value is not > 0 get 0 too, which is
// relu_backward applied to maxpool_backward's result.

struct Step {
    start: u32,
    n: u32,
    index: u32,
    _pad: u32,
}

override C: u32 = 16u;
override H: u32 = 28u;
override W: u32 = 28u;
override RELU: bool = true;

const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform> step: Step;

@compute @workgroup_size(WG)
fn maxpool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= step.n * C * H * W {
        return;
    }
    let plane = i / (H * W);
    let p = i % (H * W);
    let py = p / W;
    let px = p % W;
    let oy = py / 2u;
    let ox = px / 2u;
    let base = plane * H * W + oy * 2u * W + ox * 2u;
    // The window's first maximum, in row-major order.
    var arg = base;
    var m = x[base];
    let cand = array<u32, 3>(base + 1u, base + W, base + W + 1u);
    for (var k = 0u; k < 3u; k++) {
        if x[cand[k]] > m {
            m = x[cand[k]];
            arg = cand[k];
        }
    }
    var g = 0.0;
    if arg == i && (!RELU || m > 0.0) {
        g = dy[plane * (H / 2u) * (W / 2u) + oy * (W / 2u) + ox];
    }
    dx[i] = g;
}
