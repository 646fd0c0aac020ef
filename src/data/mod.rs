//! Datasets: MNIST / Fashion-MNIST (IDX), CIFAR-10 (binary and python versions) and folders of PNG/JPEG images,
//! all decoded into one in-memory `Dataset` of u8 pixels (N×C×H×W). `Loader` turns a dataset into shuffled,
//! optionally flipped f32 batches in [−1, 1] on a background thread; `download` fetches the public datasets.

pub mod cifar;
pub mod download;
pub mod folder;
pub mod idx;
pub mod loader;

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

pub use cifar::load_cifar10;
pub use download::download;
pub use folder::load_folder;
pub use idx::{load_fashion_mnist, load_mnist};
pub use loader::{Batch, Loader};

/// A whole dataset in memory as u8 pixels, image-major, each image stored channel-major (CHW).
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    /// n × channels × height × width bytes.
    pub images: Vec<u8>,
    /// One class label per image (0 for unlabelled folders).
    pub labels: Vec<u8>,
    pub n: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl Dataset {
    /// Number of bytes (= f32 values) in one image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The raw bytes of image `i` (CHW).
    pub fn image_u8(&self, i: usize) -> &[u8] {
        let len = self.image_len();
        &self.images[i * len..(i + 1) * len]
    }

    /// Writes image `i` as x/127.5 − 1 (so 0 → −1 and 255 → 1) into `out` (length `image_len()`),
    /// mirrored left-right when `flip` is set.
    pub fn image_f32(&self, i: usize, flip: bool, out: &mut [f32]) {
        assert_eq!(out.len(), self.image_len(), "image_f32: output buffer has the wrong length");
        let w = self.width;
        for (src_row, dst_row) in self.image_u8(i).chunks_exact(w).zip(out.chunks_exact_mut(w)) {
            if flip {
                for (d, &s) in dst_row.iter_mut().zip(src_row.iter().rev()) {
                    *d = s as f32 / 127.5 - 1.0;
                }
            } else {
                for (d, &s) in dst_row.iter_mut().zip(src_row) {
                    *d = s as f32 / 127.5 - 1.0;
                }
            }
        }
    }

    /// Checks the invariants every loader promises (used by the loaders themselves).
    fn check(self) -> Result<Self> {
        if self.n == 0 {
            return Err(Error::msg(format!("dataset {} is empty", self.name)));
        }
        debug_assert_eq!(self.images.len(), self.n * self.image_len());
        debug_assert_eq!(self.labels.len(), self.n);
        Ok(self)
    }
}

/// Which loader to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetKind {
    Mnist,
    FashionMnist,
    Cifar10,
    Folder,
}

impl DatasetKind {
    /// Parses the names used on the command line ("mnist", "fashion-mnist", "cifar10", "folder").
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "mnist" => Ok(DatasetKind::Mnist),
            "fashion-mnist" | "fashionmnist" | "fmnist" => Ok(DatasetKind::FashionMnist),
            "cifar10" | "cifar-10" => Ok(DatasetKind::Cifar10),
            "folder" | "images" => Ok(DatasetKind::Folder),
            other => {
                Err(Error::msg(format!("unknown dataset '{other}' (expected mnist, fashion-mnist, cifar10 or folder)")))
            }
        }
    }

    /// Whether random horizontal flips are a sensible augmentation (not for digits or clothing items' layouts).
    pub fn default_flip(self) -> bool {
        matches!(self, DatasetKind::Cifar10 | DatasetKind::Folder)
    }

    /// The images' `(channels, side)`: fixed for the public datasets, `folder_size` (the `--image-size` a
    /// folder is resized to) for `Folder`.
    pub fn image_shape(self, folder_size: usize) -> (usize, usize) {
        match self {
            DatasetKind::Mnist | DatasetKind::FashionMnist => (1, 28),
            DatasetKind::Cifar10 => (3, 32),
            DatasetKind::Folder => (3, folder_size),
        }
    }
}

/// Loads a dataset of the given kind. `train` picks the split (ignored for folders); `image_size` is the
/// output side length for folders (ignored for the fixed-size datasets).
pub fn load(kind: DatasetKind, dir: &Path, train: bool, image_size: usize) -> Result<Dataset> {
    match kind {
        DatasetKind::Mnist => load_mnist(dir, train),
        DatasetKind::FashionMnist => load_fashion_mnist(dir, train),
        DatasetKind::Cifar10 => load_cifar10(dir, train),
        DatasetKind::Folder => load_folder(dir, image_size),
    }
}

/// Reads a whole file, transparently gunzipping it when it starts with the gzip magic (1f 8b).
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::bad_file(path, format!("corrupt or truncated gzip data: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// The first of `candidates` that exists, or an error listing every path tried.
pub(crate) fn first_existing(what: &str, candidates: &[std::path::PathBuf]) -> Result<std::path::PathBuf> {
    if let Some(p) = candidates.iter().find(|p| p.is_file()) {
        return Ok(p.clone());
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(Error::msg(format!("{what} not found; tried: {}", tried.join(", "))))
}
