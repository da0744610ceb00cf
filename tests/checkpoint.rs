//! safetensors checkpoints: roundtrips, PyTorch's own file, every bad input, atomic saves, and fuzzed files.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use gpu_cnn::checkpoint::{self, check_finite, Checkpoint, CheckpointError, MAX_CHECKPOINT_BYTES};
use gpu_cnn::model::Arch;
use proptest::prelude::*;

/// Trained for 5 epochs by PyTorch (`benches/pytorch/torch_cnn.py --epochs 5 --save ...`, seed 0): test accuracy
/// 99.02 %, loss 0.0282 in PyTorch.
const PYTORCH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/torch_cnn_e5.safetensors");

fn study() -> Arch {
    Arch::study()
}

/// Parameters of the study's network.
const PARAM_COUNT: usize = 206_922;

/// Deterministic values that exercise the bit patterns: signs, -0.0, subnormals, extremes.
fn values(seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9e37_79b9) | 1;
    let mut v: Vec<f32> = (0..PARAM_COUNT)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32 - 0.5) * 0.2
        })
        .collect();
    v[..6].copy_from_slice(&[-0.0, f32::MIN_POSITIVE / 4.0, f32::MAX, f32::MIN, f32::EPSILON, -1e-30]);
    v
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn full_ckpt() -> Checkpoint {
    Checkpoint {
        arch: study(),
        params: values(1),
        metadata: BTreeMap::from([
            ("epoch".to_string(), "3".to_string()),
            ("lr".to_string(), "0.01".to_string()),
            ("writer".to_string(), "a test".to_string()),
            ("note".to_string(), "ünïcödé \"quoted\" {json}".to_string()),
        ]),
    }
}

fn err_msg(e: &CheckpointError) -> String {
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "messages are one line: {msg}");
    msg
}

/// A safetensors file built by hand: `(name, dtype, shape, data_offsets)` entries and a data blob.
fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

/// The model's tensors as a hand-built header, with `edit` applied to each `(name, dtype, shape)` (None drops it),
/// offsets laid out contiguously from the sizes (`elem` bytes per element for a dtype).
fn hand_built(edit: impl Fn(&str) -> Option<(String, &'static str, Vec<usize>)>) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut offset = 0usize;
    for t in study().tensors() {
        let Some((name, dtype, shape)) = edit(&t.name) else { continue };
        let elem = match dtype {
            "F64" | "I64" => 8,
            "F16" | "BF16" => 2,
            _ => 4,
        };
        let size = shape.iter().product::<usize>() * elem;
        entries.push(format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape:?},\"data_offsets\":[{offset},{}]}}",
            offset + size
        ));
        offset += size;
    }
    let header = format!("{{{}}}", entries.join(","));
    raw_file(&header, &vec![0u8; offset])
}

fn same(name: &str) -> Option<(String, &'static str, Vec<usize>)> {
    let arch = study();
    let t = arch.tensors().iter().find(|t| t.name == name).unwrap();
    Some((name.to_string(), "F32", t.shape.to_vec()))
}

fn load_bytes(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    fs::write(&path, bytes).unwrap();
    let r = checkpoint::load(&path, None);
    if let Err(e) = &r {
        let msg = err_msg(e);
        assert!(msg.contains("bad.safetensors"), "names the path: {msg}");
    }
    r
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn roundtrip_params_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.safetensors");
    let c = Checkpoint { params: values(7), ..Default::default() };
    checkpoint::save(&path, &c).unwrap();
    let d = checkpoint::load(&path, None).unwrap();
    assert_eq!(bits(&d.params), bits(&c.params));
    assert!(d.metadata.is_empty());
    assert_eq!(dir_entries(dir.path()), ["a.safetensors"], "no temp files left behind");
}

