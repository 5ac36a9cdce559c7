//! From an image and its alpha mask to the output a customer asked for.
//!
//! The same rules serve the CLI (`gpu-server remove --type …`), the processing API and the share
//! renderer, so a cut-out looks the same wherever it is made.

use std::{fmt, str::FromStr};

use image::{DynamicImage, GrayImage, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use serde::{Deserialize, Serialize};

use crate::refine::Foreground;

/// What to produce from an image and its mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum OutputType {
    /// The subject on a transparent background (RGBA).
    Rgba,
    /// The 8-bit greyscale mask itself, at the input's size.
    Mask,
    /// The refinement's trimap: 0 sure background, 128 the band it solves, 255 sure subject.
    Trimap,
    /// The subject on a solid colour; `white` and `green` are shorthands.
    Color([u8; 3]),
    /// The subject on a blurred copy of its own photo.
    Blur,
}

impl fmt::Display for OutputType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputType::Rgba => f.write_str("rgba"),
            OutputType::Mask => f.write_str("mask"),
            OutputType::Trimap => f.write_str("trimap"),
            OutputType::Color([255, 255, 255]) => f.write_str("white"),
            OutputType::Color([0, 255, 0]) => f.write_str("green"),
            OutputType::Color([r, g, b]) => write!(f, "color:{r},{g},{b}"),
            OutputType::Blur => f.write_str("blur"),
        }
    }
}

impl FromStr for OutputType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "rgba" | "transparent" => return Ok(OutputType::Rgba),
            "mask" | "map" => return Ok(OutputType::Mask),
            "trimap" => return Ok(OutputType::Trimap),
            "white" => return Ok(OutputType::Color([255, 255, 255])),
            "green" => return Ok(OutputType::Color([0, 255, 0])),
            "blur" => return Ok(OutputType::Blur),
            _ => {}
        }
        let bad = || {
            format!(
                "unknown output type {s:?}: expected rgba, mask, trimap, white, green, blur or color:R,G,B"
            )
        };
        let rgb = s.strip_prefix("color:").ok_or_else(bad)?;
        let parts: Vec<u8> = rgb
            .split(',')
            .map(|p| p.trim().parse::<u8>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        match parts.as_slice() {
            [r, g, b] => Ok(OutputType::Color([*r, *g, *b])),
            _ => Err(bad()),
        }
    }
}

impl TryFrom<String> for OutputType {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<OutputType> for String {
    fn from(t: OutputType) -> String {
        t.to_string()
    }
}

/// How the raw mask is refined before use.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MaskOptions {
    /// Hard threshold in 0..=1: pixels above it become opaque, the rest transparent.
    pub threshold: Option<f32>,
    /// Keep the background and remove the subject instead.
    pub reverse: bool,
}

/// Apply threshold and reversal to a mask in place.
pub fn refine_mask(mask: &mut GrayImage, options: MaskOptions) {
    let cut = options
        .threshold
        .map(|t| (t.clamp(0.0, 1.0) * 255.0).round() as u8);
    if cut.is_none() && !options.reverse {
        return;
    }
    for Luma([v]) in mask.pixels_mut() {
        if let Some(cut) = cut {
            *v = if *v > cut { 255 } else { 0 };
        }
        if options.reverse {
            *v = 255 - *v;
        }
    }
}

#[inline]
fn blend(fg: u8, bg: u8, alpha: u8) -> u8 {
    let a = u32::from(alpha);
    ((u32::from(fg) * a + u32::from(bg) * (255 - a) + 127) / 255) as u8
}

