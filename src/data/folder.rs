//! A folder of PNG/JPEG images (e.g. a face or flower collection), searched recursively (symlinked
//! directories are not followed).
//! Files are taken in sorted path order (so the dataset is the same on every machine) and identified by extension
//! (.png, .jpg, .jpeg, any case); other files are skipped. Each image is converted to RGB, resized so its shorter
//! side equals `size` (bilinear/triangle filter; the longer side is scaled by the same factor and truncated,
//! as torchvision's `Resize(size)` does), then centre-cropped to size×size. For an odd excess the crop starts
//! at floor(excess/2). Labels are all 0.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::RgbImage;
use rayon::prelude::*;

use super::Dataset;
use crate::{Error, Result};

fn is_image_file(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
    matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg"))
}

/// Every image file under `dir`, recursively, sorted by path.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let path = entry.path();
            // file_type does not follow symlinks, so a symlinked directory (possibly a loop) is not entered.
            if entry.file_type().map_err(|e| Error::io(&path, e))?.is_dir() {
                pending.push(path);
            } else if is_image_file(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Resizes the shorter side to `size`, then crops the centre size×size square.
pub fn resize_and_centre_crop(img: &RgbImage, size: usize) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let short = w.min(h);
    // Skip resampling when the shorter side already fits, so a crop of an exact-size image is pixel-exact.
    let resized = if short == size {
        img.clone()
    } else {
        let (nw, nh) = if w <= h { (size, (h * size / w).max(size)) } else { ((w * size / h).max(size), size) };
        image::imageops::resize(img, nw as u32, nh as u32, FilterType::Triangle)
    };
    let (rw, rh) = (resized.width() as usize, resized.height() as usize);
    let (x0, y0) = ((rw - size) / 2, (rh - size) / 2);
    image::imageops::crop_imm(&resized, x0 as u32, y0 as u32, size as u32, size as u32).to_image()
}

/// Decodes one image file to size×size RGB, as CHW bytes.
pub fn load_image_chw(path: &Path, size: usize) -> Result<Vec<u8>> {
    let img = image::open(path).map_err(|e| Error::bad_file(path, format!("unreadable image: {e}")))?;
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Err(Error::bad_file(path, format!("unreadable image: empty ({w}×{h})")));
    }
    let square = resize_and_centre_crop(&img.to_rgb8(), size);
    // HWC (interleaved) → CHW (planar).
    let mut chw = vec![0u8; 3 * size * size];
    for (i, px) in square.pixels().enumerate() {
        for c in 0..3 {
            chw[c * size * size + i] = px.0[c];
        }
    }
    Ok(chw)
}

/// Every PNG/JPEG under `dir` as size×size RGB.
pub fn load_folder(dir: &Path, size: usize) -> Result<Dataset> {
    if size == 0 {
        return Err(Error::msg("load_folder: image size must be positive"));
    }
    let files = list_images(dir)?;
    if files.is_empty() {
        return Err(Error::msg(format!("no .png/.jpg/.jpeg images found under {}", dir.display())));
    }
    // Decoding dominates; spread it over the cores (the order of `files` is kept).
    let decoded: Vec<Vec<u8>> = files.par_iter().map(|path| load_image_chw(path, size)).collect::<Result<_>>()?;
    let images = decoded.concat();
    let n = files.len();
    let name = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "folder".into());
    Dataset { name, images, labels: vec![0; n], n, channels: 3, height: size, width: size }.check()
}