#[test]
fn roundtrip_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.safetensors");
    let c = full_ckpt();
    checkpoint::save(&path, &c).unwrap();
    let d = checkpoint::load(&path, None).unwrap();
    assert_eq!(bits(&d.params), bits(&c.params));
    assert_eq!(d.metadata, c.metadata);
    // Saving again over the existing file works and stays bit-identical.
    checkpoint::save(&path, &d).unwrap();
    assert_eq!(bits(&checkpoint::load(&path, None).unwrap().params), bits(&c.params));
    assert_eq!(dir_entries(dir.path()), ["b.safetensors"]);
}

#[test]
fn training_state_keeps_momentum_beside_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.safetensors");
    let c = full_ckpt();
    checkpoint::save_training(&path, &c, &values(2)).unwrap();
    assert_eq!(dir_entries(dir.path()), ["run.momentum.safetensors", "run.safetensors"]);
    // The weights file is a plain checkpoint (8 tensors: what PyTorch's strict load takes).
    assert_eq!(safetensors::SafeTensors::deserialize(&fs::read(&path).unwrap()).unwrap().len(), 8);
    let (d, m) = checkpoint::load_training(&path, None).unwrap();
    assert_eq!(bits(&d.params), bits(&c.params));
    assert_eq!(bits(&m.unwrap()), bits(&values(2)));
    assert_eq!(d.metadata, c.metadata);

    // A momentum file from another step (other metadata) is refused, naming it.
    let mut other = c.clone();
    other.metadata.insert("epoch".into(), "4".into());
    checkpoint::save(&path, &other).unwrap();
    let e = checkpoint::load_training(&path, None).unwrap_err();
    assert!(err_msg(&e).contains("run.momentum.safetensors") && err_msg(&e).contains("does not match"), "{e}");

    // Without the momentum file: the weights alone.
    fs::remove_file(checkpoint::momentum_path(&path)).unwrap();
    let (d, m) = checkpoint::load_training(&path, None).unwrap();
    assert!(m.is_none());
    assert_eq!(d.metadata, other.metadata);

    // Bad momentum is refused before either file is written.
    let before = fs::read(&path).unwrap();
    let mut inf = values(2);
    inf[PARAM_COUNT - 1] = f32::NEG_INFINITY;
    let e = checkpoint::save_training(&path, &c, &inf).unwrap_err();
    assert!(
        matches!(e, CheckpointError::NonFinite { what: "momentum", ref name, index: 9, .. } if name == "fc2.bias"),
        "{e:?}"
    );
    let e = checkpoint::save_training(&path, &c, &[]).unwrap_err();
    assert!(matches!(e, CheckpointError::WrongLength { what: "momentum", .. }), "{e:?}");
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(dir_entries(dir.path()), ["run.safetensors"]);
}

#[test]
fn saved_file_has_pytorch_names_shapes_and_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    checkpoint::save(&path, &full_ckpt()).unwrap();
    let bytes = fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), 8);
    for t in study().tensors() {
        let v = st.tensor(&t.name).unwrap();
        assert_eq!(v.dtype(), safetensors::Dtype::F32, "{}", t.name);
        assert_eq!(v.shape(), t.shape, "{}", t.name);
        let first = f32::from_le_bytes(v.data()[..4].try_into().unwrap());
        assert_eq!(first.to_bits(), values(1)[t.offset].to_bits(), "{} is little-endian, row-major", t.name);
    }
}

#[test]
fn loads_pytorch_checkpoint() {
    let c = checkpoint::load(Path::new(PYTORCH), None).unwrap();
    assert_eq!(c.params.len(), PARAM_COUNT);
    assert_eq!(c.metadata.get("format").map(String::as_str), Some("pt"));
    check_finite(&study(), &c.params).unwrap();
    for t in study().tensors() {
        let v = &c.params[t.range()];
        let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let mean_sq = v.iter().map(|x| (x * x) as f64).sum::<f64>() / v.len() as f64;
        // Trained for 5 epochs from a ±1/sqrt(fan_in) init: weights are small but not all zero.
        assert!(max > 1e-4 && max < 5.0, "{}: max |w| = {max}", t.name);
        assert!(mean_sq > 1e-10, "{}: all (near) zero", t.name);
    }
    // And it survives our save/load bit for bit; the copy is gpu-cnn's (its own `format`, and the network it holds).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copy.safetensors");
    checkpoint::save(&path, &c).unwrap();
    let d = checkpoint::load(&path, None).unwrap();
    assert_eq!(bits(&d.params), bits(&c.params));
    assert_eq!(d.arch, study());
    assert!(d.metadata.is_empty(), "{:?}", d.metadata);
}