/// Produce the requested output. `mask` must have the image's dimensions. Where `foreground`
/// estimated a colour, it replaces the photo's own (the old background's colour bleeding into
/// soft edges is removed); elsewhere the photo's colour is kept.
///
/// The RGBA cut-out puts the mask (times any alpha the upload had) in the alpha channel and
/// does not premultiply, so edges are not darkened; fully transparent pixels are blank, but
/// for those touching a soft edge, which keep the estimated colour.
pub fn compose(
    image: &DynamicImage,
    mask: &GrayImage,
    foreground: Option<&Foreground>,
    output: OutputType,
) -> DynamicImage {
    assert_eq!(image.width(), mask.width(), "mask width");
    assert_eq!(image.height(), mask.height(), "mask height");
    if let Some(f) = foreground {
        assert_eq!(
            (f.width, f.height),
            (image.width() as usize, image.height() as usize)
        );
    }
    let estimated = |x: usize, y: usize| foreground.and_then(|f| f.rgb8_at(x, y));
    let colour = |x: usize, y: usize, p: &mut [u8]| {
        if let Some(c) = estimated(x, y) {
            p[..3].copy_from_slice(&c);
        }
    };
    let width = image.width() as usize;
    // The photo with the estimated colours where there are some.
    let subject = || {
        let mut rgba = image.to_rgba8();
        if foreground.is_some() {
            for (y, row) in rgba.chunks_exact_mut(4 * width.max(1)).enumerate() {
                for (x, p) in row.chunks_exact_mut(4).enumerate() {
                    colour(x, y, p);
                }
            }
        }
        rgba
    };
    match output {
        OutputType::Mask | OutputType::Trimap => DynamicImage::ImageLuma8(mask.clone()),
        OutputType::Rgba => {
            let mut out = image.to_rgba8();
            for (p, Luma([m])) in out.pixels_mut().zip(mask.pixels()) {
                p.0[3] = ((u32::from(p.0[3]) * u32::from(*m) + 127) / 255) as u8;
            }
            let (w, h) = (out.width() as usize, out.height() as usize);
            let alpha: Vec<u8> = out.pixels().map(|p| p.0[3]).collect();
            // An invisible pixel touching a visible one (8 neighbours).
            let touches = |x: usize, y: usize| {
                (y.saturating_sub(1)..(y + 2).min(h)).any(|ny| {
                    (x.saturating_sub(1)..(x + 2).min(w)).any(|nx| alpha[ny * w + nx] != 0)
                })
            };
            for (y, row) in out.chunks_exact_mut(4 * w.max(1)).enumerate() {
                for (x, p) in row.chunks_exact_mut(4).enumerate() {
                    if p[3] != 0 {
                        colour(x, y, p);
                        continue;
                    }
                    match estimated(x, y) {
                        // Invisible, but touching the subject's soft edge: the estimated fur
                        // colour (pymatting's and rembg's alpha-matting cut-outs keep it in
                        // every pixel), so that bilinear scaling without premultiplied alpha (a
                        // print tool, a texture) draws no dark rim. One pixel wide: the colour
                        // error against the known foreground of `scripts/bench-matting --size
                        // 1000x750` (1024² masks) fell 5.97 → 5.79 with it and 5.78 with 12 px;
                        // each pixel costs bytes.
                        Some([r, g, b]) if touches(x, y) => p.copy_from_slice(&[r, g, b, 0]),
                        // Invisible: blank, as rembg writes it. The photo's noise under it
                        // would cost a third more bytes in every PNG and WebP.
                        _ => p.fill(0),
                    }
                }
            }
            DynamicImage::ImageRgba8(out)
        }
        OutputType::Color(color) => {
            let out = over(&subject(), mask, |_, _| color);
            DynamicImage::ImageRgb8(out)
        }
        OutputType::Blur => {
            let background = blurred(image);
            let out = over(&subject(), mask, |x, y| background.get_pixel(x, y).0);
            DynamicImage::ImageRgb8(out)
        }
    }
}

/// The photo blurred as the `blur` output's background.
pub fn blurred(image: &DynamicImage) -> RgbImage {
    let rgb = image.to_rgb8();
    let sigma = (rgb.width().max(rgb.height()) as f32 / 60.0).max(4.0);
    image::imageops::fast_blur(&rgb, sigma)
}

