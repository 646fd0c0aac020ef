//! sum and mean (through the tape) selftest case.

use crate::autograd::Tape;
use crate::ops::{elementwise, reduce};
use crate::bench::kernels::{rand, row, Row, Work};
use crate::autograd::Var;
use crate::selftest::{case, input, Case, Shapes, B};

/// The benchmark row (`ddpm-cuda bench kernels`): the f64 device sum of a [B, 128, 32, 32] activation.
pub(crate) fn benches(rows: &mut Vec<Row>, batch: usize) {
    let s = [batch, 128, 32, 32];
    rows.push(row("sum", format!("{s:?}"), Work::f32s(batch * 128 * 1024, 1), move |d| {
        let x = Var::constant(rand(&s, 1, d)?);
        Ok(Box::new(move || reduce::sum(&x).map(drop)))
    }));
}

/// The op's selftest cases (`ddpm-cuda selftest`), CPU reference against the device.
pub(crate) fn cases(cases: &mut Vec<Case>, _shapes: Shapes) {
    let s4 = vec![B, 128, 32, 32];
    cases.push(case(
        "sum, mean fwd+bwd",
        format!("{s4:?}"),
        1e-5,
        Box::new(move |d| {
            let tape = Tape::new();
            let x = tape.leaf(elementwise::add_scalar_tensor(&input(&s4, 1, d)?, 0.1)?);
            let (s, m) = (reduce::sum(&x)?, reduce::mean(&x)?);
            let total = elementwise::add(&s, &elementwise::scale(&m, 3.0)?)?;
            let grads = tape.backward(&total)?;
            Ok(vec![s.value().clone(), m.value().clone(), grads.get(&x).expect("dx").clone()])
        }),
    ));
}
