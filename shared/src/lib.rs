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
//! - [`cutout`]: the one cut-out pipeline after the mask (compose, encode) for the CLI, the
//!   API and the benchmark.
//! - [`render`]: the share images (watermark, 1200×630 / 1000×1500 / 1080×1080 JPEGs).
//! - [`publish`]: the share flow itself (form, token, picture, existing share, render, objects
//!   in write order) over a small storage trait; both shells are adapters of it.
//! - [`settings`]: every setting both shells read, its variable and its default, once.
//! - [`refusal`]: the one refusal type (status, code, message, `Retry-After`) and the 500 body.
//! - [`jpeg`]: the share cards' baseline JPEG encoder (reuses an empty card's blocks).
//! - [`ids`], [`token`]: content-hash ids and signed share tokens.
//! - [`share`], [`page`], [`api`]: platforms and intent links, the share page's HTML, the JSON
//!   both services answer and the share manifest they store.

pub mod api;
pub mod compose;
pub mod cutout;
pub mod effects;
pub mod encode;
pub mod ids;
pub mod intake;
pub mod jpeg;
pub mod page;
pub mod png_writer;
pub mod publish;
// Numeric kernels index several arrays in step; iterator chains would hide that.
#[allow(clippy::needless_range_loop)]
pub mod refine;
pub mod refusal;
pub mod render;
pub mod resize;
pub mod settings;
pub mod share;
pub mod token;

/// The image types the API takes and gives, for shells that do not depend on `image` directly.
pub use image;
