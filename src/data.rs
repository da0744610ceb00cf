//! MNIST IDX files → checked `u8` images and labels.
//!
//! Each split is two files, `<prefix>-images-idx3-ubyte` (n × height × width) or `<prefix>-images-idx4-ubyte`
//! (n × channels × height × width) and `<prefix>-labels-idx1-ubyte`, gzipped (`.gz`) or plain. MNIST's images are
//! 1×28×28; any shape up to 4096 on each side loads, the same for both splits.
//! Every header field is checked against the bytes actually present before anything is allocated from it, so a
//! corrupt or hostile file is an error, never a panic or a huge allocation. When the directory holds a `SHA256SUMS`
//! file (`<hex>  <name>` lines, hashes of the decompressed files, names without `.gz`), each listed file is verified.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::model::{ImageShape, Normalization};

/// File-name prefix of the training split.
pub const TRAIN_PREFIX: &str = "train";
/// File-name prefix of the test split.
pub const TEST_PREFIX: &str = "t10k";
/// IDX magic number of an unsigned-byte, 3-dimensional file (images: n × height × width).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// IDX magic number of an unsigned-byte, 4-dimensional file (images: n × channels × height × width).
pub const IMAGES4_MAGIC: u32 = 0x0000_0804;
/// IDX magic number of an unsigned-byte, 1-dimensional file (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Largest file (after decompression) the loader accepts; MNIST's largest is 47 MB.
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// Name of the optional checksum file in the data directory.
pub const CHECKSUM_FILE: &str = "SHA256SUMS";

const IMAGES_HEADER: usize = 16;
const IMAGES4_HEADER: usize = 20;
const LABELS_HEADER: usize = 8;
const CLASSES: u8 = 10;

