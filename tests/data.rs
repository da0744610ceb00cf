//! The MNIST IDX loader against small synthetic files (every error kind) and the real data in `data/mnist`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use gpu_cnn::data::{self, DataError, Split, TEST_PREFIX, TRAIN_PREFIX};
use sha2::{Digest, Sha256};

const PIXELS: usize = 784;

fn images_bytes(magic: u32, count: u32, rows: u32, cols: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [magic, count, rows, cols] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(body);
    v
}

fn labels_bytes(magic: u32, count: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [magic, count] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(body);
    v
}

/// A valid split of `n` examples: pixel and label patterns that are easy to check.
fn valid_split(n: usize) -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..n * PIXELS).map(|i| (i * 31 % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i * 7 % 10) as u8).collect();
    (images_bytes(2051, n as u32, 28, 28, &pixels), labels_bytes(2049, n as u32, &labels))
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn images_name(prefix: &str) -> String {
    format!("{prefix}-images-idx3-ubyte")
}

fn labels_name(prefix: &str) -> String {
    format!("{prefix}-labels-idx1-ubyte")
}

/// A temp dir holding the given images and labels files for `prefix` (gzipped when `gzip`).
fn dir_with(prefix: &str, images: &[u8], labels: &[u8], gzip: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (suffix, img, lab) =
        if gzip { (".gz", gz(images), gz(labels)) } else { ("", images.to_vec(), labels.to_vec()) };
    fs::write(dir.path().join(images_name(prefix) + suffix), img).unwrap();
    fs::write(dir.path().join(labels_name(prefix) + suffix), lab).unwrap();
    dir
}

fn load_err(dir: &Path) -> (DataError, String) {
    let e = data::load_split(dir, TRAIN_PREFIX).unwrap_err();
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "messages are one line: {msg}");
    (e, msg)
}

fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn loads_small_split_gz_and_plain() {
    for gzip in [true, false] {
        let (img, lab) = valid_split(5);
        let dir = dir_with(TRAIN_PREFIX, &img, &lab, gzip);
        let s = data::load_split(dir.path(), TRAIN_PREFIX).unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(s.images, img[16..]);
        assert_eq!(s.labels, lab[8..]);
        assert_eq!(s.image(1), &img[16 + PIXELS..16 + 2 * PIXELS]);
    }
}

#[test]
fn load_reads_both_splits() {
    let (img, lab) = valid_split(3);
    let dir = dir_with(TRAIN_PREFIX, &img, &lab, true);
    let (img2, lab2) = valid_split(2);
    fs::write(dir.path().join(images_name(TEST_PREFIX)), img2).unwrap();
    fs::write(dir.path().join(labels_name(TEST_PREFIX)), lab2).unwrap();
    let m = data::load(dir.path()).unwrap();
    assert_eq!((m.train.len(), m.test.len()), (3, 2));
}

#[test]
fn plain_file_preferred_over_gz() {
    let (img, lab) = valid_split(2);
    let dir = dir_with(TRAIN_PREFIX, &img, &lab, false);
    // A broken .gz beside a good plain file is never read.
    fs::write(dir.path().join(images_name(TRAIN_PREFIX) + ".gz"), b"garbage").unwrap();
    assert_eq!(data::load_split(dir.path(), TRAIN_PREFIX).unwrap().len(), 2);
}

#[test]
fn missing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nope");
    let (e, msg) = load_err(&dir);
    assert!(matches!(e, DataError::MissingDir { .. }), "{e:?}");
    assert!(msg.contains("nope") && msg.contains("does not exist"), "{msg}");
}

#[test]
fn directory_is_a_file() {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    let (e, msg) = load_err(tmp.path());
    assert!(matches!(e, DataError::NotADirectory { .. }), "{e:?}");
    assert!(msg.contains("not a directory"), "{msg}");
}

#[test]
fn missing_file_names_both_candidates() {
    let dir = tempfile::tempdir().unwrap();
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, DataError::MissingFile { .. }), "{e:?}");
    assert!(msg.contains("train-images-idx3-ubyte.gz") && msg.contains("train-images-idx3-ubyte "), "{msg}");

    let (img, _) = valid_split(1);
    fs::write(dir.path().join(images_name(TRAIN_PREFIX)), img).unwrap();
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, DataError::MissingFile { .. }), "{e:?}");
    assert!(msg.contains("train-labels-idx1-ubyte.gz"), "{msg}");
}

