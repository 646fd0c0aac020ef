//! Batches prepared ahead on a background thread, so the trainer never waits on data.
//!
//! Determinism: the batch for global step `s` depends only on (dataset, batch_size, seed, flip, s), never on where
//! the loader started, so a resumed run continues with exactly the batches the uninterrupted run would have seen.
//! - Epoch `e = s / steps_per_epoch` uses its own permutation of 0..n: a Fisher–Yates shuffle driven by a
//!   SplitMix64 stream seeded from hash(seed, e) (a small private generator, independent of `crate::rng`).
//! - Batch `p = s % steps_per_epoch` of that epoch takes permutation entries p·B .. (p+1)·B. The last
//!   `n % B` entries of each epoch's permutation are dropped (every batch is full; those images simply appear
//!   in other epochs, since each epoch is shuffled differently).
//! - With flips on, the image in slot `j` of epoch `e`'s permutation is mirrored left-right iff the top bit of
//!   hash(seed, e, j) is set: a fair coin per sample, stateless so it needs no replay on resume.
//!
//! The worker thread fills a bounded channel (depth `QUEUE_DEPTH`) and exits when the `Loader` is dropped.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::Dataset;
use crate::{Error, Result};

/// Batches prepared ahead of the trainer.
pub const QUEUE_DEPTH: usize = 3;

/// One training batch, images in [−1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// B×C×H×W values, x/127.5 − 1.
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
    /// Which dataset images, in batch order (for inspection and tests).
    pub indices: Vec<usize>,
    /// Whether each image was mirrored.
    pub flipped: Vec<bool>,
    /// [B, C, H, W].
    pub shape: [usize; 4],
    /// Global step this batch belongs to, and its epoch.
    pub step: u64,
    pub epoch: u64,
}

// `Batch::images_tensor` (the batch as a `Tensor`) is defined in tensor.rs: data/ sits below the tensor layer and
// does not use it.

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, good enough for shuffling and coin flips.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }
    /// Uniform in 0..bound by the multiply-shift method (bias < bound / 2^64, negligible here).
    fn below(&mut self, bound: usize) -> usize {
        ((self.next_u64() as u128 * bound as u128) >> 64) as usize
    }
}

/// The SplitMix64 finaliser: a bijective avalanche mix of 64 bits.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seeded permutation of 0..n for one epoch (Fisher–Yates).
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = SplitMix64(mix64(seed ^ mix64(epoch.wrapping_add(0x5EED))));
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        perm.swap(i, rng.below(i + 1));
    }
    perm
}

/// The flip decision for slot `slot` of epoch `epoch`.
pub fn flip_decision(seed: u64, epoch: u64, slot: usize) -> bool {
    let h = mix64(mix64(seed ^ 0xF11F_F11F_F11F_F11F) ^ mix64(epoch).wrapping_add(slot as u64));
    h >> 63 == 1
}

/// Builds batches for consecutive steps, caching the current epoch's permutation.
struct BatchMaker {
    dataset: Arc<Dataset>,
    batch_size: usize,
    seed: u64,
    flip: bool,
    steps_per_epoch: u64,
    cached: Option<(u64, Vec<usize>)>,
}

impl BatchMaker {
    fn make(&mut self, step: u64) -> Batch {
        let (epoch, pos) = (step / self.steps_per_epoch, (step % self.steps_per_epoch) as usize);
        if self.cached.as_ref().map(|c| c.0) != Some(epoch) {
            self.cached = Some((epoch, epoch_permutation(self.dataset.n, self.seed, epoch)));
        }
        let perm = &self.cached.as_ref().expect("just filled").1;
        let ds = &self.dataset;
        let (b, len) = (self.batch_size, ds.image_len());
        let mut images = vec![0f32; b * len];
        let slots = pos * b..(pos + 1) * b;
        let indices: Vec<usize> = perm[slots.clone()].to_vec();
        let flipped: Vec<bool> = slots.map(|j| self.flip && flip_decision(self.seed, epoch, j)).collect();
        for ((out, &i), &f) in images.chunks_exact_mut(len).zip(&indices).zip(&flipped) {
            ds.image_f32(i, f, out);
        }
        let labels = indices.iter().map(|&i| ds.labels[i]).collect();
        Batch { images, labels, indices, flipped, shape: [b, ds.channels, ds.height, ds.width], step, epoch }
    }
}

/// Background batch producer. `next_batch` returns the batches for steps start_step, start_step + 1, ...
pub struct Loader {
    rx: Option<Receiver<Batch>>,
    worker: Option<JoinHandle<()>>,
    steps_per_epoch: u64,
    next_step: u64,
}

impl Loader {
    /// Starts the worker. Errors when the batch size is 0 or larger than the dataset.
    pub fn new(dataset: Arc<Dataset>, batch_size: usize, seed: u64, flip: bool, start_step: u64) -> Result<Loader> {
        if batch_size == 0 || batch_size > dataset.n {
            return Err(Error::msg(format!(
                "batch size {batch_size} must be between 1 and the dataset size {} ({})",
                dataset.n, dataset.name
            )));
        }
        let steps_per_epoch = (dataset.n / batch_size) as u64;
        let mut maker = BatchMaker { dataset, batch_size, seed, flip, steps_per_epoch, cached: None };
        let (tx, rx) = sync_channel(QUEUE_DEPTH);
        let worker = std::thread::Builder::new()
            .name("ddpm-data-loader".into())
            .spawn(move || {
                for step in start_step.. {
                    // A send error means the Loader (the receiver) was dropped: stop.
                    if tx.send(maker.make(step)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::msg(format!("could not start the data loader thread: {e}")))?;
        Ok(Loader { rx: Some(rx), worker: Some(worker), steps_per_epoch, next_step: start_step })
    }

    /// Full batches per epoch (the incomplete last batch is dropped).
    pub fn steps_per_epoch(&self) -> u64 {
        self.steps_per_epoch
    }

    /// The step of the batch `next_batch` will return.
    pub fn next_step(&self) -> u64 {
        self.next_step
    }

    /// The next batch, waiting only if the worker has fallen behind.
    pub fn next_batch(&mut self) -> Result<Batch> {
        let rx = self.rx.as_ref().expect("receiver lives until drop");
        let batch = rx.recv().map_err(|_| Error::msg("the data loader thread stopped unexpectedly"))?;
        self.next_step = batch.step + 1;
        Ok(batch)
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Dropping the receiver makes the worker's pending or next send fail, so it exits; then reap it.
        drop(self.rx.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
