//! add, sub, mul with NumPy broadcasting, plus scale and add_scalar.
//!
//! Broadcasting right-aligns the shapes; a dim of size 1 (or a missing leading dim) stretches to the other's size.
//! The backward of a broadcast operand sums the output gradient over the dims it was stretched along.
//!
//! Both passes go through a `Plan`: the output dims with same-pattern neighbours merged, so that the innermost
//! merged dim is a run where each operand is either contiguous or a single repeated value. The U-Net's hot case,
//! a [N, C, 1, 1] bias onto [N, C, H, W], becomes N·C rows of H·W with the bias constant per row.

use rayon::prelude::*;

use crate::autograd::{record, Var};
use crate::backend::{cpu, Storage};
use crate::{Error, Result, Tensor};

pub(crate) mod check;
pub(crate) mod cuda;

/// Below this many output elements the CPU loops stay on one thread.
const PAR_MIN: usize = 1 << 14;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
}

impl BinaryOp {
    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
        }
    }

    fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
        }
    }
}

pub fn add(a: &Var, b: &Var) -> Result<Var> {
    binary_var(BinaryOp::Add, a, b)
}

pub fn sub(a: &Var, b: &Var) -> Result<Var> {
    binary_var(BinaryOp::Sub, a, b)
}

pub fn mul(a: &Var, b: &Var) -> Result<Var> {
    binary_var(BinaryOp::Mul, a, b)
}

/// y = s · x.
pub fn scale(x: &Var, s: f32) -> Result<Var> {
    let y = scale_tensor(x.value(), s)?;
    Ok(record(y, &[x], move |g, _| Ok(vec![Some(scale_tensor(g, s)?)])))
}

/// y = x + s.
pub fn add_scalar(x: &Var, s: f32) -> Result<Var> {
    let y = add_scalar_tensor(x.value(), s)?;
    Ok(record(y, &[x], move |g, _| Ok(vec![Some(g.clone())])))
}

fn binary_var(op: BinaryOp, a: &Var, b: &Var) -> Result<Var> {
    let y = forward(op, a.value(), b.value())?;
    let (av, bv) = (a.value().clone(), b.value().clone());
    // mul's backward needs the other operand; add and sub need only the shapes.
    let keep = op == BinaryOp::Mul;
    let (a_keep, b_keep) = (keep.then(|| av.clone()), keep.then(|| bv.clone()));
    let (a_shape, b_shape) = (av.shape().to_vec(), bv.shape().to_vec());
    // Each gradient takes its operand's dtype (a bf16 activation's is bf16, an f32 bias's f32).
    let (a_dtype, b_dtype) = (av.dtype(), bv.dtype());
    drop((av, bv));
    Ok(record(y, &[a, b], move |g, needs| {
        let ga = if needs[0] {
            let d = match &b_keep {
                Some(b) => forward(BinaryOp::Mul, g, b)?,
                None => g.clone(),
            };
            Some(reduce_to_shape(&d, &a_shape)?.to_dtype(a_dtype)?)
        } else {
            None
        };
        let gb = if needs[1] {
            let d = match (&a_keep, op) {
                (Some(a), _) => forward(BinaryOp::Mul, g, a)?,
                (None, BinaryOp::Sub) => scale_tensor(g, -1.0)?,
                (None, _) => g.clone(),
            };
            Some(reduce_to_shape(&d, &b_shape)?.to_dtype(b_dtype)?)
        } else {
            None
        };
        Ok(vec![ga, gb])
    }))
}

/// The broadcast shape of `a` and `b`, or a shape error naming `op`.
pub fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            _ => Err(Error::shape(op, format!("shapes {a:?} and {b:?} do not broadcast"))),
        })
        .collect()
}

/// One merged output dim: its size and whether each operand runs along it (true) or repeats (false).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Dim {
    size: usize,
    a_full: bool,
    b_full: bool,
}

/// The output dims of `a ∘ b` with neighbours of the same broadcast pattern merged, plus each operand's element
/// stride per merged dim (0 where it repeats).
#[derive(Debug)]
struct Plan {
    dims: Vec<Dim>,
    a_strides: Vec<usize>,
    b_strides: Vec<usize>,
}

