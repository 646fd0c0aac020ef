//! The fused diffusion steps' selftest cases (q_sample, reverse_step, training_batch).

use super::{q_sample, reverse_step, training_batch, BatchTables, StepCoefs};
use crate::backend::Device;
use crate::bench::kernels::{rand, row, Row, Work};
use crate::rng::Philox;
use crate::selftest::{case, input, Case, Shapes, B};
use crate::{Error, Result, Tensor};

/// Timesteps and embedding width of the training-batch cases.
const STEPS: usize = 1000;
const DIM: usize = 8;

/// An error naming `what` unless `a` and `b` hold the same bits.
fn same_bits(what: &str, a: &Tensor, b: &Tensor) -> Result<()> {
    let (x, y) = (a.to_vec()?, b.to_vec()?);
    match (0..x.len().max(y.len())).find(|&i| x.get(i).map(|v| v.to_bits()) != y.get(i).map(|v| v.to_bits())) {
        None => Ok(()),
        Some(i) => Err(Error::msg(format!("{what}: element {i} is {:?} vs {:?}", x.get(i), y.get(i)))),
    }
}

/// The fused training batch of x0 `shape` with the draws at offsets 4 and 5 of stream 77. On CUDA it is first held
/// against the same draws made one by one as `Diffusion::training_batch` makes them (host uniforms → t,
/// `normal_on`, `q_sample` with the tables' coefficients, the table's embedding rows) and against itself with the
/// offsets read from a device counter (set 3 draws further on, against the plain draws at offsets 7 and 8): both
/// must agree bit for bit, else an error. Returns [t, embedding] (`exact`) or [x_t, ε] for the comparison with the
/// CPU.
fn training_batch_case(d: &Device, shape: &[usize], exact: bool) -> Result<Vec<Tensor>> {
    let on = |t: Tensor| t.to_device(d);
    let cpu_tables = BatchTables {
        sqrt_ab: input(&[STEPS], 3, &Device::Cpu)?,
        sqrt_1mab: input(&[STEPS], 4, &Device::Cpu)?,
        emb: input(&[STEPS, DIM], 5, &Device::Cpu)?,
    };
    let tables = BatchTables {
        sqrt_ab: on(cpu_tables.sqrt_ab.clone())?,
        sqrt_1mab: on(cpu_tables.sqrt_1mab.clone())?,
        emb: on(cpu_tables.emb.clone())?,
    };
    let x0 = input(shape, 1, d)?;
    let draws = |offset| (Philox::from_state(77, offset), Philox::from_state(77, offset + 1));
    let (draw_t, draw_eps) = draws(4);
    let (x_t, noise, t, emb) = training_batch(&x0, &tables, draw_t, draw_eps)?;
    if let Device::Cuda(be) = d {
        // Diffusion::training_batch's way, on the same device.
        let n = shape[0];
        let ts: Vec<usize> =
            { draw_t }.uniform(n).iter().map(|&u| (((u as f64) * STEPS as f64) as usize).min(STEPS - 1)).collect();
        let plain_noise = { draw_eps }.normal_on(shape, d)?;
        let (a_all, b_all, rows) =
            (cpu_tables.sqrt_ab.to_vec()?, cpu_tables.sqrt_1mab.to_vec()?, cpu_tables.emb.to_vec()?);
        let (a, b): (Vec<f32>, Vec<f32>) = ts.iter().map(|&t| (a_all[t], b_all[t])).unzip();
        let plain_emb: Vec<f32> = ts.iter().flat_map(|&t| rows[t * DIM..(t + 1) * DIM].to_vec()).collect();
        let plain_t: Vec<f32> = ts.iter().map(|&t| t as f32).collect();
        same_bits("t (fused vs host draws)", &t, &Tensor::from_vec(plain_t, &[n])?)?;
        same_bits("ε (fused vs normal_on)", &noise, &plain_noise)?;
        same_bits("x_t (fused vs q_sample)", &x_t, &q_sample(&x0, &plain_noise, &a, &b)?)?;
        same_bits("embedding (fused vs table rows)", &emb, &Tensor::from_vec(plain_emb, &[n, DIM])?)?;
        // Offsets from a device counter that is 3 draws ahead of the host's.
        let counter = be.stream().clone_htod(&[7u64])?;
        let mut stream = draw_t.counted_on(&counter, 0, be)?;
        let (counted_t, counted_eps) = (stream.take_draw(), stream.take_draw());
        let counted = training_batch(&x0, &tables, counted_t, counted_eps)?;
        let (t7, e8) = draws(7);
        let later = training_batch(&x0, &tables, t7, e8)?;
        same_bits("x_t (counted on the device vs offsets 7, 8)", &counted.0, &later.0)?;
        same_bits("ε (counted on the device vs offsets 7, 8)", &counted.1, &later.1)?;
        same_bits("t (counted on the device vs offsets 7, 8)", &counted.2, &later.2)?;
        same_bits("embedding (counted on the device vs offsets 7, 8)", &counted.3, &later.3)?;
    }
    Ok(if exact { vec![t, emb] } else { vec![x_t, noise] })
}

