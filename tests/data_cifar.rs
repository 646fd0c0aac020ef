//! CIFAR-10 binary and python versions on fixture files written here (3 records per file), malformed variants,
//! and (when present) the real binary batches.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ddpm_cuda::data::{load, load_cifar10, DatasetKind};
use serde_pickle::{HashableValue, SerOptions, Value};

fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("ddpm-data-cifar-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Image `id` of the fixtures: byte k = (id·31 + k·7) mod 256, label id mod 10.
fn image(id: usize) -> Vec<u8> {
    (0..3072).map(|k| ((id * 31 + k * 7) % 256) as u8).collect()
}

fn records(ids: std::ops::Range<usize>) -> Vec<u8> {
    ids.flat_map(|id| {
        let mut r = vec![(id % 10) as u8];
        r.extend(image(id));
        r
    })
    .collect()
}

/// `dir/cifar-10-batches-bin/` with data_batch_1..5 (ids 0..15, 3 each) and a 3-record test file.
fn write_bin(dir: &Path, test_name: &str) -> PathBuf {
    let bin = dir.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for b in 0..5 {
        std::fs::write(bin.join(format!("data_batch_{}.bin", b + 1)), records(b * 3..b * 3 + 3)).unwrap();
    }
    std::fs::write(bin.join(test_name), records(100..103)).unwrap();
    bin
}

fn check_split(ds: &ddpm_cuda::data::Dataset, ids: std::ops::Range<usize>) {
    assert_eq!((ds.n, ds.channels, ds.height, ds.width), (ids.len(), 3, 32, 32));
    for (i, id) in ids.enumerate() {
        assert_eq!(ds.image_u8(i), &image(id)[..], "image {i}");
        assert_eq!(ds.labels[i], (id % 10) as u8);
    }
}

#[test]
fn binary_version_train_and_test() {
    let dir = temp_dir("bin");
    let bin = write_bin(&dir, "test_batch.bin");
    check_split(&load_cifar10(&dir, true).unwrap(), 0..15);
    check_split(&load_cifar10(&bin, true).unwrap(), 0..15); // the batches directory itself
    check_split(&load(DatasetKind::Cifar10, &dir, false, 0).unwrap(), 100..103);
    // Channel planes: value at (c=2, y=1, x=3) of image 4 is byte 2·1024 + 1·32 + 3 of its record's pixels.
    let ds = load_cifar10(&dir, true).unwrap();
    let mut out = vec![0f32; 3072];
    ds.image_f32(4, false, &mut out);
    let k = 2 * 1024 + 32 + 3;
    assert_eq!(out[k], ((4 * 31 + k * 7) % 256) as f32 / 127.5 - 1.0);
}

#[test]
fn binary_test_falls_back_to_first1000_file() {
    let dir = temp_dir("first1000");
    write_bin(&dir, "test_batch_first1000.bin");
    check_split(&load_cifar10(&dir, false).unwrap(), 100..103);
}

#[test]
fn binary_malformed_variants_name_the_file() {
    let dir = temp_dir("binbad");
    let bin = write_bin(&dir, "test_batch.bin");

    let mut short = records(6..9);
    short.truncate(3 * 3073 - 5);
    std::fs::write(bin.join("data_batch_3.bin"), &short).unwrap();
    let err = load_cifar10(&dir, true).unwrap_err().to_string();
    assert!(err.contains("data_batch_3.bin") && err.contains("9214 bytes") && err.contains("3073"), "{err}");

    std::fs::write(bin.join("data_batch_3.bin"), b"").unwrap();
    let err = load_cifar10(&dir, true).unwrap_err().to_string();
    assert!(err.contains("data_batch_3.bin") && err.contains("3073"), "{err}");

    let mut bad_label = records(6..9);
    bad_label[3073] = 200;
    std::fs::write(bin.join("data_batch_3.bin"), &bad_label).unwrap();
    let err = load_cifar10(&dir, true).unwrap_err().to_string();
    assert!(err.contains("data_batch_3.bin") && err.contains("record 1 has label 200"), "{err}");

    std::fs::remove_file(bin.join("data_batch_3.bin")).unwrap();
    let err = load_cifar10(&dir, true).unwrap_err().to_string();
    assert!(err.contains("data_batch_3.bin") && err.contains("missing"), "{err}");

    let empty = temp_dir("none");
    let err = load_cifar10(&empty, true).unwrap_err().to_string();
    assert!(err.contains("cifar-10-batches-bin") && err.contains("cifar-10-batches-py"), "{err}");
}

fn key(s: &str) -> HashableValue {
    HashableValue::Bytes(s.as_bytes().to_vec())
}

/// A python-version batch as serde-pickle writes it: data as plain bytes.
fn plain_pickle(ids: std::ops::Range<usize>, labels: Option<Vec<i64>>) -> Vec<u8> {
    let data: Vec<u8> = ids.clone().flat_map(image).collect();
    let labels = labels.unwrap_or_else(|| ids.map(|id| (id % 10) as i64).collect());
    let mut dict = BTreeMap::new();
    dict.insert(key("batch_label"), Value::Bytes(b"training batch 1 of 5".to_vec()));
    dict.insert(key("data"), Value::Bytes(data));
    dict.insert(key("labels"), Value::List(labels.into_iter().map(Value::I64).collect()));
    serde_pickle::value_to_vec(&Value::Dict(dict), SerOptions::new().proto_v2()).unwrap()
}

/// A python-version batch written opcode by opcode the way Python 2's cPickle (protocol 2) stores the official
/// files: `data` is a numpy uint8 array (GLOBAL numpy.core.multiarray._reconstruct, REDUCE, BUILD with the state
/// tuple (1, (n, 3072), dtype, False, raw_bytes)).
fn numpy_pickle(ids: std::ops::Range<usize>) -> Vec<u8> {
    let n = ids.len();
    let data: Vec<u8> = ids.clone().flat_map(image).collect();
    let mut p = vec![0x80, 2, b'}', b'('];
    let short_str = |p: &mut Vec<u8>, s: &[u8]| {
        p.extend([b'U', s.len() as u8]);
        p.extend_from_slice(s);
    };
    short_str(&mut p, b"data");
    p.extend_from_slice(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85");
    short_str(&mut p, b"b");
    p.extend_from_slice(b"\x87R(K\x01");
    p.push(b'J');
    p.extend_from_slice(&(n as i32).to_le_bytes());
    p.extend_from_slice(b"M\x00\x0c\x86cnumpy\ndtype\n");
    short_str(&mut p, b"u1");
    p.extend_from_slice(b"K\x00K\x01\x87R(K\x03");
    short_str(&mut p, b"|");
    p.extend_from_slice(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T");
    p.extend_from_slice(&(data.len() as u32).to_le_bytes());
    p.extend_from_slice(&data);
    p.extend_from_slice(b"tb");
    short_str(&mut p, b"labels");
    p.extend_from_slice(b"](");
    for id in ids {
        p.extend([b'K', (id % 10) as u8]);
    }
    p.extend_from_slice(b"eu.");
    p
}

fn write_py(dir: &Path, numpy: bool) -> PathBuf {
    let py = dir.join("cifar-10-batches-py");
    std::fs::create_dir_all(&py).unwrap();
    let make = |ids: std::ops::Range<usize>| if numpy { numpy_pickle(ids) } else { plain_pickle(ids, None) };
    for b in 0..5 {
        std::fs::write(py.join(format!("data_batch_{}", b + 1)), make(b * 3..b * 3 + 3)).unwrap();
    }
    std::fs::write(py.join("test_batch"), make(100..103)).unwrap();
    py
}

#[test]
fn python_version_plain_and_numpy_pickles_match_binary() {
    for numpy in [false, true] {
        let dir = temp_dir("py");
        write_py(&dir, numpy);
        let train = load_cifar10(&dir, true).unwrap();
        check_split(&train, 0..15);
        check_split(&load_cifar10(&dir, false).unwrap(), 100..103);
        // Same images as the binary version of the same data.
        let bin_dir = temp_dir("pybin");
        write_bin(&bin_dir, "test_batch.bin");
        assert_eq!(train.images, load_cifar10(&bin_dir, true).unwrap().images);
    }
}

#[test]
fn python_malformed_variants_name_the_file() {
    let dir = temp_dir("pybad");
    let py = write_py(&dir, false);
    let batch2 = py.join("data_batch_2");

    std::fs::write(&batch2, plain_pickle(3..6, Some(vec![1, 2]))).unwrap();
    let err = load_cifar10(&dir, true).unwrap_err().to_string();
    assert!(err.contains("data_batch_2") && err.contains("3 images but 2 labels"), "{err}");

    std::fs::write(&batch2, plain_pickle(3..6, Some(vec![1, 2, 12]))).unwrap();
    let err = load_cifar10(&dir, true).unwrap_err().to_string();
    assert!(err.contains("data_batch_2") && err.contains("label 2"), "{err}");

    let good = plain_pickle(3..6, None);
    std::fs::write(&batch2, &good[..good.len() / 2]).unwrap();
    let err = load_cifar10(&dir, true).unwrap_err().to_string();
    assert!(err.contains("data_batch_2") && err.contains("pickle"), "{err}");

    let mut dict = BTreeMap::new();
    dict.insert(key("data"), Value::Bytes(vec![0; 3072 + 5]));
    dict.insert(key("labels"), Value::List(vec![Value::I64(1)]));
    let odd = serde_pickle::value_to_vec(&Value::Dict(dict), SerOptions::new()).unwrap();
    std::fs::write(&batch2, odd).unwrap();
    let err = load_cifar10(&dir, true).unwrap_err().to_string();
    assert!(err.contains("data_batch_2") && err.contains("3077 bytes"), "{err}");

    let not_dict = serde_pickle::value_to_vec(&Value::List(vec![]), SerOptions::new()).unwrap();
    std::fs::write(&batch2, not_dict).unwrap();
    let err = load_cifar10(&dir, true).unwrap_err().to_string();
    assert!(err.contains("data_batch_2") && err.contains("not a dict"), "{err}");
}

#[test]
#[ignore = "needs ../shared/data/cifar10; CI runs it: cargo test --release -- --ignored shared_data_"]
fn shared_data_real_cifar10() {
    let dir = common::shared_data("cifar10", "cifar-10-batches-bin/data_batch_5.bin");
    let train = load_cifar10(&dir, true).unwrap();
    assert_eq!(train.n, 50000);
    let mut hist = [0usize; 10];
    train.labels.iter().for_each(|&l| hist[l as usize] += 1);
    assert_eq!(hist, [5000; 10]);
    assert_eq!(&train.labels[..10], &[6, 9, 9, 4, 1, 1, 2, 7, 8, 3]);
    // Red plane, first row of the first training image (a widely published value).
    assert_eq!(&train.image_u8(0)[..10], &[59, 43, 50, 68, 98, 119, 139, 145, 149, 149]);
    let test = load_cifar10(&dir, false).unwrap();
    assert_eq!(test.n, 1000);
    assert_eq!(&test.labels[..10], &[3, 8, 8, 0, 6, 6, 1, 6, 3, 1]);
}
