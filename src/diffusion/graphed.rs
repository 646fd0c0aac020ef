//! The sampler on a CUDA device with the step captured as a CUDA graph: after one plain warm-up step, the step
//! (timestep embedding, U-Net, reverse step with its noise draw) is recorded once and replayed for every other step.
//!
//! A replay repeats the kernels' arguments as captured, so nothing that changes per step is an argument: the step
//! index lives in device memory (`step`, advanced by the graph's last kernel), and the kernels read the step's
//! timestep embedding row, coefficients and Philox offset from device tables made before the chain starts
//! (kernels/sampler.cu). The chain state ping-pongs between two fixed buffers (two graphs: x[0] → x[1] and
//! x[1] → x[0]) and ε̂ is copied into a fixed buffer, so every buffer a replay touches outside its own temporaries
//! is allocated before the capture and outlives it. The result is bit-identical to `Diffusion::sample`: the same
//! f32 embedding rows and coefficients, and the noise drawn from the same Philox (seed, offset) as `normal_on`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cudarc::driver::{CudaSlice, LaunchConfig};

use super::{Diffusion, Sampler, Step};
use crate::backend::cuda::{CudaBackend, CudaStorage};
use crate::backend::graph::{self, Graph, GraphMode};
use crate::backend::kernels::{grid_1d, int, kernels};
use crate::backend::{Device, Storage};
use crate::rng::Philox;
use crate::{Error, Result, Tensor};

kernels! {
    /// out[r, :] = table[*step, :] for `rows` rows of `dim`.
    fn sampler_gather_row(step: &CudaSlice<i32>, table: &CudaStorage, out: &mut CudaStorage, rows: i32, dim: i32);
    /// One reverse step with the coefficients and noise offset of step *step (one thread per 4 elements).
    fn sampler_reverse_step(
        x: &CudaStorage, eps: &CudaStorage, out: &mut CudaStorage, n: i32, step: &CudaSlice<i32>,
        coefs: &CudaStorage, offsets: &CudaSlice<u64>, clip: i32, seed: u64,
    );
    /// *step += 1.
    fn sampler_advance(step: &mut CudaSlice<i32>);
}

/// An ε-model conditioned through a device tensor: `eval(x_t, cond)` with cond [N, dim] holding, for every sample,
/// `row(t)` (the U-Net: its sinusoidal timestep embedding), so a replayed step can be pointed at any t.
pub struct CondModel<'a> {
    pub dim: usize,
    pub row: &'a dyn Fn(usize) -> Result<Vec<f32>>,
    pub eval: &'a mut dyn FnMut(&Tensor, &Tensor) -> Result<Tensor>,
}

fn cuda(t: &Tensor) -> Result<&CudaStorage> {
    match t.storage() {
        Storage::Cuda(c) => Ok(c),
        Storage::Cpu(_) => Err(Error::msg("graphed sampler: a tensor is not on the CUDA device")),
    }
}

/// The tensor's buffer to write; the graphed sampler holds the only handle when it asks (so this never copies).
fn cuda_mut(t: &mut Tensor) -> Result<&mut CudaStorage> {
    match t.storage_mut()? {
        Storage::Cuda(c) => Ok(c),
        Storage::Cpu(_) => Err(Error::msg("graphed sampler: a tensor is not on the CUDA device")),
    }
}

/// The device side of one chain: the tables, the step index and the fixed buffers.
struct Chain {
    be: Arc<CudaBackend>,
    step: CudaSlice<i32>,
    cond_table: CudaStorage,
    coefs: CudaStorage,
    offsets: CudaSlice<u64>,
    clip: i32,
    seed: u64,
    cond: Tensor,
    xs: [Tensor; 2],
    eps: Tensor,
}

impl Chain {
    /// Step `*step`: from xs[k] into xs[1 − k].
    fn step(&mut self, k: usize, model: &mut CondModel) -> Result<()> {
        let be = self.be.clone();
        let (rows, dim) = (self.cond.shape()[0], self.cond.shape()[1]);
        let (rows_i, dim_i) = (int("sampler", rows)?, int("sampler", dim)?);
        // Writes rows·dim floats of cond, reads one int of step and dim floats of the table.
        sampler_gather_row(
            &be,
            grid_1d(rows * dim),
            &self.step,
            &self.cond_table,
            cuda_mut(&mut self.cond)?,
            rows_i,
            dim_i,
        )?;
        let eps = (model.eval)(&self.xs[k], &self.cond)?;
        let src = cuda(&eps)?;
        let dst = cuda_mut(&mut self.eps)?;
        if src.len() != dst.len() {
            return Err(Error::shape("sampler", format!("ε̂ has {} values, x_t {}", src.len(), dst.len())));
        }
        be.stream().memcpy_dtod(src.f32("sampler")?, dst.f32_mut("sampler")?)?;
        drop(eps);
        let [x0, x1] = &mut self.xs;
        let (x, out) = if k == 0 { (&*x0, x1) } else { (&*x1, x0) };
        let n = x.numel();
        // Reads n floats of x and eps, one int of step, 6 floats of coefs and one offset; writes n floats of out.
        sampler_reverse_step(
            &be,
            grid_1d(n.div_ceil(4)),
            cuda(x)?,
            cuda(&self.eps)?,
            cuda_mut(out)?,
            int("sampler", n)?,
            &self.step,
            &self.coefs,
            &self.offsets,
            self.clip,
            self.seed,
        )?;
        let one = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (1, 1, 1), shared_mem_bytes: 0 };
        sampler_advance(&be, one, &mut self.step)
    }
}

