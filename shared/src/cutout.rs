//! The cut-out after the mask, once: the CLI (`gpu-server remove`), the API
//! (`POST /api/v2/remove-background`) and the benchmark (`gpu-server bench --photo`) all run
//! decode ([`crate::intake`]) → the model's mask → [`compose`] (refine, compose) → [`encode`]
//! with the same [`CutoutOptions`], so the benchmark times what the service serves.

use std::borrow::Cow;

use image::{DynamicImage, GrayImage, RgbImage};

use crate::{
    compose::{self, MaskOptions, OutputType},
    encode::{self, OutputFormat},
    intake::{self, ImageFormat, IntakeError, Limits},
    refine::{self, Refine, foreground, trimap},
    refusal::Refusal,
    resize::{self, Filter},
};

/// Everything after the mask that changes the output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CutoutOptions {
    pub output: OutputType,
    pub mask: MaskOptions,
    pub format: OutputFormat,
    pub refine: Refine,
}

impl Default for CutoutOptions {
    /// A transparent PNG, its edges matted (the API's and the CLI's default).
    fn default() -> Self {
        CutoutOptions {
            output: OutputType::Rgba,
            mask: MaskOptions::default(),
            format: OutputFormat::Png,
            refine: Refine::default(),
        }
    }
}

impl CutoutOptions {
    /// The refinement asked for, or where none was, the default for the output: the mask as
    /// the model made it for `mask` (what rembg's users expect of it), matting for everything
    /// that shows the subject.
    pub fn default_refine(output: OutputType) -> Refine {
        match output {
            OutputType::Mask => Refine::Off,
            _ => Refine::Matting,
        }
    }
}

/// The model's mask, stretched to the photo's size, and the long side of the grid it was
/// made on (the model's input, or a supplied mask's own size): how far an edge in it may be
/// from the true one.
#[derive(Debug, Clone)]
pub struct Mask {
    pub pixels: GrayImage,
    pub grid: u32,
}

/// Why a supplied mask was refused: always the code `invalid_mask`, with the status of the
/// problem (413 too large, 415 not a PNG, 422 unreadable or not 8-bit grey).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaskError {
    #[error("the mask: {0}")]
    Intake(IntakeError),
    #[error("the mask must be a PNG, not a {0}")]
    NotPng(&'static str),
    #[error("the mask must be an 8-bit greyscale PNG; this one is {0:?}")]
    NotGrey(image::ColorType),
}

impl MaskError {
    pub fn http_status(&self) -> u16 {
        match self {
            MaskError::Intake(e) => e.http_status(),
            MaskError::NotPng(_) => 415,
            MaskError::NotGrey(_) => 422,
        }
    }
}

impl From<MaskError> for Refusal {
    fn from(e: MaskError) -> Self {
        Refusal::new(e.http_status(), "invalid_mask", e.to_string())
    }
}

impl Mask {
    /// A mask the caller supplies instead of the model's (an 8-bit grey PNG of any size, under
    /// the upload limits), stretched to the photo's `width`×`height` as the models' masks are
    /// (bilinear); its grid is its own long side.
    pub fn decode(
        bytes: &[u8],
        limits: &Limits,
        width: u32,
        height: u32,
    ) -> Result<Mask, MaskError> {
        match intake::sniff(bytes).map_err(MaskError::Intake)? {
            ImageFormat::Png => {}
            other => return Err(MaskError::NotPng(other.name())),
        }
        let decoded = intake::decode(bytes, limits).map_err(MaskError::Intake)?;
        let DynamicImage::ImageLuma8(small) = decoded.image else {
            return Err(MaskError::NotGrey(decoded.image.color()));
        };
        let grid = small.width().max(small.height());
        let pixels = if small.dimensions() == (width, height) {
            small
        } else {
            resize::gray(&small, width, height, Filter::Bilinear)
        };
        Ok(Mask { pixels, grid })
    }
}

/// The stages [`compose_timed`] reports as each ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Trimap,
    Matting,
    Foreground,
    Compose,
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

/// The mask refined (matting, threshold, reverse, foreground colour) and laid over the
/// picture as asked.
pub fn compose(image: &DynamicImage, mask: Mask, opts: &CutoutOptions) -> DynamicImage {
    compose_timed(image, mask, opts, &mut |_| {})
}

/// [`compose`], calling `lap` as each [`Stage`] ends (stages that do not run are not called).
pub fn compose_timed(
    image: &DynamicImage,
    mask: Mask,
    opts: &CutoutOptions,
    lap: &mut dyn FnMut(Stage),
) -> DynamicImage {
    let Mask {
        pixels: mut alpha,
        grid,
    } = mask;
    if opts.output == OutputType::Trimap {
        let t = trimap::trimap(&alpha, grid);
        lap(Stage::Trimap);
        return DynamicImage::ImageLuma8(t);
    }
    if opts.refine == Refine::Off {
        compose::refine_mask(&mut alpha, opts.mask);
        let out = compose::compose(image, &alpha, None, opts.output);
        lap(Stage::Compose);
        return out;
    }
    let rgb: Cow<'_, RgbImage> = match image {
        DynamicImage::ImageRgb8(rgb) => Cow::Borrowed(rgb),
        other => Cow::Owned(other.to_rgb8()),
    };
    if opts.refine == Refine::Matting {
        let t = trimap::trimap(&alpha, grid);
        lap(Stage::Trimap);
        alpha = refine::matte(&rgb, &alpha, &t).0;
        lap(Stage::Matting);
    }
    compose::refine_mask(&mut alpha, opts.mask);
    if opts.output == OutputType::Mask {
        return DynamicImage::ImageLuma8(alpha);
    }
    let fg = foreground::estimate(
        rgb.as_raw(),
        rgb.width() as usize,
        rgb.height() as usize,
        alpha.as_raw().as_slice(),
    );
    lap(Stage::Foreground);
    let out = compose::compose(image, &alpha, Some(&fg), opts.output);
    lap(Stage::Compose);
    out
}

/// The composed picture in the asked format.
pub fn encode(picture: &DynamicImage, opts: &CutoutOptions) -> Result<Vec<u8>, String> {
    encode::encode(picture, opts.format)
}

/// [`compose`] then [`encode`].
pub fn finish(image: &DynamicImage, mask: Mask, opts: &CutoutOptions) -> Result<Cutout, String> {
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
        let off = CutoutOptions {
            refine: Refine::Off,
            ..CutoutOptions::default()
        };
        let m = |pixels: &GrayImage| Mask {
            pixels: pixels.clone(),
            grid: 8,
        };
        let out = finish(&image, m(&mask), &off).unwrap();
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
            ..off
        };
        let out = finish(&image, m(&mask), &hard).unwrap();
        assert!(!out.is_lossless());
        assert_eq!(out.content_type, "image/jpeg");
    }
}