/// The benchmark rows (`ddpm-cuda bench kernels`): the fused forward-noising and reverse steps on a batch of
/// 32×32 RGB images.
pub(crate) fn benches(rows: &mut Vec<Row>, batch: usize) {
    let s = [batch, 3, 32, 32];
    let n = batch * 3 * 1024;
    rows.push(row("q_sample", format!("{s:?}"), Work::f32s(n, 3), move |d| {
        let (x0, e) = (rand(&s, 1, d)?, rand(&s, 2, d)?);
        let (a, b) = (vec![0.7; batch], vec![0.71; batch]);
        Ok(Box::new(move || q_sample(&x0, &e, &a, &b).map(drop)))
    }));
    rows.push(row("reverse_step", format!("{s:?}"), Work::f32s(n, 4), move |d| {
        let (x, e, z) = (rand(&s, 1, d)?, rand(&s, 2, d)?, rand(&s, 3, d)?);
        let c = StepCoefs { recip: 1.3, recipm1: 0.8, clip: true, c_x0: 0.3, c_xt: 0.7, c_eps: 0.0, sigma: 0.2 };
        Ok(Box::new(move || reverse_step(&x, &e, Some(&z), c).map(drop)))
    }));
}

/// The op's selftest cases (`ddpm-cuda selftest`), CPU reference against the device.
pub(crate) fn cases(cases: &mut Vec<Case>, _shapes: Shapes) {
    let s = vec![B, 3, 32, 32];
    let s1 = s.clone();
    cases.push(case(
        "q_sample",
        format!("{s:?}"),
        1e-6,
        Box::new(move |d| {
            let (a, b) = (vec![0.9, 0.3], vec![0.435_89, 0.953_94]);
            Ok(vec![q_sample(&input(&s1, 1, d)?, &input(&s1, 2, d)?, &a, &b)?])
        }),
    ));
    // Samples of 144 values (whole Philox blocks, 3 samples: a partial block of uniforms) and of 9 (blocks of 4
    // that straddle samples, 5 samples). t and the embedding rows are exact on any device; ε (and with it x_t)
    // only to the CPU's libm against CUDA's logf/sincosf (rng.rs), about 1e-6.
    for shape in [vec![3, 4, 6, 6], vec![5, 1, 3, 3]] {
        let (s1, s2) = (shape.clone(), shape.clone());
        cases.push(case(
            "training_batch t+emb (fused)",
            format!("{shape:?} T{STEPS} dim{DIM} exact"),
            0.0,
            Box::new(move |d| training_batch_case(d, &s1, true)),
        ));
        cases.push(case(
            "training_batch x_t+ε (fused)",
            format!("{shape:?} T{STEPS}"),
            1e-5,
            Box::new(move |d| training_batch_case(d, &s2, false)),
        ));
    }
    let s2 = s.clone();
    cases.push(case(
        "reverse_step",
        format!("{s:?}"),
        1e-5,
        Box::new(move |d| {
            let c = StepCoefs { recip: 1.3, recipm1: 0.8, clip: true, c_x0: 0.3, c_xt: 0.7, c_eps: 0.1, sigma: 0.2 };
            let (x, e, z) = (input(&s2, 1, d)?, input(&s2, 2, d)?, input(&s2, 3, d)?);
            Ok(vec![reverse_step(&x, &e, Some(&z), c)?, reverse_step(&x, &e, None, StepCoefs { sigma: 0.0, ..c })?])
        }),
    ));
}