/// Everything that can go wrong loading MNIST. Each message names the file and the problem.
#[derive(thiserror::Error, Debug)]
pub enum DataError {
    #[error("MNIST directory {} does not exist: point gpu-cnn at the directory holding MNIST's four IDX files with --data-dir DIR or GPU_CNN_DATA=DIR (the repository ships them in data/mnist)", .dir.display())]
    MissingDir { dir: PathBuf },
    #[error("{} is not a directory; expected the directory holding MNIST's IDX files", .path.display())]
    NotADirectory { path: PathBuf },
    #[error("{} and {} both hold the {split} images (3-D and 4-D IDX): remove the one that is not meant", .idx3.display(), .idx4.display())]
    AmbiguousImages { split: String, idx3: PathBuf, idx4: PathBuf },
    #[error("missing MNIST file: neither {} nor {} exists", .plain.display(), .gz.display())]
    MissingFile { plain: PathBuf, gz: PathBuf },
    #[error("{} is a directory, expected an IDX file", .path.display())]
    IsDirectory { path: PathBuf },
    #[error("{} is empty (an interrupted download? delete it and download again)", .path.display())]
    EmptyFile { path: PathBuf },
    #[error("{}: truncated header: an IDX {kind} header needs {expected} bytes, the file has {got}", .path.display())]
    TruncatedHeader { path: PathBuf, kind: &'static str, expected: usize, got: usize },
    #[error("{}: truncated body: the header promises {count} {kind} ({expected} bytes after the header), got {got} bytes (an interrupted download? delete it and download again)", .path.display())]
    TruncatedBody { path: PathBuf, kind: &'static str, count: u32, expected: u64, got: u64 },
    #[error("{}: {extra} unexpected bytes after the {count} {kind} the header promises", .path.display())]
    TrailingBytes { path: PathBuf, kind: &'static str, count: u32, extra: u64 },
    #[error("{}: wrong magic number {got:#010x}, expected {expected:#010x} ({expected}, IDX {kind}){hint}", .path.display())]
    WrongMagic { path: PathBuf, kind: &'static str, got: u32, expected: u32, hint: &'static str },
    #[error("{}: images are {dims}; each of channels, height and width must be 1..={max}", .path.display(), max = ImageShape::MAX_SIDE)]
    WrongImageSize { path: PathBuf, dims: String },
    #[error("the training images are {train} but the test images are {test}; both splits must have one shape")]
    ShapeMismatch { train: ImageShape, test: ImageShape },
    #[error("{} holds {images} images but {} holds {labels} labels; the two files must come from the same split", .images_path.display(), .labels_path.display())]
    CountMismatch { images_path: PathBuf, images: usize, labels_path: PathBuf, labels: usize },
    #[error("{}: label {value} at index {index} is out of range 0..=9", .path.display())]
    LabelOutOfRange { path: PathBuf, index: usize, value: u8 },
    #[error("{}: corrupt gzip stream ({source}); delete it and download again", .path.display())]
    CorruptGzip { path: PathBuf, source: io::Error },
    #[error("{}: larger than the {limit}-byte limit{}; not an MNIST file", .path.display(), if *.decompressed { " once decompressed" } else { "" })]
    TooLarge { path: PathBuf, limit: u64, decompressed: bool },
    #[error("{}: SHA-256 mismatch for {name}: expected {expected}, got {actual} (corrupt or different file; delete it and download again)", .path.display())]
    ChecksumMismatch { path: PathBuf, name: String, expected: String, actual: String },
    #[error("{}: line {line} is not `<64 hex digits>  <file name>`", .path.display())]
    BadChecksumFile { path: PathBuf, line: usize },
    #[error("I/O error reading {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// One split: `len` images of `shape` (`u8` pixels, channel after channel, row-major), back to back, their labels
/// (0..=9), and how the engine normalizes the pixels.
#[derive(Clone, Debug)]
pub struct Split {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub shape: ImageShape,
    /// The normalization the engine applies: [`load`] gives both splits the training split's
    /// ([`Normalization::of`] its pixels); MNIST's gives exactly [`Normalization::MNIST`].
    pub norm: Normalization,
}

impl Split {
    /// A split of `images` (of `shape`) and `labels`, normalized by its own pixels' mean and std.
    pub fn new(images: Vec<u8>, labels: Vec<u8>, shape: ImageShape) -> Split {
        assert_eq!(images.len(), labels.len() * shape.pixels(), "Split::new: images and labels disagree");
        let norm = Normalization::of(&images);
        Split { images, labels, shape, norm }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`. Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let px = self.shape.pixels();
        &self.images[i * px..(i + 1) * px]
    }

    /// Image `i` as the network reads it (normalized by `norm`).
    pub fn normalized(&self, i: usize) -> impl Iterator<Item = f32> + '_ {
        self.image(i).iter().map(|&p| self.norm.apply(p))
    }

    /// The first `n` examples (all of them if `n >= len()`), with the same shape and normalization.
    pub fn take(&self, n: usize) -> Split {
        let n = n.min(self.len());
        let images = self.images[..n * self.shape.pixels()].to_vec();
        Split { images, labels: self.labels[..n].to_vec(), ..*self }
    }
}

/// MNIST's training and test splits.
#[derive(Clone, Debug)]
pub struct Mnist {
    pub train: Split,
    pub test: Split,
}

/// SHA-256 of MNIST's `t10k-labels-idx1-ubyte` (decompressed): how a data set is recognised as MNIST's.
const MNIST_TEST_LABELS_SHA256: &str = "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2";

impl Mnist {
    /// Whether the test set is MNIST's (its 28×28 images and the SHA-256 of its labels file): the study's numbers
    /// only compare with results on it.
    pub fn is_mnist(&self) -> bool {
        let labels = &self.test.labels;
        let header = [LABELS_MAGIC, labels.len() as u32].map(u32::to_be_bytes).concat();
        self.test.shape == ImageShape::MNIST
            && hex(&Sha256::new().chain_update(&header).chain_update(labels).finalize()) == MNIST_TEST_LABELS_SHA256
    }

    /// The shape of every image.
    pub fn shape(&self) -> ImageShape {
        self.train.shape
    }

    /// Only the first `n` test images, where `n` is given: quick runs on slow adapters. A shortened test set is no
    /// longer MNIST's (`is_mnist`), so reports do not set its figures beside the study's.
    pub fn limit_test(mut self, n: Option<usize>) -> Mnist {
        if let Some(n) = n {
            self.test = self.test.take(n);
        }
        self
    }
}

/// Load both splits from `dir`; the test split is normalized as the training split is.
pub fn load(dir: &Path) -> Result<Mnist, DataError> {
    load_from(&Source::Dir(dir))
}

/// Load both splits from files fetched elsewhere (a web page fetches the project's `data/mnist/`): file name →
/// content, with `dir` naming where they came from in messages. The same checks as from a directory, checksums
/// (`SHA256SUMS` among the files) included.
pub fn load_fetched(dir: &Path, files: &HashMap<String, Vec<u8>>) -> Result<Mnist, DataError> {
    load_from(&Source::Fetched { dir, files })
}

/// Where the IDX files are read from.
enum Source<'a> {
    Dir(&'a Path),
    Fetched { dir: &'a Path, files: &'a HashMap<String, Vec<u8>> },
}

impl Source<'_> {
    fn dir(&self) -> &Path {
        match self {
            Source::Dir(dir) | Source::Fetched { dir, .. } => dir,
        }
    }

    fn exists(&self, name: &str) -> Result<bool, DataError> {
        match self {
            Source::Dir(dir) => exists(&dir.join(name)),
            Source::Fetched { files, .. } => Ok(files.contains_key(name)),
        }
    }

    /// The whole file `name`, or None if there is none; refused if empty, a directory or over [`MAX_FILE_BYTES`].
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, DataError> {
        let path = self.dir().join(name);
        let raw = match self {
            Source::Dir(_) => {
                let meta = match fs::metadata(&path) {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(source) => return Err(DataError::Io { path, source }),
                };
                if meta.is_dir() {
                    return Err(DataError::IsDirectory { path });
                }
                if meta.len() > MAX_FILE_BYTES {
                    return Err(DataError::TooLarge { path, limit: MAX_FILE_BYTES, decompressed: false });
                }
                fs::read(&path).map_err(|source| DataError::Io { path: path.clone(), source })?
            }
            Source::Fetched { files, .. } => match files.get(name) {
                Some(bytes) if bytes.len() as u64 > MAX_FILE_BYTES => {
                    return Err(DataError::TooLarge { path, limit: MAX_FILE_BYTES, decompressed: false })
                }
                Some(bytes) => bytes.clone(),
                None => return Ok(None),
            },
        };
        if raw.is_empty() {
            return Err(DataError::EmptyFile { path });
        }
        Ok(Some(raw))
    }
}

fn load_from(source: &Source) -> Result<Mnist, DataError> {
    let train = load_split_from(source, TRAIN_PREFIX)?;
    let mut test = load_split_from(source, TEST_PREFIX)?;
    if test.shape != train.shape {
        return Err(DataError::ShapeMismatch { train: train.shape, test: test.shape });
    }
    test.norm = train.norm;
    Ok(Mnist { train, test })
}

/// Load one split (`prefix` is [`TRAIN_PREFIX`] or [`TEST_PREFIX`]) from `dir`.
pub fn load_split(dir: &Path, prefix: &str) -> Result<Split, DataError> {
    load_split_from(&Source::Dir(dir), prefix)
}

fn load_split_from(source: &Source, prefix: &str) -> Result<Split, DataError> {
    if let Source::Dir(dir) = source {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(DataError::NotADirectory { path: dir.to_path_buf() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(DataError::MissingDir { dir: dir.to_path_buf() })
            }
            Err(source) => return Err(DataError::Io { path: dir.to_path_buf(), source }),
        }
    }
    let sums = read_checksums(source)?;

    // 3-D images (MNIST's name) or 4-D ones; both for one split is a mistake that must not pass unnoticed.
    let found = |name: &str| -> Result<Option<PathBuf>, DataError> {
        let gz = format!("{name}.gz");
        Ok(if source.exists(name)? {
            Some(source.dir().join(name))
        } else if source.exists(&gz)? {
            Some(source.dir().join(gz))
        } else {
            None
        })
    };
    let idx3 = format!("{prefix}-images-idx3-ubyte");
    let idx4 = format!("{prefix}-images-idx4-ubyte");
    let images_name = match (found(&idx3)?, found(&idx4)?) {
        (Some(idx3), Some(idx4)) => return Err(DataError::AmbiguousImages { split: prefix.to_string(), idx3, idx4 }),
        (None, Some(_)) => idx4,
        _ => idx3,
    };
    let labels_name = format!("{prefix}-labels-idx1-ubyte");
    let (images_path, image_bytes) = read_idx_file(source, &images_name, &sums)?;
    let (images, count, shape) = parse_idx_images(&image_bytes, &images_path)?;
    drop(image_bytes);
    let (labels_path, label_bytes) = read_idx_file(source, &labels_name, &sums)?;
    let labels = parse_idx_labels(&label_bytes, &labels_path)?;

    if labels.len() != count {
        return Err(DataError::CountMismatch { images_path, images: count, labels_path, labels: labels.len() });
    }
    Ok(Split::new(images, labels, shape))
}

/// Writes `split` into `dir` as `<prefix>-images-idx3-ubyte.gz` (one channel) or `<prefix>-images-idx4-ubyte.gz` (n ×
/// c × h × w) and `<prefix>-labels-idx1-ubyte.gz`, each atomically: what [`load_split`] reads back. For data sets made
/// elsewhere (a converter, a test's generated images).
pub fn save_split(dir: &Path, prefix: &str, split: &Split) -> Result<(), DataError> {
    let s = split.shape;
    let (name, mut header) = if s.channels == 1 {
        (format!("{prefix}-images-idx3-ubyte.gz"), vec![IMAGES_MAGIC, split.len() as u32])
    } else {
        (format!("{prefix}-images-idx4-ubyte.gz"), vec![IMAGES4_MAGIC, split.len() as u32, s.channels as u32])
    };
    header.extend([s.height as u32, s.width as u32]);
    let labels = format!("{prefix}-labels-idx1-ubyte.gz");
    for (name, header, body) in
        [(name, header, &split.images), (labels, vec![LABELS_MAGIC, split.len() as u32], &split.labels)]
    {
        let path = dir.join(name);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let bytes: Vec<u8> = header.iter().flat_map(|v| v.to_be_bytes()).chain(body.iter().copied()).collect();
        let io = |source| DataError::Io { path: path.clone(), source };
        std::io::Write::write_all(&mut enc, &bytes).map_err(io)?;
        let gz = enc.finish().map_err(io)?;
        crate::atomic::write_atomic(&path, &gz).map_err(|e| DataError::Io { path: path.clone(), source: e.source })?;
    }
    Ok(())
}

/// The MNIST directory when `--data-dir` is not given: `GPU_CNN_DATA` if set, else `data/mnist` under the current
/// directory if it exists, else `data/mnist` in the source tree gpu-cnn was built from (so `cargo install --path .` gives a
/// binary that works from any directory while that tree is there).
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GPU_CNN_DATA").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let local = PathBuf::from("data/mnist");
    if local.is_dir() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
    }
}

/// Parse an IDX images file (already decompressed; 3-D n × h × w or 4-D n × c × h × w): returns the pixels
/// (`count * shape.pixels()` bytes), `count` and the shape. `file` is only used in error messages.
pub fn parse_idx_images(bytes: &[u8], file: &Path) -> Result<(Vec<u8>, usize, ImageShape), DataError> {
    const KIND: &str = "images";
    let four = bytes.len() >= 4 && be_u32(bytes, 0) == IMAGES4_MAGIC;
    let (magic, header) = if four { (IMAGES4_MAGIC, IMAGES4_HEADER) } else { (IMAGES_MAGIC, IMAGES_HEADER) };
    check_magic(bytes, file, KIND, magic, header)?;
    let count = be_u32(bytes, 4);
    let dims: Vec<u32> = (8..header).step_by(4).map(|at| be_u32(bytes, at)).collect();
    let (c, h, w) = if four { (dims[0], dims[1], dims[2]) } else { (1, dims[0], dims[1]) };
    if [c, h, w].iter().any(|&d| d == 0 || d as usize > ImageShape::MAX_SIDE) {
        let dims = dims.iter().map(u32::to_string).collect::<Vec<_>>().join("x");
        return Err(DataError::WrongImageSize { path: file.to_path_buf(), dims });
    }
    let shape = ImageShape { channels: c as usize, height: h as usize, width: w as usize };
    let body = &bytes[header..];
    check_body_len(body, file, KIND, count, shape.pixels() as u64)?;
    // The body length now equals count * pixels exactly, so this allocation is bounded by the input.
    Ok((body.to_vec(), count as usize, shape))
}

/// Parse an IDX labels file (already decompressed): returns one label (0..=9) per example.
/// `file` is only used in error messages.
pub fn parse_idx_labels(bytes: &[u8], file: &Path) -> Result<Vec<u8>, DataError> {
    const KIND: &str = "labels";
    check_magic(bytes, file, KIND, LABELS_MAGIC, LABELS_HEADER)?;
    let count = be_u32(bytes, 4);
    let body = &bytes[LABELS_HEADER..];
    check_body_len(body, file, KIND, count, 1)?;
    if let Some((index, &value)) = body.iter().enumerate().find(|(_, &v)| v >= CLASSES) {
        return Err(DataError::LabelOutOfRange { path: file.to_path_buf(), index, value });
    }
    Ok(body.to_vec())
}

/// Big-endian u32 at `at`; callers have checked the length.
fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks the file is non-empty, its magic number, then that the whole header is present.
fn check_magic(bytes: &[u8], file: &Path, kind: &'static str, expected: u32, header: usize) -> Result<(), DataError> {
    let path = || file.to_path_buf();
    if bytes.is_empty() {
        return Err(DataError::EmptyFile { path: path() });
    }
    if bytes.len() < 4 {
        return Err(DataError::TruncatedHeader { path: path(), kind, expected: header, got: bytes.len() });
    }
    let got = be_u32(bytes, 0);
    if got != expected {
        let hint = if got == IMAGES_MAGIC || got == IMAGES4_MAGIC || got == LABELS_MAGIC {
            if kind == "images" && got == LABELS_MAGIC {
                " — this looks like a labels file; are the images and labels files swapped?"
            } else {
                " — this looks like an images file; are the images and labels files swapped?"
            }
        } else if bytes[0] == 0x1f && bytes[1] == 0x8b {
            " — this looks gzip-compressed; give it a .gz suffix or decompress it"
        } else if got.swap_bytes() == expected {
            " — byte order is reversed; IDX headers are big-endian"
        } else {
            " — not an IDX file"
        };
        return Err(DataError::WrongMagic { path: path(), kind, got, expected, hint });
    }
    if bytes.len() < header {
        return Err(DataError::TruncatedHeader { path: path(), kind, expected: header, got: bytes.len() });
    }
    Ok(())
}

/// The body must hold exactly `count * item` bytes (computed in u64: no overflow for any u32 count).
fn check_body_len(body: &[u8], file: &Path, kind: &'static str, count: u32, item: u64) -> Result<(), DataError> {
    let expected = count as u64 * item;
    let got = body.len() as u64;
    if got < expected {
        return Err(DataError::TruncatedBody { path: file.to_path_buf(), kind, count, expected, got });
    }
    if got > expected {
        return Err(DataError::TrailingBytes { path: file.to_path_buf(), kind, count, extra: got - expected });
    }
    Ok(())
}

/// Find `<name>` or `<name>.gz` in `dir` (plain preferred when both exist), read it, decompress it if gzipped
/// (bounded by [`MAX_FILE_BYTES`]) and verify it against `sums` when listed there.
fn read_idx_file(source: &Source, name: &str, sums: &HashMap<String, String>) -> Result<(PathBuf, Vec<u8>), DataError> {
    let gz_name = format!("{name}.gz");
    let (plain, gz) = (source.dir().join(name), source.dir().join(&gz_name));
    let (path, gzipped, raw) = if source.exists(name)? {
        (plain.clone(), false, source.read(name)?)
    } else if source.exists(&gz_name)? {
        (gz.clone(), true, source.read(&gz_name)?)
    } else {
        return Err(DataError::MissingFile { plain, gz });
    };
    let Some(raw) = raw else { return Err(DataError::MissingFile { plain, gz }) };
    let bytes = if gzipped { gunzip(&raw, &path)? } else { raw };

    if let Some(expected) = sums.get(name) {
        let actual = hex(&Sha256::digest(&bytes));
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(DataError::ChecksumMismatch {
                path,
                name: name.to_string(),
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok((path, bytes))
}

/// True if something (file or directory) is at `path`.
fn exists(path: &Path) -> Result<bool, DataError> {
    match fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(DataError::Io { path: path.to_path_buf(), source }),
    }
}

/// Decompress a gzip stream, refusing output larger than [`MAX_FILE_BYTES`].
fn gunzip(raw: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    gunzip_limited(raw, path, MAX_FILE_BYTES)
}

fn gunzip_limited(raw: &[u8], path: &Path, limit: u64) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::new();
    let mut decoder = flate2::read::GzDecoder::new(raw).take(limit.saturating_add(1));
    decoder.read_to_end(&mut out).map_err(|source| DataError::CorruptGzip { path: path.to_path_buf(), source })?;
    if out.len() as u64 > limit {
        return Err(DataError::TooLarge { path: path.to_path_buf(), limit, decompressed: true });
    }
    if out.is_empty() {
        return Err(DataError::EmptyFile { path: path.to_path_buf() });
    }
    Ok(out)
}

/// Read `dir/SHA256SUMS` into file name → lowercase hex, or an empty map when there is none.
fn read_checksums(source: &Source) -> Result<HashMap<String, String>, DataError> {
    let path = source.dir().join(CHECKSUM_FILE);
    let text = match source.read(CHECKSUM_FILE) {
        Ok(Some(bytes)) => bytes,
        Ok(None) | Err(DataError::EmptyFile { .. }) => return Ok(HashMap::new()),
        Err(e) => return Err(e),
    };
    let mut sums = HashMap::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let bad = || DataError::BadChecksumFile { path: path.clone(), line: i + 1 };
        let line = std::str::from_utf8(line).map_err(|_| bad())?.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (hash, name) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
        // `sha256sum` marks binary mode with a `*` before the name.
        let name = name.trim_start().trim_start_matches('*');
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) || name.is_empty() {
            return Err(bad());
        }
        sums.insert(name.to_string(), hash.to_ascii_lowercase());
    }
    Ok(sums)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images_file(count: u32, rows: u32, cols: u32, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [IMAGES_MAGIC, count, rows, cols] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(body);
        v
    }

    fn labels_file(count: u32, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [LABELS_MAGIC, count] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(body);
        v
    }

    fn p() -> &'static Path {
        Path::new("x")
    }

    #[test]
    fn parses_small_images() {
        let body: Vec<u8> = (0..3 * 784).map(|i| (i * 7 % 251) as u8).collect();
        let (px, n, shape) = parse_idx_images(&images_file(3, 28, 28, &body), p()).unwrap();
        assert_eq!((n, shape), (3, ImageShape::MNIST));
        assert_eq!(px, body);
        let (px, n, _) = parse_idx_images(&images_file(0, 28, 28, &[]), p()).unwrap();
        assert_eq!((px.len(), n), (0, 0));
        // Any height and width; and 4-D files with channels.
        let (_, n, shape) = parse_idx_images(&images_file(2, 5, 7, &[1; 70]), p()).unwrap();
        assert_eq!((n, shape), (2, ImageShape { channels: 1, height: 5, width: 7 }));
        let mut four = Vec::new();
        for x in [IMAGES4_MAGIC, 2, 3, 4, 5] {
            four.extend_from_slice(&x.to_be_bytes());
        }
        four.extend_from_slice(&[9; 2 * 60]);
        let (px, n, shape) = parse_idx_images(&four, p()).unwrap();
        assert_eq!((px.len(), n, shape), (120, 2, ImageShape { channels: 3, height: 4, width: 5 }));
        let e = parse_idx_images(&four[..20 + 119], p()).unwrap_err();
        assert!(matches!(e, DataError::TruncatedBody { expected: 120, .. }), "{e:?}");
    }

    #[test]
    fn parses_small_labels() {
        assert_eq!(parse_idx_labels(&labels_file(4, &[0, 9, 3, 3]), p()).unwrap(), vec![0, 9, 3, 3]);
    }

    #[test]
    fn image_errors() {
        let e = |b: &[u8]| parse_idx_images(b, p()).unwrap_err();
        assert!(matches!(e(&[]), DataError::EmptyFile { .. }));
        assert!(matches!(e(&[0, 0]), DataError::TruncatedHeader { got: 2, .. }));
        assert!(matches!(e(&images_file(1, 28, 28, &[])[..10]), DataError::TruncatedHeader { got: 10, .. }));
        assert!(matches!(e(&labels_file(1, &[1])), DataError::WrongMagic { got: LABELS_MAGIC, .. }));
        let zero = e(&images_file(1, 28, 0, &[]));
        assert!(matches!(&zero, DataError::WrongImageSize { dims, .. } if dims == "28x0"), "{zero:?}");
        assert!(zero.to_string().contains("1..=4096"), "{zero}");
        assert!(matches!(e(&images_file(1, 5000, 1, &[])), DataError::WrongImageSize { .. }));
        assert!(matches!(
            e(&images_file(2, 28, 28, &[0; 784])),
            DataError::TruncatedBody { expected: 1568, got: 784, .. }
        ));
        assert!(matches!(e(&images_file(1, 28, 28, &[0; 785])), DataError::TrailingBytes { extra: 1, .. }));
        assert!(matches!(
            e(&images_file(u32::MAX, 28, 28, &[0; 784])),
            DataError::TruncatedBody { expected, .. } if expected == u32::MAX as u64 * 784
        ));
    }

    #[test]
    fn label_errors() {
        let e = |b: &[u8]| parse_idx_labels(b, p()).unwrap_err();
        assert!(matches!(e(&[]), DataError::EmptyFile { .. }));
        assert!(matches!(e(&labels_file(1, &[])[..6]), DataError::TruncatedHeader { expected: 8, got: 6, .. }));
        assert!(matches!(e(&images_file(1, 28, 28, &[0; 784])), DataError::WrongMagic { got: IMAGES_MAGIC, .. }));
        assert!(matches!(e(&labels_file(3, &[1, 2])), DataError::TruncatedBody { .. }));
        assert!(matches!(e(&labels_file(3, &[1, 2, 10])), DataError::LabelOutOfRange { index: 2, value: 10, .. }));
        assert!(matches!(e(&labels_file(u32::MAX, &[1])), DataError::TruncatedBody { .. }));
    }

    #[test]
    fn wrong_magic_hints() {
        let msg = parse_idx_labels(&images_file(1, 28, 28, &[0; 784]), p()).unwrap_err().to_string();
        assert!(msg.contains("swapped"), "{msg}");
        let msg = parse_idx_images(&[0x1f, 0x8b, 8, 0, 0], p()).unwrap_err().to_string();
        assert!(msg.contains("gzip"), "{msg}");
        let msg = parse_idx_images(&[3, 8, 0, 0, 0], p()).unwrap_err().to_string();
        assert!(msg.contains("big-endian"), "{msg}");
    }

    #[test]
    fn split_take_and_image() {
        let shape = ImageShape { channels: 2, height: 3, width: 4 };
        let s = Split::new((0..3 * 24).map(|i| (i / 24) as u8 * 100).collect(), vec![4, 5, 6], shape);
        assert_eq!(s.len(), 3);
        assert!(!s.is_empty());
        assert!(s.image(2).iter().all(|&p| p == 200));
        let t = s.take(2);
        assert_eq!((t.len(), t.images.len(), t.shape, t.norm), (2, 2 * 24, shape, s.norm));
        let v: Vec<f32> = s.normalized(1).collect();
        assert_eq!(v, vec![s.norm.apply(100); 24]);
        assert_eq!(s.take(10).len(), 3);
        assert!(s.take(0).is_empty());
    }

    #[test]
    fn gunzip_roundtrip_and_corrupt() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"hello idx").unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(gunzip(&gz, p()).unwrap(), b"hello idx");
        assert!(matches!(gunzip(&gz[..gz.len() / 2], p()), Err(DataError::CorruptGzip { .. })));
        assert!(matches!(gunzip(b"not gzip at all", p()), Err(DataError::CorruptGzip { .. })));
        // The decompressed-size bound (1 GiB in `gunzip`) stops a gzip bomb without reading it all.
        assert_eq!(gunzip_limited(&gz, p(), 9).unwrap(), b"hello idx");
        let e = gunzip_limited(&gz, p(), 8).unwrap_err();
        assert!(matches!(e, DataError::TooLarge { limit: 8, decompressed: true, .. }), "{e:?}");
        assert!(e.to_string().contains("once decompressed"), "{e}");
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            // Arbitrary bytes never panic, and any output is bounded by the input.
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
                if let Ok((px, n, shape)) = parse_idx_images(&bytes, p()) {
                    prop_assert_eq!(px.len(), n * shape.pixels());
                    prop_assert!(px.len() <= bytes.len());
                }
                if let Ok(l) = parse_idx_labels(&bytes, p()) {
                    prop_assert!(l.len() <= bytes.len());
                }
            }

            // A valid magic with arbitrary (possibly huge) dimensions and a short body is rejected without allocating.
            #[test]
            fn arbitrary_headers_never_panic(count in any::<u32>(), rows in prop_oneof![Just(28u32), any::<u32>()],
                                             cols in prop_oneof![Just(28u32), any::<u32>()],
                                             body in proptest::collection::vec(any::<u8>(), 0..4096)) {
                let imgs = images_file(count, rows, cols, &body);
                match parse_idx_images(&imgs, p()) {
                    Ok((px, n, _)) => prop_assert!(n as u32 == count && px.len() == body.len()),
                    Err(e) => prop_assert!(!e.to_string().is_empty()),
                }
                let labels = labels_file(count, &body);
                if let Ok(l) = parse_idx_labels(&labels, p()) {
                    prop_assert!(l.len() as u32 == count && l.len() == body.len());
                }
            }
        }
    }
}
