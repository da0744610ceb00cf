//! What a kernel asks of a GPU's multiprocessors, checked without one: the tiled kernels' register blocks stay in
//! registers (no function-scope arrays in the SPIR-V naga writes for them with the engine's own override constants:
//! an array indexed by a loop variable lives in local memory, the mistake that once cost the tiled kernels 10×), their
//! workgroup memory leaves room for several workgroups per multiprocessor, and no shader declares a storage binding
//! read-write without writing it (wgpu orders every dispatch after the last one that could write a buffer it binds).

use gpu_cnn::gpu::net::lower::{all_pipeline_specs, PipelineSpec};
use gpu_cnn::gpu::ops::{shader_for, shaders};
use gpu_cnn::gpu::shader::wgsl_for_naga;
use gpu_cnn::gpu::Family;
use naga::back::spv;
use naga::valid::{ValidationFlags, Validator};
use naga::{AddressSpace, Block, Expression, Handle, ShaderStage, Statement, StorageAccess};
use std::collections::{HashMap, HashSet};

fn parse(file: &str, source: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(&wgsl_for_naga(source)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let caps = gpu_cnn::gpu::shader::shader_capabilities();
    let info =
        Validator::new(ValidationFlags::all(), caps).validate(&module).unwrap_or_else(|e| panic!("{file}: {e:?}"));
    (module, info)
}

/// SPIR-V for `entry` of `source` with `constants` applied, as wgpu hands it to a Vulkan driver.
fn spirv(file: &str, source: &str, entry: &str, constants: &[(&'static str, f64)]) -> Vec<u32> {
    let (module, info) = parse(file, source);
    let constants: naga::back::PipelineConstants = constants.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((ShaderStage::Compute, entry)),
        &constants,
    )
    .unwrap_or_else(|e| panic!("{entry}: overrides: {e}"));
    let options = spv::Options { lang_version: (1, 3), ..Default::default() };
    let pipeline = spv::PipelineOptions { shader_stage: ShaderStage::Compute, entry_point: entry.to_string() };
    spv::write_vec(&module, &info, &options, Some(&pipeline)).unwrap_or_else(|e| panic!("{entry}: SPIR-V: {e}"))
}

/// The function-scope variables of a SPIR-V module that hold an array (directly or inside a struct): what a driver
/// keeps in local memory when it is indexed by anything but a constant. Each as "%id: array of N".
fn function_arrays(words: &[u32]) -> Vec<String> {
    const TYPE_ARRAY: u32 = 28;
    const TYPE_STRUCT: u32 = 30;
    const TYPE_POINTER: u32 = 32;
    const VARIABLE: u32 = 59;
    const FUNCTION: u32 = 7;
    let (mut arrays, mut structs, mut pointers, mut vars) = (HashSet::new(), HashMap::new(), HashMap::new(), vec![]);
    let mut i = 5; // after the header
    while i < words.len() {
        let (count, op) = ((words[i] >> 16) as usize, words[i] & 0xffff);
        let w = &words[i..i + count.max(1)];
        match op {
            TYPE_ARRAY => {
                arrays.insert(w[1]);
            }
            TYPE_STRUCT => {
                structs.insert(w[1], w[2..].to_vec());
            }
            TYPE_POINTER => {
                pointers.insert(w[1], (w[2], w[3]));
            }
            VARIABLE if w[3] == FUNCTION => vars.push((w[1], w[2])),
            _ => {}
        }
        i += count.max(1);
    }
    fn holds_array(t: u32, arrays: &HashSet<u32>, structs: &HashMap<u32, Vec<u32>>) -> bool {
        arrays.contains(&t) || structs.get(&t).is_some_and(|m| m.iter().any(|&m| holds_array(m, arrays, structs)))
    }
    vars.into_iter()
        .filter_map(|(ptr, id)| pointers.get(&ptr).map(|&(_, t)| (id, t)))
        .filter(|&(_, t)| holds_array(t, &arrays, &structs))
        .map(|(id, t)| format!("%{id}: array type %{t}"))
        .collect()
}

fn label(spec: &PipelineSpec) -> String {
    let k: Vec<String> = spec.constants.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{} {}", spec.entry, k.join(" "))
}

#[test]
fn tiled_register_blocks_stay_out_of_function_scope_arrays() {
    let specs: Vec<PipelineSpec> =
        all_pipeline_specs().into_iter().filter(|s| shader_for(s.entry).family == Some(Family::Tiled)).collect();
    assert!(specs.len() >= 20, "{} tiled pipelines", specs.len());
    for spec in &specs {
        let shader = shader_for(spec.entry);
        let found = function_arrays(&spirv(shader.file, shader.source, spec.entry, &spec.constants));
        assert!(found.is_empty(), "{}: function-scope arrays {found:?}", label(spec));
    }
    eprintln!("{} tiled pipelines: no function-scope arrays", specs.len());

    // The checker fails on the mistake it guards against: the tile core's accumulators as an array indexed by the
    // loop variable.
    let spec = specs.iter().find(|s| s.entry == "conv2d_forward_tiled").expect("conv2 forward");
    let shader = shader_for(spec.entry);
    let planted = shader.source.replace(
        "acc0 = fma(vec4<f32>(a.x), b, acc0);",
        "var spill: array<vec4<f32>, 4>; spill[kk % 4u] = fma(vec4<f32>(a.x), b, acc0); acc0 = spill[kk % 4u];",
    );
    assert_ne!(planted, shader.source, "the planted change applies");
    let found = function_arrays(&spirv(shader.file, &planted, spec.entry, &spec.constants));
    assert_eq!(found.len(), 1, "the planted array is found: {found:?}");
}

/// Workgroups of `bytes` of workgroup memory that fit in `per_multiprocessor` bytes.
fn resident(bytes: u32, per_multiprocessor: u32) -> u32 {
    per_multiprocessor / bytes.max(1)
}

#[test]
fn workgroup_memory_leaves_room_for_several_workgroups() {
    // At least four workgroups in 64 KiB (an AMD compute unit's LDS; an H100 or H200 multiprocessor has 228 KiB,
    // so fourteen there), and within WebGPU's default limit of 16 KiB.
    const LDS: u32 = 64 * 1024;
    for s in shaders() {
        assert!(s.workgroup_bytes <= 16 * 1024, "{}: {} bytes of workgroup memory", s.file, s.workgroup_bytes);
        assert!(
            resident(s.workgroup_bytes, LDS) >= 4,
            "{}: {} workgroups in 64 KiB",
            s.file,
            resident(s.workgroup_bytes, LDS)
        );
    }
    let tiled = shaders().filter(|s| s.family == Some(Family::Tiled)).map(|s| s.workgroup_bytes).max();
    eprintln!(
        "tiled kernels: {} bytes of workgroup memory, {} per 228 KiB",
        tiled.unwrap_or(0),
        resident(tiled.unwrap_or(1), 228 * 1024)
    );
    // The checker fails for a tile core that kept its C tile beside the double-buffered A and B tiles and took 8 KiB
    // more for deeper steps (29 KiB).
    assert!(resident(4 * (2 * (528 + 1040) + 2080) + 8192, LDS) < 4);
}

/// The storage globals some function of `module` stores to (or atomically updates).
fn written_globals(module: &naga::Module) -> HashSet<Handle<naga::GlobalVariable>> {
    fn root(f: &naga::Function, mut e: Handle<Expression>) -> Option<Handle<naga::GlobalVariable>> {
        loop {
            match f.expressions[e] {
                Expression::GlobalVariable(g) => return Some(g),
                Expression::Access { base, .. } | Expression::AccessIndex { base, .. } => e = base,
                _ => return None,
            }
        }
    }
    fn walk(f: &naga::Function, block: &Block, out: &mut HashSet<Handle<naga::GlobalVariable>>) {
        for s in block.iter() {
            match s {
                Statement::Store { pointer, .. } | Statement::Atomic { pointer, .. } => out.extend(root(f, *pointer)),
                Statement::Block(b) => walk(f, b, out),
                Statement::If { accept, reject, .. } => {
                    walk(f, accept, out);
                    walk(f, reject, out);
                }
                Statement::Switch { cases, .. } => cases.iter().for_each(|c| walk(f, &c.body, out)),
                Statement::Loop { body, continuing, .. } => {
                    walk(f, body, out);
                    walk(f, continuing, out);
                }
                _ => {}
            }
        }
    }
    let mut out = HashSet::new();
    let functions = module.functions.iter().map(|(_, f)| f).chain(module.entry_points.iter().map(|e| &e.function));
    for f in functions {
        walk(f, &f.body, &mut out);
    }
    out
}

/// The storage bindings `source` declares read-write and never writes, by name.
fn read_write_unwritten(file: &str, source: &str) -> Vec<String> {
    let (module, _) = parse(file, source);
    let written = written_globals(&module);
    module
        .global_variables
        .iter()
        .filter(|(h, g)| {
            matches!(g.space, AddressSpace::Storage { access } if access.contains(StorageAccess::STORE))
                && !written.contains(h)
        })
        .map(|(_, g)| g.name.clone().unwrap_or_default())
        .collect()
}

#[test]
fn a_read_write_binding_is_written() {
    for s in shaders() {
        let unwritten = read_write_unwritten(s.file, s.source);
        assert!(unwritten.is_empty(), "{}: declared read_write, never written: {unwritten:?}", s.file);
    }
    // The checker fails for a binding declared read-write that only is read.
    let s = shaders().find(|s| s.file == "sgd_step.wgsl").expect("sgd_step");
    let grads = s.source.lines().find(|l| l.contains("var<storage, read> ")).expect("a read-only binding");
    let planted = s.source.replace(grads, &grads.replace("var<storage, read> ", "var<storage, read_write> "));
    assert_eq!(read_write_unwritten(s.file, &planted).len(), 1, "{}", grads);
}