/// The subject (alpha = mask × own alpha) over a background given per pixel.
fn over(image: &RgbaImage, mask: &GrayImage, background: impl Fn(u32, u32) -> [u8; 3]) -> RgbImage {
    RgbImage::from_fn(image.width(), image.height(), |x, y| {
        let Rgba([r, g, b, a]) = *image.get_pixel(x, y);
        let Luma([m]) = *mask.get_pixel(x, y);
        let alpha = ((u32::from(a) * u32::from(m) + 127) / 255) as u8;
        let [br, bg, bb] = background(x, y);
        Rgb([
            blend(r, br, alpha),
            blend(g, bg, alpha),
            blend(b, bb, alpha),
        ])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_output_type() {
        assert_eq!("rgba".parse::<OutputType>().unwrap(), OutputType::Rgba);
        assert_eq!("MASK".parse::<OutputType>().unwrap(), OutputType::Mask);
        assert_eq!(
            "white".parse::<OutputType>().unwrap(),
            OutputType::Color([255; 3])
        );
        assert_eq!(
            "color:1, 2,3".parse::<OutputType>().unwrap(),
            OutputType::Color([1, 2, 3])
        );
        assert!("color:1,2".parse::<OutputType>().is_err());
        assert!("color:1,2,300".parse::<OutputType>().is_err());
        assert!("sepia".parse::<OutputType>().is_err());
        for t in [
            "rgba",
            "mask",
            "trimap",
            "white",
            "green",
            "blur",
            "color:1,2,3",
        ] {
            assert_eq!(t.parse::<OutputType>().unwrap().to_string(), t);
        }
    }

    #[test]
    fn threshold_and_reverse() {
        let mut mask = GrayImage::from_raw(4, 1, vec![0, 100, 200, 255]).unwrap();
        refine_mask(
            &mut mask,
            MaskOptions {
                threshold: Some(0.5),
                reverse: true,
            },
        );
        assert_eq!(mask.as_raw(), &[255, 255, 0, 0]);
    }

    #[test]
    fn rgba_keeps_colour_and_uses_mask_as_alpha() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(2, 1, Rgb([200, 100, 50])));
        let mask = GrayImage::from_raw(2, 1, vec![0, 128]).unwrap();
        let out = compose(&img, &mask, None, OutputType::Rgba).to_rgba8();
        assert_eq!(
            out.get_pixel(0, 0).0,
            [0, 0, 0, 0],
            "invisible pixels are blank"
        );
        assert_eq!(out.get_pixel(1, 0).0, [200, 100, 50, 128]);
    }

    #[test]
    fn invisible_pixels_touching_the_edge_keep_the_estimated_colour() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(4, 1, Rgb([10, 200, 10])));
        let mask = GrayImage::from_raw(4, 1, vec![0, 0, 128, 255]).unwrap();
        let fg = Foreground::from_rgb8(4, 1, &[0, 0, 255].repeat(4), vec![true; 4]);
        let out = compose(&img, &mask, Some(&fg), OutputType::Rgba).to_rgba8();
        let px = |x| out.get_pixel(x, 0).0;
        assert_eq!(px(0), [0, 0, 0, 0], "far from the edge: blank");
        assert_eq!(
            px(1),
            [0, 0, 255, 0],
            "beside the edge: the estimated colour"
        );
        assert_eq!(px(2), [0, 0, 255, 128], "soft: the estimated colour");
        let inactive = Foreground::from_rgb8(4, 1, &[0, 0, 255].repeat(4), vec![false; 4]);
        let out = compose(&img, &mask, Some(&inactive), OutputType::Rgba).to_rgba8();
        assert_eq!(out.get_pixel(1, 0).0, [0; 4], "nothing estimated: blank");
    }

    #[test]
    fn colour_background_blends_by_mask() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(3, 1, Rgb([0, 0, 0])));
        let mask = GrayImage::from_raw(3, 1, vec![0, 255, 128]).unwrap();
        let out = compose(&img, &mask, None, OutputType::Color([255, 255, 255])).to_rgb8();
        assert_eq!(out.get_pixel(0, 0).0, [255; 3]);
        assert_eq!(out.get_pixel(1, 0).0, [0; 3]);
        assert_eq!(out.get_pixel(2, 0).0, [127; 3]);
    }

    #[test]
    fn blur_keeps_subject_sharp() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(64, 64, |x, _| {
            if x % 2 == 0 {
                Rgb([255, 255, 255])
            } else {
                Rgb([0, 0, 0])
            }
        }));
        let mut mask = GrayImage::new(64, 64);
        mask.put_pixel(10, 10, Luma([255]));
        let out = compose(&img, &mask, None, OutputType::Blur).to_rgb8();
        assert_eq!(out.get_pixel(10, 10).0, [255; 3], "subject untouched");
        let bg = out.get_pixel(40, 40).0[0];
        assert!(
            (60..=200).contains(&bg),
            "background blurred to grey, got {bg}"
        );
    }
}
