//! The `ddpm-cuda` command line: parses the arguments and dispatches to the subcommand's driver in `cli/`.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command};
use ddpm_cuda::Result;

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Train(args) => cli::train::run(args),
        Command::Sample(args) => cli::sample::run(args),
        Command::Eps(args) => cli::eps::run(args),
        Command::Fid(args) => cli::eval::run_fid(&args).map(|_| ExitCode::SUCCESS),
        Command::FidStats(args) => cli::eval::run_fid_stats(&args).map(|_| ExitCode::SUCCESS),
        Command::Nll(args) => cli::eval::run_nll(&args).map(|_| ExitCode::SUCCESS),
        Command::Memorization(args) => cli::eval::run_memorization(&args).map(|_| ExitCode::SUCCESS),
        Command::Forward(args) => cli::forward::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Info(args) => cli::info::run(args),
        Command::Kernels => cli::info::kernels(),
        Command::Selftest(args) => cli::selftest::run(args),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ddpm-cuda: {e}");
            ExitCode::FAILURE
        }
    }
}