/// The study's PyTorch anchor (../shared/anchors/pytorch, copied here): its metadata carries an `arch` key of its
/// own (`seed_cnn`), which is PyTorch's name, not a gpu-cnn description; the network comes from its tensors.
#[test]
fn a_pytorch_file_with_its_own_arch_key_loads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seed_cnn_pytorch_e5.safetensors");
    let c = checkpoint::load(Path::new(path), None).unwrap();
    assert_eq!(c.arch, study());
    assert_eq!(c.metadata.get("arch").map(String::as_str), Some("seed_cnn"));
    assert_eq!(c.metadata.get("format").map(String::as_str), Some("pt"));
    // Named, it is checked against the name: the tensors decide, not the metadata.
    assert_eq!(checkpoint::load(Path::new(path), Some(&study())).unwrap().arch, study());
    let e = checkpoint::load(Path::new(path), Some(&Arch::parse("tiny").unwrap())).unwrap_err();
    assert!(matches!(e, CheckpointError::WrongShape { .. }), "{e:?}");
}

/// `bytes` (a file gpu-cnn saved) with its metadata replaced by `meta`: a file as another writer makes it.
fn as_foreign(bytes: &[u8], meta: &str) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"] = serde_json::from_str(meta).unwrap();
    let mut h = serde_json::to_vec(&header).unwrap();
    h.resize(h.len().next_multiple_of(8), b' ');
    [&(h.len() as u64).to_le_bytes()[..], &h, &bytes[8 + n..]].concat()
}

