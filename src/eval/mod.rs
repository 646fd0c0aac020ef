//! Evaluation: FID and Inception Score with pytorch-fid's Inception network (`inception`, `fid`), the
//! variational bound in bits/dim (`nll`), the empirical optimal denoiser and the memorization report
//! (`empirical`), and the command-line glue (`cli`). `pth` reads the PyTorch weights file.

pub mod cli;
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
