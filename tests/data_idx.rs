//! MNIST / Fashion-MNIST IDX loading on fixture files written here, every malformed variant, and (when present)
//! the real MNIST files.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ddpm_cuda::data::{load, load_fashion_mnist, load_mnist, DatasetKind};

fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("ddpm-data-idx-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn idx_images(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [2051, n, rows, cols] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(pixels);
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&2049u32.to_be_bytes());
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// 3 images of 4×5 (non-square, to catch swapped rows/cols), pixel value = 20·image + position.
fn fixture_pixels() -> Vec<u8> {
    (0..3 * 20).map(|i| ((i / 20) * 20 + i % 20) as u8).collect()
}

fn write_pair(dir: &Path, prefix: &str, gzip: bool) {
    let (imgs, labs) = (idx_images(3, 4, 5, &fixture_pixels()), idx_labels(&[7, 0, 9]));
    let (imgs, labs, ext) = if gzip { (gz(&imgs), gz(&labs), ".gz") } else { (imgs, labs, "") };
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte{ext}")), imgs).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")), labs).unwrap();
}

#[test]
fn raw_idx_flat_layout_loads_pixels_and_labels() {
    let dir = temp_dir("raw");
    write_pair(&dir, "train", false);
    let ds = load_mnist(&dir, true).unwrap();
    assert_eq!((ds.n, ds.channels, ds.height, ds.width), (3, 1, 4, 5));
    assert_eq!(ds.images, fixture_pixels());
    assert_eq!(ds.labels, vec![7, 0, 9]);
    // The test split needs t10k files, which are absent: the error lists the paths tried.
    let err = load_mnist(&dir, false).unwrap_err().to_string();
    assert!(err.contains("t10k-images-idx3-ubyte.gz") && err.contains("MNIST/raw"), "{err}");
}

#[test]
fn gz_idx_in_torchvision_layouts() {
    let root = temp_dir("tv");
    let mnist_raw = root.join("MNIST").join("raw");
    let fashion_raw = root.join("FashionMNIST").join("raw");
    std::fs::create_dir_all(&mnist_raw).unwrap();
    std::fs::create_dir_all(&fashion_raw).unwrap();
    write_pair(&mnist_raw, "t10k", true);
    write_pair(&fashion_raw, "train", true);
    let test = load_mnist(&root, false).unwrap();
    assert_eq!((test.n, test.height, test.width), (3, 4, 5));
    assert_eq!(test.images, fixture_pixels());
    let fashion = load(DatasetKind::FashionMnist, &root, true, 0).unwrap();
    assert_eq!(fashion.labels, vec![7, 0, 9]);
    // Fashion-MNIST's train files are not MNIST's: they must not be picked up for MNIST.
    assert!(load_mnist(&root, true).is_err());
    assert!(load_fashion_mnist(&root, false).is_err());
}

#[test]
fn image_f32_scales_to_unit_range_and_flips_rows() {
    let dir = temp_dir("f32");
    let mut pixels = fixture_pixels();
    pixels[20] = 0; // image 1, row 0, col 0
    pixels[24] = 255; // image 1, row 0, col 4
    std::fs::write(dir.join("train-images-idx3-ubyte"), idx_images(3, 4, 5, &pixels)).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), idx_labels(&[1, 2, 3])).unwrap();
    let ds = load_mnist(&dir, true).unwrap();
    let mut out = vec![0f32; 20];
    ds.image_f32(1, false, &mut out);
    assert_eq!(out[0], -1.0);
    assert_eq!(out[4], 1.0);
    for (k, &v) in out.iter().enumerate() {
        assert!((v - (pixels[20 + k] as f32 / 127.5 - 1.0)).abs() < 1e-6);
    }
    let mut flipped = vec![0f32; 20];
    ds.image_f32(1, true, &mut flipped);
    for y in 0..4 {
        for x in 0..5 {
            assert_eq!(flipped[y * 5 + x], out[y * 5 + (4 - x)]);
        }
    }
}

