//! Every pipeline the engine creates, cross-compiled by naga to each shading language wgpu hands to a driver: SPIR-V
//! (Vulkan), MSL (Metal), HLSL (DX12) and GLSL (OpenGL / GLES), with the exact override constants the engine uses, so
//! a shader that only one back end rejects fails here rather than on someone's Mac or Windows machine. No GPU needed.
//! GLSL is skipped for the subgroup kernels: wgpu's GL back end offers no subgroups, so they never run there.

use gpu_cnn::gpu::net::lower::{all_pipeline_specs, PipelineSpec};
use gpu_cnn::gpu::ops::shader_for;
use gpu_cnn::gpu::shader::wgsl_for_naga;
use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{ValidationFlags, Validator};
use naga::ShaderStage;

/// The module of `spec` with its overrides applied, as wgpu hands it to a back end.
fn specialize(spec: &PipelineSpec) -> (naga::Module, naga::valid::ModuleInfo) {
    let shader = shader_for(spec.entry);
    let source = wgsl_for_naga(shader.source);
    let module = naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| panic!("{}: {}", shader.file, e));
    let caps = gpu_cnn::gpu::shader::shader_capabilities();
    let info = Validator::new(ValidationFlags::all(), caps).validate(&module).expect("validates");
    let mut constants = naga::back::PipelineConstants::default();
    for (k, v) in &spec.constants {
        constants.insert(k.to_string(), *v);
    }
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((ShaderStage::Compute, spec.entry)),
        &constants,
    )
    .unwrap_or_else(|e| panic!("{} {:?}: overrides: {e}", spec.entry, spec.constants));
    (module.into_owned(), info.into_owned())
}

fn label(spec: &PipelineSpec) -> String {
    let k: Vec<String> = spec.constants.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{} {}", spec.entry, k.join(" "))
}

#[test]
fn every_pipeline_cross_compiles_to_every_back_end() {
    let specs = all_pipeline_specs();
    assert!(specs.len() >= 30, "{} specs", specs.len());
    let mut glsl_skipped = 0;
    for spec in &specs {
        let (module, info) = specialize(spec);
        let what = label(spec);
        let entry = spec.entry.to_string();

        let spv_options = spv::Options { lang_version: (1, 3), ..Default::default() };
        let pipeline = spv::PipelineOptions { shader_stage: ShaderStage::Compute, entry_point: entry.clone() };
        let words = spv::write_vec(&module, &info, &spv_options, Some(&pipeline))
            .unwrap_or_else(|e| panic!("{what}: SPIR-V: {e}"));
        assert_eq!(words[0], 0x0723_0203, "{what}: SPIR-V magic");

        let msl_options = msl::Options { lang_version: (2, 4), ..Default::default() };
        let msl_pipeline =
            msl::PipelineOptions { entry_point: Some((ShaderStage::Compute, entry.clone())), ..Default::default() };
        let (msl, _) = msl::write_string(&module, &info, &msl_options, &msl_pipeline)
            .unwrap_or_else(|e| panic!("{what}: MSL: {e}"));
        assert!(msl.contains("kernel void"), "{what}: no MSL kernel");

        let mut hlsl = String::new();
        let hlsl_options = hlsl::Options { shader_model: hlsl::ShaderModel::V6_0, ..Default::default() };
        let hlsl_pipeline = hlsl::PipelineOptions { entry_point: Some((ShaderStage::Compute, entry.clone())) };
        hlsl::Writer::new(&mut hlsl, &hlsl_options, &hlsl_pipeline)
            .write(&module, &info, None)
            .unwrap_or_else(|e| panic!("{what}: HLSL: {e}"));
        assert!(hlsl.contains("[numthreads("), "{what}: no HLSL compute entry");

        if shader_for(spec.entry).subgroups {
            glsl_skipped += 1;
            continue;
        }
        let mut glsl = String::new();
        let glsl_options =
            glsl::Options { version: glsl::Version::Embedded { version: 310, is_webgl: false }, ..Default::default() };
        let glsl_pipeline =
            glsl::PipelineOptions { shader_stage: ShaderStage::Compute, entry_point: entry.clone(), multiview: None };
        glsl::Writer::new(&mut glsl, &module, &info, &glsl_options, &glsl_pipeline, Default::default())
            .and_then(|mut w| w.write())
            .unwrap_or_else(|e| panic!("{what}: GLSL: {e}"));
        assert!(glsl.contains("layout(local_size_x"), "{what}: no GLSL compute layout");
    }
    eprintln!("{} pipelines to SPIR-V, MSL and HLSL; GLSL for all but {glsl_skipped} subgroup kernels", specs.len());
}

#[test]
fn an_override_the_shader_lacks_is_an_error() {
    // The checker must be able to fail: a constant the shader does not declare is refused by naga.
    let mut spec = all_pipeline_specs().into_iter().find(|s| s.entry == "dense_forward_tiled").expect("a spec");
    spec.constants.push(("NO_SUCH_CONSTANT", 1.0));
    let result = std::panic::catch_unwind(|| specialize(&spec));
    assert!(result.is_err(), "an unknown override was accepted");
}