/// Say once per process why sampling runs without graphs.
fn note_fallback(e: &Error) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::SeqCst) {
        eprintln!("ddpm-cuda: sampling without CUDA graphs (capture failed: {e})");
    }
}

impl Diffusion {
    /// `sample` on a CUDA device with the step replayed as a CUDA graph (`mode` Auto or On; Off runs the same
    /// kernels plainly). Bit-identical to `sample` with the ε-model `eval(x, rows of row(t))`. The `Step` tensors
    /// handed to `on_step` live in buffers the next step overwrites: read them during the call.
    #[allow(clippy::too_many_arguments)]
    pub fn sample_graphed(
        &self,
        model: &mut CondModel,
        shape: &[usize],
        sampler: Sampler,
        rng: &mut Philox,
        be: &Arc<CudaBackend>,
        mode: GraphMode,
        on_step: &mut dyn FnMut(&Step),
    ) -> Result<Tensor> {
        let plan = self.plan(sampler)?;
        let device = Device::Cuda(be.clone());
        let x_start = rng.normal_on(shape, &device)?;
        // The per-step tables, and the Philox draw of each step that adds noise (in the order `sample` draws them).
        let dim = model.dim;
        let mut cond_rows = Vec::with_capacity(plan.len() * dim);
        let mut coefs = Vec::with_capacity(plan.len() * 6);
        let mut offsets = Vec::with_capacity(plan.len());
        for &(t, c) in &plan {
            let row = (model.row)(t)?;
            if row.len() != dim {
                return Err(Error::shape(
                    "sampler",
                    format!("conditioning row of {} values, expected {dim}", row.len()),
                ));
            }
            cond_rows.extend(row);
            coefs.extend([c.recip, c.recipm1, c.c_x0, c.c_xt, c.c_eps, c.sigma]);
            offsets.push(if c.sigma != 0.0 { rng.take_draw().offset() } else { 0 });
        }
        let n: usize = shape.iter().product();
        let stream = be.stream();
        let mut chain = Chain {
            be: be.clone(),
            step: stream.alloc_zeros::<i32>(1)?,
            cond_table: be.upload(&cond_rows)?,
            coefs: be.upload(&coefs)?,
            offsets: stream.clone_htod(&offsets)?,
            clip: self.clip_x0 as i32,
            seed: rng.seed(),
            cond: Tensor::from_storage(Storage::Cuda(be.empty(shape[0] * dim)?), &[shape[0], dim])?,
            xs: [x_start, Tensor::from_storage(Storage::Cuda(be.empty(n)?), shape)?],
            eps: Tensor::from_storage(Storage::Cuda(be.empty(n)?), shape)?,
        };
        let total = plan.len();
        let mut graphs: Option<[Graph; 2]> = None;
        for (i, &(t, coefs)) in plan.iter().enumerate() {
            let k = i % 2;
            // Step 0 runs plainly (a warm-up: lazily created handles and caches exist before the capture).
            if i == 1 && mode != GraphMode::Off {
                let captured = (|| -> Result<[Graph; 2]> {
                    let g1 = graph::capture(be, || chain.step(1, model))?;
                    let g0 = graph::capture(be, || chain.step(0, model))?;
                    Ok([g0, g1])
                })();
                match captured {
                    Ok(g) => graphs = Some(g),
                    Err(e) if mode == GraphMode::On => {
                        return Err(Error::Cuda(format!("--cuda-graphs on: capturing the sampling step failed: {e}")))
                    }
                    Err(e) => note_fallback(&e),
                }
            }
            match &graphs {
                Some(g) => g[k].launch()?,
                None => chain.step(k, model)?,
            }
            let [x0, x1] = &chain.xs;
            let (x_t, x_prev) = if k == 0 { (x0, x1) } else { (x1, x0) };
            on_step(&Step { done: i + 1, total, t, x_t, eps: &chain.eps, x_prev, coefs });
        }
        drop(graphs);
        let [x0, x1] = chain.xs;
        Ok(if total % 2 == 0 { x0 } else { x1 })
    }
}
