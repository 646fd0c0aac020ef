//! Small datasets and configs written by the tests themselves.
#![allow(dead_code)]
use std::path::{Path, PathBuf};

use ddpm_cuda::config::Config;
use ddpm_cuda::diffusion::Sampler;
use ddpm_cuda::train::RunOptions;

/// A fresh empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-cuda-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Raw MNIST-format IDX files (train split) of `n` 28×28 images: bright squares at varying positions.
pub fn write_mnist(dir: &Path, n: usize) {
    let mut images = Vec::new();
    for v in [2051u32, n as u32, 28, 28] {
        images.extend(v.to_be_bytes());
    }
    for i in 0..n {
        let (r, c) = (2 + (i * 7) % 18, 3 + (i * 5) % 17);
        for y in 0..28 {
            for x in 0..28 {
                images.push(if (r..r + 8).contains(&y) && (c..c + 8).contains(&x) { 255 } else { 0 });
            }
        }
    }
    let mut labels = Vec::new();
    for v in [2049u32, n as u32] {
        labels.extend(v.to_be_bytes());
    }
    labels.extend((0..n).map(|i| (i % 10) as u8));
    std::fs::write(dir.join("train-images-idx3-ubyte"), images).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), labels).unwrap();
}

/// A very small U-Net config for 28×28×1 so that tests train in seconds.
pub fn micro_config(steps: u64) -> Config {
    let mut cfg = Config::preset("tiny").unwrap();
    cfg.model.ch = 8;
    cfg.model.norm_groups = 4;
    cfg.model.dropout = 0.1;
    cfg.train.batch_size = 4;
    cfg.train.warmup_steps = 3;
    cfg.train.steps = steps;
    cfg
}

pub fn run_options(data: &Path, out: &Path, cfg: Config, resume: bool) -> RunOptions {
    RunOptions {
        dataset: ddpm_cuda::data::DatasetKind::Mnist,
        data_dir: data.to_path_buf(),
        download: false,
        config: cfg,
        out: out.to_path_buf(),
        resume,
        device: ddpm_cuda::Device::Cpu,
        seed: 11,
        log_every: 1,
        sample_every: 0,
        checkpoint_every: 1000,
        num_samples: 4,
        grid_sampler: Sampler::Ddim { steps: 5, eta: 0.0 },
        quiet: true,
        graphs: Default::default(),
    }
}

/// Every tensor of a checkpoint file as raw bits, for bit-for-bit comparisons.
pub fn checkpoint_bits(path: &Path) -> Vec<Vec<u32>> {
    let ck = ddpm_cuda::checkpoint::Checkpoint::load(path).unwrap();
    [ck.model, ck.ema, ck.adam_m, ck.adam_v]
        .iter()
        .flatten()
        .map(|t| t.to_vec().unwrap().iter().map(|v| v.to_bits()).collect())
        .collect()
}
