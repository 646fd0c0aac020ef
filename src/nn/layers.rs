//! The layers the U-Net is made of: thin wrappers that own `ParamId`s and call the ops.

use super::{Ctx, Init, ParamId, ParamStore};
use crate::autograd::reshape;
use crate::ops::conv2d::{conv2d, conv2d_fused, Conv2dParams};
use crate::ops::group_norm::{group_norm, group_norm_silu};
use crate::ops::linear::linear;
use crate::rng::Philox;
use crate::{Result, Var};

pub struct Conv2d {
    pub weight: ParamId,
    pub bias: ParamId,
    pub params: Conv2dParams,
}

impl Conv2d {
    /// A k×k conv registered as `{name}.weight` [out, in, k, k] and `{name}.bias` [out]; `init_scale` is the
    /// variance-scaling factor (1, or 1e-10 for the official zero-ish init of residual-branch outputs).
    pub fn new(
        store: &mut ParamStore,
        rng: &mut Philox,
        name: &str,
        (cin, cout, k): (usize, usize, usize),
        params: Conv2dParams,
        init_scale: f64,
    ) -> Result<Conv2d> {
        let init = Init::FanAvgUniform { scale: init_scale, fan_in: cin * k * k, fan_out: cout * k * k };
        let weight = store.add(format!("{name}.weight"), &[cout, cin, k, k], init, rng)?;
        let bias = store.add(format!("{name}.bias"), &[cout], Init::Zeros, rng)?;
        Ok(Conv2d { weight, bias, params })
    }

    pub fn forward(&self, cx: &Ctx, x: &Var) -> Result<Var> {
        conv2d(x, cx.p(self.weight), Some(cx.p(self.bias)), self.params)
    }

    /// conv(x) + bias + add_nc[n, c] + residual (`conv2d_fused`: one tensor-core launch in bf16): add_nc [N, out]
    /// is a per-image, per-channel value (the ResBlock's time-embedding projection), the residual has the output's
    /// shape.
    pub fn forward_fused(&self, cx: &Ctx, x: &Var, add_nc: Option<&Var>, residual: Option<&Var>) -> Result<Var> {
        conv2d_fused(x, cx.p(self.weight), Some(cx.p(self.bias)), add_nc, residual, self.params)
    }
}

pub struct Linear {
    pub weight: ParamId,
    pub bias: ParamId,
    cin: usize,
    cout: usize,
}

impl Linear {
    /// `{name}.weight` [out, in] (PyTorch layout) and `{name}.bias` [out].
    pub fn new(
        store: &mut ParamStore,
        rng: &mut Philox,
        name: &str,
        cin: usize,
        cout: usize,
        init_scale: f64,
    ) -> Result<Linear> {
        let init = Init::FanAvgUniform { scale: init_scale, fan_in: cin, fan_out: cout };
        let weight = store.add(format!("{name}.weight"), &[cout, cin], init, rng)?;
        let bias = store.add(format!("{name}.bias"), &[cout], Init::Zeros, rng)?;
        Ok(Linear { weight, bias, cin, cout })
    }

    /// x [N, in] → [N, out].
    pub fn forward(&self, cx: &Ctx, x: &Var) -> Result<Var> {
        linear(x, cx.p(self.weight), Some(cx.p(self.bias)))
    }

    /// The same map applied per pixel of an NCHW tensor, as a 1×1 conv (the attention projections).
    pub fn forward_pixels(&self, cx: &Ctx, x: &Var) -> Result<Var> {
        let w = reshape(cx.p(self.weight), &[self.cout, self.cin, 1, 1])?;
        conv2d(x, &w, Some(cx.p(self.bias)), Conv2dParams::same(1))
    }

    /// `residual + forward_pixels(x)` in one op (`conv2d_fused`; the attention block's output projection).
    pub fn forward_pixels_residual(&self, cx: &Ctx, x: &Var, residual: &Var) -> Result<Var> {
        let w = reshape(cx.p(self.weight), &[self.cout, self.cin, 1, 1])?;
        conv2d_fused(x, &w, Some(cx.p(self.bias)), None, Some(residual), Conv2dParams::same(1))
    }
}

pub struct GroupNorm {
    pub weight: ParamId,
    pub bias: ParamId,
    pub groups: usize,
    pub eps: f32,
}

impl GroupNorm {
    pub fn new(
        store: &mut ParamStore,
        rng: &mut Philox,
        name: &str,
        channels: usize,
        groups: usize,
        eps: f32,
    ) -> Result<Self> {
        let weight = store.add(format!("{name}.weight"), &[channels], Init::Ones, rng)?;
        let bias = store.add(format!("{name}.bias"), &[channels], Init::Zeros, rng)?;
        Ok(GroupNorm { weight, bias, groups, eps })
    }

    pub fn forward(&self, cx: &Ctx, x: &Var) -> Result<Var> {
        group_norm(x, cx.p(self.weight), cx.p(self.bias), self.groups, self.eps)
    }

    /// swish(GroupNorm(x)) in one fused op.
    pub fn forward_silu(&self, cx: &Ctx, x: &Var) -> Result<Var> {
        group_norm_silu(x, cx.p(self.weight), cx.p(self.bias), self.groups, self.eps)
    }
}
