// load_batch: gathers one batch of images from the u8 dataset on the device, normalizes it and copies its labels.
//
// Bindings (group 0):
//   0 data     u8 packed four to a u32 (little-endian): the pixels [count, PIXELS], then
//              from byte LABELS the labels [count]                               read
//   1 indices  u32 sample order for the epoch (a permutation, or 0..count)       read
//   2 x        f32 normalized batch [n, PIXELS]                                  write
//   3 y        u32 labels of the batch [n]                                       write
//   4 step     uniform: start (first position in `indices`), n (batch length)
// Each thread produces one pixel of x: x = (p / 255 - MEAN) / STD (the data's normalization; MNIST's is 0.1307 and
// 0.3081); the thread of pixel 0 also copies the label.

override PIXELS: u32 = 784u; // values per image (channels × height × width)
override LABELS: u32 = 0u; // byte offset of the labels in `data` (count·PIXELS)
override MEAN: f32 = 0.1307;
override STD: f32 = 0.3081;
const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> data: array<u32>;
@group(0) @binding(1) var<storage, read> indices: array<u32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<u32>;
@group(0) @binding(4) var<uniform> step: Step; // shaders/step.wgsl, appended by the host

fn byte_at(i: u32) -> u32 {
    return (data[i / 4u] >> ((i % 4u) * 8u)) & 0xffu;
}

@compute @workgroup_size(WG)
fn load_batch(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= step.n * PIXELS {
        return;
    }
    let b = i / PIXELS;
    let p = i % PIXELS;
    let sample = indices[step.start + b];
    let v = byte_at(sample * PIXELS + p);
    x[i] = (f32(v) / 255.0 - MEAN) / STD;
    if p == 0u {
        y[b] = byte_at(LABELS + sample);
    }
}
