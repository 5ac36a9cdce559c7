//! Helpers the render modules' tests share: a cut-out to render, a decoder for the cards and
//! settings that move the watermark over the subject.

use image::{DynamicImage, RgbImage, RgbaImage};

use super::{Background, Encoded, Gravity, RenderOptions, Watermark};

pub(super) fn cutout(w: u32, h: u32) -> DynamicImage {
    // A red disc on transparency.
    DynamicImage::ImageRgba8(RgbaImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - w as f32 / 2.0, y as f32 - h as f32 / 2.0);
        let inside = dx * dx + dy * dy < (w.min(h) as f32 / 2.5).powi(2);
        image::Rgba([220, 30, 30, if inside { 255 } else { 0 }])
    }))
}

pub(super) fn decode(e: &Encoded) -> RgbImage {
    image::load_from_memory(&e.bytes).unwrap().to_rgb8()
}

/// Settings that move the watermark over the subject in different ways.
pub(super) fn card_settings() -> Vec<RenderOptions> {
    [
        (
            Background::Gradient([250, 246, 240], [226, 232, 240]),
            None,
            Gravity::SouthEast,
        ),
        (
            Background::Color([10, 20, 30]),
            Some("Paws & Co".to_owned()),
            Gravity::SouthEast,
        ),
        (
            Background::Color([240, 240, 240]),
            Some("tiled".to_owned()),
            Gravity::Tile,
        ),
        (
            Background::Gradient([0, 0, 0], [255, 255, 255]),
            None,
            Gravity::Center,
        ),
    ]
    .into_iter()
    .map(|(background, text, gravity)| RenderOptions {
        background,
        watermark: Watermark {
            text,
            gravity,
            ..Watermark::default()
        },
        ..RenderOptions::default()
    })
    .collect()
}
