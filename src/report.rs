//! What a run shows a person: sample grids and figures as PNG, the loss curve as PNG, and samples as the npz
//! (uint8 [N, H, W, C] under `arr_0`) that standard FID tools read.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use crate::{Error, Result, Tensor};

/// Images in [−1, 1] → bytes, as the official code: round((x + 1) · 127.5) clamped to 0..=255.
pub fn to_u8(x: f32) -> u8 {
    ((x + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8
}

/// Images [N, C, H, W] in [−1, 1] → uint8 [N, H, W, C].
pub fn to_nhwc_u8(images: &Tensor) -> Result<(Vec<u8>, [usize; 4])> {
    let (n, c, h, w) = images.dims4("to_nhwc_u8")?;
    let v = images.to_vec()?;
    let mut out = vec![0u8; n * h * w * c];
    for i in 0..n {
        for ch in 0..c {
            for p in 0..h * w {
                out[(i * h * w + p) * c + ch] = to_u8(v[(i * c + ch) * h * w + p]);
            }
        }
    }
    Ok((out, [n, h, w, c]))
}

/// Write RGB or grayscale pixel rows as PNG.
pub fn write_png(path: &Path, pixels: &[u8], width: usize, height: usize, channels: usize) -> Result<()> {
    let color = match channels {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        c => return Err(Error::msg(format!("cannot write a {c}-channel PNG"))),
    };
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut enc = png::Encoder::new(BufWriter::new(file), width as u32, height as u32);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    let png_err = |e: png::EncodingError| Error::bad_file(path, format!("PNG encoding failed: {e}"));
    let mut w = enc.write_header().map_err(png_err)?;
    w.write_image_data(pixels).map_err(png_err)?;
    w.finish().map_err(png_err)
}

/// Tile images [N, C, H, W] in [−1, 1] into a grid of `cols` columns with a 2-pixel border, scaled up `zoom`×.
pub fn save_grid(path: &Path, images: &Tensor, cols: usize, zoom: usize) -> Result<()> {
    let (data, [n, h, w, c]) = to_nhwc_u8(images)?;
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols);
    let (cell_h, cell_w) = (h * zoom + 2, w * zoom + 2);
    let (gh, gw) = (rows * cell_h + 2, cols * cell_w + 2);
    let mut grid = vec![255u8; gh * gw * c];
    for i in 0..n {
        let (r0, c0) = (2 + (i / cols) * cell_h, 2 + (i % cols) * cell_w);
        for y in 0..h * zoom {
            for x in 0..w * zoom {
                let src = ((i * h + y / zoom) * w + x / zoom) * c;
                let dst = ((r0 + y) * gw + c0 + x) * c;
                grid[dst..dst + c].copy_from_slice(&data[src..src + c]);
            }
        }
    }
    write_png(path, &grid, gw, gh, c)
}

/// Samples as `arr_0`: uint8 [N, H, W, C] in an npz (the layout FID tools read).
pub fn save_npz(path: &Path, images: &Tensor) -> Result<()> {
    let (data, shape) = to_nhwc_u8(images)?;
    save_npz_u8(path, &data, shape)
}

pub fn save_npz_u8(path: &Path, data: &[u8], shape: [usize; 4]) -> Result<()> {
    use npyz::zip::{write::FileOptions, ZipWriter};
    use npyz::WriterBuilder;
    let io = |e: std::io::Error| Error::io(path, e);
    let file = File::create(path).map_err(io)?;
    let mut zip = ZipWriter::new(BufWriter::new(file));
    zip.start_file(npyz::npz::file_name_from_array_name("arr_0"), FileOptions::default())
        .map_err(|e| Error::bad_file(path, format!("zip: {e}")))?;
    let shape64: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::new().default_dtype().shape(&shape64).writer(&mut zip).begin_nd().map_err(io)?;
    w.extend(data.iter().copied()).map_err(io)?;
    w.finish().map_err(io)?;
    zip.finish().map_err(|e| Error::bad_file(path, format!("zip: {e}")))?;
    Ok(())
}

/// A plain line plot of (step, loss) on a log-loss axis with light grid lines at each power of ten; the numbers
/// themselves are in metrics.jsonl.
pub fn save_loss_curve(path: &Path, points: &[(u64, f32)]) -> Result<()> {
    let (w, h, m) = (640usize, 360usize, 20usize);
    let mut img = vec![255u8; w * h * 3];
    let pts: Vec<(f64, f64)> =
        points.iter().filter(|p| p.1.is_finite() && p.1 > 0.0).map(|&(s, l)| (s as f64, (l as f64).log10())).collect();
    if pts.len() >= 2 {
        let (x0, x1) = (pts[0].0, pts[pts.len() - 1].0.max(pts[0].0 + 1.0));
        let lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min).floor();
        let hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max).ceil().max(lo + 1.0);
        let px = |x: f64| m + ((x - x0) / (x1 - x0) * (w - 2 * m) as f64) as usize;
        let py = |y: f64| h - m - ((y - lo) / (hi - lo) * (h - 2 * m) as f64) as usize;
        let mut put = |x: usize, y: usize, rgb: [u8; 3]| {
            if x < w && y < h {
                img[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&rgb);
            }
        };
        for decade in lo as i64..=hi as i64 {
            let y = py(decade as f64);
            (m..w - m).for_each(|x| put(x, y, [220, 220, 220]));
        }
        (m..h - m).for_each(|y| put(m, y, [0, 0, 0]));
        (m..w - m).for_each(|x| put(x, h - m, [0, 0, 0]));
        for pair in pts.windows(2) {
            let (ax, ay, bx, by) = (px(pair[0].0), py(pair[0].1), px(pair[1].0), py(pair[1].1));
            let steps = ax.abs_diff(bx).max(ay.abs_diff(by)).max(1);
            for k in 0..=steps {
                let f = k as f64 / steps as f64;
                let x = ax as f64 + (bx as f64 - ax as f64) * f;
                let y = ay as f64 + (by as f64 - ay as f64) * f;
                put(x.round() as usize, y.round() as usize, [31, 119, 180]);
            }
        }
    }
    write_png(path, &img, w, h, 3)
}
