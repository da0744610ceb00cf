// avgpool_forward: a 2×2, stride-2 average pool (the network's `avgpool`, after a convolution's ReLU).
//
// Bindings (group 0):
//   0 x     f32 pool input [n, C, H, W] (H and W even)                        read
//   1 y     f32 pool output [n, C, H/2, W/2]                                  write
//   2 step  uniform: n (batch length)
// Each thread owns one window: y = (top-left + top-right + bottom-left + bottom-right) · 0.25, summed in that order
// (as reference::avgpool_forward: exact, the scale being a power of two). Both kernel families run it.

override C: u32 = 6u;
override H: u32 = 28u;
override W: u32 = 28u;

const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> step: Step; // shaders/step.wgsl, appended by the host

@compute @workgroup_size(WG)
fn avgpool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let ph = H / 2u;
    let pw = W / 2u;
    if i >= step.n * C * ph * pw {
        return;
    }
    let plane = i / (ph * pw);
    let q = i % (ph * pw);
    let top = plane * H * W + q / pw * 2u * W + q % pw * 2u;
    let bottom = top + W;
    y[i] = (((x[top] + x[top + 1u]) + x[bottom]) + x[bottom + 1u]) * 0.25;
}