/// Writes a train pair with the given bytes and returns the load error message.
fn load_err(images: Vec<u8>, labels: Vec<u8>, gzip_images: bool) -> (String, PathBuf) {
    let dir = temp_dir("bad");
    let name = if gzip_images { "train-images-idx3-ubyte.gz" } else { "train-images-idx3-ubyte" };
    std::fs::write(dir.join(name), images).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), labels).unwrap();
    (load_mnist(&dir, true).unwrap_err().to_string(), dir)
}

#[test]
fn bad_magic_names_file_and_both_numbers() {
    let mut imgs = idx_images(3, 4, 5, &fixture_pixels());
    imgs[3] = 0x01; // 2049, the label magic
    let (err, _) = load_err(imgs, idx_labels(&[1, 2, 3]), false);
    assert!(
        err.contains("train-images-idx3-ubyte") && err.contains("expected 2051") && err.contains("found 2049"),
        "{err}"
    );

    let mut labs = idx_labels(&[1, 2, 3]);
    labs[2] = 0xff;
    let (err, _) = load_err(idx_images(3, 4, 5, &fixture_pixels()), labs, false);
    assert!(err.contains("train-labels-idx1-ubyte") && err.contains("bad magic"), "{err}");
}

#[test]
fn truncated_files_name_file_and_sizes() {
    let imgs = idx_images(3, 4, 5, &fixture_pixels());
    let (err, _) = load_err(imgs[..imgs.len() - 7].to_vec(), idx_labels(&[1, 2, 3]), false);
    assert!(err.contains("train-images-idx3-ubyte") && err.contains("expected 76 bytes, found 69"), "{err}");

    let (err, _) = load_err(imgs[..10].to_vec(), idx_labels(&[1, 2, 3]), false);
    assert!(err.contains("train-images-idx3-ubyte") && err.contains("truncated"), "{err}");

    let labs = idx_labels(&[1, 2, 3]);
    let (err, _) = load_err(imgs.clone(), labs[..9].to_vec(), false);
    assert!(err.contains("train-labels-idx1-ubyte") && err.contains("expected 11 bytes, found 9"), "{err}");

    // A gzip stream cut in half.
    let packed = gz(&imgs);
    let (err, _) = load_err(packed[..packed.len() / 2].to_vec(), idx_labels(&[1, 2, 3]), true);
    assert!(err.contains("train-images-idx3-ubyte.gz") && err.contains("gzip"), "{err}");
}

#[test]
fn count_mismatch_and_bad_dims_are_reported() {
    let (err, _) = load_err(idx_images(3, 4, 5, &fixture_pixels()), idx_labels(&[1, 2]), false);
    assert!(
        err.contains("train-labels-idx1-ubyte") && err.contains("train-images-idx3-ubyte") && err.contains("mismatch"),
        "{err}"
    );
    let (err, _) = load_err(idx_images(0, 4, 5, &[]), idx_labels(&[]), false);
    assert!(err.contains("train-images-idx3-ubyte") && err.contains("no images"), "{err}");
    let (err, _) = load_err(idx_images(3, 0, 5, &[]), idx_labels(&[1, 2, 3]), false);
    assert!(err.contains("train-images-idx3-ubyte") && err.contains("unsupported image dimensions 0×5"), "{err}");
}

#[test]
#[ignore = "needs ../shared/data/mnist; CI runs it: cargo test --release -- --ignored shared_data_"]
fn shared_data_real_mnist() {
    let dir = common::shared_data("mnist", "train-images-idx3-ubyte.gz");
    let train = load_mnist(&dir, true).unwrap();
    assert_eq!((train.n, train.channels, train.height, train.width), (60000, 1, 28, 28));
    let mut hist = [0usize; 10];
    train.labels.iter().for_each(|&l| hist[l as usize] += 1);
    // The published per-digit counts of the MNIST training set.
    assert_eq!(hist, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
    assert_eq!(hist.iter().sum::<usize>(), 60000);
    let test = load_mnist(&dir, false).unwrap();
    assert_eq!(test.n, 10000);
    let mut hist = [0usize; 10];
    test.labels.iter().for_each(|&l| hist[l as usize] += 1);
    assert_eq!(hist, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
}
