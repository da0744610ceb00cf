// softmax_cross_entropy: softmax + cross-entropy loss over a batch of logits, its gradient, and the batch's metrics.
//
// Bindings (group 0):
//   0 logits     f32 [n, K]                                                   read
//   1 labels     u32 [n]                                                      read
//   2 dlogits    f32 [n, K]: (softmax − onehot) / n, the gradient of the mean loss   write
//                (softmax_cross_entropy_backward only; _forward leaves it untouched)
//   3 preds      u32 [count]: predicted class of sample start + b                 write
//   4 metrics    f32 [4]: += Σ loss, += correct, += n, running totals       read-write
//   5 step_loss  f32 [steps]: mean loss of the batch at position `index`     write
//   6 step       uniform: start, n, index
// One workgroup: its threads stride over the batch (one sample each), then a fixed-order tree reduction sums the
// losses and correct predictions, and thread 0 adds them to the running totals. No atomics: deterministic.

struct Step {
    start: u32,
    n: u32,
    index: u32,
    _pad: u32,
}

override K: u32 = 10u;

const WG: u32 = 256u;
const MAX_K: u32 = 16u;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(3) var<storage, read_write> preds: array<u32>;
@group(0) @binding(4) var<storage, read_write> metrics: array<f32>;
@group(0) @binding(5) var<storage, read_write> step_loss: array<f32>;
@group(0) @binding(6) var<uniform> step: Step;

var<workgroup> loss_sum: array<f32, WG>;
var<workgroup> correct_sum: array<f32, WG>;

// Loss of one sample; writes its gradient when `backward`. Returns (loss, correct).
fn sample(b: u32, backward: bool) -> vec2<f32> {
    let row = b * K;
    var m = logits[row];
    var arg = 0u;
    for (var k = 1u; k < K; k++) {
        let v = logits[row + k];
        if v > m {
            m = v;
            arg = k;
        }
    }
    var e: array<f32, MAX_K>;
    var sum = 0.0;
    for (var k = 0u; k < K; k++) {
        e[k] = exp(logits[row + k] - m);
        sum += e[k];
    }
    let label = labels[b];
    let loss = log(sum) - (logits[row + label] - m);
    preds[step.start + b] = arg;
    if backward {
        let scale = 1.0 / f32(step.n);
        for (var k = 0u; k < K; k++) {
            let onehot = select(0.0, 1.0, k == label);
            dlogits[row + k] = (e[k] / sum - onehot) * scale;
        }
    }
    return vec2<f32>(loss, select(0.0, 1.0, arg == label));
}

fn reduce_and_record(lid: u32, local: vec2<f32>) {
    loss_sum[lid] = local.x;
    correct_sum[lid] = local.y;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            loss_sum[lid] += loss_sum[lid + stride];
            correct_sum[lid] += correct_sum[lid + stride];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        metrics[0] += loss_sum[0];
        metrics[1] += correct_sum[0];
        metrics[2] += f32(step.n);
        step_loss[step.index] = loss_sum[0] / f32(step.n);
    }
}

@compute @workgroup_size(WG)
fn softmax_cross_entropy_backward(@builtin(local_invocation_index) lid: u32) {
    var local = vec2<f32>(0.0, 0.0);
    for (var b = lid; b < step.n; b += WG) {
        local += sample(b, true);
    }
    reduce_and_record(lid, local);
}

@compute @workgroup_size(WG)
fn softmax_cross_entropy_forward(@builtin(local_invocation_index) lid: u32) {
    var local = vec2<f32>(0.0, 0.0);
    for (var b = lid; b < step.n; b += WG) {
        local += sample(b, false);
    }
    reduce_and_record(lid, local);
}
