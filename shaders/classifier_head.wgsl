// classifier_head: the network's last dense layer, softmax cross-entropy and both their gradients in one dispatch:
// the tiled family's training step runs this instead of four (dense_forward_tiled, softmax_cross_entropy_backward,
// dense_backward_weight_tiled, dense_backward_input_tiled), the way PyTorch fuses log-softmax with the loss.
//   z  = h·Wᵀ + b                     the logits [n, OUT]
//   loss, predictions, metrics        recorded as softmax_cross_entropy_backward records them
//   dz = (softmax(z) − onehot) / n    the gradient of the mean loss
//   dW = dzᵀ·h, db = Σ_b dz           into grads
//   dh = dz·W, masked by h > 0        the gradient through the ReLU that produced h
//
// Bindings (group 0):
//   0 h        f32 [n, IN] the layer's input (a ReLU's output)                       read
//   1 params   f32 all parameters; W [OUT, IN] at W_OFF, b [OUT] at B_OFF            read
//   2 labels   u32 [n]                                                               read
//   3 grads    f32 all gradients, the same layout as params                          read-write
//   4 dh       f32 [n, IN]                                                           read-write
//   5 stats    words, as in softmax_cross_entropy.wgsl                               read-write
//   6 step     uniform: start, n, index
// One workgroup walks the batch in chunks of CHUNK samples, in order, and keeps dW and db in workgroup memory until
// the end; the metrics are summed by metrics_core.wgsl (appended by the host): deterministic, no atomics. OUT ≤ MAX_K and OUT·(IN + 1) ≤ MAX_GRAD (the host checks both).

override IN: u32 = 128u;
override OUT: u32 = 10u; // the classes
override W_OFF: u32 = 0u;
override B_OFF: u32 = 0u;
override LOSSES: u32 = 4u; // offsets (in words) in `stats`
override PREDS: u32 = 4u;

const WG: u32 = 256u;
const CHUNK: u32 = 64u;
const MAX_K: u32 = 16u;
const MAX_GRAD: u32 = 2048u;

@group(0) @binding(0) var<storage, read> h: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> grads: array<f32>;
@group(0) @binding(4) var<storage, read_write> dh: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<u32>; // f32 values as their bits
@group(0) @binding(6) var<uniform> step: Step; // shaders/step.wgsl, appended by the host

// The chunk's logits, then their gradient, [CHUNK, MAX_K].
var<workgroup> z: array<f32, CHUNK * MAX_K>;
// dW [OUT, IN] then db [OUT] as rows of IN + 1: row k is class k's weights followed by its bias.
var<workgroup> grad: array<f32, MAX_GRAD>;

// Softmax cross-entropy of sample b of the chunk (its logits in z): records its prediction, replaces its logits by
// their gradient, returns (loss, correct).
fn sample(c0: u32, b: u32, scale: f32) -> vec2<f32> {
    let row = b * MAX_K;
    var m = z[row];
    var arg = 0u;
    for (var k = 1u; k < OUT; k++) {
        if z[row + k] > m {
            m = z[row + k];
            arg = k;
        }
    }
    var sum = 0.0;
    for (var k = 0u; k < OUT; k++) {
        sum += exp(z[row + k] - m);
    }
    let label = labels[c0 + b];
    let loss = log(sum) - (z[row + label] - m);
    stats[PREDS + step.start + c0 + b] = arg;
    for (var k = 0u; k < OUT; k++) {
        let onehot = select(0.0, 1.0, k == label);
        z[row + k] = (exp(z[row + k] - m) / sum - onehot) * scale;
    }
    return vec2<f32>(loss, select(0.0, 1.0, arg == label));
}

@compute @workgroup_size(WG)
fn classifier_head(@builtin(local_invocation_index) lid: u32) {
    let n = step.n;
    let cols = IN + 1u;
    for (var e = lid; e < OUT * cols; e += WG) {
        grad[e] = 0.0;
    }
    var local = vec2<f32>(0.0, 0.0);
    for (var c0 = 0u; c0 < n; c0 += CHUNK) {
        let m = min(CHUNK, n - c0);
        // The chunk's logits: one (sample, class) pair per invocation.
        for (var e = lid; e < m * OUT; e += WG) {
            let b = e / OUT;
            let k = e % OUT;
            let hrow = (c0 + b) * IN;
            let wrow = W_OFF + k * IN;
            var acc = params[B_OFF + k];
            for (var i = 0u; i < IN; i++) {
                acc += h[hrow + i] * params[wrow + i];
            }
            z[b * MAX_K + k] = acc;
        }
        workgroupBarrier();
        if lid < m {
            local += sample(c0, lid, 1.0 / f32(n));
        }
        workgroupBarrier();
        // dW and db over the chunk's samples, in order: one entry per invocation, kept across chunks.
        for (var e = lid; e < OUT * cols; e += WG) {
            let k = e / cols;
            let i = e % cols;
            var acc = grad[e];
            for (var b = 0u; b < m; b++) {
                let x = select(1.0, h[(c0 + b) * IN + min(i, IN - 1u)], i < IN);
                acc += z[b * MAX_K + k] * x;
            }
            grad[e] = acc;
        }
        // dh of the chunk: one (sample, input) pair per invocation, zero where the ReLU was off.
        for (var e = lid; e < m * IN; e += WG) {
            let b = e / IN;
            let i = e % IN;
            var acc = 0.0;
            for (var k = 0u; k < OUT; k++) {
                acc += z[b * MAX_K + k] * params[W_OFF + k * IN + i];
            }
            let at = (c0 + b) * IN + i;
            dh[at] = select(0.0, acc, h[at] > 0.0);
        }
        workgroupBarrier(); // the next chunk overwrites z
    }
    for (var e = lid; e < OUT * cols; e += WG) {
        let k = e / cols;
        let i = e % cols;
        if i < IN {
            grads[W_OFF + k * IN + i] = grad[e];
        } else {
            grads[B_OFF + k] = grad[e];
        }
    }
    record_metrics(lid, local, n); // metrics_core.wgsl, appended by the host
}
