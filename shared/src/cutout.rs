//! The cut-out after the mask, once: the CLI (`gpu-server remove`), the API
//! (`POST /api/v2/remove-background`) and the benchmark (`gpu-server bench --photo`) all run
//! decode ([`crate::intake`]) → the model's mask → [`compose`] → [`encode`] with the same
//! [`CutoutOptions`], so the benchmark times what the service serves.

use image::{DynamicImage, GrayImage};

use crate::{
    compose::{self, MaskOptions, OutputType},
    encode::{self, OutputFormat},
};

/// Everything after the mask that changes the output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CutoutOptions {
    pub output: OutputType,
    pub mask: MaskOptions,
    pub format: OutputFormat,
}

impl Default for CutoutOptions {
    /// A transparent PNG with the model's soft mask (rembg's and the API's default).
    fn default() -> Self {
        CutoutOptions {
            output: OutputType::Rgba,
            mask: MaskOptions::default(),
            format: OutputFormat::Png,
        }
    }
}

/// A finished cut-out.
#[derive(Debug, Clone)]
pub struct Cutout {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    /// The pixels that were encoded.
    pub picture: DynamicImage,
}

impl Cutout {
    pub fn width(&self) -> u32 {
        self.picture.width()
    }

    pub fn height(&self) -> u32 {
        self.picture.height()
    }

    /// Whether the stored bytes decode to exactly [`Cutout::picture`] (PNG, lossless WebP).
    pub fn is_lossless(&self) -> bool {
        self.content_type != OutputFormat::Jpeg.mime()
    }
}

/// The mask refined (threshold, reverse) and laid over the picture as asked.
pub fn compose(image: &DynamicImage, mut mask: GrayImage, opts: &CutoutOptions) -> DynamicImage {
    compose::refine_mask(&mut mask, opts.mask);
    compose::compose(image, &mask, opts.output)
}

/// The composed picture in the asked format.
pub fn encode(picture: &DynamicImage, opts: &CutoutOptions) -> Result<Vec<u8>, String> {
    encode::encode(picture, opts.format)
}

/// [`compose`] then [`encode`].
pub fn finish(
    image: &DynamicImage,
    mask: GrayImage,
    opts: &CutoutOptions,
) -> Result<Cutout, String> {
    let picture = compose(image, mask, opts);
    let bytes = encode(&picture, opts)?;
    Ok(Cutout {
        bytes,
        content_type: opts.format.mime(),
        picture,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finishes_as_asked() {
        let image =
            DynamicImage::ImageRgb8(image::RgbImage::from_pixel(8, 6, image::Rgb([9, 8, 7])));
        let mask = GrayImage::from_fn(8, 6, |x, _| image::Luma([if x < 4 { 0 } else { 200 }]));
        let out = finish(&image, mask.clone(), &CutoutOptions::default()).unwrap();
        assert_eq!(
            (out.width(), out.height(), out.content_type),
            (8, 6, "image/png")
        );
        assert!(out.is_lossless());
        let back = image::load_from_memory(&out.bytes).unwrap().to_rgba8();
        assert_eq!(back.get_pixel(0, 0)[3], 0);
        assert_eq!(back.get_pixel(7, 0)[3], 200);
        let hard = CutoutOptions {
            mask: MaskOptions {
                threshold: Some(0.5),
                reverse: true,
            },
            format: OutputFormat::Jpeg,
            ..CutoutOptions::default()
        };
        let out = finish(&image, mask, &hard).unwrap();
        assert!(!out.is_lossless());
        assert_eq!(out.content_type, "image/jpeg");
    }
}
