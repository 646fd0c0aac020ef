//! Parameters and the forward context. A model is a tree of layers holding `ParamId`s into one `ParamStore`,
//! whose names follow diffusers' `UNet2DModel` so checkpoints interchange. A forward pass runs under a `Ctx` that
//! binds every parameter to a `Var`: leaves on a tape when training, constants for sampling (no-grad mode).

pub mod layers;
pub mod unet;

use std::cell::RefCell;

use crate::rng::Philox;
use crate::{DType, Error, Result, Tape, Tensor, Var};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamId(usize);

/// How a parameter is initialised (the official DDPM code's choices).
#[derive(Clone, Copy, Debug)]
pub enum Init {
    Zeros,
    Ones,
    /// variance_scaling(scale, mode = fan_avg, distribution = uniform): U(−l, l), l = √(3·scale / fan_avg).
    FanAvgUniform {
        scale: f64,
        fan_in: usize,
        fan_out: usize,
    },
}

#[derive(Clone, Default)]
pub struct ParamStore {
    names: Vec<String>,
    tensors: Vec<Tensor>,
}

impl ParamStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a parameter of the given shape, initialised from `rng`.
    pub fn add(&mut self, name: String, shape: &[usize], init: Init, rng: &mut Philox) -> Result<ParamId> {
        if self.names.contains(&name) {
            return Err(Error::msg(format!("duplicate parameter name {name}")));
        }
        let n: usize = shape.iter().product();
        let data = match init {
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
            Init::FanAvgUniform { scale, fan_in, fan_out } => {
                let limit = (3.0 * scale / ((fan_in + fan_out) as f64 / 2.0)).sqrt();
                rng.uniform(n).iter().map(|&u| ((2.0 * u as f64 - 1.0) * limit) as f32).collect()
            }
        };
        self.names.push(name);
        self.tensors.push(Tensor::from_vec(data, shape)?);
        Ok(ParamId(self.names.len() - 1))
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn num_scalars(&self) -> usize {
        self.tensors.iter().map(|t| t.numel()).sum()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    pub fn tensors_mut(&mut self) -> &mut [Tensor] {
        &mut self.tensors
    }

    pub fn get(&self, id: ParamId) -> &Tensor {
        &self.tensors[id.0]
    }

    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.names.iter().position(|n| n == name).map(ParamId)
    }

    /// Replace every tensor (same count and shapes), e.g. from a checkpoint or the EMA copy.
    pub fn set_tensors(&mut self, tensors: Vec<Tensor>) -> Result<()> {
        if tensors.len() != self.tensors.len() {
            return Err(Error::msg(format!("{} tensors for {} parameters", tensors.len(), self.tensors.len())));
        }
        for ((name, old), new) in self.names.iter().zip(&self.tensors).zip(&tensors) {
            if old.shape() != new.shape() {
                return Err(Error::msg(format!("{name}: shape {:?}, expected {:?}", new.shape(), old.shape())));
            }
        }
        self.tensors = tensors;
        Ok(())
    }
}

/// The context of one forward pass: parameters bound as vars, train/eval mode, the dropout RNG, and the dtype
/// activations are computed in (`F32`, or `Bf16` for mixed precision on CUDA: parameters stay f32 masters and are
/// rounded to bf16 by the ops that use them, see docs/CUDA.md "Mixed precision").
pub struct Ctx {
    vars: Vec<Var>,
    pub train: bool,
    rng: RefCell<Philox>,
    dtype: DType,
    /// The row of the global batch that this pass's row 0 is (a data-parallel replica's slice; dropout masks
    /// follow the global row).
    first_row: usize,
}

impl Ctx {
    /// Parameters as leaves of `tape`: gradients flow to them.
    pub fn with_grad(tape: &Tape, store: &ParamStore, train: bool, rng: Philox) -> Ctx {
        let vars = store.tensors.iter().map(|t| tape.leaf(t.clone())).collect();
        Ctx { vars, train, rng: RefCell::new(rng), dtype: DType::F32, first_row: 0 }
    }

    /// Parameters as constants: nothing is recorded (sampling, evaluation).
    pub fn no_grad(store: &ParamStore) -> Ctx {
        let vars = store.tensors.iter().cloned().map(Var::constant).collect();
        Ctx { vars, train: false, rng: RefCell::new(Philox::new(0)), dtype: DType::F32, first_row: 0 }
    }

    /// The same context computing activations in `dtype`.
    pub fn with_dtype(mut self, dtype: DType) -> Ctx {
        self.dtype = dtype;
        self
    }

    /// The same context for rows `first_row ..` of a larger (global) batch.
    pub fn with_first_row(mut self, first_row: usize) -> Ctx {
        self.first_row = first_row;
        self
    }

    /// The row of the global batch that this pass's row 0 is.
    pub fn first_row(&self) -> usize {
        self.first_row
    }

    /// The dtype activations are computed in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn p(&self, id: ParamId) -> &Var {
        &self.vars[id.0]
    }

    /// The bound parameter vars, in store order (to read their gradients after backward).
    pub fn param_vars(&self) -> &[Var] {
        &self.vars
    }

    /// The dropout RNG, advanced by each dropout call.
    pub fn rng(&self) -> std::cell::RefMut<'_, Philox> {
        self.rng.borrow_mut()
    }

    /// The RNG state after the forward pass (to continue the stream on the next step).
    pub fn into_rng(self) -> Philox {
        self.rng.into_inner()
    }
}
