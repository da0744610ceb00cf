//! Shader hygiene without a GPU: every `shaders/*.wgsl` parses and validates with naga under the capabilities the
//! engine requests, is listed in the ops' registry (`gpu::ops::OPS`), and declares exactly the bindings the host binds (group 0, binding i,
//! read-only or read-write storage, or uniform), with each entry point using only those.

use gpu_cnn::gpu::ops::shaders;
use gpu_cnn::gpu::shader::{self as kernels, Access, WEIGHT_WINDOW_BYTES};
use naga::valid::{GlobalUse, ValidationFlags, Validator};
use naga::AddressSpace;

fn validate(file: &str, source: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let source = &*kernels::wgsl_for_naga(source);
    let module =
        naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{file}: {}", e.emit_to_string(source)));
    let info = Validator::new(ValidationFlags::all(), kernels::shader_capabilities())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{file}: {}", e.emit_to_string(source)));
    (module, info)
}

#[test]
fn every_shader_file_is_registered() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("shaders/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    files.sort();
    let mut registered: Vec<String> =
        shaders().flat_map(|s| std::iter::once(s.file).chain(s.appended.iter().copied())).map(String::from).collect();
    registered.sort();
    registered.dedup();
    assert_eq!(files, registered, "shaders/ and the ops' shader rows disagree");
    let read = |file: &str| std::fs::read_to_string(format!("{dir}/{file}")).expect("read shader");
    for s in shaders() {
        let on_disk =
            std::iter::once(s.file).chain(s.appended.iter().copied()).map(read).collect::<Vec<_>>().join("\n");
        assert_eq!(on_disk, s.source, "{}: embedded source is stale", s.file);
    }
}

#[test]
fn every_shader_validates_and_matches_its_bindings() {
    for s in shaders() {
        let (module, info) = validate(s.file, s.source);
        // Declared resources: exactly bindings 0..n of group 0, each with the access the host gives it.
        let mut declared = Vec::new();
        for (_, var) in module.global_variables.iter() {
            let Some(binding) = &var.binding else { continue };
            assert_eq!(binding.group, 0, "{}: `{:?}` is not in group 0", s.file, var.name);
            let access = match var.space {
                AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE) => Access::ReadWrite,
                AddressSpace::Storage { .. } => Access::Read,
                AddressSpace::Uniform => Access::Uniform,
                other => panic!("{}: unexpected address space {other:?}", s.file),
            };
            if s.bindings.get(binding.binding as usize) == Some(&Access::Weights) {
                // The host binds exactly this many bytes of the parameter buffer.
                let bytes = module.types[var.ty].inner.size(module.to_ctx());
                assert_eq!(bytes as u64, WEIGHT_WINDOW_BYTES, "{}: the weight window's size", s.file);
            }
            declared.push((binding.binding, access, var.name.clone().unwrap_or_default()));
        }
        declared.sort_by_key(|d| d.0);
        let indices: Vec<u32> = declared.iter().map(|d| d.0).collect();
        assert_eq!(indices, (0..s.bindings.len() as u32).collect::<Vec<_>>(), "{}: binding numbers", s.file);
        for ((i, access, name), want) in declared.iter().zip(s.bindings) {
            let want_shader = match want {
                Access::Step | Access::Uniform | Access::Weights => Access::Uniform,
                a => *a,
            };
            assert_eq!(
                *access, want_shader,
                "{}: binding {i} (`{name}`): shader says {access:?}, host binds {want:?}",
                s.file
            );
        }
        // Entry points: exactly the registered ones, compute stage, and none writes a read-only binding.
        let names: Vec<&str> = module.entry_points.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names.len(), s.entry_points.len(), "{}: entry points {names:?}", s.file);
        for (ep_index, ep) in module.entry_points.iter().enumerate() {
            assert!(s.entry_points.contains(&ep.name.as_str()), "{}: unregistered entry point {}", s.file, ep.name);
            assert_eq!(ep.stage, naga::ShaderStage::Compute, "{}: {}", s.file, ep.name);
            let uses = info.get_entry_point(ep_index);
            for (handle, var) in module.global_variables.iter() {
                let Some(binding) = &var.binding else { continue };
                if uses[handle].contains(GlobalUse::WRITE) {
                    assert_eq!(
                        s.bindings[binding.binding as usize],
                        Access::ReadWrite,
                        "{}: {} writes binding {}",
                        s.file,
                        ep.name,
                        binding.binding
                    );
                }
            }
        }
        // The per-step block is declared once (shaders/step.wgsl, 16 bytes as the host lays it out) and appended to
        // every shader that binds it, which declares no copy of its own.
        let binds_step = s.bindings.contains(&Access::Step);
        assert_eq!(
            binds_step,
            s.appended.contains(&"step.wgsl"),
            "{}: step.wgsl appended where the step is bound",
            s.file
        );
        if binds_step {
            let step = include_str!("../shaders/step.wgsl");
            assert!(step.contains("struct Step {\n    start: u32,\n    n: u32,\n    index: u32,\n    full: u32,\n}"));
            assert_eq!(s.source.matches("struct Step").count(), 1, "{}: one Step declaration", s.file);
            let (module, _) = validate(s.file, s.source);
            let step_ty = module.types.iter().find(|(_, t)| t.name.as_deref() == Some("Step")).expect("Step").1;
            assert_eq!(step_ty.inner.size(module.to_ctx()) as u64, gpu_cnn::gpu::shader::STEP_BYTES, "{}", s.file);
        }
    }
}

