//! The resumable samples npz of `sample --npz OUT`: each finished batch becomes its own file in `OUT.partial/`
//! the moment it is done, and the npz is assembled from them only when every batch is there.
//!
//! Why chunk files rather than one zip written as we go: a finished batch is a file that either exists complete
//! (written to a temporary name, then renamed) or not at all, so resuming is "skip the batches whose file exists",
//! with no zip to parse and truncate after a crash. Memory stays one batch: the batches are streamed into the npz
//! one at a time at the end. The npz appears under its final name only by a rename once it is complete, so a half
//! written or half sampled npz is never mistaken for a finished one, and `OUT.partial/manifest.json` records the
//! settings that made the batches (seed, model fingerprint, N, batch size, sampler, ...): a rerun with other settings
//! is an error naming the folder, never a silent mix of two runs.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use npyz::WriterBuilder;

use crate::{report, Error, Result, Tensor};

const MANIFEST: &str = "manifest.json";
const FORMAT: &str = "ddpm-cuda-samples-partial-1";

/// The settings a partial folder was made with: any difference makes its batches a different run's.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: String,
    /// Images in all, images per batch.
    pub num: usize,
    pub batch_size: usize,
    pub seed: u64,
    /// The sampler and its settings, e.g. "ddpm" or "ddim steps=50 eta=0".
    pub sampler: String,
    /// What produced ε̂ (a hash of the weights and configs, or the empirical denoiser's training set).
    pub model: String,
    /// The image shape [C, H, W].
    pub image: [usize; 3],
    /// "cpu" or "cuda": the two draw the same noise only to ~1e-6, so their batches are not mixed.
    pub device: String,
}

impl Manifest {
    pub fn new(
        num: usize,
        batch_size: usize,
        seed: u64,
        sampler: String,
        model: String,
        image: [usize; 3],
        device: String,
    ) -> Manifest {
        Manifest { format: FORMAT.into(), num, batch_size, seed, sampler, model, image, device }
    }

    pub fn batches(&self) -> usize {
        self.num.div_ceil(self.batch_size)
    }

    /// Images in batch `b` (the last one may be short).
    pub fn batch_len(&self, b: usize) -> usize {
        self.batch_size.min(self.num - b * self.batch_size)
    }

