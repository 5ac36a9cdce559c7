//! Encoding results for download: PNG (default, lossless with alpha; [`crate::png_writer`]), WebP (lossless, alpha)
//! or JPEG (no alpha: transparent areas are flattened onto white), or `auto` (PNG when anything
//! is transparent, else JPEG); print files carry their resolution (PNG `pHYs`, JPEG JFIF).

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
    /// PNG when the picture has transparency (or is a mask), JPEG otherwise.
    Auto,
}

impl OutputFormat {
    /// The format a picture is written in: `Auto` decided by its pixels.
    pub fn resolve(self, picture: &DynamicImage) -> OutputFormat {
        if self != OutputFormat::Auto {
            return self;
        }
        match picture {
            DynamicImage::ImageRgb8(_) => OutputFormat::Jpeg,
            DynamicImage::ImageRgba8(m) if m.pixels().all(|p| p.0[3] == 255) => OutputFormat::Jpeg,
            _ => OutputFormat::Png,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Png | OutputFormat::Auto => "png",
            OutputFormat::Webp => "webp",
            OutputFormat::Jpeg => "jpg",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            OutputFormat::Png | OutputFormat::Auto => "image/png",
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
            OutputFormat::Auto => "auto",
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
            "auto" => Ok(OutputFormat::Auto),
            other => Err(format!(
                "unknown format {other:?}: expected png, webp, jpeg or auto"
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
    encode_dpi(image, format, None)
}

/// [`encode`], writing `dpi` into PNG (`pHYs`) and JPEG (JFIF density) files (WebP has no
/// field for it).
pub fn encode_dpi(
    image: &DynamicImage,
    format: OutputFormat,
    dpi: Option<u16>,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let (w, h) = (image.width(), image.height());
    let result = match format.resolve(image) {
        OutputFormat::Png | OutputFormat::Auto => {
            use crate::png_writer::{Layout, write};
            return Ok(match image {
                DynamicImage::ImageLuma8(m) => write(m.as_raw(), w, h, Layout::Grey, dpi),
                DynamicImage::ImageRgb8(m) => write(m.as_raw(), w, h, Layout::Rgb, dpi),
                DynamicImage::ImageRgba8(m) => write(m.as_raw(), w, h, Layout::Rgba, dpi),
                other => write(other.to_rgba8().as_raw(), w, h, Layout::Rgba, dpi),
            });
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
            let mut enc = codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY);
            if let Some(d) = dpi {
                enc.set_pixel_density(codecs::jpeg::PixelDensity::dpi(d));
            }
            enc.write_image(rgb.as_raw(), w, h, image::ExtendedColorType::Rgb8)
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

    #[test]
    fn auto_is_png_with_transparency_else_jpeg() {
        let clear = DynamicImage::ImageRgba8(RgbaImage::from_pixel(2, 2, Rgba([1, 2, 3, 9])));
        let solid = DynamicImage::ImageRgba8(RgbaImage::from_pixel(2, 2, Rgba([1, 2, 3, 255])));
        let rgb = DynamicImage::ImageRgb8(image::RgbImage::new(2, 2));
        let grey = DynamicImage::ImageLuma8(image::GrayImage::new(2, 2));
        let auto = OutputFormat::Auto;
        assert_eq!(auto.resolve(&clear), OutputFormat::Png);
        assert_eq!(auto.resolve(&grey), OutputFormat::Png);
        assert_eq!(auto.resolve(&solid), OutputFormat::Jpeg);
        assert_eq!(auto.resolve(&rgb), OutputFormat::Jpeg);
        assert!(encode(&rgb, auto).unwrap().starts_with(&[0xff, 0xd8]));
        assert!(encode(&clear, auto).unwrap().starts_with(b"\x89PNG"));
    }

    /// The resolution read back by independent parsers: the `png` crate's `pHYs`, and the
    /// JFIF APP0 segment's density fields.
    #[test]
    fn dpi_is_written_into_png_and_jpeg() {
        let img = DynamicImage::ImageRgba8(RgbaImage::from_pixel(5, 4, Rgba([1, 2, 3, 128])));
        let png = encode_dpi(&img, OutputFormat::Png, Some(300)).unwrap();
        let reader = png::Decoder::new(std::io::Cursor::new(&png))
            .read_info()
            .unwrap();
        let dims = reader.info().pixel_dims.expect("pHYs");
        assert_eq!(
            (dims.xppu, dims.yppu, dims.unit),
            (11811, 11811, png::Unit::Meter)
        );
        assert_eq!(
            image::load_from_memory(&png).unwrap().to_rgba8(),
            img.to_rgba8()
        );
        let jpeg = encode_dpi(&img, OutputFormat::Jpeg, Some(300)).unwrap();
        // SOI, then APP0 "JFIF\0", version (2), units (1 = dots per inch), x and y density.
        assert_eq!(&jpeg[6..11], b"JFIF\0");
        assert_eq!(jpeg[13], 1);
        assert_eq!(u16::from_be_bytes([jpeg[14], jpeg[15]]), 300);
        assert_eq!(u16::from_be_bytes([jpeg[16], jpeg[17]]), 300);
        let plain = encode(&img, OutputFormat::Png).unwrap();
        let reader = png::Decoder::new(std::io::Cursor::new(&plain))
            .read_info()
            .unwrap();
        assert!(reader.info().pixel_dims.is_none());
    }
}
