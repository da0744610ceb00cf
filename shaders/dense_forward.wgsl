// dense_forward: fully connected layer y = x · wᵀ + b (PyTorch Linear), optionally fused with ReLU.
//
// Bindings (group 0):
//   0 x       f32 input [n, IN]                                          read
//   1 params  f32 all parameters; weight [OUT, IN] at W_OFF, bias [OUT]
//             at B_OFF                                                  read
//   2 y       f32 output [n, OUT]                                        write
//   3 step    uniform: n (batch length)
// Each thread computes a T×T tile (T = 16 samples × 16 output features): per input feature it loads 16 x and 16 w
// values and does 256 multiply-adds (register blocking; on lavapipe every storage load is a per-lane gather, so loads
// per multiply-add decide the speed). The tile is spelled out with constant indices (tile_fma) because lavapipe does
// not unroll loops. A partial tile repeats its last row or column (clamped loads) and skips those stores.

override IN: u32 = 1568u;
override OUT: u32 = 128u;
override W_OFF: u32 = 0u;
override B_OFF: u32 = 0u;
override RELU: bool = true;

const T: u32 = 16u; // tile side (the host's dense::simd::T)
const WG: u32 = 8u; // one SIMD vector of lavapipe: few tiles still spread over the cores

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> step: Step; // shaders/step.wgsl, appended by the host

// a ⊗ b: the 4×4 outer product, column j = a · b[j].
fn outer(a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(a * b.x, a * b.y, a * b.z, a * b.w);
}

// acc += a ⊗ b for a 16×16 tile held as 4×4 blocks: acc[4r + c][j][i] is row 4r + i, column 4c + j.
fn tile_fma(acc: ptr<function, array<mat4x4<f32>, 16>>, a: array<vec4<f32>, 4>, b: array<vec4<f32>, 4>) {
    (*acc)[0] += outer(a[0], b[0]);
    (*acc)[1] += outer(a[0], b[1]);
    (*acc)[2] += outer(a[0], b[2]);
    (*acc)[3] += outer(a[0], b[3]);
    (*acc)[4] += outer(a[1], b[0]);
    (*acc)[5] += outer(a[1], b[1]);
    (*acc)[6] += outer(a[1], b[2]);
    (*acc)[7] += outer(a[1], b[3]);
    (*acc)[8] += outer(a[2], b[0]);
    (*acc)[9] += outer(a[2], b[1]);
    (*acc)[10] += outer(a[2], b[2]);
    (*acc)[11] += outer(a[2], b[3]);
    (*acc)[12] += outer(a[3], b[0]);
    (*acc)[13] += outer(a[3], b[1]);
    (*acc)[14] += outer(a[3], b[2]);
    (*acc)[15] += outer(a[3], b[3]);
}

// The 16 values x[o[t] + k], t = 0..15, as four vec4s.
fn load_x(o: array<u32, 16>, k: u32) -> array<vec4<f32>, 4> {
    return array<vec4<f32>, 4>(
        vec4<f32>(x[o[0] + k], x[o[1] + k], x[o[2] + k], x[o[3] + k]),
        vec4<f32>(x[o[4] + k], x[o[5] + k], x[o[6] + k], x[o[7] + k]),
        vec4<f32>(x[o[8] + k], x[o[9] + k], x[o[10] + k], x[o[11] + k]),
        vec4<f32>(x[o[12] + k], x[o[13] + k], x[o[14] + k], x[o[15] + k]),
    );
}

// The 16 values params[o[t] + k], t = 0..15, as four vec4s.
fn load_w(o: array<u32, 16>, k: u32) -> array<vec4<f32>, 4> {
    return array<vec4<f32>, 4>(
        vec4<f32>(params[o[0] + k], params[o[1] + k], params[o[2] + k], params[o[3] + k]),
        vec4<f32>(params[o[4] + k], params[o[5] + k], params[o[6] + k], params[o[7] + k]),
        vec4<f32>(params[o[8] + k], params[o[9] + k], params[o[10] + k], params[o[11] + k]),
        vec4<f32>(params[o[12] + k], params[o[13] + k], params[o[14] + k], params[o[15] + k]),
    );
}

@compute @workgroup_size(WG)
fn dense_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let oblocks = (OUT + T - 1u) / T;
    let tiles = oblocks * ((step.n + T - 1u) / T);
    let t = min(i, tiles - 1u);
    let o0 = (t % oblocks) * T;
    let b0 = (t / oblocks) * T;

    var xo: array<u32, T>;
    var wo: array<u32, T>;
    for (var s = 0u; s < T; s++) {
        xo[s] = min(b0 + s, step.n - 1u) * IN;
        wo[s] = W_OFF + min(o0 + s, OUT - 1u) * IN;
    }
    var acc: array<mat4x4<f32>, 16>;
    for (var k = 0u; k < IN; k++) {
        tile_fma(&acc, load_x(xo, k), load_w(wo, k));
    }
    if i >= tiles {
        return;
    }
    put(b0, o0, acc[0]);
    put(b0, o0 + 4u, acc[1]);
    put(b0, o0 + 8u, acc[2]);
    put(b0, o0 + 12u, acc[3]);
    put(b0 + 4u, o0, acc[4]);
    put(b0 + 4u, o0 + 4u, acc[5]);
    put(b0 + 4u, o0 + 8u, acc[6]);
    put(b0 + 4u, o0 + 12u, acc[7]);
    put(b0 + 8u, o0, acc[8]);
    put(b0 + 8u, o0 + 4u, acc[9]);
    put(b0 + 8u, o0 + 8u, acc[10]);
    put(b0 + 8u, o0 + 12u, acc[11]);
    put(b0 + 12u, o0, acc[12]);
    put(b0 + 12u, o0 + 4u, acc[13]);
    put(b0 + 12u, o0 + 8u, acc[14]);
    put(b0 + 12u, o0 + 12u, acc[15]);
}

// Stores a 4×4 block: m[j][i] is sample b + i, feature o + j.
fn put(b: u32, o: u32, m: mat4x4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        for (var i = 0u; i < 4u; i++) {
            if b + i < step.n && o + j < OUT {
                var v = m[j][i] + params[B_OFF + o + j];
                if RELU {
                    v = max(v, 0.0);
                }
                y[(b + i) * OUT + o + j] = v;
            }
        }
    }
}