#[test]
fn directory_where_file_expected() {
    let (_, lab) = valid_split(1);
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join(images_name(TRAIN_PREFIX) + ".gz")).unwrap();
    fs::write(dir.path().join(labels_name(TRAIN_PREFIX)), lab).unwrap();
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, DataError::IsDirectory { .. }), "{e:?}");
    assert!(msg.contains("is a directory"), "{msg}");
}

#[test]
fn empty_files() {
    let (_, lab) = valid_split(1);
    // Empty plain file, empty .gz file, and a .gz that decompresses to nothing.
    for (suffix, content) in [("", vec![]), (".gz", vec![]), (".gz", gz(&[]))] {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(images_name(TRAIN_PREFIX) + suffix), content).unwrap();
        fs::write(dir.path().join(labels_name(TRAIN_PREFIX)), &lab).unwrap();
        let (e, msg) = load_err(dir.path());
        assert!(matches!(e, DataError::EmptyFile { .. }), "{e:?}");
        assert!(msg.contains("is empty") && msg.contains("train-images"), "{msg}");
    }
}

#[test]
fn truncated_header() {
    let (img, lab) = valid_split(1);
    for cut in [2, 4, 15] {
        let dir = dir_with(TRAIN_PREFIX, &img[..cut], &lab, true);
        let (e, msg) = load_err(dir.path());
        assert!(matches!(e, DataError::TruncatedHeader { expected: 16, .. }), "{cut}: {e:?}");
        assert!(msg.contains("truncated header"), "{msg}");
    }
    let dir = dir_with(TRAIN_PREFIX, &img, &lab[..7], false);
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, DataError::TruncatedHeader { expected: 8, got: 7, .. }), "{e:?}");
    assert!(msg.contains("train-labels"), "{msg}");
}

#[test]
fn truncated_body() {
    let (img, lab) = valid_split(3);
    let dir = dir_with(TRAIN_PREFIX, &img[..img.len() - 100], &lab, true);
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, DataError::TruncatedBody { expected: 2352, got: 2252, .. }), "{e:?}");
    assert!(msg.contains("truncated body") && msg.contains("2352") && msg.contains("2252"), "{msg}");

    let dir = dir_with(TRAIN_PREFIX, &img, &lab[..lab.len() - 1], false);
    let (e, _) = load_err(dir.path());
    assert!(matches!(e, DataError::TruncatedBody { expected: 3, got: 2, .. }), "{e:?}");
}

#[test]
fn huge_header_rejected_before_allocating() {
    let (_, lab) = valid_split(1);
    let img = images_bytes(2051, u32::MAX, 28, 28, &[7; PIXELS]);
    let dir = dir_with(TRAIN_PREFIX, &img, &lab, true);
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, DataError::TruncatedBody { count: u32::MAX, .. }), "{e:?}");
    assert!(msg.contains(&(u32::MAX as u64 * 784).to_string()), "{msg}");

    let (img, _) = valid_split(1);
    let dir = dir_with(TRAIN_PREFIX, &img, &labels_bytes(2049, 4_000_000_000, &[1]), true);
    let (e, _) = load_err(dir.path());
    assert!(matches!(e, DataError::TruncatedBody { count: 4_000_000_000, .. }), "{e:?}");
}

#[test]
fn trailing_bytes() {
    let (mut img, lab) = valid_split(1);
    img.extend_from_slice(&[0; 10]);
    let dir = dir_with(TRAIN_PREFIX, &img, &lab, true);
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, DataError::TrailingBytes { extra: 10, .. }), "{e:?}");
    assert!(msg.contains("10 unexpected bytes"), "{msg}");
}

#[test]
fn wrong_magic_and_swapped_files() {
    let (img, lab) = valid_split(2);
    // Images and labels swapped: the images slot holds a labels file.
    let dir = dir_with(TRAIN_PREFIX, &lab, &img, true);
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, DataError::WrongMagic { got: 2049, expected: 2051, .. }), "{e:?}");
    assert!(msg.contains("2051") && msg.contains("swapped") && msg.contains("train-images"), "{msg}");

    // Labels slot holds an images file.
    let dir = dir_with(TRAIN_PREFIX, &img, &img, false);
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, DataError::WrongMagic { got: 2051, expected: 2049, .. }), "{e:?}");
    assert!(msg.contains("swapped") && msg.contains("train-labels"), "{msg}");

    // Not IDX at all; and a gzip stream saved without the .gz suffix.
    let dir = dir_with(TRAIN_PREFIX, b"<html>404 not found</html>", &lab, false);
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, DataError::WrongMagic { .. }), "{e:?}");
    assert!(msg.contains("not an IDX file"), "{msg}");
    let dir = dir_with(TRAIN_PREFIX, &gz(&img), &lab, false);
    let (_, msg) = load_err(dir.path());
    assert!(msg.contains("gzip"), "{msg}");
}