impl Plan {
    /// `out` must be the broadcast shape of `a` and `b`.
    fn new(out: &[usize], a: &[usize], b: &[usize]) -> Plan {
        let rank = out.len();
        let dim = |s: &[usize], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
        let mut dims: Vec<Dim> = Vec::new();
        for (i, &size) in out.iter().enumerate() {
            if size == 1 {
                continue; // size-1 output dims do not move any index
            }
            let (a_full, b_full) = (dim(a, i) == size, dim(b, i) == size);
            match dims.last_mut() {
                Some(d) if d.a_full == a_full && d.b_full == b_full => d.size *= size,
                _ => dims.push(Dim { size, a_full, b_full }),
            }
        }
        if dims.is_empty() {
            dims.push(Dim { size: 1, a_full: true, b_full: true });
        }
        let strides = |full: fn(&Dim) -> bool| {
            let mut acc = 1;
            let mut s: Vec<usize> = dims
                .iter()
                .rev()
                .map(|d| {
                    if full(d) {
                        let here = acc;
                        acc *= d.size;
                        here
                    } else {
                        0
                    }
                })
                .collect();
            s.reverse();
            s
        };
        let (a_strides, b_strides) = (strides(|d| d.a_full), strides(|d| d.b_full));
        Plan { dims, a_strides, b_strides }
    }

    fn inner(&self) -> Dim {
        *self.dims.last().expect("a plan has at least one dim")
    }

    /// Offsets into a and b of the start of output row `row` (a row = one run of the innermost merged dim).
    fn row_offsets(&self, mut row: usize) -> (usize, usize) {
        let (mut oa, mut ob) = (0, 0);
        for k in (0..self.dims.len() - 1).rev() {
            let i = row % self.dims[k].size;
            row /= self.dims[k].size;
            oa += i * self.a_strides[k];
            ob += i * self.b_strides[k];
        }
        (oa, ob)
    }

    /// For a `b` that broadcasts onto an `a` of the output's shape: when b's elements, in order, are addressed by
    /// (flat output index / inner) % b_len — b is [1.., full.., 1..] — return (inner, b_len). The CUDA kernels
    /// cover exactly this case.
    fn bias_layout(&self) -> Option<(usize, usize)> {
        let full: Vec<usize> = (0..self.dims.len()).filter(|&k| self.dims[k].b_full).collect();
        match full[..] {
            [] => Some((1, 1)),
            [k] => Some((self.dims[k + 1..].iter().map(|d| d.size).product(), self.dims[k].size)),
            _ => None,
        }
    }
}

/// z = a ∘ b with broadcasting (Tensor level, no tape).
pub fn forward(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = broadcast_shape(op.name(), a.shape(), b.shape())?;
    let storage = match (a.storage(), b.storage()) {
        (Storage::Cpu(x), Storage::Cpu(y)) if a.shape() == b.shape() => {
            Storage::Cpu(cpu::zip_map(x, y, |p, q| op.apply(p, q)))
        }
        (Storage::Cpu(x), Storage::Cpu(y)) => {
            Storage::Cpu(broadcast_cpu(op, x, y, &Plan::new(&out, a.shape(), b.shape())))
        }
        (Storage::Cuda(x), Storage::Cuda(y)) => Storage::Cuda(cuda::binary(op, x, y, a.shape(), b.shape(), &out)?),
        _ => return Err(Tensor::device_mismatch(op.name(), &[a, b])),
    };
    Tensor::from_storage(storage, &out)
}

fn broadcast_cpu(op: BinaryOp, a: &[f32], b: &[f32], plan: &Plan) -> Vec<f32> {
    let inner = plan.inner();
    let n = plan.dims.iter().map(|d| d.size).product();
    let mut y = vec![0.0f32; n];
    if n == 0 {
        return y; // a zero-sized dim: nothing to do (and no rows to chunk by)
    }
    // Each row is a tight loop with no index math: both operands contiguous, or one of them a single value.
    let row = |(r, yr): (usize, &mut [f32])| {
        let (oa, ob) = plan.row_offsets(r);
        match (inner.a_full, inner.b_full) {
            (true, true) => {
                for ((v, &p), &q) in yr.iter_mut().zip(&a[oa..oa + inner.size]).zip(&b[ob..ob + inner.size]) {
                    *v = op.apply(p, q);
                }
            }
            (true, false) => {
                let q = b[ob];
                for (v, &p) in yr.iter_mut().zip(&a[oa..oa + inner.size]) {
                    *v = op.apply(p, q);
                }
            }
            _ => {
                let p = a[oa];
                for (v, &q) in yr.iter_mut().zip(&b[ob..ob + inner.size]) {
                    *v = op.apply(p, q);
                }
            }
        }
    };
    if n >= PAR_MIN {
        y.par_chunks_mut(inner.size).enumerate().for_each(row);
    } else {
        y.chunks_mut(inner.size).enumerate().for_each(row);
    }
    y
}

