// peak: three small kernels that measure what an adapter can do, for `gpu-cnn peak` and for placing the network's
// kernels against it (`bench`):
//   peak_fma    ITERS rounds of 8 independent vec4 multiply-add chains per invocation: 64·ITERS FLOPs each, in
//               registers (the result is stored so the compiler keeps the work)
//   peak_copy   dst = src, one vec4 per invocation: 32 bytes of device memory moved per invocation
//   peak_touch  one invocation adds 1 to dst[0]: a dispatch that does nearly nothing, to time dispatches
//
// Bindings (group 0):
//   0 src  vec4<f32> [count]   read
//   1 dst  vec4<f32> [count]   write

override ITERS: u32 = 1024u;

const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn peak_fma(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let a = src[0];
    let b = vec4<f32>(0.999, 0.998, 0.997, 0.996);
    var c0 = vec4<f32>(f32(i));
    var c1 = c0 + 1.0;
    var c2 = c0 + 2.0;
    var c3 = c0 + 3.0;
    var c4 = c0 + 4.0;
    var c5 = c0 + 5.0;
    var c6 = c0 + 6.0;
    var c7 = c0 + 7.0;
    for (var k = 0u; k < ITERS; k++) {
        c0 = fma(c0, b, a);
        c1 = fma(c1, b, a);
        c2 = fma(c2, b, a);
        c3 = fma(c3, b, a);
        c4 = fma(c4, b, a);
        c5 = fma(c5, b, a);
        c6 = fma(c6, b, a);
        c7 = fma(c7, b, a);
    }
    if i < arrayLength(&dst) {
        dst[i] = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7;
    }
}

@compute @workgroup_size(WG)
fn peak_copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i < arrayLength(&dst) {
        dst[i] = src[i];
    }
}

@compute @workgroup_size(WG)
fn peak_touch(@builtin(local_invocation_index) lid: u32) {
    if lid == 0u {
        dst[0] = dst[0] + src[0];
    }
}
