//! FID and Inception Score as pytorch-fid and torch-fidelity compute them, from the features of
//! src/eval/inception.rs, with the linear algebra in f64 on `faer`.
//!
//! FID (pytorch-fid's `calculate_frechet_distance`): ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr √(Σ1 Σ2). pytorch-fid
//! takes scipy's `sqrtm` of the non-symmetric product and keeps the real part; its trace is Σ √λ_i over the
//! eigenvalues of Σ1 Σ2, which equal those of the symmetric PSD matrix √Σ1 Σ2 √Σ1. So we take √Σ1 from a
//! symmetric eigendecomposition and sum the square roots of √Σ1 Σ2 √Σ1's eigenvalues (negative round-off
//! eigenvalues count as 0, as the real part of scipy's complex root does). When that is not finite, both
//! covariances get `eps` on the diagonal and it is retried, as pytorch-fid does.
//!
//! Statistics: μ = mean of the features, Σ = their covariance with N − 1 (NumPy's `np.cov(rowvar=False)`), in
//! f64. Inception Score (torch-fidelity's `isc_features_to_metric` without its shuffle): the logits in order,
//! 10 splits at ⌊i·N/10⌋, exp(mean KL(p(y|x) ‖ p(y))) per split, then the mean and population std.

use std::path::Path;

use faer::{Mat, Side};

use crate::{Error, Result};

/// Gaussian statistics of a feature set, as pytorch-fid stores them (`mu`, `sigma` in an npz).
#[derive(Clone, Debug)]
pub struct Stats {
    pub mu: Vec<f64>,
    /// d × d, row-major.
    pub sigma: Vec<f64>,
}

impl Stats {
    pub fn dim(&self) -> usize {
        self.mu.len()
    }

    /// μ and Σ of `n` feature rows of length `d` (f32, as the network gives them).
    pub fn from_features(feats: &[f32], n: usize, d: usize) -> Result<Stats> {
        if n < 2 || feats.len() != n * d {
            return Err(Error::msg(format!("statistics need at least 2 feature rows of {d} values, got {n}")));
        }
        let mut mu = vec![0.0f64; d];
        for row in feats.chunks_exact(d) {
            mu.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
        }
        mu.iter_mut().for_each(|m| *m /= n as f64);
        let centered = Mat::<f64>::from_fn(n, d, |i, j| feats[i * d + j] as f64 - mu[j]);
        let cov = centered.transpose() * &centered;
        let denom = (n - 1) as f64;
        let sigma = (0..d * d).map(|k| cov[(k / d, k % d)] / denom).collect();
        Ok(Stats { mu, sigma })
    }

    fn sigma_mat(&self, diag_offset: f64) -> Mat<f64> {
        let d = self.dim();
        Mat::from_fn(d, d, |i, j| self.sigma[i * d + j] + if i == j { diag_offset } else { 0.0 })
    }

    /// pytorch-fid's stats npz (`mu` [d], `sigma` [d, d], any float dtype).
    pub fn read_npz(path: &Path) -> Result<Stats> {
        let mu = read_npz_f64(path, "mu")?;
        let sigma = read_npz_f64(path, "sigma")?;
        let d = mu.0.len();
        if sigma.1 != [d as u64, d as u64] {
            return Err(Error::bad_file(path, format!("sigma has shape {:?}, expected [{d}, {d}] for mu", sigma.1)));
        }
        Ok(Stats { mu: mu.0, sigma: sigma.0 })
    }

    /// Write `mu` and `sigma` (f64) in pytorch-fid's layout.
    pub fn write_npz(&self, path: &Path) -> Result<()> {
        use npyz::zip::{write::FileOptions, ZipWriter};
        use npyz::WriterBuilder;
        let io = |e: std::io::Error| Error::io(path, e);
        let file = std::fs::File::create(path).map_err(io)?;
        let mut zip = ZipWriter::new(std::io::BufWriter::new(file));
        let d = self.dim() as u64;
        for (name, data, shape) in [("mu", &self.mu, vec![d]), ("sigma", &self.sigma, vec![d, d])] {
            zip.start_file(npyz::npz::file_name_from_array_name(name), FileOptions::default())
                .map_err(|e| Error::bad_file(path, format!("zip: {e}")))?;
            let mut w =
                npyz::WriteOptions::new().default_dtype().shape(&shape).writer(&mut zip).begin_nd().map_err(io)?;
            w.extend(data.iter().copied()).map_err(io)?;
            w.finish().map_err(io)?;
        }
        zip.finish().map_err(|e| Error::bad_file(path, format!("zip: {e}")))?;
        Ok(())
    }
}

/// One array of an npz as f64 (f32 and f64 accepted), with its shape.
fn read_npz_f64(path: &Path, name: &str) -> Result<(Vec<f64>, Vec<u64>)> {
    let mut npz = npyz::npz::NpzArchive::open(path).map_err(|e| Error::io(path, e))?;
    let arr = npz
        .by_name(name)
        .map_err(|e| Error::bad_file(path, format!("reading '{name}': {e}")))?
        .ok_or_else(|| Error::bad_file(path, format!("no array '{name}' (expected pytorch-fid stats: mu, sigma)")))?;
    let shape = arr.shape().to_vec();
    let bad = |e: std::io::Error| Error::bad_file(path, format!("'{name}': {e}"));
    let data = match arr.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 8 => {
            arr.into_vec::<f64>().map_err(bad)?
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 4 => {
            arr.into_vec::<f32>().map_err(bad)?.into_iter().map(f64::from).collect()
        }
        other => return Err(Error::bad_file(path, format!("'{name}' has dtype {other:?}, expected float32/float64"))),
    };
    Ok((data, shape))
}

