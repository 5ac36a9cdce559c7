use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    gpu_server::cli::run(gpu_server::cli::Cli::parse())
}
