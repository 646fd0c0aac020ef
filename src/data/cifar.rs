//! CIFAR-10, binary and python versions. Both hold 32×32 RGB images as 3072 bytes in CHW order
//! (1024 red, 1024 green, 1024 blue, each plane row-major).
//! - Binary (`cifar-10-batches-bin/`): files of 3073-byte records (label byte + 3072 pixels), no header; any whole
//!   number of records per file is accepted.
//! - Python (`cifar-10-batches-py/`): pickled dicts with `b"data"` (a uint8 N×3072 numpy array, or plain bytes)
//!   and `b"labels"` (a list of ints). Numpy arrays are recovered from their pickled state without running numpy.
//!
//! Train = data_batch_1..5 (all five required); test = test_batch(.bin), or for the binary version
//! test_batch_first1000.bin when the full test batch is absent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_pickle::{DeOptions, HashableValue, Value};

use super::Dataset;
use crate::{Error, Result};

pub const CIFAR_IMAGE_BYTES: usize = 3 * 32 * 32;
pub const CIFAR_RECORD_BYTES: usize = CIFAR_IMAGE_BYTES + 1;
const CLASSES: u8 = 10;

/// Images and labels read from one or more files.
#[derive(Default)]
struct Parts {
    images: Vec<u8>,
    labels: Vec<u8>,
}

fn check_labels(path: &Path, labels: &[u8]) -> Result<()> {
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= CLASSES) {
        return Err(Error::bad_file(path, format!("record {i} has label {l}, expected 0-9")));
    }
    Ok(())
}

