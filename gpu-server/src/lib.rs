//! The GPU service: background-removal models in Burn, and the command-line tools around them.
//!
//! - [`model`]: the networks (U²-Netp), their weights on disk, and the photo → mask pipeline.
//! - [`cli`]: the `gpu-server` subcommands (`setup`, `remove`, `bench`).

pub mod cli;
pub mod model;
pub mod preview;
pub mod server;
