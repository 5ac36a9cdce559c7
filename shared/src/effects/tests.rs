use image::{Rgb, Rgba};

use super::*;

/// A 200×150 photo: an opaque red 40×20 block at (30, 50) and a 2×1 speck at (180, 10).
fn block() -> RgbaImage {
    RgbaImage::from_fn(200, 150, |x, y| {
        if (30..70).contains(&x) && (50..70).contains(&y) || (180..182).contains(&x) && y == 10 {
            Rgba([200, 0, 0, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    })
}

/// A disc of radius `r` at the centre of an `n`×`n` photo, anti-aliased.
fn disc(n: u32, r: f32) -> RgbaImage {
    let c = n as f32 / 2.0;
    RgbaImage::from_fn(n, n, |x, y| {
        let d = ((x as f32 + 0.5 - c).powi(2) + (y as f32 + 0.5 - c).powi(2)).sqrt();
        Rgba([
            10,
            20,
            200,
            ((r + 0.5 - d).clamp(0.0, 1.0) * 255.0).round() as u8,
        ])
    })
}

fn fx(pairs: &[(&str, &str)]) -> Effects {
    Effects::from_fields(|n| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)).unwrap()
}

const MAX: u64 = 50_000_000;

#[test]
fn crop_with_margins_ignores_specks() {
    let out = apply(
        block(),
        Backdrop::Transparent,
        &fx(&[("crop", "true")]),
        MAX,
    )
    .unwrap();
    let rgba = out.picture.to_rgba8();
    assert_eq!(
        rgba.dimensions(),
        (40, 20),
        "the speck does not widen the crop"
    );
    assert!(rgba.pixels().all(|p| p.0 == [200, 0, 0, 255]));
    assert_eq!(
        out.subject,
        Rect {
            left: 0,
            top: 0,
            width: 40,
            height: 20
        }
    );

    let out = apply(
        block(),
        Backdrop::Transparent,
        &fx(&[("crop", "true"), ("crop_margin", "10px 25%")]),
        MAX,
    )
    .unwrap();
    let rgba = out.picture.to_rgba8();
    // 25% of the subject's 40 px width on the left and right, 10 px above and below.
    assert_eq!(rgba.dimensions(), (60, 40));
    assert_eq!(
        out.subject,
        Rect {
            left: 10,
            top: 10,
            width: 40,
            height: 20
        }
    );
    assert_eq!(rgba.get_pixel(9, 10).0[3], 0);
    assert_eq!(rgba.get_pixel(10, 10).0, [200, 0, 0, 255]);
    assert_eq!(rgba.get_pixel(49, 29).0, [200, 0, 0, 255]);
    assert_eq!(rgba.get_pixel(50, 29).0[3], 0);
}

#[test]
fn no_effect_keeps_the_photo_but_erases_specks() {
    let out = apply(
        block(),
        Backdrop::Color([0, 255, 0, 128]),
        &fx(&[("shadow_opacity", "0")]),
        MAX,
    )
    .unwrap();
    let rgba = out.picture.to_rgba8();
    assert_eq!(rgba.dimensions(), (200, 150));
    assert_eq!(
        rgba.get_pixel(180, 10).0,
        [0, 255, 0, 128],
        "speck erased, half-transparent green"
    );
    assert_eq!(rgba.get_pixel(30, 50).0, [200, 0, 0, 255]);
    assert_eq!(
        out.subject,
        Rect {
            left: 30,
            top: 50,
            width: 40,
            height: 20
        }
    );
}

#[test]
fn canvas_size_scale_and_position() {
    // A 400×200 canvas, the subject at half of it, in the top-left corner.
    let out = apply(
        block(),
        Backdrop::Color([255, 255, 255, 255]),
        &fx(&[("size", "400x200"), ("scale", "50%"), ("position", "0% 0%")]),
        MAX,
    )
    .unwrap();
    assert!(
        matches!(out.picture, DynamicImage::ImageRgb8(_)),
        "opaque background: RGB"
    );
    // The content (40×20) fitted into 400×200 is ×10; half of that is ×5: 200×100.
    assert_eq!(
        out.subject,
        Rect {
            left: 0,
            top: 0,
            width: 200,
            height: 100
        }
    );
    let rgb = out.picture.to_rgb8();
    assert_eq!(rgb.get_pixel(100, 50).0, [200, 0, 0]);
    assert_eq!(rgb.get_pixel(300, 150).0, [255, 255, 255]);
    // Centred by default.
    let out = apply(
        block(),
        Backdrop::Transparent,
        &fx(&[("size", "400x200"), ("scale", "50%")]),
        MAX,
    )
    .unwrap();
    assert_eq!(
        out.subject,
        Rect {
            left: 100,
            top: 50,
            width: 200,
            height: 100
        }
    );
    // A size without a scale fits the subject within the margins.
    let out = apply(
        block(),
        Backdrop::Transparent,
        &fx(&[
            ("size", "400x400"),
            ("crop", "true"),
            ("crop_margin", "50px"),
        ]),
        MAX,
    )
    .unwrap();
    assert_eq!(
        out.subject,
        Rect {
            left: 50,
            top: 125,
            width: 300,
            height: 150
        }
    );
}

#[test]
fn canvas_too_large_names_the_field() {
    let e = apply(
        block(),
        Backdrop::Transparent,
        &fx(&[("size", "8000x8000")]),
        MAX,
    )
    .unwrap_err();
    assert_eq!((e.status, e.code), (400, "invalid_option"));
    assert!(e.message.contains("`size`"), "{}", e.message);
}

#[test]
fn outline_has_its_width_and_is_one_closed_shape() {
    // A ring: radius 40 with a hole of radius 25 (it must close), outline 10% of 80 = 8 px.
    let n = 200u32;
    let mut ring = disc(n, 40.0);
    let hole = disc(n, 25.0);
    for (p, h) in ring.pixels_mut().zip(hole.pixels()) {
        p.0[3] = p.0[3].saturating_sub(h.0[3]);
    }
    let out = apply(
        ring,
        Backdrop::Transparent,
        &fx(&[
            ("outline", "true"),
            ("outline_width", "10%"),
            ("outline_color", "#ffff00"),
        ]),
        MAX,
    )
    .unwrap();
    let rgba = out.picture.to_rgba8();
    let c = 100u32;
    assert_eq!(
        rgba.get_pixel(c, c).0,
        [255, 255, 0, 255],
        "the hole is filled with the border"
    );
    // Along a row from the centre: subject to 40, border to 48, nothing beyond.
    assert_eq!(rgba.get_pixel(c + 30, c).0, [10, 20, 200, 255]);
    for r in [41u32, 44, 46] {
        assert_eq!(
            rgba.get_pixel(c + r, c).0,
            [255, 255, 0, 255],
            "border at {r}"
        );
    }
    assert_eq!(rgba.get_pixel(c + 50, c).0[3], 0, "nothing past the border");
    // Diagonally the same distance (a Euclidean border, not a square one).
    let d = |r: f32| (c as f32 + r / std::f32::consts::SQRT_2) as u32;
    assert_eq!(rgba.get_pixel(d(46.0), d(46.0)).0[3], 255);
    assert_eq!(rgba.get_pixel(d(51.0), d(51.0)).0[3], 0);
    // One closed shape: the opaque pixels are one part with no hole.
    let solid: Vec<bool> = rgba.pixels().map(|p| p.0[3] >= 128).collect();
    let mut filled = solid.clone();
    components::fill_holes(&mut filled, n as usize, n as usize);
    let holes: Vec<usize> = (0..solid.len())
        .filter(|&i| solid[i] != filled[i])
        .collect();
    assert!(
        holes.is_empty(),
        "holes at {:?}",
        &holes[..holes.len().min(10)]
    );
    let parts = components::keep_large(&solid, n as usize, n as usize, 1.0);
    assert!(parts == solid, "one part");
}

#[test]
fn shadow_is_offset_and_soft() {
    // Disc radius 20 (long side 40); shadow offset 20% = 8 px right, σ 5% = 2 px, opaque.
    let n = 200u32;
    let out = apply(
        disc(n, 20.0),
        Backdrop::Transparent,
        &fx(&[
            ("shadow_opacity", "100"),
            ("shadow_offset", "20% 0%"),
            ("shadow_blur", "5%"),
        ]),
        MAX,
    )
    .unwrap();
    let rgba = out.picture.to_rgba8();
    let c = 100u32;
    // Right of the disc, inside the shifted one: the shadow, black and nearly opaque.
    let p = rgba.get_pixel(c + 24, c).0;
    assert_eq!(p[..3], [0, 0, 0]);
    assert!(p[3] > 240, "{p:?}");
    // Left of the disc: nothing (the shadow went right).
    assert_eq!(rgba.get_pixel(c - 23, c).0[3], 0);
    // The shadow's edge, 28 px from the centre, is soft over about ±2σ.
    let a = |x: u32| rgba.get_pixel(c + x, c).0[3];
    assert!((80..=176).contains(&a(28)), "half at the edge: {}", a(28));
    assert!(a(24) > 200 && a(32) < 50, "{} {}", a(24), a(32));
    assert!(a(25) > a(27) && a(27) > a(29) && a(29) > a(31), "monotone");
    // The subject itself is untouched over it.
    assert_eq!(rgba.get_pixel(c, c).0, [10, 20, 200, 255]);
}

#[test]
fn background_photo_is_fitted_by_cover() {
    // A 100×50 photo whose columns are numbered; a 200×200 canvas needs it ×4 (400×200), cut
    // 100 px each side: the canvas's left edge is the photo's column 25.
    let bg = RgbImage::from_fn(100, 50, |x, _| Rgb([x as u8 * 2, 0, 0]));
    let out = apply(
        disc(200, 20.0),
        Backdrop::Image(&bg),
        &fx(&[("size", "200x200"), ("scale", "20%")]),
        MAX,
    )
    .unwrap();
    let rgb = out.picture.to_rgb8();
    assert_eq!(rgb.dimensions(), (200, 200));
    let left = i32::from(rgb.get_pixel(0, 0).0[0]);
    let right = i32::from(rgb.get_pixel(199, 0).0[0]);
    assert!(
        (left - 50).abs() <= 2 && (right - 148).abs() <= 2,
        "{left} {right}"
    );
    assert_eq!(rgb.get_pixel(100, 100).0, [10, 20, 200]);
}

#[test]
fn a_long_thin_canvas_over_a_small_photo_resamples_only_what_shows() {
    // 7×5 over 1×34,330: scaling the whole photo first would make it 48,062×34,330 (4.9 GB of
    // RGB; the fuzzer's `fields` target timed out on it). The one column shown is the photo's
    // middle column, stretched.
    let bg = RgbImage::from_fn(7, 5, |x, y| Rgb([x as u8 * 30, y as u8 * 50, 9]));
    let out = cover(&bg, 1, 34_330);
    assert_eq!(out.dimensions(), (1, 34_330));
    let top = out.get_pixel(0, 0).0;
    let bottom = out.get_pixel(0, 34_329).0;
    assert_eq!((top[0], top[2]), (90, 9), "the middle column");
    assert_eq!((top[1], bottom[1]), (0, 200), "top row to bottom row");
}

#[test]
fn alpha_channel_alone() {
    let out = apply(
        disc(100, 20.0),
        Backdrop::Color([255, 0, 0, 255]),
        &fx(&[("channels", "alpha"), ("outline_width", "10%")]),
        MAX,
    )
    .unwrap();
    let DynamicImage::ImageLuma8(a) = out.picture else {
        panic!("grey");
    };
    assert_eq!(a.get_pixel(50, 50).0[0], 255);
    assert_eq!(
        a.get_pixel(50 + 21, 50).0[0],
        255,
        "the outline is in the alpha"
    );
    assert_eq!(a.get_pixel(0, 0).0[0], 0, "the background is not");
}
