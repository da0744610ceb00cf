// avgpool_backward: the gradient of a 2×2, stride-2 average pool, optionally fused with the backward of the ReLU
// before it.
//
// Bindings (group 0):
//   0 a     f32 pool input [n, C, H, W] (for the network: the ReLU output; read only with RELU)   read
//   1 dy    f32 gradient of the pool output [n, C, H/2, W/2]                                     read
//   2 dx    f32 gradient of the pool input [n, C, H, W]                                          write
//   3 step  uniform: n (batch length)
// Each thread owns one element of dx: a quarter of its window's dy (reference::avgpool_backward), and with RELU 0
// where a ≤ 0 (relu_backward applied to it). Both kernel families run it.

override C: u32 = 6u;
override H: u32 = 28u;
override W: u32 = 28u;
override RELU: bool = true;

const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform> step: Step; // shaders/step.wgsl, appended by the host

@compute @workgroup_size(WG)
fn avgpool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= step.n * C * H * W {
        return;
    }
    let plane = i / (H * W);
    let iy = i / W % H;
    let ix = i % W;
    let g = dy[(plane * (H / 2u) + iy / 2u) * (W / 2u) + ix / 2u] * 0.25;
    dx[i] = select(g, select(0.0, g, a[i] > 0.0), RELU);
}
