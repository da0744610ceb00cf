// softmax_cross_entropy: softmax + cross-entropy loss over a batch of logits, its gradient, and the batch's metrics.
//
// Bindings (group 0):
//   0 logits     f32 [n, K]                                                   read
//   1 labels     u32 [n]                                                      read
//   2 dlogits    f32 [n, K]: (softmax − onehot) / n, the gradient of the mean loss   write
//                (softmax_cross_entropy_backward only; _forward leaves it untouched)
//   3 stats      words: [0..3] the metrics, f32 running totals += Σ loss, += correct, += n;
//                from LOSSES f32 [steps], the mean loss of the batch at position `index`;
//                from PREDS u32 [count], the predicted class of sample start + b      read-write
//   4 step       uniform: start, n, index
// One workgroup: its threads stride over the batch (one sample each), then metrics_core.wgsl (appended by the host)
// sums the losses and correct predictions in a fixed-order tree and adds them to the running totals. Deterministic.

override K: u32 = 10u;
override LOSSES: u32 = 4u; // offsets (in words) in `stats`
override PREDS: u32 = 4u;

const WG: u32 = 256u;
const MAX_K: u32 = 16u;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: array<u32>; // f32 values as their bits
@group(0) @binding(4) var<uniform> step: Step; // shaders/step.wgsl, appended by the host

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
    stats[PREDS + step.start + b] = arg;
    if backward {
        let scale = 1.0 / f32(step.n);
        for (var k = 0u; k < K; k++) {
            let onehot = select(0.0, 1.0, k == label);
            dlogits[row + k] = (e[k] / sum - onehot) * scale;
        }
    }
    return vec2<f32>(loss, select(0.0, 1.0, arg == label));
}

@compute @workgroup_size(WG)
fn softmax_cross_entropy_backward(@builtin(local_invocation_index) lid: u32) {
    var local = vec2<f32>(0.0, 0.0);
    for (var b = lid; b < step.n; b += WG) {
        local += sample(b, true);
    }
    record_metrics(lid, local, step.n);
}

@compute @workgroup_size(WG)
fn softmax_cross_entropy_forward(@builtin(local_invocation_index) lid: u32) {
    var local = vec2<f32>(0.0, 0.0);
    for (var b = lid; b < step.n; b += WG) {
        local += sample(b, false);
    }
    record_metrics(lid, local, step.n);
}
