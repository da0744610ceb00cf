//! The ops, one room each: an op's file holds its shader rows (`SHADERS`), the shapes its kernels cannot take
//! (`check_shape`), its sizing and its dispatch plans for each kernel family. Its CPU reference is
//! `reference::<op>` and its check `check::<op>`. This file is the registry: `OPS` lists every op once, and the
//! pipelines, the limits and the tests read the shader table from it.
//!
//! A plan (`plan::Plan`) names its buffers by the network's names for its tensors (`"x"`, `"conv1.out"`, `"params"`,
//! …); the caller maps names to buffers. The network (`gpu::net`) and the checks build their dispatches from the same
//! plans, so what is tested is what runs.

pub mod avgpool;
pub mod classifier_head;
pub mod conv2d;
pub mod dense;
pub mod load_batch;
pub mod maxpool;
pub mod plan;
pub mod pool;
pub mod probes;
pub mod sgd;
pub mod softmax_cross_entropy;
pub mod tiles;

pub use plan::{Lowered, PerBatch, Plan, Source, Temp};

use crate::gpu::shader::Shader;

/// An op's shape rule: an error naming what the kernel of `entry` cannot take, given its override constants (`get`
/// reads one by name, 0 where unset).
pub type ShapeRule = fn(entry: &str, get: &dyn Fn(&str) -> f64) -> Result<(), String>;

/// One op in the registry: its name, its shaders and its shape rule.
pub struct Op {
    pub name: &'static str,
    pub shaders: &'static [Shader],
    pub check_shape: ShapeRule,
}

fn any_shape(_: &str, _: &dyn Fn(&str) -> f64) -> Result<(), String> {
    Ok(())
}

/// Every op, once.
pub const OPS: &[Op] = &[
    Op { name: "load_batch", shaders: load_batch::SHADERS, check_shape: any_shape },
    Op { name: "conv2d", shaders: conv2d::SHADERS, check_shape: conv2d::check_shape },
    Op { name: "maxpool", shaders: maxpool::SHADERS, check_shape: any_shape },
    Op { name: "avgpool", shaders: avgpool::SHADERS, check_shape: avgpool::check_shape },
    Op { name: "dense", shaders: dense::SHADERS, check_shape: dense::check_shape },
    Op {
        name: "softmax_cross_entropy",
        shaders: softmax_cross_entropy::SHADERS,
        check_shape: softmax_cross_entropy::check_shape,
    },
    Op { name: "classifier_head", shaders: classifier_head::SHADERS, check_shape: any_shape },
    Op { name: "sgd", shaders: sgd::SHADERS, check_shape: any_shape },
    Op { name: "probes", shaders: probes::SHADERS, check_shape: any_shape },
];

/// Every shader of every op.
pub fn shaders() -> impl Iterator<Item = &'static Shader> {
    OPS.iter().flat_map(|op| op.shaders.iter())
}

/// The op whose shaders have entry point `entry`, and that shader.
fn find(entry: &str) -> (&'static Op, &'static Shader) {
    OPS.iter()
        .find_map(|op| op.shaders.iter().find(|s| s.entry_points.contains(&entry)).map(|s| (op, s)))
        .unwrap_or_else(|| panic!("no shader has entry point {entry}"))
}

/// The shader with entry point `entry`.
pub fn shader_for(entry: &str) -> &'static Shader {
    find(entry).1
}

/// Whether the kernel of `entry` takes these override constants (its op's shape rule), or why not.
pub fn check_shape(entry: &str, constants: &[(&str, f64)]) -> Result<(), String> {
    let get = |name: &str| constants.iter().find(|(k, _)| *k == name).map_or(0.0, |c| c.1);
    (find(entry).0.check_shape)(entry, &get)
}
