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

/// PNG bytes of RGB or grayscale pixel rows.
pub fn encode_png(pixels: &[u8], width: usize, height: usize, channels: usize) -> Result<Vec<u8>> {
    let color = match channels {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        c => return Err(Error::msg(format!("cannot write a {c}-channel PNG"))),
    };
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    let png_err = |e: png::EncodingError| Error::msg(format!("PNG encoding failed: {e}"));
    let mut w = enc.write_header().map_err(png_err)?;
    w.write_image_data(pixels).map_err(png_err)?;
    w.finish().map_err(png_err)?;
    Ok(out)
}

/// Write RGB or grayscale pixel rows as PNG.
pub fn write_png(path: &Path, pixels: &[u8], width: usize, height: usize, channels: usize) -> Result<()> {
    let bytes = encode_png(pixels, width, height, channels).map_err(|e| Error::bad_file(path, e.to_string()))?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// The image formats figures are written in, from the file name: `.png`, or `.jpg`/`.jpeg` (JPEG, quality 95).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
}

/// Check, before any work, that a figure can be written to `path` (given by `flag`): a known extension, not a
/// directory, and a parent directory that exists. Errors name the flag and the path.
pub fn check_image_path(flag: &str, path: &Path) -> Result<ImageFormat> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let format = match ext.as_deref() {
        Some("png") => ImageFormat::Png,
        Some("jpg" | "jpeg") => ImageFormat::Jpeg,
        _ => {
            return Err(Error::msg(format!(
                "{flag} {}: the figure is written as PNG (.png) or JPEG (.jpg, .jpeg); give one of those extensions",
                path.display()
            )))
        }
    };
    check_output_path(flag, path)?;
    Ok(format)
}

/// Check that `path` (given by `flag`) can be created: not a directory, and its parent directory exists.
pub fn check_output_path(flag: &str, path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(Error::msg(format!("{flag} {}: is a directory, expected a file name", path.display())));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(Error::msg(format!(
            "{flag} {}: the directory {} does not exist",
            path.display(),
            parent.display()
        )));
    }
    Ok(())
}

/// Write pixel rows as PNG or JPEG, by the file's extension (see `check_image_path`).
pub fn write_image(path: &Path, pixels: &[u8], width: usize, height: usize, channels: usize) -> Result<()> {
    match check_image_path("image", path) {
        Ok(ImageFormat::Png) | Err(_) => write_png(path, pixels, width, height, channels),
        Ok(ImageFormat::Jpeg) => {
            let color = match channels {
                1 => image::ExtendedColorType::L8,
                3 => image::ExtendedColorType::Rgb8,
                c => return Err(Error::msg(format!("cannot write a {c}-channel JPEG"))),
            };
            let file = File::create(path).map_err(|e| Error::io(path, e))?;
            let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(BufWriter::new(file), 95);
            enc.encode(pixels, width as u32, height as u32, color)
                .map_err(|e| Error::bad_file(path, format!("JPEG encoding failed: {e}")))
        }
    }
}

/// A grid image: pixel rows (HWC, u8), width, height, channels.
pub struct Grid {
    pub pixels: Vec<u8>,
    pub width: usize,
    pub height: usize,
    pub channels: usize,
}

impl Grid {
    pub fn png(&self) -> Result<Vec<u8>> {
        encode_png(&self.pixels, self.width, self.height, self.channels)
    }
}

/// Tile images [N, C, H, W] in [−1, 1] into a grid of `cols` columns with a 2-pixel border, scaled up `zoom`×.
pub fn grid(images: &Tensor, cols: usize, zoom: usize) -> Result<Grid> {
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
    Ok(Grid { pixels: grid, width: gw, height: gh, channels: c })
}

/// `grid` written to `path` (PNG, or JPEG for .jpg/.jpeg).
pub fn save_grid(path: &Path, images: &Tensor, cols: usize, zoom: usize) -> Result<()> {
    let g = grid(images, cols, zoom)?;
    write_image(path, &g.pixels, g.width, g.height, g.channels)
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

/// The font of the figures' labels: an ASCII subset of DejaVu Sans (assets/fonts), so no system fonts are needed.
static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-subset.ttf");

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, FONT);
    });
}

/// Centred moving average of `ys` over `2·half + 1` points (fewer at the ends).
pub fn smooth(ys: &[f64], half: usize) -> Vec<f64> {
    (0..ys.len())
        .map(|i| {
            let (a, b) = (i.saturating_sub(half), (i + half + 1).min(ys.len()));
            ys[a..b].iter().sum::<f64>() / (b - a) as f64
        })
        .collect()
}