/// Parses one binary-version file: a whole number (≥ 1) of 3073-byte records.
pub fn parse_cifar_bin(path: &Path, bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(CIFAR_RECORD_BYTES) {
        return Err(Error::bad_file(
            path,
            format!(
                "wrong record size: file size {} bytes is not a positive multiple of the {CIFAR_RECORD_BYTES}-byte \
                 CIFAR-10 record (1 label + 3072 pixels)",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / CIFAR_RECORD_BYTES;
    let mut images = Vec::with_capacity(n * CIFAR_IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for record in bytes.chunks_exact(CIFAR_RECORD_BYTES) {
        labels.push(record[0]);
        images.extend_from_slice(&record[1..]);
    }
    check_labels(path, &labels)?;
    Ok((images, labels))
}

fn dict_get<'a>(dict: &'a BTreeMap<HashableValue, Value>, key: &str) -> Option<&'a Value> {
    // Python 2 pickles (the official files) have bytes keys; Python 3 ones may have str keys.
    dict.get(&HashableValue::Bytes(key.as_bytes().to_vec())).or_else(|| dict.get(&HashableValue::String(key.into())))
}

/// The pixel bytes of a pickled `data` value: plain bytes, or a numpy array, whose pickled state tuple
/// `(version, shape, dtype_state, fortran_order, raw_bytes)` survives as nested tuples; the raw bytes are the
/// longest bytes object in it (the dtype state holds short ones like b"|").
fn find_bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::Bytes(b) => Some(b),
        Value::Tuple(items) | Value::List(items) => items.iter().filter_map(find_bytes).max_by_key(|b| b.len()),
        _ => None,
    }
}

fn as_label(v: &Value) -> Option<i64> {
    match v {
        Value::I64(i) => Some(*i),
        _ => None,
    }
}

/// Parses one python-version batch file.
pub fn parse_cifar_pickle(path: &Path, bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let value = serde_pickle::value_from_slice(bytes, DeOptions::new().replace_unresolved_globals())
        .map_err(|e| Error::bad_file(path, format!("not a readable pickle: {e}")))?;
    let Value::Dict(dict) = value else {
        return Err(Error::bad_file(path, "not a CIFAR-10 python batch: the pickle is not a dict"));
    };
    let data =
        dict_get(&dict, "data").ok_or_else(|| Error::bad_file(path, "not a CIFAR-10 python batch: no 'data' key"))?;
    let images = find_bytes(data)
        .ok_or_else(|| Error::bad_file(path, "'data' is neither bytes nor a pickled uint8 numpy array"))?
        .to_vec();
    if images.is_empty() || !images.len().is_multiple_of(CIFAR_IMAGE_BYTES) {
        return Err(Error::bad_file(
            path,
            format!(
                "wrong record size: 'data' holds {} bytes, not a positive multiple of {CIFAR_IMAGE_BYTES}",
                images.len()
            ),
        ));
    }
    let Some(Value::List(label_values)) = dict_get(&dict, "labels") else {
        return Err(Error::bad_file(path, "not a CIFAR-10 python batch: no 'labels' list"));
    };
    let mut labels = Vec::with_capacity(label_values.len());
    for (i, v) in label_values.iter().enumerate() {
        match as_label(v) {
            Some(l) if (0..CLASSES as i64).contains(&l) => labels.push(l as u8),
            _ => return Err(Error::bad_file(path, format!("label {i} is {v:?}, expected an int 0-9"))),
        }
    }
    let n = images.len() / CIFAR_IMAGE_BYTES;
    if labels.len() != n {
        return Err(Error::bad_file(
            path,
            format!("image/label count mismatch: {n} images but {} labels", labels.len()),
        ));
    }
    Ok((images, labels))
}

enum Version {
    Binary,
    Python,
}

/// Finds the directory holding the batches and its version. Binary is preferred over python when both exist.
fn locate(dir: &Path) -> Result<(PathBuf, Version)> {
    let options = [
        (dir.join("cifar-10-batches-bin"), "data_batch_1.bin", Version::Binary),
        (dir.to_path_buf(), "data_batch_1.bin", Version::Binary),
        (dir.join("cifar-10-batches-bin"), "test_batch.bin", Version::Binary),
        (dir.to_path_buf(), "test_batch.bin", Version::Binary),
        (dir.join("cifar-10-batches-bin"), "test_batch_first1000.bin", Version::Binary),
        (dir.to_path_buf(), "test_batch_first1000.bin", Version::Binary),
        (dir.join("cifar-10-batches-py"), "data_batch_1", Version::Python),
        (dir.to_path_buf(), "data_batch_1", Version::Python),
        (dir.join("cifar-10-batches-py"), "test_batch", Version::Python),
        (dir.to_path_buf(), "test_batch", Version::Python),
    ];
    let mut tried = Vec::new();
    for (d, probe, version) in options {
        let p = d.join(probe);
        if p.is_file() {
            return Ok((d, version));
        }
        tried.push(p.display().to_string());
    }
    Err(Error::msg(format!("CIFAR-10 batches not found; tried: {}", tried.join(", "))))
}

/// CIFAR-10 from `dir` (the batches directory itself, or its parent holding `cifar-10-batches-bin` /
/// `cifar-10-batches-py`).
pub fn load_cifar10(dir: &Path, train: bool) -> Result<Dataset> {
    let (batch_dir, version) = locate(dir)?;
    let ext = match version {
        Version::Binary => ".bin",
        Version::Python => "",
    };
    let files: Vec<PathBuf> = if train {
        (1..=5).map(|i| batch_dir.join(format!("data_batch_{i}{ext}"))).collect()
    } else {
        let full = batch_dir.join(format!("test_batch{ext}"));
        let partial = batch_dir.join("test_batch_first1000.bin");
        vec![if !full.is_file() && matches!(version, Version::Binary) && partial.is_file() { partial } else { full }]
    };
    let mut parts = Parts::default();
    for path in &files {
        if !path.is_file() {
            return Err(Error::bad_file(path, "missing CIFAR-10 batch file (train needs data_batch_1..5)"));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (images, labels) = match version {
            Version::Binary => parse_cifar_bin(path, &bytes)?,
            Version::Python => parse_cifar_pickle(path, &bytes)?,
        };
        parts.images.extend_from_slice(&images);
        parts.labels.extend_from_slice(&labels);
    }
    let split = if train { "train" } else { "test" };
    let n = parts.labels.len();
    Dataset {
        name: format!("cifar10-{split}"),
        images: parts.images,
        labels: parts.labels,
        n,
        channels: 3,
        height: 32,
        width: 32,
    }
    .check()
}
