//! `ddpm-cuda info` (a config's U-Net, parameter by parameter) and `ddpm-cuda kernels` (the ptxas report).

use std::process::ExitCode;

use ddpm_cuda::nn::unet::UNet;
use ddpm_cuda::nn::ParamStore;
use ddpm_cuda::rng::Philox;
use ddpm_cuda::Result;

use super::{group_thousands, ModelArgs};

#[derive(clap::Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(args: InfoArgs) -> Result<ExitCode> {
    let InfoArgs { model } = args;
    let cfg = model.load()?;
    let mut store = ParamStore::new();
    UNet::new(&cfg.model, &mut store, &mut Philox::new(0))?;
    for (name, t) in store.names().iter().zip(store.tensors()) {
        println!("{name:<56} {:>18} {:>10}", format!("{:?}", t.shape()), t.numel());
    }
    println!("{} tensors, {} parameters", store.len(), group_thousands(store.num_scalars()));
    Ok(ExitCode::SUCCESS)
}

/// `ddpm-cuda kernels`.
pub fn kernels() -> Result<ExitCode> {
    print!("{}", ddpm_cuda::backend::cuda::PTXAS_REPORT);
    Ok(ExitCode::SUCCESS)
}