/// Sum `g` over the dims along which an operand of shape `shape` was broadcast to `g`'s shape (an f32 result for a
/// bf16 `g` whenever a sum is taken).
pub fn reduce_to_shape(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if g.shape() == shape {
        return Ok(g.clone());
    }
    let out = broadcast_shape("reduce_to_shape", g.shape(), shape)?;
    if out != g.shape() {
        return Err(Error::shape("reduce_to_shape", format!("{:?} does not broadcast to {:?}", shape, g.shape())));
    }
    let plan = Plan::new(g.shape(), g.shape(), shape);
    let storage = match g.storage() {
        Storage::Cpu(v) => Storage::Cpu(reduce_cpu(v, shape.iter().product(), &plan)),
        Storage::Cuda(c) => Storage::Cuda(cuda::reduce(c, shape.iter().product(), &plan)?),
    };
    Tensor::from_storage(storage, shape)
}

fn reduce_cpu(g: &[f32], target_len: usize, plan: &Plan) -> Vec<f32> {
    let inner = plan.inner();
    let mut t = vec![0.0f32; target_len];
    if g.is_empty() {
        return t;
    }
    if !inner.b_full {
        // Each row sums to one target element (the [N,C,H,W] → [N,C,1,1] case): sum rows in parallel, then add.
        let sum_row = |(r, gr): (usize, &[f32])| (plan.row_offsets(r).1, gr.iter().map(|&v| v as f64).sum::<f64>());
        let sums: Vec<(usize, f64)> = if g.len() >= PAR_MIN {
            g.par_chunks(inner.size).enumerate().map(sum_row).collect()
        } else {
            g.chunks(inner.size).enumerate().map(sum_row).collect()
        };
        let mut acc = vec![0.0f64; target_len];
        for (o, s) in sums {
            acc[o] += s;
        }
        t.iter_mut().zip(acc).for_each(|(v, s)| *v = s as f32);
    } else {
        for (r, gr) in g.chunks(inner.size).enumerate() {
            let o = plan.row_offsets(r).1;
            t[o..o + inner.size].iter_mut().zip(gr).for_each(|(v, &x)| *v += x);
        }
    }
    t
}

/// y = s · x (Tensor level; the same as `Tensor::scale`).
pub fn scale_tensor(x: &Tensor, s: f32) -> Result<Tensor> {
    x.scale(s)
}

/// y = x + s (Tensor level).
pub fn add_scalar_tensor(x: &Tensor, s: f32) -> Result<Tensor> {
    let storage = match x.storage() {
        Storage::Cpu(v) => Storage::Cpu(cpu::map(v, |a| a + s)),
        Storage::Cuda(c) => Storage::Cuda(cuda::add_scalar(c, s)?),
    };
    Tensor::from_storage(storage, x.shape())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_merges_the_time_embedding_bias_into_rows() {
        let p = Plan::new(&[2, 3, 4, 5], &[2, 3, 4, 5], &[2, 3, 1, 1]);
        assert_eq!(p.dims.len(), 2);
        assert_eq!(p.inner(), Dim { size: 20, a_full: true, b_full: false });
        assert_eq!(p.row_offsets(4), (80, 4));
        assert_eq!(p.bias_layout(), Some((20, 6)));
    }

    #[test]
    fn bias_layout_of_channel_vector_and_scalar() {
        assert_eq!(Plan::new(&[2, 3, 4, 5], &[2, 3, 4, 5], &[3, 1, 1]).bias_layout(), Some((20, 3)));
        assert_eq!(Plan::new(&[2, 3, 4, 5], &[2, 3, 4, 5], &[1]).bias_layout(), Some((1, 1)));
        assert_eq!(Plan::new(&[2, 3, 4, 5], &[2, 3, 4, 5], &[2, 1, 4, 1]).bias_layout(), None);
    }
}
