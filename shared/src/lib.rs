//! Everything the GPU service (`gpu-server`) and the edge Worker (`edge-share`) both apply.
//!
//! This crate is pure and target-agnostic: no async runtime, no HTTP framework, no Worker or
//! Burn dependency, and it builds for `wasm32-unknown-unknown` as well as natively.
//!
//! - [`intake`]: recognise an upload by its magic bytes, check byte and pixel limits before a
//!   full decode, decode every colour type a phone or shop produces and apply EXIF orientation.
//! - [`resize`]: Pillow-compatible resampling (the model's preprocessing depends on it).
//! - [`encode`]: PNG, WebP and JPEG output.
//! - [`compose`]: turn an image and its alpha mask into the requested output (cut-out, mask,
//!   solid or blurred background).

pub mod compose;
pub mod encode;
pub mod intake;
pub mod resize;
