//! GroupNorm (Wu & He 2018) and the fused GroupNorm → SiLU that the U-Net uses after almost every norm.
//!
//! x is [N, C, ...spatial]; the C channels split into `groups` groups of C/groups consecutive channels. For each
//! (n, group) the statistics run over its (C/groups) × spatial values — one contiguous slice in NCHW order:
//! μ, σ² (biased), x̂ = (x − μ)·rstd with rstd = 1/√(σ² + eps), and z = x̂·γ_c + β_c.
//!
//! Backward (M values per group, dẑ = dz·γ): dβ_c = Σ dz, dγ_c = Σ dz·x̂ (over n and spatial), and
//! dx = rstd · (dẑ − mean(dẑ) − x̂ · mean(dẑ·x̂)) within each group.

use rayon::prelude::*;

use crate::autograd::{record, Var};
use crate::backend::Storage;
use crate::{ensure_shape, Result, Tensor};

pub mod check;
pub(crate) mod cuda;

/// y = GroupNorm(x; γ, β).
pub fn group_norm(x: &Var, gamma: &Var, beta: &Var, groups: usize, eps: f32) -> Result<Var> {
    norm_op(x, gamma, beta, groups, eps, false)
}

/// y = SiLU(GroupNorm(x; γ, β)) in one pass each way: the backward recomputes z from x and the saved statistics
/// instead of keeping the normalized activations alive.
pub fn group_norm_silu(x: &Var, gamma: &Var, beta: &Var, groups: usize, eps: f32) -> Result<Var> {
    norm_op(x, gamma, beta, groups, eps, true)
}

fn norm_op(x: &Var, gamma: &Var, beta: &Var, groups: usize, eps: f32, silu: bool) -> Result<Var> {
    let layout = Layout::new(x.shape(), gamma.shape(), beta.shape(), groups)?;
    let (y, stats) = forward(x.value(), gamma.value(), beta.value(), layout, eps, silu)?;
    let (xv, gv, bv) = (x.value().clone(), gamma.value().clone(), beta.value().clone());
    Ok(record(y, &[x, gamma, beta], move |gy, needs| {
        let (dx, dgamma, dbeta) = backward(&xv, &gv, &bv, &stats, gy, layout, silu, needs)?;
        Ok(vec![dx, dgamma, dbeta])
    }))
}

/// The shape facts every pass needs.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub batch: usize,
    pub channels: usize,
    pub groups: usize,
    /// Product of the spatial dims (1 for a 2-D input).
    pub spatial: usize,
}

impl Layout {
    pub fn new(x: &[usize], gamma: &[usize], beta: &[usize], groups: usize) -> Result<Layout> {
        const OP: &str = "group_norm";
        ensure_shape!(x.len() >= 2, OP, "input must be [N, C, ...], got {:?}", x);
        let (batch, channels) = (x[0], x[1]);
        ensure_shape!(groups > 0, OP, "groups must be positive");
        ensure_shape!(channels % groups == 0, OP, "{channels} channels do not split into {groups} groups");
        ensure_shape!(gamma == [channels], OP, "gamma has shape {:?}, expected [{channels}]", gamma);
        ensure_shape!(beta == [channels], OP, "beta has shape {:?}, expected [{channels}]", beta);
        Ok(Layout { batch, channels, groups, spatial: x[2..].iter().product() })
    }

    fn channels_per_group(&self) -> usize {
        self.channels / self.groups
    }

    /// Values per (n, group): one contiguous slice.
    fn group_len(&self) -> usize {
        self.channels_per_group() * self.spatial
    }
}

