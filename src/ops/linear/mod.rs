//! Fully connected layer in PyTorch layout: x [N, in], w [out, in], b [out];  y = x · wᵀ + b.
//!
//! Backward: dx = dy · w,  dw = dyᵀ · x,  db = Σ_rows dy.

use crate::autograd::{record, Var};
use crate::backend::cpu::{self, Mat, Threads};
use crate::backend::cuda_gemm::GemmImpl;
use crate::backend::{DType, Storage};
use crate::{ensure_shape, Result, Tensor};

pub mod check;
pub(crate) mod cuda;

pub fn linear(x: &Var, w: &Var, b: Option<&Var>) -> Result<Var> {
    let y = forward(x.value(), w.value(), b.map(|b| b.value()))?;
    let (xv, wv) = (x.value().clone(), w.value().clone());
    let has_bias = b.is_some();
    let mut inputs = vec![x, w];
    inputs.extend(b);
    Ok(record(y, &inputs, move |gy, needs| {
        let need_b = has_bias && needs[2];
        let (dx, dw, db) = backward(&xv, &wv, gy, [needs[0], needs[1], need_b])?;
        let mut grads = vec![dx, dw];
        if has_bias {
            grads.push(db);
        }
        Ok(grads)
    }))
}

/// Check the shapes and return (N, in, out).
fn dims(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<(usize, usize, usize)> {
    let (n, fan_in) = x.dims2("linear")?;
    let (fan_out, w_in) = w.dims2("linear")?;
    ensure_shape!(
        w_in == fan_in,
        "linear",
        "x {:?} has {fan_in} features but w {:?} expects {w_in}",
        x.shape(),
        w.shape()
    );
    ensure_shape!(fan_in > 0 && fan_out > 0, "linear", "empty weight {:?}", w.shape());
    if let Some(b) = b {
        ensure_shape!(b.shape() == [fan_out], "linear", "bias {:?} for {fan_out} outputs", b.shape());
    }
    Tensor::same_device("linear", &[x, w].into_iter().chain(b).collect::<Vec<_>>())?;
    Ok((n, fan_in, fan_out))
}

pub fn forward(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    forward_with(x, w, b, GemmImpl::Auto)
}

/// `forward` with a chosen GEMM implementation on CUDA (the selftest checks cuBLAS and the kernel alike).
pub fn forward_with(x: &Tensor, w: &Tensor, b: Option<&Tensor>, imp: GemmImpl) -> Result<Tensor> {
    let (n, fan_in, fan_out) = dims(x, w, b)?;
    if let (Storage::Cuda(xs), Storage::Cuda(ws)) = (x.storage(), w.storage()) {
        let bias = match b.map(|b| b.storage()) {
            None => None,
            Some(Storage::Cuda(c)) => Some(c),
            Some(Storage::Cpu(_)) => return Err(mismatch(x, w, b)),
        };
        if xs.dtype() == DType::Bf16 {
            return Tensor::from_storage(Storage::Cuda(cuda::forward_bf16(xs, ws, bias, n, fan_in, fan_out)?), &[n, fan_out]);
        }
        return Tensor::from_storage(
            Storage::Cuda(cuda::forward(xs, ws, bias, n, fan_in, fan_out, imp)?),
            &[n, fan_out],
        );
    }
    let (Storage::Cpu(xs), Storage::Cpu(ws)) = (x.storage(), w.storage()) else {
        return Err(mismatch(x, w, b));
    };
    // Start from the bias rows (or zeros) and accumulate x · wᵀ on top.
    let mut y = match b {
        Some(b) => b.cpu_data()?.repeat(n),
        None => vec![0.0; n * fan_out],
    };
    cpu::gemm(&mut y, Mat::new(xs, n, fan_in), Mat::new(ws, fan_out, fan_in).t(), b.is_some(), Threads::All);
    Tensor::from_vec(y, &[n, fan_out])
}

/// Gradients (dx, dw, db) for those of x, w, b flagged in `needs`.
pub fn backward(
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    needs: [bool; 3],
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let (n, fan_in, fan_out) = dims(x, w, None)?;
    ensure_shape!(gy.shape() == [n, fan_out], "linear backward", "dy {:?} for output [{n}, {fan_out}]", gy.shape());
    if let (Storage::Cuda(xs), Storage::Cuda(ws), Storage::Cuda(g)) = (x.storage(), w.storage(), gy.storage()) {
        let [dx, dw] = if xs.dtype() == DType::Bf16 {
            cuda::backward_bf16(xs, ws, g, n, fan_in, fan_out, [needs[0], needs[1]])?
        } else {
            cuda::backward(xs, ws, g, n, fan_in, fan_out, [needs[0], needs[1]])?
        };
        let wrap = |s: Option<_>, shape: &[usize]| s.map(|s| Tensor::from_storage(Storage::Cuda(s), shape)).transpose();
        let db = needs[2]
            .then(|| crate::ops::elementwise::reduce_to_shape(gy, &[1, fan_out])?.reshape(&[fan_out]))
            .transpose()?;
        return Ok((wrap(dx, &[n, fan_in])?, wrap(dw, &[fan_out, fan_in])?, db));
    }
    let (Storage::Cpu(xs), Storage::Cpu(ws), Storage::Cpu(g)) = (x.storage(), w.storage(), gy.storage()) else {
        return Err(Tensor::device_mismatch("linear backward", &[x, w, gy]));
    };
    let dx = if needs[0] {
        let mut dx = vec![0.0; n * fan_in];
        cpu::gemm(&mut dx, Mat::new(g, n, fan_out), Mat::new(ws, fan_out, fan_in), false, Threads::All);
        Some(Tensor::from_vec(dx, &[n, fan_in])?)
    } else {
        None
    };
    let dw = if needs[1] {
        let mut dw = vec![0.0; fan_out * fan_in];
        cpu::gemm(&mut dw, Mat::new(g, n, fan_out).t(), Mat::new(xs, n, fan_in), false, Threads::All);
        Some(Tensor::from_vec(dw, &[fan_out, fan_in])?)
    } else {
        None
    };
    let db = if needs[2] {
        let mut db = vec![0.0f32; fan_out];
        for row in g.chunks_exact(fan_out) {
            db.iter_mut().zip(row).for_each(|(d, r)| *d += r);
        }
        Some(Tensor::from_vec(db, &[fan_out])?)
    } else {
        None
    };
    Ok((dx, dw, db))
}

fn mismatch(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> crate::Error {
    Tensor::device_mismatch("linear", &[x, w].into_iter().chain(b).collect::<Vec<_>>())
}
