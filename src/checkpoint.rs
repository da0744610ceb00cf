//! safetensors checkpoints with PyTorch's names and shapes (`conv1.weight` [16,1,3,3] … `fc2.bias` [10], all F32
//! little-endian), readable by `safetensors.torch.load_file`.
//!
//! A checkpoint holds the model's tensors and nothing else, so PyTorch's `load_state_dict(strict=True)` takes it; a
//! training state keeps its SGD momentum in a second file beside it (`momentum_path`: the same names and shapes).
//! Free-form metadata (epoch, seed, learning rate, …) goes in the safetensors `__metadata__` map. Saving is atomic (temp file, fsync, rename) and refuses
//! non-finite values, so a diverged run never overwrites a good checkpoint. Loading checks every name, shape and dtype
//! and rejects anything else, with a message naming the file and the problem.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensorError, TensorView};
use safetensors::SafeTensors;

use crate::model::{Arch, ImageShape, Layer, Normalization, ParamTensor, Pool};

/// Largest file `load` reads: a valid checkpoint is about 830 KB.
pub const MAX_CHECKPOINT_BYTES: u64 = 64 << 20;

/// Metadata key of the architecture (`Arch::describe`), read only from gpu-cnn's own files (`FORMAT_KEY`).
pub const ARCH_KEY: &str = "arch";
/// Metadata key and value that mark a file as gpu-cnn's: only then is its `ARCH_KEY` gpu-cnn's description (other
/// writers use the key for their own names: PyTorch's anchor says `arch: seed_cnn`). Other files' networks are read
/// from their tensors' names and shapes.
pub const FORMAT_KEY: &str = "format";
pub const FORMAT: &str = "gpu-cnn";

/// Metadata keys of the input normalization the weights were trained with (`Checkpoint::normalization`).
pub const MEAN_KEY: &str = "input_mean";
pub const STD_KEY: &str = "input_std";

/// A model's parameters in the flat layout of its architecture, and metadata.
#[derive(Clone, Debug, Default)]
pub struct Checkpoint {
    /// The network (saved in the metadata under `ARCH_KEY`).
    pub arch: Arch,
    /// `arch.param_count()` values in `arch.tensors()` order.
    pub params: Vec<f32>,
    /// Stored in the safetensors `__metadata__` map (e.g. epoch, step, seed, lr, momentum, format).
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    /// The input normalization the weights were trained with, where the file says (PyTorch's and older files do not);
    /// a value that is no number (or a std ≤ 0) is an error naming the key.
    pub fn normalization(&self, path: &Path) -> Result<Option<Normalization>, CheckpointError> {
        let value = |key: &str| -> Result<Option<f32>, CheckpointError> {
            let Some(s) = self.metadata.get(key) else { return Ok(None) };
            match s.parse::<f32>() {
                Ok(v) if v.is_finite() && (key != STD_KEY || v > 0.0) => Ok(Some(v)),
                _ => Err(CheckpointError::Format {
                    path: path.to_path_buf(),
                    reason: format!("its `{key}` metadata `{s}` is not a valid number"),
                }),
            }
        };
        Ok(match (value(MEAN_KEY)?, value(STD_KEY)?) {
            (Some(mean), Some(std)) => Some(Normalization { mean, std }),
            _ => None,
        })
    }

    /// Records the input normalization the weights were trained with.
    pub fn set_normalization(&mut self, norm: Normalization) {
        self.metadata.insert(MEAN_KEY.into(), norm.mean.to_string());
        self.metadata.insert(STD_KEY.into(), norm.std.to_string());
    }
}