/// Mean and 1/√(σ² + eps) per (n, group), in (n, group) order: [N·groups] tensors on the input's device.
pub struct Stats {
    pub mean: Tensor,
    pub rstd: Tensor,
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Mean and rstd of one group, two passes in f64 so large groups of offset data keep their precision.
fn group_stats(x: &[f32], eps: f32) -> (f32, f32) {
    let m = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / m;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / m;
    (mean as f32, (1.0 / (var + eps as f64).sqrt()) as f32)
}

/// The output, and the statistics the backward needs.
pub fn forward(x: &Tensor, gamma: &Tensor, beta: &Tensor, l: Layout, eps: f32, silu: bool) -> Result<(Tensor, Stats)> {
    if let (Storage::Cuda(xs), Storage::Cuda(g), Storage::Cuda(b)) = (x.storage(), gamma.storage(), beta.storage()) {
        let (y, mean, rstd) = cuda::forward(xs, g, b, l, eps, silu)?;
        let stats_shape = [l.batch * l.groups];
        let stats = Stats {
            mean: Tensor::from_storage(Storage::Cuda(mean), &stats_shape)?,
            rstd: Tensor::from_storage(Storage::Cuda(rstd), &stats_shape)?,
        };
        return Ok((Tensor::from_storage(Storage::Cuda(y), x.shape())?, stats));
    }
    let (Storage::Cpu(xs), Storage::Cpu(g), Storage::Cpu(b)) = (x.storage(), gamma.storage(), beta.storage()) else {
        return Err(Tensor::device_mismatch("group_norm", &[x, gamma, beta]));
    };
    let (cpg, s, m) = (l.channels_per_group(), l.spatial, l.group_len());
    let mut y = vec![0.0f32; xs.len()];
    let mut stats = vec![(0.0f32, 0.0f32); l.batch * l.groups];
    if m > 0 {
        y.par_chunks_mut(m).zip(xs.par_chunks(m)).zip(stats.par_iter_mut()).enumerate().for_each(
            |(ng, ((yg, xg), st))| {
                let (mean, rstd) = group_stats(xg, eps);
                *st = (mean, rstd);
                let c0 = (ng % l.groups) * cpg;
                for (k, (yc, xc)) in yg.chunks_mut(s).zip(xg.chunks(s)).enumerate() {
                    // Fold the affine into one multiply-add per element: z = x·a + c.
                    let a = rstd * g[c0 + k];
                    let c = b[c0 + k] - mean * a;
                    for (yv, &xv) in yc.iter_mut().zip(xc) {
                        let z = xv * a + c;
                        *yv = if silu { z * sigmoid(z) } else { z };
                    }
                }
            },
        );
    }
    let (mean, rstd): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
    let stats = Stats {
        mean: Tensor::from_vec(mean, &[l.batch * l.groups])?,
        rstd: Tensor::from_vec(rstd, &[l.batch * l.groups])?,
    };
    Ok((Tensor::from_vec(y, x.shape())?, stats))
}

/// Gradients for (x, γ, β), each only where `needs` asks. With `silu` the incoming gradient is for
/// SiLU(z) and is first taken back through SiLU at the recomputed z.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    stats: &Stats,
    gy: &Tensor,
    l: Layout,
    silu: bool,
    needs: &[bool],
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    ensure_shape!(gy.shape() == x.shape(), "group_norm backward", "gy {:?} for x {:?}", gy.shape(), x.shape());
    let need_x = needs.first().copied().unwrap_or(true);
    let need_gamma = needs.get(1).copied().unwrap_or(true);
    let need_beta = needs.get(2).copied().unwrap_or(true);
    if let (
        Storage::Cuda(xs),
        Storage::Cuda(g),
        Storage::Cuda(b),
        Storage::Cuda(dy),
        Storage::Cuda(mu),
        Storage::Cuda(rs),
    ) = (x.storage(), gamma.storage(), beta.storage(), gy.storage(), stats.mean.storage(), stats.rstd.storage())
    {
        let (dx, dgamma, dbeta) = cuda::backward(xs, g, b, mu, rs, dy, l, silu, need_x)?;
        let wrap = |s, shape: &[usize]| Tensor::from_storage(Storage::Cuda(s), shape);
        return Ok((
            dx.map(|d| wrap(d, x.shape())).transpose()?,
            if need_gamma { Some(wrap(dgamma, &[l.channels])?) } else { None },
            if need_beta { Some(wrap(dbeta, &[l.channels])?) } else { None },
        ));
    }
    let (Storage::Cpu(xs), Storage::Cpu(g), Storage::Cpu(b), Storage::Cpu(dy)) =
        (x.storage(), gamma.storage(), beta.storage(), gy.storage())
    else {
        return Err(Tensor::device_mismatch("group_norm backward", &[x, gamma, beta, gy, &stats.mean, &stats.rstd]));
    };
    let (mean_v, rstd_v) = (stats.mean.cpu_data()?, stats.rstd.cpu_data()?);
    let (cpg, s, m) = (l.channels_per_group(), l.spatial, l.group_len());
    // Per (n, channel): (Σ dz, Σ dz·x̂), reduced over n afterwards.
    let mut channel_sums = vec![(0.0f64, 0.0f64); l.batch * l.channels];
    // dz lands in dx first and is turned into dx in place (one buffer instead of two).
    let mut dx = vec![0.0f32; xs.len()];
    if m > 0 {
        dx.par_chunks_mut(m)
            .zip(xs.par_chunks(m))
            .zip(dy.par_chunks(m))
            .zip(channel_sums.par_chunks_mut(cpg))
            .enumerate()
            .for_each(|(ng, (((dxg, xg), dyg), sums))| {
                let (mean, rstd) = (mean_v[ng], rstd_v[ng]);
                let c0 = (ng % l.groups) * cpg;
                // Σ over the group of dẑ and dẑ·x̂ (dẑ = dz·γ).
                let (mut sum_dh, mut sum_dh_xhat) = (0.0f64, 0.0f64);
                for (k, sum) in sums.iter_mut().enumerate() {
                    let (gc, bc) = (g[c0 + k], b[c0 + k]);
                    let range = k * s..(k + 1) * s;
                    let (mut sdz, mut sdz_xhat) = (0.0f64, 0.0f64);
                    for ((d, &xv), &dyv) in dxg[range.clone()].iter_mut().zip(&xg[range.clone()]).zip(&dyg[range]) {
                        let xhat = (xv - mean) * rstd;
                        let dz = if silu {
                            let z = xhat * gc + bc;
                            let sg = sigmoid(z);
                            dyv * sg * (1.0 + z * (1.0 - sg))
                        } else {
                            dyv
                        };
                        *d = dz;
                        sdz += dz as f64;
                        sdz_xhat += (dz * xhat) as f64;
                    }
                    *sum = (sdz, sdz_xhat);
                    sum_dh += sdz * gc as f64;
                    sum_dh_xhat += sdz_xhat * gc as f64;
                }
                if !need_x {
                    return;
                }
                let mean_dh = (sum_dh / m as f64) as f32;
                let mean_dh_xhat = (sum_dh_xhat / m as f64) as f32;
                for (k, dxc) in dxg.chunks_mut(s).enumerate() {
                    let gc = g[c0 + k];
                    for (d, &xv) in dxc.iter_mut().zip(&xg[k * s..(k + 1) * s]) {
                        let xhat = (xv - mean) * rstd;
                        *d = rstd * (*d * gc - mean_dh - xhat * mean_dh_xhat);
                    }
                }
            });
    }
    let reduce = |pick: fn(&(f64, f64)) -> f64| -> Result<Tensor> {
        let v = (0..l.channels)
            .map(|c| (0..l.batch).map(|n| pick(&channel_sums[n * l.channels + c])).sum::<f64>() as f32)
            .collect();
        Tensor::from_vec(v, &[l.channels])
    };
    let dgamma = if need_gamma { Some(reduce(|p| p.1)?) } else { None };
    let dbeta = if need_beta { Some(reduce(|p| p.0)?) } else { None };
    let dx = if need_x { Some(Tensor::from_vec(dx, x.shape())?) } else { None };
    Ok((dx, dgamma, dbeta))
}