#[test]
fn a_broken_shader_fails_validation() {
    // The checker itself must be able to fail. A type error:
    let caps = kernels::shader_capabilities();
    let rejects = |src: &str| match naga::front::wgsl::parse_str(&kernels::wgsl_for_naga(src)) {
        Err(_) => true,
        Ok(m) => Validator::new(ValidationFlags::all(), caps).validate(&m).is_err(),
    };
    for s in shaders() {
        assert!(!rejects(s.source), "{} should validate", s.file);
        assert!(
            rejects(&format!("{}\nfn broken() -> u32 {{ return 1.5; }}\n", s.source)),
            "{}: type error accepted",
            s.file
        );
        // An output declared read-only is written by the kernel: rejected.
        let ro = s.source.replacen("var<storage, read_write>", "var<storage, read>", 1);
        assert!(rejects(&ro), "{}: write to a read-only binding accepted", s.file);
    }
}

#[test]
fn workgroup_memory_is_what_the_table_says() {
    // The limits check (`gpu::limits`) trusts the table's workgroup_bytes: it must be what the shader declares.
    for s in shaders() {
        let (module, _) = validate(s.file, s.source);
        let bytes: u32 = module
            .global_variables
            .iter()
            .filter(|(_, v)| v.space == AddressSpace::WorkGroup)
            .map(|(_, v)| module.types[v.ty].inner.size(module.to_ctx()))
            .sum();
        assert_eq!(bytes, s.workgroup_bytes, "{}: workgroup memory", s.file);
    }
}

#[test]
fn every_tiled_kernel_gets_the_tile_core() {
    // WGSL has no include: the tiled family's matrix-product core is one file, shaders/tile_core.wgsl, that the host
    // appends to each kernel that uses it; a kernel registered without it would not compile.
    let core = include_str!("../shaders/tile_core.wgsl");
    let users: Vec<_> = shaders().filter(|s| s.source.contains("tile_product(")).collect();
    assert!(users.len() >= 6, "tiled shaders: {}", users.len());
    for s in &users {
        assert_eq!(s.appended.last(), Some(&"tile_core.wgsl"), "{}", s.file);
        assert!(s.source.ends_with(core), "{}: the core comes last, so the file's line numbers stand", s.file);
        let own = &s.source[..s.source.len() - core.len()];
        assert!(!own.contains("var<workgroup> tile_mem"), "{}: a second copy of the core", s.file);
    }
    // The core alone is no kernel: a kernel that forgot it fails to compile.
    assert!(!core.contains("@compute"));
    let own = users[0].source.strip_suffix(core).expect("suffix").to_string() + include_str!("../shaders/step.wgsl");
    assert!(naga::front::wgsl::parse_str(&own).is_err(), "{} compiles without its core", users[0].file);
}

#[test]
fn subgroup_shaders_enable_subgroups_as_the_spec_requires() {
    // Tint (browsers) rejects subgroup built-ins without `enable subgroups;`; naga 30 rejects the directive itself,
    // so the host hands naga the file with the directive commented out (`kernels::wgsl_for_naga`).
    for s in shaders() {
        let uses = s.source.contains("subgroupShuffle") || s.source.contains("@builtin(subgroup_");
        let enables = s.source.lines().any(|l| l.trim() == "enable subgroups;");
        assert_eq!(uses, s.subgroups, "{}: subgroup flag in the table", s.file);
        assert_eq!(uses, enables, "{}: `enable subgroups;`", s.file);
        let for_naga = kernels::wgsl_for_naga(s.source);
        assert!(!for_naga.lines().any(|l| l.trim() == "enable subgroups;"), "{}", s.file);
        assert_eq!(for_naga.lines().count(), s.source.lines().count(), "{}: line numbers kept", s.file);
    }
}