#[test]
fn other_image_shapes_load_and_bad_ones_are_named() {
    let (_, lab) = valid_split(2);
    // Any height and width: 2 images of 32×24.
    let dir = dir_with(TRAIN_PREFIX, &images_bytes(2051, 2, 32, 24, &[9; 2 * 32 * 24]), &lab, true);
    let s = data::load_split(dir.path(), TRAIN_PREFIX).unwrap();
    assert_eq!((s.len(), s.shape.to_string(), s.image(1).len()), (2, "1x32x24".to_string(), 768));
    // A 4-D file (n × c × h × w) under its own name.
    let dir = tempfile::tempdir().unwrap();
    let mut four = Vec::new();
    for x in [0x0804u32, 2, 3, 4, 4] {
        four.extend_from_slice(&x.to_be_bytes());
    }
    four.extend((0..2 * 48).map(|i| i as u8));
    fs::write(dir.path().join("train-images-idx4-ubyte.gz"), gz(&four)).unwrap();
    fs::write(dir.path().join(labels_name(TRAIN_PREFIX)), &lab).unwrap();
    let s = data::load_split(dir.path(), TRAIN_PREFIX).unwrap();
    assert_eq!((s.shape.to_string(), s.image(1)[0]), ("3x4x4".to_string(), 48));
    // A 3-D file beside it for the same split: which one is meant cannot be guessed, so both are named.
    fs::write(dir.path().join(images_name(TRAIN_PREFIX)), images_bytes(2051, 2, 4, 4, &[0; 32])).unwrap();
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, DataError::AmbiguousImages { .. }), "{e:?}");
    assert!(msg.contains("train-images-idx3-ubyte and") && msg.contains("train-images-idx4-ubyte.gz both"), "{msg}");
    // A zero side is refused, naming the dimensions.
    let dir = dir_with(TRAIN_PREFIX, &images_bytes(2051, 1, 0, 28, &[]), &lab, true);
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, DataError::WrongImageSize { .. }), "{e:?}");
    assert!(msg.contains("0x28") && msg.contains("1..=4096"), "{msg}");
    // Both splits must have one shape.
    let dir = dir_with(TRAIN_PREFIX, &images_bytes(2051, 2, 28, 28, &[0; 2 * 784]), &lab, false);
    fs::write(dir.path().join(images_name(TEST_PREFIX)), images_bytes(2051, 2, 14, 14, &[0; 2 * 196])).unwrap();
    fs::write(dir.path().join(labels_name(TEST_PREFIX)), &lab).unwrap();
    let msg = data::load(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("1x28x28") && msg.contains("1x14x14"), "{msg}");
}

#[test]
fn count_mismatch() {
    let (img, _) = valid_split(3);
    let (_, lab) = valid_split(2);
    let dir = dir_with(TRAIN_PREFIX, &img, &lab, true);
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, DataError::CountMismatch { images: 3, labels: 2, .. }), "{e:?}");
    assert!(msg.contains("3 images") && msg.contains("2 labels"), "{msg}");
}

#[test]
fn label_out_of_range() {
    let (img, _) = valid_split(3);
    let dir = dir_with(TRAIN_PREFIX, &img, &labels_bytes(2049, 3, &[1, 2, 200]), true);
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, DataError::LabelOutOfRange { index: 2, value: 200, .. }), "{e:?}");
    assert!(msg.contains("label 200 at index 2"), "{msg}");
}

#[test]
fn corrupt_gzip() {
    let (img, lab) = valid_split(4);
    let compressed = gz(&img);
    let mut flipped = compressed.clone();
    flipped[compressed.len() / 2] ^= 0xff;
    for bad in [compressed[..compressed.len() / 2].to_vec(), flipped, b"definitely not gzip".to_vec()] {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(images_name(TRAIN_PREFIX) + ".gz"), bad).unwrap();
        fs::write(dir.path().join(labels_name(TRAIN_PREFIX) + ".gz"), gz(&lab)).unwrap();
        let (e, msg) = load_err(dir.path());
        assert!(matches!(e, DataError::CorruptGzip { .. }), "{e:?}");
        assert!(msg.contains("corrupt gzip") && msg.contains("train-images-idx3-ubyte.gz"), "{msg}");
    }
}

