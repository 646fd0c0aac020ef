//! `ddpm-cuda selftest`: every kernel against the CPU reference on a device.

use std::process::ExitCode;

use ddpm_cuda::{Device, Result};

#[derive(clap::Args)]
pub struct SelftestArgs {
    /// The device to test: cuda or cuda:N (cpu checks the reference against itself).
    #[arg(long, default_value = "cuda")]
    pub device: String,
    /// Only the cases whose op name contains this, or one of its comma-separated parts (e.g. `conv2d`,
    /// `group_norm,unet`).
    #[arg(long)]
    pub filter: Option<String>,
    /// Case sizes: the cifar10 U-Net's own shapes (full) or the same code paths at simulator-sized shapes
    /// (reduced). Default: reduced on the PTX simulator, full on a GPU.
    #[arg(long, value_enum)]
    pub shapes: Option<ddpm_cuda::selftest::Shapes>,
}

pub fn run(args: SelftestArgs) -> Result<ExitCode> {
    let SelftestArgs { device, filter, shapes } = args;
    ddpm_cuda::selftest::run(&Device::parse(&device)?, filter.as_deref(), shapes).map(|_| ExitCode::SUCCESS)
}
