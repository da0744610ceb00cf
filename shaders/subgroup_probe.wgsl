// subgroup_probe: what the simd family's subgroup kernels assume of a device, measured on it before they are used:
// subgroups of exactly 8 invocations, made of 8 consecutive invocations of the workgroup, whose lanes are numbered
// in that order, with subgroupShuffle reading the named lane.
//
// Bindings (group 0):
//   0 out  u32 [3 × 64]: per invocation, its subgroup size, its lane, and the value a shuffle brought it    write
// Invocation i offers 1000 + i and reads lane (lane + 3) % size of its subgroup.

enable subgroups;

const WG: u32 = 64u;

@group(0) @binding(0) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(WG)
fn subgroup_probe(
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_size) size: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let got = subgroupShuffle(1000u + lid, (lane + 3u) % size);
    out[lid] = size;
    out[WG + lid] = lane;
    out[2u * WG + lid] = got;
}
