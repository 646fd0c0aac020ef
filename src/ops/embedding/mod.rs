//! The DDPM sinusoidal timestep embedding (as diffusers' `get_timestep_embedding` with `flip_sin_to_cos=False`,
//! `downscale_freq_shift=1`): for half = dim/2 and freq_i = exp(−ln(10000) · i / (half − 1)),
//! row n = [sin(t_n · freq_0..half), cos(t_n · freq_0..half)], plus one zero column when `dim` is odd.
//! Timesteps are data, not parameters, so this returns a plain tensor: no gradient flows into t.

use crate::{ensure_shape, Result, Tensor};

const MAX_PERIOD: f64 = 10000.0;

/// The [N, dim] embedding of N timesteps, computed in f64 and rounded to f32.
pub fn timestep_embedding(t: &[f32], dim: usize) -> Result<Tensor> {
    // half − 1 must be ≥ 1 for the frequency ladder to be defined.
    ensure_shape!(dim >= 4, "timestep_embedding", "dim must be at least 4, got {dim}");
    let half = dim / 2;
    let freqs: Vec<f64> = (0..half).map(|i| (-MAX_PERIOD.ln() * i as f64 / (half - 1) as f64).exp()).collect();
    let mut out = vec![0.0f32; t.len() * dim];
    for (row, &step) in out.chunks_exact_mut(dim).zip(t) {
        let (sin_part, rest) = row.split_at_mut(half);
        for ((s, c), f) in sin_part.iter_mut().zip(&mut rest[..half]).zip(&freqs) {
            let angle = step as f64 * f;
            *s = angle.sin() as f32;
            *c = angle.cos() as f32;
        }
    }
    Tensor::from_vec(out, &[t.len(), dim])
}
