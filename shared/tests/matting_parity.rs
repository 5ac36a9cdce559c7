#![allow(clippy::needless_range_loop)] // pixels index several buffers in step
//! The refinement against its references, on a real photo with the same trimap: alpha against
//! pymatting's `estimate_alpha_cf`, foreground colour against its `estimate_foreground_ml`.
//! Fixtures: `scripts/generate_matting_reference.py` (pymatting 1.1.16; its docstring says how
//! to regenerate them; `tests/fixtures/matting/reference.json` records the calls).

use std::path::PathBuf;

use image::DynamicImage;
use shared::refine::{closed_form, foreground, trimap};

fn fixture(name: &str) -> DynamicImage {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/matting")
        .join(name);
    image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Case {
    rgb: image::RgbImage,
    trimap: Vec<u8>,
    alpha: Vec<f32>,
    fg: Vec<f32>,
}

fn chelsea() -> Case {
    let rgb = fixture("chelsea.png").to_rgb8();
    let trimap = fixture("chelsea.trimap.png").to_luma8().into_raw();
    let DynamicImage::ImageLuma16(alpha) = fixture("chelsea.alpha.png") else {
        panic!("the alpha fixture is 16-bit grey");
    };
    let DynamicImage::ImageRgb16(fg) = fixture("chelsea.fg.png") else {
        panic!("the foreground fixture is 16-bit RGB");
    };
    let unit = |v: &u16| f32::from(*v) / 65535.0;
    Case {
        rgb,
        trimap,
        alpha: alpha.as_raw().iter().map(unit).collect(),
        fg: fg.as_raw().iter().map(unit).collect(),
    }
}

#[test]
fn closed_form_alpha_matches_pymatting() {
    let c = chelsea();
    let (w, h) = (c.rgb.width() as usize, c.rgb.height() as usize);
    let pic: Vec<f32> = c
        .rgb
        .as_raw()
        .iter()
        .map(|&v| f32::from(v) / 255.0)
        .collect();
    // Start where the product starts: from a guess, here mid-grey over the band.
    let mut alpha = vec![0.5f32; w * h];
    let stats = closed_form::solve(&pic, w, h, &c.trimap, &mut alpha);
    let band: Vec<usize> = (0..w * h)
        .filter(|&i| c.trimap[i] == trimap::UNKNOWN)
        .collect();
    assert_eq!(stats.unknowns, band.len());
    let mean_abs = band
        .iter()
        .map(|&i| f64::from((alpha[i] - c.alpha[i]).abs()))
        .sum::<f64>()
        / band.len() as f64;
    let max_abs = band
        .iter()
        .map(|&i| (alpha[i] - c.alpha[i]).abs())
        .fold(0.0f32, f32::max);
    eprintln!(
        "closed form: {} unknowns, {} iterations, residual {:.2e}; mean |Δα| {:.5} ({:.3}/255), max {:.4}",
        stats.unknowns,
        stats.iterations,
        stats.relative_residual,
        mean_abs,
        mean_abs * 255.0,
        max_abs
    );
    assert!(
        mean_abs <= 2.0 / 255.0,
        "mean |Δα| over the band {mean_abs} > 2/255"
    );
    // Known pixels are exactly the trimap's.
    for i in 0..w * h {
        match c.trimap[i] {
            0 => assert_eq!(alpha[i], 0.0),
            255 => assert_eq!(alpha[i], 1.0),
            _ => {}
        }
    }
}

#[test]
fn foreground_matches_pymatting() {
    let c = chelsea();
    let (w, h) = (c.rgb.width() as usize, c.rgb.height() as usize);
    // pymatting's alpha, as the reference's foreground was computed from it.
    let f = foreground::estimate(c.rgb.as_raw(), w, h, c.alpha.as_slice());
    let (mut err, mut weight) = (0f64, 0f64);
    let mut worst = 0f32;
    for i in 0..w * h {
        let a = c.alpha[i];
        if a == 0.0 {
            continue;
        }
        for k in 0..3 {
            let ours = match f.colour(i) {
                Some(colour) => colour[k],
                None => f32::from(c.rgb.as_raw()[3 * i + k]) / 255.0,
            };
            let d = (ours - c.fg[3 * i + k]).abs();
            worst = worst.max(d);
            err += f64::from(a * d);
            weight += f64::from(a);
        }
    }
    let mean = err / weight;
    eprintln!(
        "foreground: α-weighted mean |ΔF| {mean:.6} ({:.4}/255), max {worst:.4}",
        mean * 255.0
    );
    assert!(mean <= 1.0 / 255.0, "α-weighted mean |ΔF| {mean} > 1/255");
}
