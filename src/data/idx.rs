//! MNIST and Fashion-MNIST in the IDX format (LeCun et al.): a big-endian header, then raw u8 values.
//! Images: magic 0x00000803 (2051), count, rows, cols, then count·rows·cols pixels.
//! Labels: magic 0x00000801 (2049), count, then count labels.
//! Files may be gzip'd or raw, and may sit flat in the given directory or in torchvision's
//! `<root>/MNIST/raw/` / `<root>/FashionMNIST/raw/` layout.

use std::path::{Path, PathBuf};

use super::{first_existing, read_maybe_gz, Dataset};
use crate::{Error, Result};

pub const IDX_IMAGES_MAGIC: u32 = 2051;
pub const IDX_LABELS_MAGIC: u32 = 2049;
/// Largest image side we accept: IDX images beyond this are certainly not MNIST-like data.
const MAX_SIDE: usize = 4096;

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn check_magic(path: &Path, bytes: &[u8], expected: u32, what: &str) -> Result<()> {
    if bytes.len() < 8 {
        return Err(Error::bad_file(path, format!("truncated: {} bytes, too short for an IDX header", bytes.len())));
    }
    let found = be_u32(bytes, 0);
    if found != expected {
        return Err(Error::bad_file(
            path,
            format!("bad magic number for IDX {what}: expected {expected} (0x{expected:08x}), found {found} (0x{found:08x})"),
        ));
    }
    Ok(())
}

fn check_len(path: &Path, bytes: &[u8], expected: usize) -> Result<()> {
    if bytes.len() < expected {
        return Err(Error::bad_file(path, format!("truncated: expected {expected} bytes, found {}", bytes.len())));
    }
    if bytes.len() > expected {
        return Err(Error::bad_file(
            path,
            format!("unexpected trailing data: expected {expected} bytes, found {}", bytes.len()),
        ));
    }
    Ok(())
}

/// Parses an IDX image file (already decompressed). Returns (count, rows, cols, pixels).
pub fn parse_idx_images(path: &Path, bytes: &[u8]) -> Result<(usize, usize, usize, Vec<u8>)> {
    check_magic(path, bytes, IDX_IMAGES_MAGIC, "images")?;
    if bytes.len() < 16 {
        return Err(Error::bad_file(
            path,
            format!("truncated: expected a 16-byte header, found {} bytes", bytes.len()),
        ));
    }
    let (n, rows, cols) = (be_u32(bytes, 4) as usize, be_u32(bytes, 8) as usize, be_u32(bytes, 12) as usize);
    if rows == 0 || cols == 0 || rows > MAX_SIDE || cols > MAX_SIDE {
        return Err(Error::bad_file(path, format!("unsupported image dimensions {rows}×{cols}")));
    }
    check_len(path, bytes, 16 + n * rows * cols)?;
    Ok((n, rows, cols, bytes[16..].to_vec()))
}

/// Parses an IDX label file (already decompressed).
pub fn parse_idx_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    check_magic(path, bytes, IDX_LABELS_MAGIC, "labels")?;
    let n = be_u32(bytes, 4) as usize;
    check_len(path, bytes, 8 + n)?;
    Ok(bytes[8..].to_vec())
}

/// Candidate paths for one IDX file: `<dir>/<name>[.gz]` then `<dir>/<sub>/raw/<name>[.gz]`.
fn candidates(dir: &Path, torchvision_sub: &str, name: &str) -> Vec<PathBuf> {
    let raw_dir = dir.join(torchvision_sub).join("raw");
    [dir, raw_dir.as_path()].iter().flat_map(|d| [d.join(format!("{name}.gz")), d.join(name)]).collect()
}

/// Loads an image + label IDX pair, looking in `dir` and `dir/<torchvision_sub>/raw`.
pub fn load_idx_pair(dataset: &str, dir: &Path, torchvision_sub: &str, train: bool) -> Result<Dataset> {
    let prefix = if train { "train" } else { "t10k" };
    let images_path = first_existing(
        &format!("{dataset} images"),
        &candidates(dir, torchvision_sub, &format!("{prefix}-images-idx3-ubyte")),
    )?;
    let labels_path = first_existing(
        &format!("{dataset} labels"),
        &candidates(dir, torchvision_sub, &format!("{prefix}-labels-idx1-ubyte")),
    )?;
    let (n, rows, cols, images) = parse_idx_images(&images_path, &read_maybe_gz(&images_path)?)?;
    if n == 0 {
        return Err(Error::bad_file(&images_path, "contains no images"));
    }
    let labels = parse_idx_labels(&labels_path, &read_maybe_gz(&labels_path)?)?;
    if labels.len() != n {
        return Err(Error::bad_file(
            &labels_path,
            format!("image/label count mismatch: {} labels but {n} images in {}", labels.len(), images_path.display()),
        ));
    }
    let split = if train { "train" } else { "test" };
    Dataset { name: format!("{dataset}-{split}"), images, labels, n, channels: 1, height: rows, width: cols }.check()
}

/// MNIST from `dir` (flat) or `dir/MNIST/raw` (torchvision), gzip'd or raw.
pub fn load_mnist(dir: &Path, train: bool) -> Result<Dataset> {
    load_idx_pair("mnist", dir, "MNIST", train)
}

/// Fashion-MNIST from `dir` (flat) or `dir/FashionMNIST/raw` (torchvision), gzip'd or raw.
pub fn load_fashion_mnist(dir: &Path, train: bool) -> Result<Dataset> {
    load_idx_pair("fashion-mnist", dir, "FashionMNIST", train)
}