#[test]
fn a_foreign_file_is_read_by_its_tensors_or_refused_asking_for_arch() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (dir.path().join("ours.safetensors"), dir.path().join("theirs.safetensors"));
    let save_foreign = |arch: &Arch, meta: &str| {
        let c = Checkpoint { arch: arch.clone(), params: vec![0.5; arch.param_count()], ..Default::default() };
        checkpoint::save(&ours, &c).unwrap();
        fs::write(&theirs, as_foreign(&fs::read(&ours).unwrap(), meta)).unwrap();
    };
    // One pool after conv1 is the one way fc1's 16×14×14 inputs come out: its own `arch` key is not gpu-cnn's.
    let pooled = Arch::parse("conv16-pool-fc10").unwrap();
    save_foreign(&pooled, r#"{"format": "pt", "arch": "conv16-fc10"}"#);
    assert_eq!(checkpoint::load(&theirs, None).unwrap().arch, pooled);
    // One pool after either convolution gives fc1 the same 8×14×14 inputs: which one cannot be told, so it asks.
    save_foreign(&Arch::parse("conv8-pool-conv8-fc10").unwrap(), r#"{"format": "pt"}"#);
    let e = checkpoint::load(&theirs, None).unwrap_err();
    assert!(matches!(e, CheckpointError::UnknownArch { .. }), "{e:?}");
    let msg = err_msg(&e);
    assert!(msg.contains("conv8-pool-conv8-fc10") && msg.contains("conv8-conv8-pool-fc10") && msg.contains("--arch"));
    // Named, it loads.
    let named = Arch::parse("conv8-conv8-pool-fc10").unwrap();
    assert_eq!(checkpoint::load(&theirs, Some(&named)).unwrap().arch, named);
    // Trained on 3×32×32 images, its fc1 reads 16×16×16 values, which no network on 28×28 images gives: it is held
    // against the study's network, and what differs named.
    save_foreign(&Arch::parse("3x32x32:conv16-pool-fc10").unwrap(), r#"{"format": "pt"}"#);
    let e = checkpoint::load(&theirs, None).unwrap_err();
    assert!(err_msg(&e).contains("lacks tensor(s) conv2.weight"), "{e}");
    let named = Arch::parse("3x32x32:conv16-pool-fc10").unwrap();
    assert_eq!(checkpoint::load(&theirs, Some(&named)).unwrap().arch, named);
}

#[test]
fn non_finite_values_in_a_file_are_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.safetensors");
    checkpoint::save(&path, &full_ckpt()).unwrap();
    // Poke a NaN into fc1.weight's element 5 of the saved bytes (save itself refuses NaN).
    let mut bytes = fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let start = st.tensor("fc1.weight").unwrap().data().as_ptr() as usize - bytes.as_ptr() as usize;
    drop(st);
    bytes[start + 20..start + 24].copy_from_slice(&f32::NAN.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    let e = checkpoint::load(&path, None).unwrap_err();
    let msg = err_msg(&e);
    assert!(matches!(e, CheckpointError::NotFinite { index: 5, .. }), "{e:?}");
    assert!(msg.contains("fc1.weight") && msg.contains("element 5") && msg.contains("nan.safetensors"), "{msg}");
}

#[test]
fn hand_built_valid_file_loads() {
    assert!(load_bytes(&hand_built(same)).is_ok());
}

#[test]
fn wrong_name() {
    let bytes = hand_built(|n| if n == "fc1.bias" { Some(("fc1.biases".into(), "F32", vec![128])) } else { same(n) });
    let e = load_bytes(&bytes).unwrap_err();
    assert!(matches!(e, CheckpointError::UnexpectedTensors { ref names, .. } if names == &["fc1.biases"]), "{e:?}");
    assert!(err_msg(&e).contains("fc1.biases"));
}

#[test]
fn missing_tensors_listed() {
    let bytes = hand_built(|n| if n == "conv2.bias" || n == "fc2.weight" { None } else { same(n) });
    let e = load_bytes(&bytes).unwrap_err();
    assert!(matches!(e, CheckpointError::MissingTensors { .. }), "{e:?}");
    let msg = err_msg(&e);
    assert!(msg.contains("conv2.bias, fc2.weight"), "{msg}");
}

#[test]
fn extra_tensors_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&path, &full_ckpt()).unwrap();
    let bytes = fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();

    // Momentum inside the weights file (the momentum lives beside it), and an unrelated extra tensor.
    for extra in ["momentum.fc1.weight", "optimizer.step"] {
        let mut all = st.tensors();
        let (_, v) = all[0].clone();
        all.push((extra.to_string(), v));
        let e = load_bytes(&safetensors::serialize(all, None).unwrap()).unwrap_err();
        assert!(matches!(e, CheckpointError::UnexpectedTensors { .. }), "{e:?}");
        assert!(err_msg(&e).contains(extra));
    }
}

#[test]
fn wrong_shape() {
    let bytes = hand_built(|n| if n == "fc1.weight" { Some((n.into(), "F32", vec![1568, 128])) } else { same(n) });
    let e = load_bytes(&bytes).unwrap_err();
    assert!(matches!(e, CheckpointError::WrongShape { .. }), "{e:?}");
    let msg = err_msg(&e);
    assert!(msg.contains("fc1.weight") && msg.contains("[1568, 128]") && msg.contains("[128, 1568]"), "{msg}");

    // Same element count, different rank.
    let bytes = hand_built(|n| if n == "conv1.weight" { Some((n.into(), "F32", vec![16, 9])) } else { same(n) });
    assert!(matches!(load_bytes(&bytes), Err(CheckpointError::WrongShape { .. })));
}

#[test]
fn wrong_dtype() {
    for dtype in ["F64", "F16", "BF16", "I32"] {
        let bytes = hand_built(|n| if n == "conv1.bias" { Some((n.into(), dtype, vec![16])) } else { same(n) });
        let e = load_bytes(&bytes).unwrap_err();
        assert!(matches!(e, CheckpointError::WrongDtype { .. }), "{dtype}: {e:?}");
        let msg = err_msg(&e);
        assert!(msg.contains(dtype) && msg.contains("F32") && msg.contains("conv1.bias"), "{msg}");
    }
}

