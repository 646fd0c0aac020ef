//! A small reverse-mode autograd tape.
//!
//! A `Var` owns its value. Ops on vars that belong to a `Tape` append a node holding the op's backward closure,
//! which captures only what that backward needs; vars with no tape (constants) record nothing, which is the
//! no-grad mode used for sampling and EMA. `Tape::backward` walks the nodes once in reverse, dropping each closure
//! (and the activations it captured) and each intermediate gradient as soon as it has been used.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::{ensure_shape, DType, Device, Error, Result, Tensor};

/// Given the gradient of the op's output and which inputs need a gradient, return one gradient per input
/// (`None` for inputs that need none).
pub type BackwardFn = Box<dyn FnOnce(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>>>;

struct Node {
    /// The node id of each input (`None` for constants).
    inputs: Vec<Option<usize>>,
    /// `None` for leaves (parameters) and for nodes already back-propagated.
    backward: Option<BackwardFn>,
}

#[derive(Default)]
struct TapeInner {
    nodes: Vec<Node>,
}

/// The record of one forward pass. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Tape(Rc<RefCell<TapeInner>>);

/// A value in the computation: a tensor, and its node on a tape when gradients flow through it.
#[derive(Clone)]
pub struct Var {
    value: Tensor,
    node: Option<(Tape, usize)>,
}

impl Var {
    /// A value no gradient flows into.
    pub fn constant(value: Tensor) -> Var {
        Var { value, node: None }
    }

    pub fn value(&self) -> &Tensor {
        &self.value
    }

    pub fn into_value(self) -> Tensor {
        self.value
    }

    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    pub fn device(&self) -> Device {
        self.value.device()
    }

    /// The node id on this var's tape, if it is on one.
    pub fn id(&self) -> Option<usize> {
        self.node.as_ref().map(|(_, i)| *i)
    }

    pub fn requires_grad(&self) -> bool {
        self.node.is_some()
    }

    /// The same value cut off from the tape.
    pub fn detach(&self) -> Var {
        Var::constant(self.value.clone())
    }
}

impl Tape {
    pub fn new() -> Tape {
        Tape::default()
    }

    /// A leaf (a parameter or an input we want the gradient of).
    pub fn leaf(&self, value: Tensor) -> Var {
        let mut inner = self.0.borrow_mut();
        inner.nodes.push(Node { inputs: vec![], backward: None });
        Var { value, node: Some((self.clone(), inner.nodes.len() - 1)) }
    }

    pub fn len(&self) -> usize {
        self.0.borrow().nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn same(&self, other: &Tape) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }

    /// Back-propagate from a one-element `loss` (seeded with d loss = 1) and return the gradients of every leaf
    /// that the loss depends on. The tape is consumed: a second call is an error.
    pub fn backward(&self, loss: &Var) -> Result<Grads> {
        ensure_shape!(loss.value.numel() == 1, "backward", "loss must have one element, got {:?}", loss.shape());
        self.backward_with(loss, Tensor::ones(loss.shape(), &loss.device())?)
    }

    /// Back-propagate from any var with a given output gradient `seed` (same shape as the var).
    pub fn backward_with(&self, output: &Var, seed: Tensor) -> Result<Grads> {
        self.backward_hooked(output, seed, &mut |_, _| Ok(()))
    }

    /// `backward_with`, calling `on_final(leaf id, gradient)` once for every leaf of the walk as soon as its
    /// gradient is final: right after its last consumer (the lowest-numbered node using it) has back-propagated,
    /// `None` if nothing sent it a gradient. Data-parallel training starts a gradient's all-reduce there while
    /// the rest of the backward pass runs.
    pub fn backward_hooked(
        &self,
        output: &Var,
        seed: Tensor,
        on_final: &mut dyn FnMut(usize, Option<&Tensor>) -> Result<()>,
    ) -> Result<Grads> {
        let start = match &output.node {
            Some((tape, id)) if tape.same(self) => *id,
            _ => return Err(Error::msg("backward: the output was not computed on this tape")),
        };
        ensure_shape!(
            seed.shape() == output.shape(),
            "backward",
            "seed {:?} for output {:?}",
            seed.shape(),
            output.shape()
        );

        let n = start + 1;
        // final_after[c]: the leaves whose last consumer is node c (a leaf nobody uses is its own).
        let mut final_after: Vec<Vec<usize>> = vec![Vec::new(); n];
        {
            let inner = self.0.borrow();
            let mut last_use: Vec<Option<usize>> = vec![None; n];
            for (id, node) in inner.nodes[..n].iter().enumerate() {
                for &i in node.inputs.iter().flatten() {
                    last_use[i] = Some(last_use[i].map_or(id, |u| u.min(id)));
                }
            }
            for (id, node) in inner.nodes[..n].iter().enumerate() {
                if node.inputs.is_empty() {
                    final_after[last_use[id].unwrap_or(id)].push(id);
                }
            }
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; n];
        grads[start] = Some(seed);
        let mut leaves = HashMap::new();
        for id in (0..n).rev() {
            self.back_propagate(id, &mut grads, &mut leaves)?;
            for &leaf in &final_after[id] {
                on_final(leaf, grads[leaf].as_ref().or(leaves.get(&leaf)))?;
            }
        }
        Ok(Grads { by_id: leaves })
    }

    /// Node `id`'s step of the walk: its gradient to its inputs (a leaf's is kept in `leaves`).
    fn back_propagate(
        &self,
        id: usize,
        grads: &mut [Option<Tensor>],
        leaves: &mut HashMap<usize, Tensor>,
    ) -> Result<()> {
        let Some(g) = grads[id].take() else { return Ok(()) };
        let (inputs, backward) = {
            let mut inner = self.0.borrow_mut();
            let node = &mut inner.nodes[id];
            (node.inputs.clone(), node.backward.take())
        };
        if inputs.is_empty() {
            leaves.insert(id, g);
            return Ok(());
        }
        let backward = backward.ok_or_else(|| Error::msg("backward: this tape was already back-propagated"))?;
        let needs: Vec<bool> = inputs.iter().map(|i| i.is_some()).collect();
        let input_grads = backward(&g, &needs)?;
        drop(g);
        if input_grads.len() != inputs.len() {
            return Err(Error::msg(format!(
                "backward of node {id}: {} gradients for {} inputs",
                input_grads.len(),
                inputs.len()
            )));
        }
        for (input, ig) in inputs.iter().zip(input_grads) {
            let (Some(i), Some(ig)) = (input, ig) else {
                continue;
            };
            grads[*i] = Some(match grads[*i].take() {
                Some(acc) => acc.add(&ig)?,
                None => ig,
            });
        }
        Ok(())
    }
}

/// The gradients of the leaves, by node id.
pub struct Grads {
    by_id: HashMap<usize, Tensor>,
}

impl Grads {
    /// The gradient of a leaf var (`None` if the loss does not depend on it).
    pub fn get(&self, var: &Var) -> Option<&Tensor> {
        var.id().and_then(|i| self.by_id.get(&i))
    }

    pub fn take(&mut self, var: &Var) -> Option<Tensor> {
        var.id().and_then(|i| self.by_id.remove(&i))
    }
}

/// Record an op. `value` is its output; `backward` maps the output gradient to input gradients. When no input is
/// on a tape the closure is dropped at once and the result is a constant (no-grad mode).
pub fn record(
    value: Tensor,
    inputs: &[&Var],
    backward: impl FnOnce(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + 'static,
) -> Var {
    let tape = inputs.iter().find_map(|v| v.node.as_ref().map(|(t, _)| t.clone()));
    let Some(tape) = tape else {
        return Var::constant(value);
    };
    let ids = inputs
        .iter()
        .map(|v| match &v.node {
            Some((t, i)) if t.same(&tape) => Some(*i),
            _ => None,
        })
        .collect();
    let mut inner = tape.0.borrow_mut();
    inner.nodes.push(Node { inputs: ids, backward: Some(Box::new(backward)) });
    let id = inner.nodes.len() - 1;
    drop(inner);
    Var { value, node: Some((tape, id)) }
}

/// `var` viewed under another shape with the same element count.
pub fn reshape(var: &Var, shape: &[usize]) -> Result<Var> {
    let old = var.shape().to_vec();
    let y = var.value().reshape(shape)?;
    Ok(record(y, &[var], move |g, _| Ok(vec![Some(g.reshape(&old)?)])))
}

/// `var` stored as `dtype` (mixed precision's casts); the gradient goes back in `var`'s own dtype.
pub fn to_dtype(var: &Var, dtype: DType) -> Result<Var> {
    let from = var.value().dtype();
    if from == dtype {
        return Ok(var.clone());
    }
    let y = var.value().to_dtype(dtype)?;
    Ok(record(y, &[var], move |g, _| Ok(vec![Some(g.to_dtype(from)?)])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: f32) -> Tensor {
        Tensor::from_vec(vec![v], &[1]).unwrap()
    }

    /// Each leaf is reported once, after its last consumer, with its whole (accumulated) gradient; an unused leaf
    /// with none; the gradients returned are the same.
    #[test]
    fn the_hook_sees_each_leaf_once_when_its_gradient_is_final() {
        let tape = Tape::new();
        let (a, b, c) = (tape.leaf(one(1.0)), tape.leaf(one(1.0)), tape.leaf(one(1.0)));
        let scaled = |k: f32| move |g: &Tensor| g.scale(k);
        let u = record(one(0.0), &[&a], move |g, _| Ok(vec![Some(scaled(2.0)(g)?)]));
        let v = record(one(0.0), &[&u, &b, &a], move |g, _| {
            Ok(vec![Some(g.clone()), Some(scaled(3.0)(g)?), Some(g.clone())])
        });
        let mut seen = Vec::new();
        let grads = tape
            .backward_hooked(&v, one(1.0), &mut |id, g| {
                seen.push((id, g.map(|g| g.item().unwrap())));
                Ok(())
            })
            .unwrap();
        // b's only consumer is v (node 4); a's last is u (node 3, after v's 1 its 2 arrives); c has none.
        assert_eq!(seen, vec![(b.id().unwrap(), Some(3.0)), (a.id().unwrap(), Some(3.0)), (c.id().unwrap(), None)]);
        assert_eq!(grads.get(&a).unwrap().item().unwrap(), 3.0);
        assert_eq!(grads.get(&b).unwrap().item().unwrap(), 3.0);
        assert!(grads.get(&c).is_none());
    }
}
