//! Image-folder loading: centre crop picks the right pixels, resize keeps the centre, PNG + JPEG, recursion,
//! sorted order, and unreadable files named in the error.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use ddpm_cuda::data::{load, load_folder, DatasetKind};
use image::{Rgb, RgbImage};

fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("ddpm-data-folder-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Pixel (x, y) = (30x, 60y, 7): every pixel distinct in position.
fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([(30 * x) as u8, (60 * y) as u8, 7]))
}

/// Expected CHW bytes of the size×size crop at (x0, y0) of `gradient`, by a naive loop.
fn expected_crop(x0: u32, y0: u32, size: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for c in 0..3 {
        for y in y0..y0 + size {
            for x in x0..x0 + size {
                v.push([(30 * x) as u8, (60 * y) as u8, 7][c]);
            }
        }
    }
    v
}

#[test]
fn centre_crop_of_exact_height_and_width_images() {
    // Wide: 8×4 at size 4 → columns 2..6. Tall: 3×7 at size 3 → rows 2..5 (floor of 4/2).
    let dir = temp_dir("crop");
    gradient(8, 4).save(dir.join("a_wide.png")).unwrap();
    let ds = load_folder(&dir, 4).unwrap();
    assert_eq!((ds.n, ds.channels, ds.height, ds.width), (1, 3, 4, 4));
    assert_eq!(ds.image_u8(0), &expected_crop(2, 0, 4)[..]);
    assert_eq!(ds.labels, vec![0]);

    let dir = temp_dir("tall");
    gradient(3, 7).save(dir.join("tall.png")).unwrap();
    let ds = load_folder(&dir, 3).unwrap();
    assert_eq!(ds.image_u8(0), &expected_crop(0, 2, 3)[..]);
}

#[test]
fn resize_then_crop_keeps_the_centre_band() {
    // 16×8: red for x < 4, green for 4 ≤ x < 12, blue beyond. Size 4 → 8×4 → centre columns 2..6, which came
    // from source columns 4..12: green. The inner two columns are untouched by the filter's reach into red/blue.
    let dir = temp_dir("resize");
    let img = RgbImage::from_fn(16, 8, |x, _| match x {
        0..=3 => Rgb([255, 0, 0]),
        4..=11 => Rgb([0, 255, 0]),
        _ => Rgb([0, 0, 255]),
    });
    img.save(dir.join("bands.png")).unwrap();
    let ds = load_folder(&dir, 4).unwrap();
    assert_eq!((ds.height, ds.width), (4, 4));
    let px = |c: usize, y: usize, x: usize| ds.image_u8(0)[c * 16 + y * 4 + x];
    for y in 0..4 {
        for x in 1..3 {
            assert_eq!((px(0, y, x), px(1, y, x), px(2, y, x)), (0, 255, 0), "pixel ({x},{y})");
        }
    }
}

#[test]
fn png_and_jpeg_recursive_in_sorted_order() {
    // a.jpg: 24×40 (tall), red top 10 rows, green middle 20, blue bottom 10. Size 6 → 6×10 → rows 2..8:
    // the middle rows of the crop are green. sub/b.png: uniform grey 10×6.
    let dir = temp_dir("mixed");
    let jpg = RgbImage::from_fn(24, 40, |_, y| match y {
        0..=9 => Rgb([255, 0, 0]),
        10..=29 => Rgb([0, 255, 0]),
        _ => Rgb([0, 0, 255]),
    });
    jpg.save(dir.join("a.jpg")).unwrap();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    RgbImage::from_pixel(10, 6, Rgb([100, 100, 100])).save(dir.join("sub").join("b.PNG")).unwrap();
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();

    let ds = load(DatasetKind::Folder, &dir, true, 6).unwrap();
    assert_eq!((ds.n, ds.channels, ds.height, ds.width), (2, 3, 6, 6));
    let a = ds.image_u8(0);
    for y in 2..4 {
        for x in 0..6 {
            let (r, g, b) = (a[y * 6 + x], a[36 + y * 6 + x], a[72 + y * 6 + x]);
            assert!(r < 40 && g > 215 && b < 40, "jpeg crop pixel ({x},{y}) = {r},{g},{b}");
        }
    }
    assert!(ds.image_u8(1).iter().all(|&v| v == 100));
}

#[test]
fn unreadable_and_missing_images_are_errors() {
    let dir = temp_dir("broken");
    gradient(8, 8).save(dir.join("good.png")).unwrap();
    std::fs::write(dir.join("broken.png"), b"definitely not a png").unwrap();
    let err = load_folder(&dir, 4).unwrap_err().to_string();
    assert!(err.contains("broken.png") && err.contains("unreadable image"), "{err}");

    let dir = temp_dir("truncated");
    gradient(32, 32).save(dir.join("cut.png")).unwrap();
    let bytes = std::fs::read(dir.join("cut.png")).unwrap();
    std::fs::write(dir.join("cut.png"), &bytes[..bytes.len() / 2]).unwrap();
    let err = load_folder(&dir, 4).unwrap_err().to_string();
    assert!(err.contains("cut.png"), "{err}");

    let empty = temp_dir("empty");
    let err = load_folder(&empty, 4).unwrap_err().to_string();
    assert!(err.contains("no .png/.jpg/.jpeg images"), "{err}");
    assert!(load_folder(&empty.join("does-not-exist"), 4).is_err());
}
