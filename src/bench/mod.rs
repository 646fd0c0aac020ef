//! `ddpm-cuda bench train`: end-to-end training throughput (img/s, steps/s) after warm-up, on random images, so
//! that it needs no dataset. `kernels`: the kernel microbenchmarks (`bench kernels`).

pub mod kernels;

use std::time::Instant;

use crate::backend::graph::GraphMode;
use crate::config::Config;
use crate::rng::Philox;
use crate::train::Trainer;
use crate::{Device, Result};

pub struct TrainBench {
    pub batch_size: usize,
    pub steps: usize,
    pub seconds: f64,
    pub img_per_s: f64,
    pub steps_per_s: f64,
    pub params: usize,
}

/// Time `steps` optimizer steps after `warmup` untimed ones (`graphs`: the CUDA step as a replayed graph or not).
pub fn train(config: Config, device: &Device, warmup: usize, steps: usize, graphs: GraphMode) -> Result<TrainBench> {
    let b = config.train.batch_size;
    let shape = [b, config.model.in_channels, config.model.image_size, config.model.image_size];
    let mut trainer = Trainer::new(config, 0, device.clone())?;
    trainer.graphs = graphs;
    let x0 = Philox::new(1).normal_tensor(&shape)?.to_device(device)?;
    // Steps are queued without waiting for the device, as in training between logging steps; `report` waits and
    // fails on a non-finite step.
    for _ in 0..warmup {
        trainer.queue_step(&x0)?;
    }
    trainer.report()?;
    let start = Instant::now();
    for _ in 0..steps {
        trainer.queue_step(&x0)?;
    }
    trainer.report()?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(TrainBench {
        batch_size: b,
        steps,
        seconds,
        img_per_s: (steps * b) as f64 / seconds,
        steps_per_s: steps as f64 / seconds,
        params: trainer.params.num_scalars(),
    })
}
