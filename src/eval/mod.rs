//! Evaluation: FID and Inception Score with pytorch-fid's Inception network (`inception`, `fid`), the
//! variational bound in bits/dim (`nll`), the empirical optimal denoiser and the memorization report
//! (`empirical`). `pth` reads the PyTorch weights file.

pub mod empirical;
pub mod fid;
pub mod inception;
pub mod nll;
pub mod pth;

use std::path::Path;

use crate::data::Dataset;
use crate::{Error, Result};

/// uint8 RGB images in NHWC order (grayscale inputs are repeated into three channels, as pytorch-fid's
/// `convert('RGB')` does).
pub struct Images {
    pub pixels: Vec<u8>,
    pub n: usize,
    pub height: usize,
    pub width: usize,
}

impl Images {
    /// `arr_0` of a samples npz: uint8 [N, H, W, C] with C = 1 or 3, or [N, H, W].
    pub fn read_npz(path: &Path) -> Result<Images> {
        let mut npz = npyz::npz::NpzArchive::open(path).map_err(|e| Error::io(path, e))?;
        let arr = npz
            .by_name("arr_0")
            .map_err(|e| Error::bad_file(path, format!("reading arr_0: {e}")))?
            .ok_or_else(|| Error::bad_file(path, "no array 'arr_0' (expected samples: uint8 [N, H, W, C])"))?;
        let shape: Vec<usize> = arr.shape().iter().map(|&d| d as usize).collect();
        let is_u8 = matches!(arr.dtype(), npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Uint && t.size_field() == 1);
        if !is_u8 {
            return Err(Error::bad_file(path, format!("arr_0 has dtype {:?}, expected uint8", arr.dtype())));
        }
        let (n, h, w, c) = match shape[..] {
            [n, h, w] => (n, h, w, 1),
            [n, h, w, c] if c == 1 || c == 3 => (n, h, w, c),
            _ => return Err(Error::bad_file(path, format!("arr_0 has shape {shape:?}, expected [N, H, W, 1 or 3]"))),
        };
        let data = arr.into_vec::<u8>().map_err(|e| Error::bad_file(path, format!("arr_0: {e}")))?;
        let pixels = if c == 3 { data } else { data.iter().flat_map(|&v| [v, v, v]).collect() };
        Ok(Images { pixels, n, height: h, width: w })
    }

    /// A dataset's CHW images as NHWC RGB.
    pub fn from_dataset(ds: &Dataset) -> Images {
        let (c, hw) = (ds.channels, ds.height * ds.width);
        let mut pixels = vec![0u8; ds.n * hw * 3];
        for i in 0..ds.n {
            let img = ds.image_u8(i);
            for p in 0..hw {
                for ch in 0..3 {
                    pixels[(i * hw + p) * 3 + ch] = img[(ch % c) * hw + p];
                }
            }
        }
        Images { pixels, n: ds.n, height: ds.height, width: ds.width }
    }

    pub fn image_len(&self) -> usize {
        self.height * self.width * 3
    }
}

/// pool3 features [N, 2048] and unbiased logits [N, 1008] of all images, in batches, with a progress bar.
pub fn extract_features(
    net: &inception::Inception,
    images: &Images,
    batch_size: usize,
    label: &str,
) -> Result<(Vec<f32>, Vec<f32>)> {
    if images.n == 0 || batch_size == 0 {
        return Err(Error::msg(format!("{label}: no images (or --batch-size 0)")));
    }
    let bar = indicatif::ProgressBar::new(images.n as u64).with_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} images [{elapsed} < {eta}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("Inception: {label}"));
    let (mut pool3, mut logits) =
        (Vec::with_capacity(images.n * inception::POOL3_DIM), Vec::with_capacity(images.n * inception::NUM_LOGITS));
    let len = images.image_len();
    for start in (0..images.n).step_by(batch_size) {
        let count = batch_size.min(images.n - start);
        let out =
            net.run_u8_nhwc(&images.pixels[start * len..(start + count) * len], count, images.height, images.width)?;
        pool3.extend(out.pool3);
        logits.extend(out.logits);
        bar.inc(count as u64);
    }
    bar.finish_and_clear();
    Ok((pool3, logits))
}

/// For tests and benches: the statistics of an npz of images through a given network.
pub fn stats_of_npz(net: &inception::Inception, path: &Path, batch: usize) -> Result<fid::Stats> {
    let images = Images::read_npz(path)?;
    let (pool3, _) = extract_features(net, &images, batch, "images")?;
    fid::Stats::from_features(&pool3, images.n, inception::POOL3_DIM)
}

/// Samples as CHW rows in [−1, 1] with `channels` channels (1: the first of the RGB copies).
pub fn images_to_rows(images: &Images, channels: usize) -> Vec<f32> {
    let hw = images.height * images.width;
    let mut out = vec![0.0f32; images.n * channels * hw];
    for i in 0..images.n {
        for ch in 0..channels {
            for p in 0..hw {
                out[(i * channels + ch) * hw + p] = images.pixels[(i * hw + p) * 3 + ch] as f32 / 127.5 - 1.0;
            }
        }
    }
    out
}
