//! The empirical optimal denoiser and the memorization report.
//!
//! For a finite training set {x_i}, the ε-predictor that minimises L_simple exactly (Chen et al., "On the
//! Generalization of Diffusion Model") is
//!   ε*(x_t, t) = (x_t − √ᾱ_t Σ_i w_i x_i) / √(1 − ᾱ_t),  w = softmax_i(−‖x_t − √ᾱ_t x_i‖² / (2(1 − ᾱ_t))),
//! the posterior mean of x_0 under the training set's empirical distribution. Sampling with it can only
//! reproduce training images, which is what makes it a memorization baseline. It is computed in f64 on the CPU
//! with a log-sum-exp, so the near-one-hot weights at small t stay exact.
//!
//! The memorization report measures each sample's Euclidean distance (pixels in [−1, 1]) to its nearest
//! training image: an f32 GEMM screens the candidates, and the best few are re-measured exactly in f64.

use rayon::prelude::*;

use crate::backend::cpu::{self, Mat, Threads};
use crate::data::Dataset;
use crate::diffusion::Schedule;
use crate::{Error, Result, Tensor};

/// A training set as f32 rows in [−1, 1] (CHW per row).
pub struct TrainingSet {
    pub rows: Vec<f32>,
    pub n: usize,
    /// C, H, W.
    pub shape: [usize; 3],
}

impl TrainingSet {
    /// The first `limit` images of a dataset (all when `limit` is None), unflipped.
    pub fn from_dataset(ds: &Dataset, limit: Option<usize>) -> TrainingSet {
        let n = limit.map_or(ds.n, |l| l.min(ds.n));
        let d = ds.image_len();
        let mut rows = vec![0.0f32; n * d];
        for (i, row) in rows.chunks_exact_mut(d).enumerate() {
            ds.image_f32(i, false, row);
        }
        TrainingSet { rows, n, shape: [ds.channels, ds.height, ds.width] }
    }

    pub fn from_tensor(x: &Tensor) -> Result<TrainingSet> {
        let (n, c, h, w) = x.dims4("empirical training set")?;
        Ok(TrainingSet { rows: x.to_vec()?, n, shape: [c, h, w] })
    }

    pub fn dim(&self) -> usize {
        self.shape.iter().product()
    }
}

/// ε*(x_t, t) for a batch x_t [N, C, H, W] with one timestep index per sample (on x_t's device).
pub fn optimal_eps(train: &TrainingSet, schedule: &Schedule, x_t: &Tensor, t: &[f32]) -> Result<Tensor> {
    let (n, c, h, w) = x_t.dims4("empirical denoiser")?;
    let d = train.dim();
    crate::ensure_shape!(
        [c, h, w] == train.shape && t.len() == n,
        "empirical denoiser",
        "x_t {:?} with {} timesteps for training images {:?}",
        x_t.shape(),
        t.len(),
        train.shape
    );
    if train.n == 0 {
        return Err(Error::msg("empirical denoiser: the training set is empty"));
    }
    let xs = x_t.to_vec()?;
    let mut eps = vec![0.0f32; n * d];
    eps.par_chunks_mut(d).zip(xs.par_chunks(d)).zip(t.par_iter()).try_for_each(|((e, x), &ti)| {
        let ti = ti as usize;
        if ti >= schedule.steps() {
            return Err(Error::msg(format!("timestep {ti} out of range 0..{}", schedule.steps())));
        }
        let (a, one_minus) = (schedule.sqrt_alphas_cumprod[ti], 1.0 - schedule.alphas_cumprod[ti]);
        // log w_i up to a constant, exactly in f64.
        let logits: Vec<f64> = train
            .rows
            .chunks_exact(d)
            .map(|xi| {
                let d2: f64 = x.iter().zip(xi).map(|(&p, &q)| (p as f64 - a * q as f64).powi(2)).sum();
                -d2 / (2.0 * one_minus)
            })
            .collect();
        let m = logits.iter().fold(f64::NEG_INFINITY, |m, &l| m.max(l));
        let weights: Vec<f64> = logits.iter().map(|&l| (l - m).exp()).collect();
        let total: f64 = weights.iter().sum();
        let mut mean = vec![0.0f64; d];
        for (wi, xi) in weights.iter().zip(train.rows.chunks_exact(d)) {
            if *wi > 0.0 {
                mean.iter_mut().zip(xi).for_each(|(s, &q)| *s += wi * q as f64);
            }
        }
        let scale = 1.0 / one_minus.sqrt();
        for ((o, &p), s) in e.iter_mut().zip(x).zip(&mean) {
            *o = ((p as f64 - a * s / total) * scale) as f32;
        }
        Ok(())
    })?;
    Tensor::from_vec(eps, x_t.shape())?.to_device(&x_t.device())
}

/// Each sample's nearest training image: (index, Euclidean distance), samples as rows of the same layout.
pub fn nearest_neighbours(train: &TrainingSet, samples: &[f32]) -> Result<Vec<(usize, f64)>> {
    let d = train.dim();
    crate::ensure_shape!(
        samples.len().is_multiple_of(d),
        "nearest_neighbours",
        "{} values for images of {d}",
        samples.len()
    );
    if train.n == 0 {
        return Err(Error::msg("memorization: the training set is empty"));
    }
    let ns = samples.len() / d;
    let t_norm: Vec<f32> = train.rows.par_chunks(d).map(|r| r.iter().map(|v| v * v).sum()).collect();
    const BLOCK: usize = 4096;
    const RECHECK: usize = 4;
    let mut best: Vec<Vec<(f32, usize)>> = vec![Vec::new(); ns];
    let mut dots = vec![0.0f32; ns * BLOCK.min(train.n)];
    for start in (0..train.n).step_by(BLOCK) {
        let nb = BLOCK.min(train.n - start);
        let block = Mat::new(&train.rows[start * d..(start + nb) * d], nb, d);
        cpu::gemm(&mut dots[..ns * nb], Mat::new(samples, ns, d), block.t(), false, Threads::All);
        best.par_iter_mut().zip(dots.par_chunks(nb)).for_each(|(b, row)| {
            // ‖s − t‖² up to the sample's own norm, which does not change the ranking.
            for (j, &dot) in row.iter().enumerate() {
                b.push((t_norm[start + j] - 2.0 * dot, start + j));
            }
            b.sort_by(|x, y| x.0.total_cmp(&y.0));
            b.truncate(RECHECK);
        });
    }
    Ok(best
        .par_iter()
        .zip(samples.par_chunks(d))
        .map(|(cands, s)| {
            let exact = |i: usize| -> f64 {
                let r = &train.rows[i * d..(i + 1) * d];
                s.iter().zip(r).map(|(&p, &q)| (p as f64 - q as f64).powi(2)).sum::<f64>().sqrt()
            };
            cands.iter().map(|&(_, i)| (i, exact(i))).min_by(|a, b| a.1.total_cmp(&b.1)).expect("a candidate")
        })
        .collect())
}