    /// "seed 1 (this run: 2), num 10 (this run: 12)": every setting that differs.
    fn differences(&self, other: &Manifest) -> String {
        let (a, b) = (serde_json::to_value(self).unwrap_or_default(), serde_json::to_value(other).unwrap_or_default());
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return String::new() };
        a.iter()
            .filter(|(k, v)| b.get(*k) != Some(v))
            .map(|(k, v)| format!("{k} {v} (this run: {})", b.get(k).cloned().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `OUT.partial/` of a samples npz being written.
pub struct SampleStore {
    out: PathBuf,
    dir: PathBuf,
    manifest: Manifest,
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl SampleStore {
    /// The partial folder of `out`: created with `manifest`, or reopened if an interrupted run with the same
    /// settings left one (its finished batches are kept); a folder from other settings is an error naming it.
    pub fn open(out: &Path, manifest: Manifest) -> Result<SampleStore> {
        let dir = with_suffix(out, ".partial");
        let path = dir.join(MANIFEST);
        if dir.exists() {
            let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let found: Manifest = serde_json::from_str(&text).map_err(|e| {
                Error::bad_file(&path, format!("not a samples manifest ({e}); delete {}", dir.display()))
            })?;
            if found != manifest {
                return Err(Error::msg(format!(
                    "{} holds the batches of another sampling run: {}. Rerun with the same settings to finish it, \
                     or delete the folder to start over",
                    dir.display(),
                    found.differences(&manifest)
                )));
            }
        } else {
            fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
            let text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::msg(format!("manifest: {e}")))?;
            crate::checkpoint::write_atomic(&path, text.as_bytes())?;
        }
        Ok(SampleStore { out: out.to_path_buf(), dir, manifest })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The partial folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn batch_path(&self, b: usize) -> PathBuf {
        self.dir.join(format!("batch-{b:06}.npy"))
    }

    /// Whether batch `b` was finished (by this run or an interrupted one).
    pub fn is_done(&self, b: usize) -> bool {
        self.batch_path(b).is_file()
    }

    /// How many batches are finished.
    pub fn done_count(&self) -> usize {
        (0..self.manifest.batches()).filter(|&b| self.is_done(b)).count()
    }

    /// Store batch `b`, images [n, C, H, W] in [−1, 1], as uint8 [n, H, W, C] (written under a temporary name,
    /// then renamed: the file exists complete or not at all).
    pub fn put(&self, b: usize, images: &Tensor) -> Result<()> {
        let m = &self.manifest;
        let [c, h, w] = m.image;
        if b >= m.batches() || images.shape() != [m.batch_len(b), c, h, w] {
            return Err(Error::msg(format!(
                "sample store: batch {b} of shape {:?} does not fit {m:?}",
                images.shape()
            )));
        }
        let (data, shape) = report::to_nhwc_u8(images)?;
        let path = self.batch_path(b);
        let io = |e: std::io::Error| Error::io(&path, e);
        let shape64: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let mut buf = Vec::with_capacity(data.len() + 128);
        let mut w =
            npyz::WriteOptions::new().default_dtype().shape(&shape64).writer(&mut buf).begin_nd().map_err(io)?;
        w.extend(data.iter().copied()).map_err(io)?;
        w.finish().map_err(io)?;
        crate::checkpoint::write_atomic(&path, &buf)
    }

    /// Batch `b` as uint8 [n, H, W, C], checked against the manifest.
    pub fn read(&self, b: usize) -> Result<Vec<u8>> {
        let path = self.batch_path(b);
        let f = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let npy =
            npyz::NpyFile::new(BufReader::new(f)).map_err(|e| Error::bad_file(&path, format!("not a .npy ({e})")))?;
        let [c, h, w] = self.manifest.image;
        let want = [self.manifest.batch_len(b), h, w, c].map(|d| d as u64);
        if npy.shape() != want {
            return Err(Error::bad_file(&path, format!("shape {:?}, expected {want:?}", npy.shape())));
        }
        let data = npy.try_data::<u8>().map_err(|_| Error::bad_file(&path, "dtype is not uint8"))?;
        data.collect::<std::io::Result<Vec<u8>>>().map_err(|e| Error::bad_file(&path, format!("truncated ({e})")))
    }

    /// Assemble the npz (uint8 [N, H, W, C] under arr_0) from the batches, one batch in memory at a time, write it
    /// as `OUT.tmp`, rename it to `OUT` and remove the partial folder. Every batch must be done.
    pub fn finish(self) -> Result<PathBuf> {
        use npyz::zip::{write::FileOptions, ZipWriter};
        let m = &self.manifest;
        if let Some(b) = (0..m.batches()).find(|&b| !self.is_done(b)) {
            return Err(Error::msg(format!("sample store: batch {b} of {} is missing", self.dir.display())));
        }
        let tmp = with_suffix(&self.out, ".tmp");
        let io = |e: std::io::Error| Error::io(&tmp, e);
        let zip_err = |e: npyz::zip::result::ZipError| Error::bad_file(&tmp, format!("zip: {e}"));
        let file = File::create(&tmp).map_err(io)?;
        let mut zip = ZipWriter::new(BufWriter::new(file));
        // A fixed timestamp: the same samples give the same file, byte for byte.
        let options = FileOptions::default().last_modified_time(npyz::zip::DateTime::default());
        zip.start_file(npyz::npz::file_name_from_array_name("arr_0"), options).map_err(zip_err)?;
        let [c, h, w] = m.image;
        let shape = [m.num, h, w, c].map(|d| d as u64);
        let mut npy =
            npyz::WriteOptions::new().default_dtype().shape(&shape).writer(&mut zip).begin_nd().map_err(io)?;
        for b in 0..m.batches() {
            npy.extend(self.read(b)?).map_err(io)?;
        }
        npy.finish().map_err(io)?;
        let mut inner = zip.finish().map_err(zip_err)?;
        inner.flush().map_err(io)?;
        let file = inner.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        drop(file);
        fs::rename(&tmp, &self.out).map_err(|e| Error::io(&self.out, e))?;
        fs::remove_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        Ok(self.out)
    }
}

/// uint8 [n, H, W, C] → images [n, C, H, W] in [−1, 1] (`report::to_u8` maps them back to the same bytes).
pub fn from_nhwc_u8(data: &[u8], image: [usize; 3]) -> Result<Tensor> {
    let [c, h, w] = image;
    let n = data.len() / (c * h * w).max(1);
    let mut out = vec![0.0f32; n * c * h * w];
    for i in 0..n {
        for ch in 0..c {
            for p in 0..h * w {
                out[(i * c + ch) * h * w + p] = data[(i * h * w + p) * c + ch] as f32 / 127.5 - 1.0;
            }
        }
    }
    Tensor::from_vec(out, &[n, c, h, w])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_survive_the_round_trip_through_floats() {
        let data: Vec<u8> = (0..=255).collect();
        let t = from_nhwc_u8(&data, [1, 16, 16]).unwrap();
        assert_eq!(report::to_nhwc_u8(&t).unwrap().0, data);
    }
}