#[test]
fn checksums_verified_when_listed() {
    let (img, lab) = valid_split(2);
    let good =
        format!("{}  {}\n{}  {}\n", sha_hex(&img), images_name(TRAIN_PREFIX), sha_hex(&lab), labels_name(TRAIN_PREFIX));

    // Right sums (of the decompressed content): loads, gzipped or plain.
    for gzip in [true, false] {
        let dir = dir_with(TRAIN_PREFIX, &img, &lab, gzip);
        fs::write(dir.path().join("SHA256SUMS"), &good).unwrap();
        assert_eq!(data::load_split(dir.path(), TRAIN_PREFIX).unwrap().len(), 2);
    }

    // One pixel changed: a valid IDX file that only the checksum catches.
    let mut bad_img = img.clone();
    bad_img[100] ^= 1;
    let dir = dir_with(TRAIN_PREFIX, &bad_img, &lab, true);
    fs::write(dir.path().join("SHA256SUMS"), &good).unwrap();
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, DataError::ChecksumMismatch { .. }), "{e:?}");
    assert!(msg.contains(&sha_hex(&img)) && msg.contains(&sha_hex(&bad_img)), "{msg}");
    assert!(msg.contains("train-images-idx3-ubyte"), "{msg}");

    // Files not listed are not verified.
    let dir = dir_with(TRAIN_PREFIX, &bad_img, &lab, true);
    fs::write(dir.path().join("SHA256SUMS"), format!("{}  some-other-file\n", sha_hex(&img))).unwrap();
    assert_eq!(data::load_split(dir.path(), TRAIN_PREFIX).unwrap().len(), 2);

    // A malformed checksum file is an error naming the line.
    let dir = dir_with(TRAIN_PREFIX, &img, &lab, true);
    fs::write(dir.path().join("SHA256SUMS"), format!("{good}zzzz  {}\n", images_name(TRAIN_PREFIX))).unwrap();
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, DataError::BadChecksumFile { line: 3, .. }), "{e:?}");
    assert!(msg.contains("SHA256SUMS") && msg.contains("line 3"), "{msg}");
}

#[test]
fn split_take() {
    let (img, lab) = valid_split(4);
    let dir = dir_with(TRAIN_PREFIX, &img, &lab, true);
    let s: Split = data::load_split(dir.path(), TRAIN_PREFIX).unwrap();
    let t = s.take(2);
    assert_eq!(t.len(), 2);
    assert_eq!(t.images, s.images[..2 * PIXELS]);
    assert_eq!(t.labels, s.labels[..2]);
}

fn real_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    if dir.join("train-images-idx3-ubyte.gz").is_file() || dir.join("train-images-idx3-ubyte").is_file() {
        Some(dir)
    } else {
        eprintln!("skipped: no MNIST files in {}", dir.display());
        None
    }
}

fn label_counts(s: &Split) -> [usize; 10] {
    let mut c = [0; 10];
    for &l in &s.labels {
        c[l as usize] += 1;
    }
    c
}

#[test]
fn real_mnist_loads_with_known_counts() {
    let Some(dir) = real_dir() else { return };
    let m = data::load(&dir).unwrap();
    assert_eq!((m.train.len(), m.test.len()), (60_000, 10_000));
    assert_eq!((m.train.images.len(), m.test.images.len()), (60_000 * PIXELS, 10_000 * PIXELS));
    assert_eq!(label_counts(&m.train), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
    assert_eq!(label_counts(&m.test), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    // The canonical first training label is 5, and pixels span the full range.
    assert_eq!(m.train.labels[0], 5);
    assert_eq!((m.train.images.iter().min(), m.train.images.iter().max()), (Some(&0), Some(&255)));
}

#[test]
fn real_mnist_plain_files_load_and_verify() {
    let Some(dir) = real_dir() else { return };
    let gzipped = data::load_split(&dir, TEST_PREFIX).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (img, lab) = (images_name(TEST_PREFIX), labels_name(TEST_PREFIX));
    fs::write(tmp.path().join(&img), images_bytes(2051, 10_000, 28, 28, &gzipped.images)).unwrap();
    fs::write(tmp.path().join(&lab), labels_bytes(2049, 10_000, &gzipped.labels)).unwrap();
    // With the real SHA256SUMS (if present) the plain files are verified too.
    if let Ok(sums) = fs::read(dir.join("SHA256SUMS")) {
        fs::write(tmp.path().join("SHA256SUMS"), sums).unwrap();
    }
    let plain = data::load_split(tmp.path(), TEST_PREFIX).unwrap();
    assert_eq!(plain.images, gzipped.images);
    assert_eq!(plain.labels, gzipped.labels);
}

#[test]
fn default_data_dir_points_at_data_mnist() {
    assert!(data::default_data_dir().ends_with("data/mnist"));
}
