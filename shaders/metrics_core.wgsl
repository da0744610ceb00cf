// metrics_core: a batch's loss and correct predictions, summed over the workgroup in a fixed-order tree (deterministic,
// no atomics) and added to the running metrics in `stats`. WGSL has no include: the host appends this file to
// softmax_cross_entropy.wgsl and classifier_head.wgsl (kernels.rs), which declare `stats`, `step`, `WG` and `LOSSES`.

var<workgroup> loss_sum: array<f32, WG>;
var<workgroup> correct_sum: array<f32, WG>;

// Adds every invocation's (loss, correct) over `n` samples to stats[0..3] (Σ loss, correct, count) and records the
// batch's mean loss at LOSSES + step.index. Every invocation of the workgroup calls it.
fn record_metrics(lid: u32, local: vec2<f32>, n: u32) {
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
        stats[0] = bitcast<u32>(bitcast<f32>(stats[0]) + loss_sum[0]);
        stats[1] = bitcast<u32>(bitcast<f32>(stats[1]) + correct_sum[0]);
        stats[2] = bitcast<u32>(bitcast<f32>(stats[2]) + f32(n));
        stats[LOSSES + step.index] = bitcast<u32>(loss_sum[0] / f32(n));
    }
}
