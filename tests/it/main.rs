//! End-to-end tests across the pieces, one binary (each test binary links Burn: one link, not
//! three). `util.rs` (the crate's library) holds the helpers.

mod cli;
mod deploy;
mod docs;
mod server;
