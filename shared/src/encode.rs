//! Encoding results for download: PNG (default, lossless with alpha), WebP (lossless, alpha)
//! or JPEG (no alpha: transparent areas are flattened onto white).

use std::{fmt, str::FromStr};

use image::{DynamicImage, ImageEncoder, codecs};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Png,
    Webp,
    Jpeg,
}

impl OutputFormat {
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Png => "png",
            OutputFormat::Webp => "webp",
            OutputFormat::Jpeg => "jpg",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            OutputFormat::Png => "image/png",
            OutputFormat::Webp => "image/webp",
            OutputFormat::Jpeg => "image/jpeg",
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputFormat::Png => "png",
            OutputFormat::Webp => "webp",
            OutputFormat::Jpeg => "jpeg",
        })
    }
}

impl FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "png" => Ok(OutputFormat::Png),
            "webp" => Ok(OutputFormat::Webp),
            "jpeg" | "jpg" => Ok(OutputFormat::Jpeg),
            other => Err(format!(
                "unknown format {other:?}: expected png, webp or jpeg"
            )),
        }
    }
}

/// JPEG quality for downloads.
pub const JPEG_QUALITY: u8 = 90;

/// Encode an image. Encoding an in-memory image to a `Vec` cannot fail for these codecs and
/// the 8-bit layouts produced by `compose`, so errors are reported as strings for callers to
/// treat as internal.
pub fn encode(image: &DynamicImage, format: OutputFormat) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let (w, h) = (image.width(), image.height());
    let result = match format {
        OutputFormat::Png => {
            let enc = codecs::png::PngEncoder::new_with_quality(
                &mut out,
                codecs::png::CompressionType::Fast,
                codecs::png::FilterType::Adaptive,
            );
            match image {
                DynamicImage::ImageLuma8(m) => {
                    enc.write_image(m.as_raw(), w, h, image::ExtendedColorType::L8)
                }
                DynamicImage::ImageRgb8(m) => {
                    enc.write_image(m.as_raw(), w, h, image::ExtendedColorType::Rgb8)
                }
                other => enc.write_image(
                    other.to_rgba8().as_raw(),
                    w,
                    h,
                    image::ExtendedColorType::Rgba8,
                ),
            }
        }
        OutputFormat::Webp => {
            let enc = codecs::webp::WebPEncoder::new_lossless(&mut out);
            match image {
                DynamicImage::ImageRgba8(m) => {
                    enc.write_image(m.as_raw(), w, h, image::ExtendedColorType::Rgba8)
                }
                other => enc.write_image(
                    other.to_rgb8().as_raw(),
                    w,
                    h,
                    image::ExtendedColorType::Rgb8,
                ),
            }
        }
        OutputFormat::Jpeg => {
            let rgb = flatten_on_white(image);
            codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY).write_image(
                rgb.as_raw(),
                w,
                h,
                image::ExtendedColorType::Rgb8,
            )
        }
    };
    result.map_err(|e| e.to_string())?;
    Ok(out)
}

fn flatten_on_white(image: &DynamicImage) -> image::RgbImage {
    match image {
        DynamicImage::ImageRgba8(m) => image::RgbImage::from_fn(m.width(), m.height(), |x, y| {
            let [r, g, b, a] = m.get_pixel(x, y).0;
            let a = u32::from(a);
            let mix = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
            image::Rgb([mix(r), mix(g), mix(b)])
        }),
        other => other.to_rgb8(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgba, RgbaImage};

    #[test]
    fn round_trips_each_format() {
        let img = DynamicImage::ImageRgba8(RgbaImage::from_fn(8, 6, |x, _| {
            Rgba([x as u8 * 30, 10, 20, if x < 4 { 0 } else { 255 }])
        }));
        for format in [OutputFormat::Png, OutputFormat::Webp, OutputFormat::Jpeg] {
            let bytes = encode(&img, format).unwrap();
            let back = image::load_from_memory(&bytes).unwrap();
            assert_eq!((back.width(), back.height()), (8, 6), "{format}");
            match format {
                OutputFormat::Jpeg => {
                    // transparent pixels flattened onto white
                    assert!(back.to_rgb8().get_pixel(0, 0).0.iter().all(|&c| c > 240));
                }
                _ => assert_eq!(back.to_rgba8(), img.to_rgba8(), "{format} is lossless"),
            }
        }
        assert_eq!("JPG".parse::<OutputFormat>().unwrap(), OutputFormat::Jpeg);
        assert!("gif".parse::<OutputFormat>().is_err());
    }
}