/// The value of `const NAME: u32 = Vu;` in a shader.
fn shader_const(source: &str, name: &str) -> Option<u64> {
    let prefix = format!("const {name}: u32 = ");
    let line = source.lines().find(|l| l.starts_with(&prefix))?;
    line[prefix.len()..].split('u').next()?.trim().parse().ok()
}

#[test]
fn the_hosts_copies_of_shader_constants_agree() {
    use gpu_cnn::gpu::ops::{conv2d, dense, tiles};
    let src = |file: &str| shaders().find(|s| s.file == file).expect(file).source;
    // Each entry point's workgroup size is the table's (the host sizes dispatches by it).
    for s in shaders() {
        let (module, _) = validate(s.file, s.source);
        for ep in &module.entry_points {
            assert_eq!(ep.workgroup_size[0], s.workgroup, "{}: {} workgroup size", s.file, ep.name);
        }
    }
    // The simd family's tiling, which the host's sizing functions mirror.
    let checks: &[(&str, &str, u64)] = &[
        ("conv2d_forward.wgsl", "PX", conv2d::simd::PX as u64),
        ("conv2d_forward.wgsl", "CO_B", conv2d::simd::FORWARD_CO_B as u64),
        ("conv2d_forward.wgsl", "WG", conv2d::simd::WG as u64),
        ("conv2d_backward_input.wgsl", "PX", conv2d::simd::PX as u64),
        ("conv2d_backward_input.wgsl", "CI_B", conv2d::simd::CO_B as u64),
        ("conv2d_backward_weight.wgsl", "CO_B", conv2d::simd::CO_B as u64),
        ("conv2d_backward_weight.wgsl", "TERMS", conv2d::simd::TERMS as u64),
        ("conv2d_forward_subgroup.wgsl", "SG", conv2d::simd::SUBGROUP as u64),
        ("conv2d_backward_weight_subgroup.wgsl", "SG", conv2d::simd::SUBGROUP as u64),
        ("conv2d_backward_weight_subgroup.wgsl", "CI_B", conv2d::simd::SUBGROUP_CI_B as u64),
        ("dense_forward.wgsl", "T", dense::simd::T as u64),
        ("dense_forward.wgsl", "WG", dense::simd::WG as u64),
        ("dense_forward_subgroup.wgsl", "SG", dense::simd::SUBGROUP as u64),
        ("dense_forward_subgroup.wgsl", "TS", dense::simd::SUBGROUP_SAMPLES as u64),
        ("dense_forward_subgroup.wgsl", "TO", dense::simd::SUBGROUP_OUTPUTS as u64),
        ("conv2d_forward.wgsl", "WEIGHT_VEC4S", WEIGHT_WINDOW_BYTES / 16),
    ];
    for &(file, name, host) in checks {
        assert_eq!(shader_const(src(file), name), Some(host), "{file}: {name}");
    }
    // The tiled family's core: workgroup size and the tile arrays the host's tile choice must fit.
    let core = src("conv2d_forward_tiled.wgsl");
    assert_eq!(shader_const(core, "WG"), Some(tiles::WG as u64));
    assert_eq!(shader_const(core, "A_WORDS"), Some(tiles::A_WORDS as u64));
    assert_eq!(shader_const(core, "B_WORDS"), Some(tiles::B_WORDS as u64));
    assert!(core.contains(&format!("tile_mem: array<f32, {}>", tiles::TILE_WORDS)), "tile_mem words");
    assert_eq!(tiles::WORKGROUP_BYTES, 4 * tiles::TILE_WORDS as u32);
    // And the checker sees a change.
    assert_eq!(shader_const("const PX: u32 = 17u;", "PX"), Some(17));
}

#[test]
fn only_the_subgroup_shaders_need_the_subgroup_capability() {
    // Validating a plain kernel with subgroups allowed would let one slip a subgroup operation in.
    let none = naga::valid::Capabilities::empty();
    for s in shaders().filter(|s| !s.subgroups) {
        let module = naga::front::wgsl::parse_str(s.source).unwrap_or_else(|e| panic!("{}: {e}", s.file));
        Validator::new(ValidationFlags::all(), none)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: needs more than core WGSL: {}", s.file, e.emit_to_string(s.source)));
    }
    // The checker can fail: a subgroup shader is refused without the capability.
    let sub = shaders().find(|s| s.subgroups).expect("a subgroup shader");
    let module = naga::front::wgsl::parse_str(&kernels::wgsl_for_naga(sub.source)).expect("parses");
    assert!(Validator::new(ValidationFlags::all(), none).validate(&module).is_err(), "{}", sub.file);
}