#[test]
fn truncated_at_many_lengths() {
    let good = hand_built(same);
    let header_end = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    for len in [0, 1, 7, 8, 9, 100, header_end - 1, header_end, header_end + 1, header_end + 1000, good.len() - 1] {
        let e = load_bytes(&good[..len]).unwrap_err();
        assert!(matches!(e, CheckpointError::Truncated { .. }), "len {len}: {e:?}");
        assert!(err_msg(&e).contains("truncated"), "{e}");
    }
}

#[test]
fn trailing_bytes() {
    let mut bytes = hand_built(same);
    bytes.extend_from_slice(&[0; 12]);
    let e = load_bytes(&bytes).unwrap_err();
    assert!(matches!(e, CheckpointError::Format { .. }), "{e:?}");
    assert!(err_msg(&e).contains("trailing"), "{e}");
}

#[test]
fn absurd_header_length() {
    for n in [u64::MAX, u64::MAX / 2, 1 << 40, 200_000_000] {
        let mut bytes = n.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        let e = load_bytes(&bytes).unwrap_err();
        assert!(matches!(e, CheckpointError::Truncated { .. }), "{e:?}");
        assert!(err_msg(&e).contains(&n.to_string()), "{e}");
    }
}

#[test]
fn offsets_past_the_end_or_inconsistent() {
    // One tensor claiming data far past the end of the file.
    let header = r#"{"conv1.bias":{"dtype":"F32","shape":[16],"data_offsets":[0,64000000000]}}"#;
    let e = load_bytes(&raw_file(header, &[0; 64])).unwrap_err();
    assert!(matches!(e, CheckpointError::Format { .. } | CheckpointError::Truncated { .. }), "{e:?}");

    // Shape says 16 floats (64 bytes), offsets past the end by a little.
    let header = r#"{"conv1.bias":{"dtype":"F32","shape":[16],"data_offsets":[0,64]}}"#;
    let e = load_bytes(&raw_file(header, &[0; 32])).unwrap_err();
    assert!(matches!(e, CheckpointError::Truncated { .. }), "{e:?}");
    assert!(err_msg(&e).contains("64 bytes") && err_msg(&e).contains("32"), "{e}");

    // Overlapping offsets, a gap, an overflowing shape, offsets in reverse.
    for header in [
        r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
        r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
        r#"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,24]}}"#,
        r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[24,8]}}"#,
        r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,-1]}}"#,
        r#"{"a":{"dtype":"F99","shape":[4],"data_offsets":[0,24]}}"#,
        r#"{"a":"#,
        "\u{feff}not json",
    ] {
        let e = load_bytes(&raw_file(header, &[0; 24])).unwrap_err();
        assert!(matches!(e, CheckpointError::Format { .. }), "{header}: {e:?}");
        assert!(err_msg(&e).contains("not a valid safetensors file"), "{e}");
    }

    // Not UTF-8.
    let mut bytes = 2u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    let e = load_bytes(&bytes).unwrap_err();
    assert!(matches!(e, CheckpointError::Format { .. }), "{e:?}");
    assert!(err_msg(&e).contains("UTF-8"), "{e}");
}

#[test]
fn directory_missing_and_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let e = checkpoint::load(dir.path(), None).unwrap_err();
    assert!(matches!(e, CheckpointError::IsDirectory { .. }), "{e:?}");
    assert!(err_msg(&e).contains("is a directory"));

    let missing = dir.path().join("nope.safetensors");
    let e = checkpoint::load(&missing, None).unwrap_err();
    assert!(matches!(e, CheckpointError::Missing { .. }), "{e:?}");
    assert!(err_msg(&e).contains("nope.safetensors") && err_msg(&e).contains("does not exist"));

    // A sparse file just over the limit: refused by size before it is read.
    let big = dir.path().join("big.safetensors");
    fs::File::create(&big).unwrap().set_len(MAX_CHECKPOINT_BYTES + 1).unwrap();
    let e = checkpoint::load(&big, None).unwrap_err();
    assert!(matches!(e, CheckpointError::TooLarge { .. }), "{e:?}");
    assert!(err_msg(&e).contains("limit"));
}

