//! `ddpm-cuda forward`: a figure of the forward process q(x_t | x_0) for a few images.

use std::path::PathBuf;
use std::process::ExitCode;

use ddpm_cuda::config::Config;
use ddpm_cuda::data::{self, DatasetKind};
use ddpm_cuda::diffusion::Diffusion;
use ddpm_cuda::rng::Philox;
use ddpm_cuda::{report, Error, Result, Tensor};

use super::{forward_num, positive_usize};

#[derive(clap::Args)]
pub struct ForwardArgs {
    /// The dataset: mnist, fashion-mnist, cifar10 or folder.
    #[arg(long, value_parser = DatasetKind::parse)]
    pub dataset: DatasetKind,
    /// The folder holding the dataset's files.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Timesteps to draw, comma-separated, each in 0..=999 (the paper's T = 1000).
    #[arg(long, value_delimiter = ',', default_value = "0,50,100,200,400,600,800,999")]
    pub t: Vec<usize>,
    /// Number of images (rows), 1 to 256.
    #[arg(long, default_value_t = 4, value_parser = forward_num)]
    pub num: usize,
    /// Image side in pixels for --dataset folder.
    #[arg(long, default_value_t = 64, value_parser = positive_usize)]
    pub image_size: usize,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Path of the figure to write (.png, or .jpg/.jpeg).
    #[arg(long, value_name = "FILE", default_value = "forward.png")]
    pub out: PathBuf,
}

pub fn run(args: ForwardArgs) -> Result<ExitCode> {
    let ForwardArgs { dataset, data_dir, t, num, image_size, seed, out } = args;
    report::check_image_path("--out", &out)?;
    let diffusion = Diffusion::new(&Config::preset("cifar10")?.diffusion)?;
    let steps = diffusion.schedule.steps();
    if let Some(bad) = t.iter().find(|&&v| v >= steps) {
        return Err(Error::msg(format!("--t: timestep {bad} is outside 0..={} (T = {steps})", steps - 1)));
    }
    if t.is_empty() {
        return Err(Error::msg("--t: give at least one timestep"));
    }
    let ds = data::load(dataset, &data_dir, true, image_size)?;
    let (c, h, w) = (ds.channels, ds.height, ds.width);
    let mut rows = Vec::new();
    let mut rng = Philox::new(seed);
    for i in 0..num.min(ds.n) {
        let mut x0 = vec![0.0; c * h * w];
        ds.image_f32(i, false, &mut x0);
        let x0 = Tensor::from_vec(x0, &[1, c, h, w])?;
        for &ti in &t {
            let noise = rng.normal_tensor(&[1, c, h, w])?;
            rows.extend(diffusion.q_sample(&x0, &[ti], &noise)?.to_vec()?);
        }
    }
    let n = rows.len() / (c * h * w);
    report::save_grid(&out, &Tensor::from_vec(rows, &[n, c, h, w])?, t.len(), 2)?;
    eprintln!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}
