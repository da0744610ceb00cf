// step: the per-step uniform block (binding `step`, bound with a dynamic offset) that every batched kernel reads. WGSL
// has no include: the host appends this file to each shader that binds it (src/gpu/shader.rs).
//   start  the batch's first position in the split's sample order
//   n      the samples in this batch (the last batch of an epoch may be short)
//   index  the step's number: where its mean loss and its samples' predictions go in the stats buffer
//   full   the forward convolutions also store their pre-pool output (training and the probe need it, evaluation not)
struct Step {
    start: u32,
    n: u32,
    index: u32,
    full: u32,
}