#[test]
fn failed_save_leaves_old_checkpoint_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.safetensors");
    let good = full_ckpt();
    checkpoint::save(&path, &good).unwrap();
    let before = fs::read(&path).unwrap();

    let mut nan = good.clone();
    nan.params[study().tensors()[2].offset + 5] = f32::NAN;
    let e = checkpoint::save(&path, &nan).unwrap_err();
    assert!(matches!(e, CheckpointError::NonFinite { index: 5, ref name, .. } if name == "conv2.weight"), "{e:?}");
    let msg = err_msg(&e);
    assert!(msg.contains("NaN") && msg.contains("good.safetensors") && msg.contains("conv2.weight"), "{msg}");

    let mut inf = good.clone();
    inf.params[PARAM_COUNT - 1] = f32::NEG_INFINITY;
    let e = checkpoint::save(&path, &inf).unwrap_err();
    assert!(matches!(e, CheckpointError::NonFinite { ref name, index: 9, .. } if name == "fc2.bias"), "{e:?}");

    let short = Checkpoint { params: vec![0.0; 10], ..Default::default() };
    let e = checkpoint::save(&path, &short).unwrap_err();
    assert!(matches!(e, CheckpointError::WrongLength { got: 10, .. }), "{e:?}");

    assert_eq!(fs::read(&path).unwrap(), before, "old checkpoint untouched");
    assert_eq!(bits(&checkpoint::load(&path, None).unwrap().params), bits(&good.params));
    assert_eq!(dir_entries(dir.path()), ["good.safetensors"], "no temp files left behind");
}

#[test]
fn save_into_bad_places() {
    let dir = tempfile::tempdir().unwrap();
    let c = Checkpoint { params: values(4), ..Default::default() };
    // Over a directory.
    let e = checkpoint::save(dir.path(), &c).unwrap_err();
    assert!(matches!(e, CheckpointError::IsDirectory { .. }), "{e:?}");
    // Into a directory that does not exist.
    let e = checkpoint::save(&dir.path().join("no/such/dir/x.safetensors"), &c).unwrap_err();
    assert!(matches!(e, CheckpointError::Io { .. }), "{e:?}");
    assert!(err_msg(&e).contains("no/such/dir"), "{e}");
    assert!(dir_entries(dir.path()).is_empty());
}

#[test]
fn check_finite_accepts_finite_and_rejects_nan() {
    assert!(check_finite(&study(), &values(9)).is_ok());
    let mut v = values(9);
    v[study().tensors()[7].offset] = f32::INFINITY;
    let e = check_finite(&study(), &v).unwrap_err();
    assert!(matches!(e, CheckpointError::NonFinite { ref name, index: 0, .. } if name == "fc2.bias"), "{e:?}");
    assert!(err_msg(&e).contains("inf"));
}

fn valid_bytes() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path: PathBuf = dir.path().join("v.safetensors");
        checkpoint::save(&path, &full_ckpt()).unwrap();
        fs::read(&path).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    // Byte edits (mostly in the header, where parsing happens) and truncations never panic `load`; whatever loads has
    // the right sizes.
    #[test]
    fn mutated_checkpoints_never_panic(
        edits in proptest::collection::vec((0usize..2048, any::<u8>(), any::<bool>()), 0..8),
        cut in prop_oneof![Just(None), (0usize..usize::MAX).prop_map(Some)],
    ) {
        let mut bytes = valid_bytes().to_vec();
        for (pos, val, anywhere) in edits {
            let at = if anywhere { pos * 811 % bytes.len() } else { pos % 2048.min(bytes.len()) };
            bytes[at] = val;
        }
        if let Some(c) = cut {
            bytes.truncate(c % (bytes.len() + 1));
        }
        if let Ok(c) = load_bytes(&bytes) {
            prop_assert_eq!(c.params.len(), PARAM_COUNT);
        }
    }
}
