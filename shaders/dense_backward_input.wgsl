// dense_backward_input: gradient of a fully connected layer with respect to its input, dx = dy · w, optionally fused
// with the backward of the ReLU that produced the input (dx = 0 where x ≤ 0).
//
// Bindings (group 0):
//   0 dy      f32 output gradient [n, OUT]                               read
//   1 params  f32 all parameters; weight [OUT, IN] at W_OFF              read
//   2 x       f32 the layer's input [n, IN] (read only for the ReLU mask) read
//   3 dx      f32 input gradient [n, IN]                                 write
//   4 step    uniform: n (batch length)
// Each thread computes a TB×TI block (TB samples × TI input features).

struct Step {
    start: u32,
    n: u32,
    index: u32,
    _pad: u32,
}

override IN: u32 = 1568u;
override OUT: u32 = 128u;
override W_OFF: u32 = 0u;
override RELU: bool = false;

const TB: u32 = 4u;
const TI: u32 = 4u;
const WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(4) var<uniform> step: Step;

@compute @workgroup_size(WG)
fn dense_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let iblocks = (IN + TI - 1u) / TI;
    let bblocks = (step.n + TB - 1u) / TB;
    if i >= iblocks * bblocks {
        return;
    }
    let i0 = (i % iblocks) * TI;
    let b0 = (i / iblocks) * TB;

    var acc: array<array<f32, TI>, TB>;
    for (var o = 0u; o < OUT; o++) {
        var wv: array<f32, TI>;
        for (var t = 0u; t < TI; t++) {
            wv[t] = params[W_OFF + o * IN + min(i0 + t, IN - 1u)];
        }
        for (var s = 0u; s < TB; s++) {
            let g = dy[min(b0 + s, step.n - 1u) * OUT + o];
            for (var t = 0u; t < TI; t++) {
                acc[s][t] += g * wv[t];
            }
        }
    }
    for (var s = 0u; s < TB; s++) {
        for (var t = 0u; t < TI; t++) {
            let b = b0 + s;
            let f = i0 + t;
            if b < step.n && f < IN {
                var v = acc[s][t];
                if RELU && !(x[b * IN + f] > 0.0) {
                    v = 0.0;
                }
                dx[b * IN + f] = v;
            }
        }
    }
}
