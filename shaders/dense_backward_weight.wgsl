// dense_backward_weight: gradients of a fully connected layer's weight and bias, summed over the batch.
//
// Bindings (group 0):
//   0 x      f32 the layer's input [n, IN]                                read
//   1 dy     f32 output gradient [n, OUT]                                 read
//   2 grads  f32 all gradients; dw [OUT, IN] at W_OFF, db [OUT] at B_OFF  write
//   3 step   uniform: n (batch length)
// dw[o, i] = Σ_b dy[b, o] · x[b, i]; db[o] = Σ_b dy[b, o]. Each thread computes a T×T tile (T = 16 outputs × 16 inputs,
// spelled out in tile_fma as in dense_forward.wgsl): per sample it loads 16 dy and 16 x values and does 256
// multiply-adds. Column IN of the tile grid is the bias (x = 1). The batch sum runs in a fixed order: deterministic.

override IN: u32 = 1568u;
override OUT: u32 = 128u;
override W_OFF: u32 = 0u;
override B_OFF: u32 = 0u;

const T: u32 = 16u; // tile side (the host's dense::simd::T)
const WG: u32 = 8u; // one SIMD vector of lavapipe: few tiles still spread over the cores

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;
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

// The 16 values dy[o[t] + k], t = 0..15, as four vec4s.
fn load_dy(o: array<u32, 16>, k: u32) -> array<vec4<f32>, 4> {
    return array<vec4<f32>, 4>(
        vec4<f32>(dy[o[0] + k], dy[o[1] + k], dy[o[2] + k], dy[o[3] + k]),
        vec4<f32>(dy[o[4] + k], dy[o[5] + k], dy[o[6] + k], dy[o[7] + k]),
        vec4<f32>(dy[o[8] + k], dy[o[9] + k], dy[o[10] + k], dy[o[11] + k]),
        vec4<f32>(dy[o[12] + k], dy[o[13] + k], dy[o[14] + k], dy[o[15] + k]),
    );
}

// x[b·IN + c] for the tile's 16 columns c = i0 + t, with 1 in the bias column c = IN.
fn load_x(i0: u32, base: u32) -> array<vec4<f32>, 4> {
    var v: array<f32, T>;
    for (var t = 0u; t < T; t++) {
        let c = i0 + t;
        v[t] = select(1.0, x[base + min(c, IN - 1u)], c < IN);
    }
    return array<vec4<f32>, 4>(
        vec4<f32>(v[0], v[1], v[2], v[3]),
        vec4<f32>(v[4], v[5], v[6], v[7]),
        vec4<f32>(v[8], v[9], v[10], v[11]),
        vec4<f32>(v[12], v[13], v[14], v[15]),
    );
}

@compute @workgroup_size(WG)
fn dense_backward_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    // IN + 1 columns: the last one is the bias (x = 1).
    let iblocks = (IN + 1u + T - 1u) / T;
    let tiles = iblocks * ((OUT + T - 1u) / T);
    let t = min(i, tiles - 1u);
    let i0 = (t % iblocks) * T;
    let o0 = (t / iblocks) * T;

    var go: array<u32, T>;
    for (var s = 0u; s < T; s++) {
        go[s] = min(o0 + s, OUT - 1u);
    }
    var acc: array<mat4x4<f32>, 16>;
    for (var b = 0u; b < step.n; b++) {
        tile_fma(&acc, load_dy(go, b * OUT), load_x(i0, b * IN));
    }
    if i >= tiles {
        return;
    }
    put(o0, i0, acc[0]);
    put(o0, i0 + 4u, acc[1]);
    put(o0, i0 + 8u, acc[2]);
    put(o0, i0 + 12u, acc[3]);
    put(o0 + 4u, i0, acc[4]);
    put(o0 + 4u, i0 + 4u, acc[5]);
    put(o0 + 4u, i0 + 8u, acc[6]);
    put(o0 + 4u, i0 + 12u, acc[7]);
    put(o0 + 8u, i0, acc[8]);
    put(o0 + 8u, i0 + 4u, acc[9]);
    put(o0 + 8u, i0 + 8u, acc[10]);
    put(o0 + 8u, i0 + 12u, acc[11]);
    put(o0 + 12u, i0, acc[12]);
    put(o0 + 12u, i0 + 4u, acc[13]);
    put(o0 + 12u, i0 + 8u, acc[14]);
    put(o0 + 12u, i0 + 12u, acc[15]);
}

// Stores a 4×4 block: m[j][i] is output o + i, input column f + j (column IN: the bias).
fn put(o: u32, f: u32, m: mat4x4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        for (var i = 0u; i < 4u; i++) {
            if o + i < OUT {
                if f + j < IN {
                    grads[W_OFF + (o + i) * IN + f + j] = m[j][i];
                } else if f + j == IN {
                    grads[B_OFF + o + i] = m[j][i];
                }
            }
        }
    }
}
