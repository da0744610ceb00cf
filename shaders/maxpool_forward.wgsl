// maxpool_forward: 2×2 max-pool, stride 2.
//
// Bindings (group 0):
//   0 x     f32 input [n, C, H, W] (H, W even)                            read
//   1 y     f32 output [n, C, H/2, W/2]                                   write
//   2 step  uniform: n (batch length)
// Each thread computes one output: the maximum of its window. Ties go to the first maximum in row-major window order
// (strict >), as PyTorch's CPU kernel does; maxpool_backward uses the same rule.

struct Step {
    start: u32,
    n: u32,
    index: u32,
    _pad: u32,
}

override C: u32 = 16u;
override H: u32 = 28u;
override W: u32 = 28u;

const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> step: Step;

@compute @workgroup_size(WG)
fn maxpool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let oh = H / 2u;
    let ow = W / 2u;
    if i >= step.n * C * oh * ow {
        return;
    }
    let plane = i / (oh * ow); // b * C + c
    let o = i % (oh * ow);
    let base = plane * H * W + (o / ow) * 2u * W + (o % ow) * 2u;
    var m = x[base];
    m = select(m, x[base + 1u], x[base + 1u] > m);
    m = select(m, x[base + W], x[base + W] > m);
    m = select(m, x[base + W + 1u], x[base + W + 1u] > m);
    y[i] = m;
}
