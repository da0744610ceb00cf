// maxpool_backward: gradient of a 2×2, stride-2 max-pool, optionally fused with the backward of the ReLU before it.
//
// Bindings (group 0):
//   0 x     f32 pool input [n, C, H, W] (for the network: the ReLU output)   read
//   1 dy    f32 gradient of the pool output [n, C, H/2, W/2]                 read
//   2 dx    f32 gradient of the pool input [n, C, H, W]                      write
//   3 step  uniform: n (batch length)
// Each thread owns one pooling window (a gather, so no atomics): it writes dy of the window to the window's first
// maximum (strict >, as in conv2d_forward's fused pool) and 0 to its other three elements. With RELU, a window whose
// maximum is not > 0 gets 0 everywhere, which is relu_backward applied to maxpool_backward's result.
// H and W are even (as the CPU reference requires), so each window row is one aligned pair: two pair loads and two
// pair stores per window instead of four of each (lavapipe loops over the SIMD lanes once per load or store).

override C: u32 = 16u;
override H: u32 = 28u;
override W: u32 = 28u;
override RELU: bool = true;

const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> x: array<vec2<f32>>; // a window row is one aligned pair (W even)
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<vec2<f32>>;
@group(0) @binding(3) var<uniform> step: Step; // shaders/step.wgsl, appended by the host

@compute @workgroup_size(WG)
fn maxpool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let ph = H / 2u;
    let pw = W / 2u;
    if i >= step.n * C * ph * pw {
        return;
    }
    let plane = i / (ph * pw);
    let q = i % (ph * pw);
    let oy = q / pw;
    let ox = q % pw;
    // The window's two rows as pairs (in units of pairs: W even, so both are aligned).
    let top = (plane * H * W + oy * 2u * W + ox * 2u) / 2u;
    let bottom = top + W / 2u;
    let t = x[top];
    let u = x[bottom];
    let v = vec4<f32>(t, u);
    // The window's first maximum, in row-major order.
    var arg = 0u;
    var m = v.x;
    if v.y > m {
        m = v.y;
        arg = 1u;
    }
    if v.z > m {
        m = v.z;
        arg = 2u;
    }
    if v.w > m {
        m = v.w;
        arg = 3u;
    }
    let g = select(dy[i], 0.0, RELU && !(m > 0.0));
    dx[top] = vec2<f32>(select(0.0, g, arg == 0u), select(0.0, g, arg == 1u));
    dx[bottom] = vec2<f32>(select(0.0, g, arg == 2u), select(0.0, g, arg == 3u));
}
