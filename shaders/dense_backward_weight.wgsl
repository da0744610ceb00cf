// dense_backward_weight: gradients of a fully connected layer's weight and bias, summed over the batch.
//
// Bindings (group 0):
//   0 x      f32 the layer's input [n, IN]                                read
//   1 dy     f32 output gradient [n, OUT]                                 read
//   2 grads  f32 all gradients; dw [OUT, IN] at W_OFF, db [OUT] at B_OFF  write
//   3 step   uniform: n (batch length)
// dw[o, i] = Σ_b dy[b, o] · x[b, i]; db[o] = Σ_b dy[b, o]. Each thread computes TO×TI weights (a block of TO outputs ×
// TI inputs); column IN of the block grid is the bias. The batch sum runs in a fixed order: deterministic.

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

const TO: u32 = 4u;
const TI: u32 = 4u;
const WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;
@group(0) @binding(3) var<uniform> step: Step;

@compute @workgroup_size(WG)
fn dense_backward_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    // IN + 1 columns: the last one is the bias (x = 1).
    let iblocks = (IN + 1u + TI - 1u) / TI;
    let oblocks = (OUT + TO - 1u) / TO;
    if i >= iblocks * oblocks {
        return;
    }
    let i0 = (i % iblocks) * TI;
    let o0 = (i / iblocks) * TO;

    var acc: array<array<f32, TI>, TO>;
    for (var b = 0u; b < step.n; b++) {
        var xv: array<f32, TI>;
        for (var t = 0u; t < TI; t++) {
            let f = i0 + t;
            xv[t] = select(1.0, x[b * IN + min(f, IN - 1u)], f < IN);
        }
        for (var s = 0u; s < TO; s++) {
            let g = dy[b * OUT + min(o0 + s, OUT - 1u)];
            for (var t = 0u; t < TI; t++) {
                acc[s][t] += g * xv[t];
            }
        }
    }
    for (var s = 0u; s < TO; s++) {
        let o = o0 + s;
        if o >= OUT {
            continue;
        }
        for (var t = 0u; t < TI; t++) {
            let f = i0 + t;
            if f < IN {
                grads[W_OFF + o * IN + f] = acc[s][t];
            } else if f == IN {
                grads[B_OFF + o] = acc[s][t];
            }
        }
    }
}
