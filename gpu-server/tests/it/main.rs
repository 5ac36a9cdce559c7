//! gpu-server's integration tests, one binary (each test binary links Burn: one link, not three).

mod api;
mod inspyrenet_parity;
mod u2netp_parity;
