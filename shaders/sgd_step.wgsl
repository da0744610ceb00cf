// sgd_step: SGD with momentum over the one contiguous parameter buffer, PyTorch semantics (dampening 0, no Nesterov):
// v ← μ·v + g; w ← w − lr·v.
//
// Bindings (group 0):
//   0 grads     f32 [count]                                                read
//   1 params    f32 [count]                                                read-write
//   2 momentum  f32 [count] (the velocity v)                              read-write
//   3 hyper     uniform: lr, momentum μ, count
// Each thread updates one parameter.

struct Hyper {
    lr: f32,
    momentum: f32,
    count: u32,
    _pad: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> grads: array<f32>;
@group(0) @binding(1) var<storage, read_write> params: array<f32>;
@group(0) @binding(2) var<storage, read_write> momentum: array<f32>;
@group(0) @binding(3) var<uniform> hyper: Hyper;

@compute @workgroup_size(WG)
fn sgd_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= hyper.count {
        return;
    }
    let v = hyper.momentum * momentum[i] + grads[i];
    momentum[i] = v;
    params[i] = params[i] - hyper.lr * v;
}