/// A line plot with axes, ticks and labels: the raw points (light dots), a smoothed line over them, and a
/// log-scale y axis when `log_y`. Points with a non-finite y (or y ≤ 0 on a log axis) are left out.
pub fn save_plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64)],
    log_y: bool,
) -> Result<()> {
    use plotters::prelude::*;
    register_font();
    let pts: Vec<(f64, f64)> =
        points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite() && (!log_y || p.1 > 0.0)).collect();
    let (w, h) = (800u32, 450u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let plot_err = |e: String| Error::msg(format!("{}: drawing the plot failed: {e}", path.display()));
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(e.to_string()))?;
        let (x0, x1) = match (pts.first(), pts.last()) {
            (Some(a), Some(b)) if b.0 > a.0 => (a.0 - (b.0 - a.0) * 0.02, b.0 + (b.0 - a.0) * 0.02),
            (Some(a), _) => (a.0 - 1.0, a.0 + 1.0),
            _ => (0.0, 1.0),
        };
        let lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if pts.is_empty() { (if log_y { 0.1 } else { 0.0 }, 1.0) } else { (lo, hi) };
        // About 50 points per window side at 5,000 logged points; none (the points joined) below 40.
        let half = pts.len() / 40;
        let smoothed = smooth(&pts.iter().map(|p| if log_y { p.1.ln() } else { p.1 }).collect::<Vec<_>>(), half);
        let line: Vec<(f64, f64)> =
            pts.iter().zip(&smoothed).map(|(p, &s)| (p.0, if log_y { s.exp() } else { s })).collect();
        let mut chart = ChartBuilder::on(&root);
        chart.caption(title, ("sans-serif", 22)).margin(12).x_label_area_size(44).y_label_area_size(70);
        let dot = RGBColor(31, 119, 180).mix(0.45);
        let line_label =
            if half == 0 { "logged values joined".to_string() } else { format!("moving average of {}", 2 * half + 1) };
        let blue = RGBColor(31, 119, 180);
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart.map_err(|e| plot_err(e.to_string()))?;
                chart
                    .configure_mesh()
                    .x_desc(x_label)
                    .y_desc(y_label)
                    .x_labels(8)
                    .y_labels(12)
                    .x_label_formatter(&|x| format!("{x:.0}"))
                    .y_label_formatter(&|y| format!("{y:.3}"))
                    .label_style(("sans-serif", 14))
                    .axis_desc_style(("sans-serif", 16))
                    .light_line_style(RGBColor(235, 235, 235))
                    .draw()
                    .map_err(|e| plot_err(e.to_string()))?;
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, dot.filled())))
                    .map_err(|e| plot_err(e.to_string()))?
                    .label("logged value")
                    .legend(move |(x, y)| Circle::new((x + 10, y), 3, dot.filled()));
                chart
                    .draw_series(LineSeries::new(line.iter().copied(), blue.stroke_width(2)))
                    .map_err(|e| plot_err(e.to_string()))?
                    .label(line_label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(2)));
                chart
                    .configure_series_labels()
                    .label_font(("sans-serif", 14))
                    .background_style(WHITE.mix(0.85))
                    .border_style(RGBColor(200, 200, 200))
                    .position(SeriesLabelPosition::UpperRight)
                    .draw()
                    .map_err(|e| plot_err(e.to_string()))?;
            }};
        }
        if log_y {
            draw!(chart.build_cartesian_2d(x0..x1, (lo * 0.9..hi * 1.1).log_scale()));
        } else {
            let pad = ((hi - lo) * 0.05).max(1e-9);
            draw!(chart.build_cartesian_2d(x0..x1, lo - pad..hi + pad));
        }
        root.present().map_err(|e| plot_err(e.to_string()))?;
    }
    write_image(path, &buf, w as usize, h as usize, 3)
}

/// The training loss against the step: log-scale loss, the logged points and their smoothed line.
pub fn save_loss_curve(path: &Path, points: &[(u64, f32)]) -> Result<()> {
    let pts: Vec<(f64, f64)> = points.iter().map(|&(s, l)| (s as f64, l as f64)).collect();
    save_plot(path, "training loss (L_simple)", "step", "loss (log scale)", &pts, true)
}
