//! Every colour type and orientation a phone or shop produces decodes to the same upright
//! picture. Fixtures: `scripts/generate_intake_fixtures.py` (Pillow, from a real photo).

use std::path::PathBuf;

use image::RgbImage;
use shared::intake::{self, ImageFormat, Limits};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/intake")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn reference() -> RgbImage {
    intake::decode(&fixture("reference.png"), &Limits::default())
        .unwrap()
        .image
        .to_rgb8()
}

/// Mean absolute difference per channel, in levels.
fn mean_abs(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

#[test]
fn every_colour_type_decodes_to_the_same_picture() {
    let want = reference();
    // (file, format, how far lossy coding may move it, in mean levels)
    for (name, format, tolerance) in [
        ("rgb.jpg", ImageFormat::Jpeg, 3.0),
        ("cmyk.jpg", ImageFormat::Jpeg, 4.0),
        ("rgb16.png", ImageFormat::Png, 0.5),
        ("rgba.png", ImageFormat::Png, 0.0),
        ("rgb.webp", ImageFormat::WebP, 0.0),
    ] {
        let decoded = intake::decode(&fixture(name), &Limits::default()).unwrap();
        assert_eq!(decoded.format, format, "{name}");
        let got = decoded.image.to_rgb8();
        let diff = mean_abs(&got, &want);
        assert!(diff <= tolerance, "{name}: mean abs {diff} > {tolerance}");
    }
}

#[test]
fn grey_images_come_back_grey_at_full_size() {
    for name in ["gray.png", "gray_alpha.png"] {
        let img = intake::decode(&fixture(name), &Limits::default())
            .unwrap()
            .image
            .to_rgb8();
        assert_eq!(img.dimensions(), (64, 48), "{name}");
        assert!(
            img.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]),
            "{name}"
        );
    }
}

#[test]
fn alpha_survives_decoding() {
    let img = intake::decode(&fixture("rgba.png"), &Limits::default())
        .unwrap()
        .image
        .to_rgba8();
    let alphas: Vec<u8> = img.pixels().map(|p| p.0[3]).collect();
    assert!(alphas.iter().min().unwrap() < &10 && alphas.iter().max().unwrap() > &240);
}

#[test]
fn exif_orientation_turns_the_photo_upright() {
    let decoded = intake::decode(&fixture("exif_rotated.jpg"), &Limits::default()).unwrap();
    let img = decoded.image.to_rgb8();
    assert_eq!(
        img.dimensions(),
        (64, 48),
        "stored 48×64 sideways, displayed 64×48"
    );
    let diff = mean_abs(&img, &reference());
    assert!(diff <= 3.0, "upright picture differs by {diff}");
}