/// Everything that can go wrong saving or loading a checkpoint. Each message names the file and the problem.
#[derive(thiserror::Error, Debug)]
pub enum CheckpointError {
    #[error("checkpoint {} does not exist", .path.display())]
    Missing { path: PathBuf },
    #[error("checkpoint {} is a directory, expected a .safetensors file", .path.display())]
    IsDirectory { path: PathBuf },
    #[error("checkpoint {} is {size} bytes, over the {limit}-byte limit (a valid one is about 830 KB); not a checkpoint of this model", .path.display())]
    TooLarge { path: PathBuf, size: u64, limit: u64 },
    #[error("checkpoint {} is truncated: {reason}", .path.display())]
    Truncated { path: PathBuf, reason: String },
    #[error("checkpoint {} is not a valid safetensors file: {reason}", .path.display())]
    Format { path: PathBuf, reason: String },
    #[error("checkpoint {} lacks tensor(s) {}{hint}", .path.display(), .names.join(", "))]
    MissingTensors { path: PathBuf, names: Vec<String>, hint: &'static str },
    #[error("checkpoint {} has unexpected tensor(s) {} (only the model's tensors are allowed; gpu-cnn keeps the SGD momentum in a separate `.momentum.safetensors` file){hint}", .path.display(), .names.join(", "))]
    UnexpectedTensors { path: PathBuf, names: Vec<String>, hint: &'static str },
    #[error("checkpoint {}: tensor `{name}` has shape {found:?}, expected {expected:?}{hint}", .path.display())]
    WrongShape { path: PathBuf, name: String, expected: Vec<usize>, found: Vec<usize>, hint: &'static str },
    #[error("checkpoint {}: tensor `{name}` has dtype {found}, expected F32 (convert with `.float()` before saving)", .path.display())]
    WrongDtype { path: PathBuf, name: String, found: String },
    #[error("{what}: {got} values, expected {expected}{}", not_saving(.path, ""))]
    WrongLength { path: Option<PathBuf>, what: &'static str, expected: usize, got: usize },
    #[error("non-finite value {value} in {what} `{name}` at element {index}{}", not_saving(.path, " (training diverged?); the previous file is untouched"))]
    NonFinite { path: Option<PathBuf>, what: &'static str, name: String, index: usize, value: f32 },
    #[error("checkpoint {} does not say its network, and its tensors do not tell it: {reason}; give it with --arch", .path.display())]
    UnknownArch { path: PathBuf, reason: String },
    #[error("checkpoint {} holds the network {found}, not {expected} (give --arch {found}, or another checkpoint)", .path.display())]
    ArchMismatch { path: PathBuf, found: String, expected: String },
    #[error("checkpoint {}: non-finite value {value} in tensor `{name}` at element {index}; refusing to use it", .path.display())]
    NotFinite { path: PathBuf, name: String, index: usize, value: f32 },
    #[error("I/O error {op} {}: {source}", .path.display())]
    Io { path: PathBuf, op: &'static str, source: io::Error },
}

fn not_saving(path: &Option<PathBuf>, why: &str) -> String {
    path.as_ref().map_or(String::new(), |p| format!("; not saving {}{why}", p.display()))
}

/// Ok if every value is finite; otherwise names the first NaN/inf by tensor (of `arch`) and element.
pub fn check_finite(arch: &Arch, params: &[f32]) -> Result<(), CheckpointError> {
    check_finite_as(arch, params, "parameters", None)
}

fn check_finite_as(
    arch: &Arch,
    values: &[f32],
    what: &'static str,
    path: Option<&Path>,
) -> Result<(), CheckpointError> {
    let Some(pos) = values.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    let (name, index) = arch
        .tensors()
        .iter()
        .find(|t| t.range().contains(&pos))
        .map_or(("<beyond the model's parameters>".to_string(), pos), |t| (t.name.clone(), pos - t.offset));
    Err(CheckpointError::NonFinite { path: path.map(Path::to_path_buf), what, name, index, value: values[pos] })
}

fn check_len(arch: &Arch, values: &[f32], what: &'static str, path: &Path) -> Result<(), CheckpointError> {
    if values.len() != arch.param_count() {
        return Err(CheckpointError::WrongLength {
            path: Some(path.to_path_buf()),
            what,
            expected: arch.param_count(),
            got: values.len(),
        });
    }
    Ok(())
}

/// Write `ckpt` to `path` atomically: a temp file in the same directory, fsync, rename over `path`, fsync the directory.
/// Refuses non-finite parameters and wrong lengths before touching the file system.
pub fn save(path: &Path, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
    check_len(&ckpt.arch, &ckpt.params, "parameters", path)?;
    check_finite_as(&ckpt.arch, &ckpt.params, "parameters", Some(path))?;
    if fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(CheckpointError::IsDirectory { path: path.to_path_buf() });
    }
    let bytes =
        serialize(ckpt).map_err(|e| CheckpointError::Format { path: path.to_path_buf(), reason: e.to_string() })?;
    write_atomic(path, &bytes)
}

/// Little-endian bytes of each tensor, under PyTorch's names, plus metadata (with the architecture).
fn serialize(ckpt: &Checkpoint) -> Result<Vec<u8>, SafeTensorError> {
    let owned: Vec<(&ParamTensor, Vec<u8>)> = ckpt
        .arch
        .tensors()
        .iter()
        .map(|t| (t, ckpt.params[t.range()].iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views = owned
        .iter()
        .map(|(t, bytes)| Ok((t.name.as_str(), TensorView::new(Dtype::F32, t.shape.to_vec(), bytes)?)))
        .collect::<Result<Vec<_>, SafeTensorError>>()?;
    let mut metadata: HashMap<String, String> = ckpt.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    metadata.insert(ARCH_KEY.into(), ckpt.arch.describe());
    metadata.insert(FORMAT_KEY.into(), FORMAT.into());
    safetensors::serialize(views, Some(metadata))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    crate::atomic::write_atomic(path, bytes).map_err(|e| CheckpointError::Io {
        path: e.path,
        op: e.op,
        source: e.source,
    })
}

/// Where a training checkpoint keeps its optimizer state: beside the weights, `model.safetensors` →
/// `model.momentum.safetensors` (the same eight names and shapes). The weights file itself stays exactly what PyTorch's
/// `load_state_dict(strict=True)` accepts.
pub fn momentum_path(path: &Path) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!("{stem}.momentum.safetensors"))
}

/// Saves a training state as two atomic files: `momentum` beside the weights (`momentum_path`), then the weights at
/// `path`, both with the same metadata. Both are checked (lengths, finite values) before either is written, so a
/// diverged run never replaces a good checkpoint.
pub fn save_training(path: &Path, ckpt: &Checkpoint, momentum: &[f32]) -> Result<(), CheckpointError> {
    let arch = &ckpt.arch;
    check_len(arch, &ckpt.params, "parameters", path)?;
    check_finite_as(arch, &ckpt.params, "parameters", Some(path))?;
    check_len(arch, momentum, "momentum", path)?;
    check_finite_as(arch, momentum, "momentum", Some(path))?;
    let opt = Checkpoint { arch: arch.clone(), params: momentum.to_vec(), metadata: ckpt.metadata.clone() };
    save(&momentum_path(path), &opt)?;
    save(path, ckpt)
}

/// Loads a training state written by `save_training`: the weights, and the momentum from `momentum_path` if that file
/// exists (its metadata must match the weights', or it belongs to another run or step).
pub fn load_training(path: &Path, arch: Option<&Arch>) -> Result<(Checkpoint, Option<Vec<f32>>), CheckpointError> {
    let ckpt = load(path, arch)?;
    let mpath = momentum_path(path);
    if !mpath.exists() {
        return Ok((ckpt, None));
    }
    let opt = load(&mpath, Some(&ckpt.arch))?;
    if opt.metadata != ckpt.metadata {
        return Err(CheckpointError::Format {
            path: mpath,
            reason: format!("its metadata does not match {} (saved by a different run or step)", path.display()),
        });
    }
    Ok((ckpt, Some(opt.params)))
}

/// Read and check a checkpoint: the tensors of its architecture with PyTorch's shapes, F32, finite, and nothing else.
/// The architecture is the file's own: its `arch` metadata in gpu-cnn's files, else what its tensors say
/// (`arch_from_tensors`); it must be `arch` if that is given (for another writer's file, `arch` is taken as given and
/// the tensors are checked against it).
pub fn load(path: &Path, arch: Option<&Arch>) -> Result<Checkpoint, CheckpointError> {
    let p = || path.to_path_buf();
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(CheckpointError::Missing { path: p() }),
        Err(source) => return Err(CheckpointError::Io { path: p(), op: "reading", source }),
    };
    if meta.is_dir() {
        return Err(CheckpointError::IsDirectory { path: p() });
    }
    if meta.len() > MAX_CHECKPOINT_BYTES {
        return Err(CheckpointError::TooLarge { path: p(), size: meta.len(), limit: MAX_CHECKPOINT_BYTES });
    }
    let bytes = fs::read(path).map_err(|source| CheckpointError::Io { path: p(), op: "reading", source })?;
    if bytes.len() as u64 > MAX_CHECKPOINT_BYTES {
        return Err(CheckpointError::TooLarge { path: p(), size: bytes.len() as u64, limit: MAX_CHECKPOINT_BYTES });
    }
    decode(&bytes, path, arch)
}

fn decode(bytes: &[u8], path: &Path, want: Option<&Arch>) -> Result<Checkpoint, CheckpointError> {
    let p = || path.to_path_buf();
    let Some(len_bytes) = bytes.get(..8) else {
        let reason = format!("{} bytes, shorter than the 8-byte header length", bytes.len());
        return Err(CheckpointError::Truncated { path: p(), reason });
    };
    let mut n = [0u8; 8];
    n.copy_from_slice(len_bytes);
    let header_len = u64::from_le_bytes(n);
    let available = bytes.len() as u64 - 8;
    if header_len > available {
        let reason = format!(
            "the header length field says {header_len} bytes but only {available} bytes follow (truncated, or not a safetensors file)"
        );
        return Err(CheckpointError::Truncated { path: p(), reason });
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| map_safetensors_error(e, bytes, header_len, path))?;
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| map_safetensors_error(e, bytes, header_len, path))?;
    let mut metadata: BTreeMap<String, String> =
        header.metadata().as_ref().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
    let ours = metadata.get(FORMAT_KEY).is_some_and(|f| f == FORMAT);
    let mut hint = "";
    let arch = match (ours.then(|| metadata.remove(ARCH_KEY)).flatten(), want) {
        (Some(text), _) => Arch::parse(&text)
            .map_err(|e| CheckpointError::Format { path: p(), reason: format!("its `{ARCH_KEY}` metadata: {e}") })?,
        (None, Some(want)) => want.clone(),
        (None, None) => match arch_from_tensors(&st) {
            Ok(arch) => arch,
            // Tensors that fit no network: the study's, whose checks below name what differs.
            Err(NoFit::None) => {
                hint = HELD_AGAINST_STUDY;
                Arch::study()
            }
            Err(NoFit::Several(reason)) => return Err(CheckpointError::UnknownArch { path: p(), reason }),
        },
    };
    if ours {
        metadata.remove(FORMAT_KEY);
    }
    if let Some(want) = want.filter(|w| **w != arch) {
        return Err(CheckpointError::ArchMismatch { path: p(), found: arch.describe(), expected: want.describe() });
    }

    // Names: the architecture's tensors, nothing else.
    let mut names: Vec<&str> = st.names();
    names.sort_unstable();
    let expected = |name: &str| arch.tensors().iter().any(|t| t.name == name);
    let unexpected: Vec<String> = names.iter().filter(|n| !expected(n)).map(|n| n.to_string()).collect();
    if !unexpected.is_empty() {
        return Err(CheckpointError::UnexpectedTensors { path: p(), names: unexpected, hint });
    }
    let missing: Vec<String> = arch
        .tensors()
        .iter()
        .filter(|t| names.binary_search(&t.name.as_str()).is_err())
        .map(|t| t.name.clone())
        .collect();
    if !missing.is_empty() {
        return Err(CheckpointError::MissingTensors { path: p(), names: missing, hint });
    }

    let mut params = vec![0.0f32; arch.param_count()];
    for t in arch.tensors() {
        let name = t.name.to_string();
        let view = st.tensor(&name).map_err(|e| CheckpointError::Format { path: p(), reason: e.to_string() })?;
        if view.dtype() != Dtype::F32 {
            return Err(CheckpointError::WrongDtype { path: p(), name, found: view.dtype().to_string() });
        }
        if view.shape() != t.shape {
            let found = view.shape().to_vec();
            return Err(CheckpointError::WrongShape { path: p(), name, expected: t.shape.to_vec(), found, hint });
        }
        // Shape and dtype match, and safetensors checked the byte length against them.
        for (dst, src) in params[t.range()].iter_mut().zip(view.data().chunks_exact(4)) {
            *dst = f32::from_le_bytes([src[0], src[1], src[2], src[3]]);
        }
    }
    check_finite_as(&arch, &params, "checkpoint tensor", Some(path)).map_err(|e| match e {
        CheckpointError::NonFinite { name, index, value, .. } => {
            CheckpointError::NotFinite { path: p(), name, index, value }
        }
        other => other,
    })?;
    Ok(Checkpoint { arch, params, metadata })
}

/// What a name or shape error adds where the file did not say its network and its tensors fit none gpu-cnn can tell.
const HELD_AGAINST_STUDY: &str =
    " (the file does not say its network and its tensors fit none without it: held against the study's; give its network with --arch)";

/// Why `arch_from_tensors` found no one network.
pub enum NoFit {
    /// None fits: the tensors are not a network this engine runs on 28×28 images (or some are missing).
    None,
    /// Several fit, listed.
    Several(String),
}

/// The network a file from another writer (PyTorch) holds, from its tensors: `convN.weight` [cout, cin, k, k] and
/// `fcN.weight` [out, in], on MNIST's 28×28 images, each convolution padded by k/2 and followed by a 2×2 max-pool or
/// not, whichever one way makes every tensor's shape come out right. (Average pools and other paddings leave no trace
/// in the tensors: such a file is read with `--arch`.)
pub fn arch_from_tensors(st: &SafeTensors) -> Result<Arch, NoFit> {
    let shape = |name: &str| st.tensor(name).ok().map(|t| t.shape().to_vec());
    let convs: Vec<Vec<usize>> = (1..).map_while(|i| shape(&format!("conv{i}.weight"))).collect();
    let denses: Vec<Vec<usize>> = (1..).map_while(|i| shape(&format!("fc{i}.weight"))).collect();
    if denses.is_empty() || convs.iter().any(|c| c.len() != 4 || c[2] != c[3]) || denses.iter().any(|d| d.len() != 2) {
        return Err(NoFit::None);
    }
    let input = match (convs.first(), denses.first()) {
        (Some(c), _) => ImageShape { channels: c[1], ..ImageShape::MNIST },
        (None, Some(d)) if d[1] % 784 == 0 => ImageShape { channels: d[1] / 784, ..ImageShape::MNIST },
        _ => return Err(NoFit::None),
    };
    let fits: Vec<Arch> = (0..1usize << convs.len())
        .filter_map(|pools| {
            let mut layers = Vec::new();
            for (i, c) in convs.iter().enumerate() {
                layers.push(Layer::Conv { out: c[0], k: c[2], pad: c[2] / 2 });
                if pools >> i & 1 == 1 {
                    layers.push(Layer::Pool(Pool::Max));
                }
            }
            layers.extend(denses.iter().map(|d| Layer::Dense(d[0])));
            Arch::new(input, layers).ok()
        })
        .filter(|a| a.tensors().iter().all(|t| shape(&t.name).as_ref() == Some(&t.shape)))
        .collect();
    match &fits[..] {
        [one] => Ok(one.clone()),
        [] => Err(NoFit::None),
        several => Err(NoFit::Several(format!(
            "they fit {} networks ({})",
            several.len(),
            several.iter().map(|a| a.describe()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Turn safetensors' parse errors into messages a user can act on.
fn map_safetensors_error(e: SafeTensorError, bytes: &[u8], header_len: u64, path: &Path) -> CheckpointError {
    let path = path.to_path_buf();
    let format = |reason: String| CheckpointError::Format { path: path.clone(), reason };
    match e {
        SafeTensorError::MetadataIncompleteBuffer => {
            let available = (bytes.len() as u64).saturating_sub(8 + header_len);
            match declared_data_len(bytes, header_len) {
                Some(claimed) if claimed > available => CheckpointError::Truncated {
                    path,
                    reason: format!(
                        "the header describes {claimed} bytes of tensor data, but only {available} follow it"
                    ),
                },
                Some(claimed) => format(format!(
                    "the header describes {claimed} bytes of tensor data, but {available} follow it (trailing bytes)"
                )),
                None => format("tensor data does not exactly fill the file".to_string()),
            }
        }
        SafeTensorError::HeaderTooLarge => {
            format(format!("header length {header_len} is over safetensors' 100 MB limit"))
        }
        SafeTensorError::HeaderTooSmall | SafeTensorError::InvalidHeaderLength => {
            format(format!("header length {header_len} does not fit the file"))
        }
        SafeTensorError::InvalidHeader(err) => format(format!("header is not UTF-8: {err}")),
        SafeTensorError::InvalidHeaderStart
        | SafeTensorError::InvalidHeaderDeserialization(_)
        | SafeTensorError::JsonError(_) => format(format!("header is not valid safetensors JSON: {e}")),
        SafeTensorError::InvalidOffset(name) => {
            format(format!("data offsets of tensor `{name}` are invalid (overlapping, out of order or leaving gaps)"))
        }
        SafeTensorError::TensorInvalidInfo | SafeTensorError::ValidationOverflow | SafeTensorError::MisalignedSlice => {
            format(format!("a tensor's shape and dtype do not match its data offsets ({e})"))
        }
        other => format(other.to_string()),
    }
}

/// Largest end offset any tensor in the (already length-checked) header declares, if the header is readable.
fn declared_data_len(bytes: &[u8], header_len: u64) -> Option<u64> {
    let header = bytes.get(8..8usize.checked_add(usize::try_from(header_len).ok()?)?)?;
    let value: serde_json::Value = serde_json::from_slice(header).ok()?;
    value
        .as_object()?
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .filter_map(|(_, info)| info.get("data_offsets")?.get(1)?.as_u64())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialize_then_decode_roundtrips() {
        let arch = Arch::parse("tiny").unwrap();
        let params: Vec<f32> = (0..arch.param_count()).map(|i| (i as f32 * 0.37).sin()).collect();
        let c = Checkpoint { arch: arch.clone(), params, metadata: BTreeMap::from([("epoch".into(), "3".into())]) };
        let bytes = serialize(&c).unwrap();
        let d = decode(&bytes, Path::new("mem"), None).unwrap();
        assert_eq!(d.arch, arch, "the architecture comes from the file");
        assert_eq!(
            d.params.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            c.params.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(d.metadata, c.metadata);
    }

    #[test]
    fn check_finite_names_tensor_and_element() {
        let arch = Arch::study();
        let mut p = vec![0.0f32; arch.param_count()];
        assert!(check_finite(&arch, &p).is_ok());
        p[arch.tensors()[4].offset + 7] = f32::NAN;
        let msg = check_finite(&arch, &p).unwrap_err().to_string();
        assert!(msg.contains("fc1.weight") && msg.contains("element 7") && msg.contains("NaN"), "{msg}");
        p[3] = f32::INFINITY;
        assert!(check_finite(&arch, &p).unwrap_err().to_string().contains("conv1.weight"));
    }

    #[test]
    fn short_buffers_are_truncated_errors() {
        for n in [0, 1, 7] {
            assert!(matches!(decode(&vec![0u8; n], Path::new("m"), None), Err(CheckpointError::Truncated { .. })));
        }
        let mut b = u64::MAX.to_le_bytes().to_vec();
        b.extend_from_slice(b"{}");
        assert!(matches!(decode(&b, Path::new("m"), None), Err(CheckpointError::Truncated { .. })));
    }
}
