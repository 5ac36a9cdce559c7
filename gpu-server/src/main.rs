use std::process::ExitCode;

use clap::Parser;

/// Inference allocates and frees tens of megabytes per image; mimalloc keeps those pages for
/// reuse where the system allocator returns them to the kernel and faults them in again.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    gpu_server::cli::run(gpu_server::cli::Cli::parse())
}
