//! The cut-out after the mask, once: the CLI (`gpu-server remove`), the API
//! (`POST /api/v2/remove-background`) and the benchmark (`gpu-server bench --photo`) all run
//! decode ([`crate::intake`]) → the model's mask → [`compose()`] (refine, compose) → [`encode()`]
//! with the same [`CutoutOptions`], so the benchmark times what the service serves.

use std::borrow::Cow;

use image::{DynamicImage, GrayImage, RgbImage};

use crate::{
    compose::{self, MaskOptions, OutputType},
    effects::{self, Backdrop, Effects, Rect},
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
    /// Crop, canvas, outline, shadow, background, channels, resolution.
    pub effects: Effects,
}

impl Default for CutoutOptions {
    /// A transparent PNG, its edges matted (the API's and the CLI's default).
    fn default() -> Self {
        CutoutOptions {
            output: OutputType::Rgba,
            mask: MaskOptions::default(),
            format: OutputFormat::Png,
            refine: Refine::default(),
            effects: Effects::default(),
        }
    }
}

/// The largest canvas the effects may make: the intake's own pixel limit.
pub fn max_canvas_pixels() -> u64 {
    Limits::default().max_pixels
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

    /// What can be refused before any work: options that do not go together, a canvas over
    /// the limit. `bg_image` is whether a background photo came with them.
    pub fn check(&self, bg_image: bool) -> Result<(), Refusal> {
        let fx = &self.effects;
        let bad = |m: String| Err(Refusal::bad("invalid_option", m));
        if self.output == OutputType::Trimap && (fx.changes_picture() || bg_image) {
            return bad("`type=trimap` is the refinement's own picture and takes no layout, outline, shadow or background options".into());
        }
        let backgrounds = [
            matches!(self.output, OutputType::Color(_) | OutputType::Blur),
            fx.bg_color.is_some(),
            bg_image,
        ];
        if backgrounds.iter().filter(|&&b| b).count() > 1 {
            return bad(
                "give one background: `type` (a colour or blur), `bg_color` or `bg_image`".into(),
            );
        }
        if self.output == OutputType::Mask && (fx.bg_color.is_some() || bg_image) {
            return bad("`type=mask` is the alpha alone and has no background".into());
        }
        if let Some(size) = fx.size {
            let (w, h) = size.pixels(fx.dpi.unwrap_or(effects::DEFAULT_PRINT_DPI));
            if u64::from(w) * u64::from(h) > max_canvas_pixels() {
                return bad(format!(
                    "`size`: the canvas would be {w}×{h} pixels, more than the {} allowed",
                    max_canvas_pixels()
                ));
            }
        }
        Ok(())
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
    /// Crop, canvas, outline, shadow, background ([`crate::effects`]).
    Effects,
}

/// A composed picture and where the subject is in it.
#[derive(Debug, Clone)]
pub struct Composed {
    pub picture: DynamicImage,
    pub subject: Rect,
}

/// Why a cut-out was not made: the options (a 4xx), or the encoder (internal).
#[derive(Debug, thiserror::Error)]
pub enum CutoutError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("encoding the result: {0}")]
    Encode(String),
}

/// A finished cut-out.
#[derive(Debug, Clone)]
pub struct Cutout {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    /// The pixels that were encoded.
    pub picture: DynamicImage,
    /// The subject's box in the picture (remove.bg's `X-Foreground-*`).
    pub subject: Rect,
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

/// The mask refined (matting, threshold, reverse, foreground colour), laid over the picture as
/// asked, then the effects; `bg_image` is a background photo the caller sent.
pub fn compose(
    image: &DynamicImage,
    mask: Mask,
    opts: &CutoutOptions,
    bg_image: Option<&RgbImage>,
) -> Result<Composed, Refusal> {
    compose_timed(image, mask, opts, bg_image, &mut |_| {})
}

/// [`compose()`], calling `lap` as each [`Stage`] ends (stages that do not run are not called).
pub fn compose_timed(
    image: &DynamicImage,
    mask: Mask,
    opts: &CutoutOptions,
    bg_image: Option<&RgbImage>,
    lap: &mut dyn FnMut(Stage),
) -> Result<Composed, Refusal> {
    opts.check(bg_image.is_some())?;
    let Mask {
        pixels: mut alpha,
        grid,
    } = mask;
    if opts.output == OutputType::Trimap {
        let t = trimap::trimap(&alpha, grid);
        lap(Stage::Trimap);
        let subject = effects::subject_box(&t);
        return Ok(Composed {
            picture: DynamicImage::ImageLuma8(t),
            subject,
        });
    }
    let fx = &opts.effects;
    let laid_out = fx.changes_picture() || bg_image.is_some();
    let (alpha, fg) = if opts.refine == Refine::Off {
        compose::refine_mask(&mut alpha, opts.mask);
        (alpha, None)
    } else {
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
        if opts.output == OutputType::Mask && !laid_out {
            let subject = effects::subject_box(&alpha);
            return Ok(Composed {
                picture: DynamicImage::ImageLuma8(alpha),
                subject,
            });
        }
        let fg = foreground::estimate(
            rgb.as_raw(),
            rgb.width() as usize,
            rgb.height() as usize,
            alpha.as_raw().as_slice(),
        );
        lap(Stage::Foreground);
        (alpha, Some(fg))
    };
    if !laid_out {
        let picture = compose::compose(image, &alpha, fg.as_ref(), opts.output);
        lap(Stage::Compose);
        return Ok(Composed {
            picture,
            subject: effects::subject_box(&alpha),
        });
    }
    let subject = compose::compose(image, &alpha, fg.as_ref(), OutputType::Rgba).into_rgba8();
    lap(Stage::Compose);
    let blurred;
    let backdrop = match (opts.output, fx.bg_color, bg_image) {
        (OutputType::Color([r, g, b]), _, _) => Backdrop::Color([r, g, b, 255]),
        (OutputType::Blur, _, _) => {
            blurred = compose::blurred(image);
            Backdrop::Image(&blurred)
        }
        (_, Some(c), _) => Backdrop::Color(c),
        (_, None, Some(photo)) => Backdrop::Image(photo),
        _ => Backdrop::Transparent,
    };
    let mut fx = *fx;
    if opts.output == OutputType::Mask {
        fx.channels = effects::Channels::Alpha;
    }
    let laid = effects::apply(subject, backdrop, &fx, max_canvas_pixels())?;
    lap(Stage::Effects);
    Ok(Composed {
        picture: laid.picture,
        subject: laid.subject,
    })
}

/// The composed picture in the asked format, with the asked resolution.
pub fn encode(picture: &DynamicImage, opts: &CutoutOptions) -> Result<Vec<u8>, String> {
    encode::encode_dpi(picture, opts.format, opts.effects.file_dpi())
}

/// [`compose()`] then [`encode()`].
pub fn finish(
    image: &DynamicImage,
    mask: Mask,
    opts: &CutoutOptions,
    bg_image: Option<&RgbImage>,
) -> Result<Cutout, CutoutError> {
    let Composed { picture, subject } = compose(image, mask, opts, bg_image)?;
    let bytes = encode(&picture, opts).map_err(CutoutError::Encode)?;
    Ok(Cutout {
        bytes,
        content_type: opts.format.resolve(&picture).mime(),
        picture,
        subject,
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
        let out = finish(&image, m(&mask), &off, None).unwrap();
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
        let out = finish(&image, m(&mask), &hard, None).unwrap();
        assert!(!out.is_lossless());
        assert_eq!(out.content_type, "image/jpeg");
    }
}