/// Whether an npz holds pytorch-fid stats (`mu`) rather than images (`arr_0`).
pub fn npz_has_stats(path: &Path) -> Result<bool> {
    let npz = npyz::npz::NpzArchive::open(path).map_err(|e| Error::io(path, e))?;
    let has = npz.array_names().any(|n| n == "mu");
    Ok(has)
}

/// √S for a symmetric PSD matrix (negative round-off eigenvalues clamped to 0).
fn sqrt_psd(s: &Mat<f64>) -> Result<Mat<f64>> {
    let eig = s.self_adjoint_eigen(Side::Lower).map_err(|e| Error::msg(format!("eigendecomposition failed: {e:?}")))?;
    let (u, lam) = (eig.U(), eig.S().column_vector());
    let d = s.nrows();
    let scaled = Mat::from_fn(d, d, |i, j| u[(i, j)] * lam[j].max(0.0).sqrt());
    Ok(&scaled * u.transpose())
}

/// tr √(Σ1 Σ2) via the eigenvalues of √Σ1 Σ2 √Σ1.
fn trace_sqrt_product(s1: &Mat<f64>, s2: &Mat<f64>) -> Result<f64> {
    let r = sqrt_psd(s1)?;
    let m = &r * s2 * &r;
    let d = m.nrows();
    let sym = Mat::from_fn(d, d, |i, j| 0.5 * (m[(i, j)] + m[(j, i)]));
    let ev = sym.self_adjoint_eigenvalues(Side::Lower).map_err(|e| Error::msg(format!("eigenvalues failed: {e:?}")))?;
    Ok(ev.iter().map(|&l| l.max(0.0).sqrt()).sum())
}

/// The Fréchet distance between two Gaussians (pytorch-fid's `calculate_frechet_distance`, eps = 1e-6).
pub fn frechet_distance(a: &Stats, b: &Stats, eps: f64) -> Result<f64> {
    let d = a.dim();
    if b.dim() != d || a.sigma.len() != d * d || b.sigma.len() != d * d {
        return Err(Error::msg(format!("FID: statistics of different dimensions ({d} and {})", b.dim())));
    }
    let diff: f64 = a.mu.iter().zip(&b.mu).map(|(x, y)| (x - y) * (x - y)).sum();
    let tr = |s: &Stats| (0..d).map(|i| s.sigma[i * d + i]).sum::<f64>();
    let mut tr_covmean = trace_sqrt_product(&a.sigma_mat(0.0), &b.sigma_mat(0.0));
    if !matches!(tr_covmean, Ok(t) if t.is_finite()) {
        eprintln!("fid calculation produces singular product; adding {eps} to diagonal of cov estimates");
        tr_covmean = trace_sqrt_product(&a.sigma_mat(eps), &b.sigma_mat(eps));
    }
    let tr_covmean = tr_covmean?;
    if !tr_covmean.is_finite() {
        return Err(Error::msg("FID: the statistics are not finite (NaN or infinite features?)"));
    }
    Ok(diff + tr(a) + tr(b) - 2.0 * tr_covmean)
}

/// Inception Score (mean, std over `splits`) of `n` rows of `k` logits, in the given order.
pub fn inception_score(logits: &[f32], n: usize, k: usize, splits: usize) -> Result<(f64, f64)> {
    if splits == 0 || n < splits || logits.len() != n * k {
        return Err(Error::msg(format!("Inception Score needs at least {splits} samples of {k} logits, got {n}")));
    }
    // log-softmax of each row in f64.
    let log_p: Vec<f64> = logits
        .chunks_exact(k)
        .flat_map(|row| {
            let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
            row.iter().map(move |&v| v as f64 - lse)
        })
        .collect();
    let mut scores = Vec::with_capacity(splits);
    for i in 0..splits {
        let (lo, hi) = (i * n / splits, (i + 1) * n / splits);
        let rows = &log_p[lo * k..hi * k];
        let mut q = vec![0.0f64; k];
        for row in rows.chunks_exact(k) {
            q.iter_mut().zip(row).for_each(|(q, &l)| *q += l.exp());
        }
        let log_q: Vec<f64> = q.iter().map(|&q| (q / (hi - lo) as f64).ln()).collect();
        let kl: f64 = rows
            .chunks_exact(k)
            .map(|row| row.iter().zip(&log_q).map(|(&l, &lq)| l.exp() * (l - lq)).sum::<f64>())
            .sum::<f64>()
            / (hi - lo) as f64;
        scores.push(kl.exp());
    }
    let mean = scores.iter().sum::<f64>() / splits as f64;
    let var = scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / splits as f64;
    Ok((mean, var.sqrt()))
}
