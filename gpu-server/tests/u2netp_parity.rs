//! U²-Netp in Burn against rembg + onnxruntime on real photos.
//!
//! Fixtures come from `scripts/generate_reference.py` (see its docstring to regenerate). The
//! weights come from `gpu-server setup` (run by `scripts/test`); without them these tests fail
//! with the message naming the fix rather than skipping.

use std::path::PathBuf;

use gpu_server::model::{
    Backend, ModelKind, Segmenter,
    assets::{ModelDir, default_model_dir},
    preprocess_u2netp,
};
use shared::intake::{self, Limits};

const PHOTOS: [&str; 3] = ["chelsea", "astronaut", "coffee"];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/u2netp")
        .join(name)
}

fn models() -> ModelDir {
    ModelDir::new(std::env::var_os("MODEL_DIR").map_or_else(default_model_dir, PathBuf::from))
}

fn segmenter(backend: Backend) -> Segmenter {
    Segmenter::load(ModelKind::U2netp, backend, &models()).unwrap_or_else(|e| panic!("{e}"))
}

fn photo(name: &str) -> image::RgbImage {
    let bytes = std::fs::read(fixture(&format!("{name}.png"))).unwrap();
    intake::decode(&bytes, &Limits::default())
        .unwrap()
        .image
        .to_rgb8()
}

/// The reference d0 map, stored as 16-bit grey (value × 65535).
fn reference_map(name: &str) -> Vec<f32> {
    let img = image::open(fixture(&format!("{name}.map.png")))
        .unwrap()
        .to_luma16();
    assert_eq!(img.dimensions(), (320, 320));
    img.as_raw()
        .iter()
        .map(|&v| f32::from(v) / 65535.0)
        .collect()
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The 320² map agrees with onnxruntime within 1e-3 max abs, on each photo, batched together.
pub fn check_map_parity(backend: Backend, names: &[&str]) {
    let seg = segmenter(backend);
    let inputs: Vec<Vec<f32>> = names.iter().map(|n| preprocess_u2netp(&photo(n))).collect();
    let maps = seg.saliency(&inputs, 320);
    for (name, map) in names.iter().zip(&maps) {
        let err = max_abs(map, &reference_map(name));
        eprintln!("{name}: {backend:?} max abs vs onnxruntime = {err:.2e}");
        assert!(err <= 1e-3, "{name}: max abs {err} > 1e-3");
    }
}

#[test]
fn map_matches_onnxruntime_on_cpu() {
    check_map_parity(Backend::Cpu, &PHOTOS);
}

#[test]
fn final_mask_matches_rembg() {
    let seg = segmenter(Backend::Cpu);
    for name in PHOTOS {
        let rgb = photo(name);
        let mask = seg.masks(&[&rgb]).pop().unwrap();
        let reference = image::open(fixture(&format!("{name}.mask.png")))
            .unwrap()
            .to_luma8();
        assert_eq!(mask.dimensions(), reference.dimensions(), "{name}");
        let total: u64 = mask
            .as_raw()
            .iter()
            .zip(reference.as_raw())
            .map(|(&a, &b)| u64::from(a.abs_diff(b)))
            .sum();
        let mean = total as f64 / mask.as_raw().len() as f64;
        let worst = mask
            .as_raw()
            .iter()
            .zip(reference.as_raw())
            .map(|(&a, &b)| a.abs_diff(b))
            .max()
            .unwrap();
        eprintln!("{name}: mean abs {mean:.4} / 255, max {worst} / 255");
        assert!(mean <= 1.0, "{name}: mean abs {mean}/255 > 1/255");
    }
}

#[cfg(feature = "wgpu")]
#[test]
fn map_matches_onnxruntime_on_vulkan() {
    // Runs on a real GPU, or on Mesa's lavapipe in CI (about 20 s for one image there).
    check_map_parity(Backend::Vulkan, &PHOTOS[..1]);
}
