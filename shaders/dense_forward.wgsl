// dense_forward: fully connected layer y = x · wᵀ + b (PyTorch Linear), optionally fused with ReLU.
//
// Bindings (group 0):
//   0 x       f32 input [n, IN]                                          read
//   1 params  f32 all parameters; weight [OUT, IN] at W_OFF, bias [OUT]
//             at B_OFF                                                  read
//   2 y       f32 output [n, OUT]                                        write
//   3 step    uniform: n (batch length)
// Each thread computes a TB×TO block of outputs (TB samples × TO features), so each loaded x and w value is used
// TO or TB times (register blocking).

struct Step {
    start: u32,
    n: u32,
    index: u32,
    _pad: u32,
}

override IN: u32 = 1568u;
override OUT: u32 = 128u;
override W_OFF: u32 = 0u;
override B_OFF: u32 = 0u;
override RELU: bool = true;

const TB: u32 = 4u;
const TO: u32 = 4u;
const WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> step: Step;

@compute @workgroup_size(WG)
fn dense_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let oblocks = (OUT + TO - 1u) / TO;
    let bblocks = (step.n + TB - 1u) / TB;
    if i >= oblocks * bblocks {
        return;
    }
    let o0 = (i % oblocks) * TO;
    let b0 = (i / oblocks) * TB;

    var acc: array<array<f32, TO>, TB>;
    for (var k = 0u; k < IN; k++) {
        var wv: array<f32, TO>;
        for (var t = 0u; t < TO; t++) {
            wv[t] = params[W_OFF + min(o0 + t, OUT - 1u) * IN + k];
        }
        for (var s = 0u; s < TB; s++) {
            let xv = x[min(b0 + s, step.n - 1u) * IN + k];
            for (var t = 0u; t < TO; t++) {
                acc[s][t] += xv * wv[t];
            }
        }
    }
    for (var s = 0u; s < TB; s++) {
        for (var t = 0u; t < TO; t++) {
            let b = b0 + s;
            let o = o0 + t;
            if b < step.n && o < OUT {
                var v = acc[s][t] + params[B_OFF + o];
                if RELU {
                    v = max(v, 0.0);
                }
                y[b * OUT + o] = v;
            }
        }
    }
}
