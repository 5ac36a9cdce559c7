//! Card composition: a picture made ready once ([`Prepared`]), then each card laid out (the
//! subject fitted, never stretched, over its background, watermarked) and encoded.

use fast_image_resize::Resizer;
use image::{DynamicImage, GrayImage, RgbImage, RgbaImage};

use super::{
    Background, CardSubjects, Encoded, RenderOptions,
    card_cache::card_base,
    fit,
    raster::{background, lay, over, resize_rgba, stamp, watermark_text},
};
use crate::jpeg::{Encoder, MCU_SIDE, McuRegion};

/// A picture made ready for rendering: converted once, its logo and text prepared.
pub(super) struct Prepared<'a> {
    opts: &'a RenderOptions,
    /// Borrowed when the picture already is 8-bit RGBA (a cut-out): no 4 MB copy. None when
    /// rendering from share-ready subjects alone.
    pub(super) rgba: Option<std::borrow::Cow<'a, RgbaImage>>,
    /// The picture's size.
    pub(super) size: (u32, u32),
    pub(super) transparent: bool,
    /// The picture's own colours, converted once, for every blurred background that needs them.
    pub(super) colours: Option<RgbImage>,
    pub(super) text: Option<GrayImage>,
    pub(super) resizer: Resizer,
    /// Subjects already fitted to card sizes (a share-ready source), used where they match.
    pub(super) fitted: Option<&'a CardSubjects>,
}

impl<'a> Prepared<'a> {
    pub(super) fn new(source: &'a DynamicImage, opts: &'a RenderOptions) -> Self {
        let rgba = match source {
            DynamicImage::ImageRgba8(img) => std::borrow::Cow::Borrowed(img),
            other => std::borrow::Cow::Owned(other.to_rgba8()),
        };
        let transparent = rgba.pixels().any(|p| p.0[3] < 255);
        let colours: Option<RgbImage> = (!transparent || opts.background == Background::Blur)
            .then(|| image::buffer::ConvertBuffer::convert(&*rgba));
        Prepared {
            opts,
            size: rgba.dimensions(),
            rgba: Some(rgba),
            transparent,
            colours,
            text: watermark_text(opts),
            resizer: Resizer::new(),
            fitted: None,
        }
    }

    /// A cut-out known only by its share-ready subjects (a card size they lack fails).
    pub(super) fn from_subjects(subjects: &'a CardSubjects, opts: &'a RenderOptions) -> Self {
        Prepared {
            opts,
            rgba: None,
            size: subjects.source,
            transparent: true,
            colours: None,
            text: watermark_text(opts),
            resizer: Resizer::new(),
            fitted: Some(subjects),
        }
    }

    /// The subject fitted to `fw`×`fh`: a share-ready one when it has that size, else resized.
    fn subject(&mut self, fw: u32, fh: u32) -> Result<std::borrow::Cow<'a, RgbaImage>, String> {
        if let Some(found) = self.fitted.and_then(|f| {
            f.subjects
                .iter()
                .flatten()
                .find(|s| s.dimensions() == (fw, fh))
        }) {
            return Ok(std::borrow::Cow::Borrowed(found));
        }
        let Some(rgba) = &self.rgba else {
            return Err(format!("no share-ready subject of {fw}×{fh}"));
        };
        Ok(std::borrow::Cow::Owned(resize_rgba(
            &mut self.resizer,
            rgba,
            fw,
            fh,
        )?))
    }

    /// One `w`×`h` JPEG card: the picture fitted (never stretched) over its background,
    /// watermarked.
    pub(super) fn card(&mut self, size: (u32, u32)) -> Result<Encoded, String> {
        self.card_with(size, true)
    }

    /// [`Self::card`], optionally the slow way: the whole canvas composed and transformed,
    /// not only the part the subject touches (the same bytes).
    fn card_with(&mut self, (w, h): (u32, u32), partial: bool) -> Result<Encoded, String> {
        let opts = self.opts;
        let (fw, fh) = subject_size(self.size, (w, h), self.transparent);
        let subject = self.subject(fw, fh)?;
        let (x, y) = ((w - fw) / 2, (h - fh) / 2);
        let encoder = Encoder::new(opts.jpeg_quality);
        // A cut-out's card is its empty card (background and watermark, the same for every
        // share) outside the macro blocks the subject touches: only those are composed and
        // transformed.
        let bytes = if partial && self.transparent && opts.background != Background::Blur {
            let base = card_base(&mut self.resizer, opts, (w, h), self.text.as_ref())?;
            let region = McuRegion::covering(x, y, fw, fh, (w, h));
            let rect = region.pixels((w, h));
            let mut pixels =
                background(&mut self.resizer, None, (w, h), rect, true, opts.background)?;
            let (rx, ry) = (i64::from(rect.0), i64::from(rect.1));
            over(
                &mut pixels,
                &subject,
                i64::from(x) - rx,
                i64::from(y) - ry,
                1.0,
            );
            if let Some(block) = &base.watermark {
                lay(&mut pixels, block, &opts.watermark, (w, h), (rx, ry));
            }
            // Where the subject is wholly transparent the card is the empty card (`over` leaves
            // those pixels alone): those macro blocks are copied, not transformed.
            let empty = |col: u32, row: u32| {
                let (mx, my) = (col * MCU_SIDE, row * MCU_SIDE);
                let (x0, x1) = (mx.max(x), (mx + MCU_SIDE).min(x + fw));
                let (y0, y1) = (my.max(y), (my + MCU_SIDE).min(y + fh));
                (y0..y1).all(|sy| {
                    let at = ((sy - y) * fw) as usize;
                    let row = &subject.as_raw()
                        [(at + (x0 - x) as usize) * 4..(at + x1.max(x0) as usize - x as usize) * 4];
                    row.chunks_exact(4).all(|p| p[3] == 0)
                })
            };
            let patch = encoder.quantise_patch(
                (w, h),
                region,
                &pixels,
                Some((&base.coefficients, &empty)),
            )?;
            encoder.write_patched(&base.coefficients, Some(&patch))?
        } else {
            let mut canvas = background(
                &mut self.resizer,
                self.colours.as_ref(),
                (w, h),
                (0, 0, w, h),
                self.transparent,
                opts.background,
            )?;
            over(&mut canvas, &subject, i64::from(x), i64::from(y), 1.0);
            stamp(
                &mut self.resizer,
                &mut canvas,
                &opts.watermark,
                opts.watermark.logo.as_ref(),
                self.text.as_ref(),
            )?;
            encoder.encode(&canvas)?
        };
        Ok(Encoded {
            bytes,
            width: w,
            height: h,
            content_type: "image/jpeg",
        })
    }
}

/// The size of a `source`-sized subject on a `card`-sized card: cut-outs float with a margin,
/// photos fill the height or width they can; never stretched.
pub(super) fn subject_size(
    source: (u32, u32),
    (w, h): (u32, u32),
    transparent: bool,
) -> (u32, u32) {
    let margin = if transparent { 0.06 } else { 0.0 };
    let (bw, bh) = (
        (f64::from(w) * (1.0 - 2.0 * margin)) as u32,
        (f64::from(h) * (1.0 - 2.0 * margin)) as u32,
    );
    fit(source.0, source.1, bw, bh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{
        CARD_SIZES, Watermark, render_share,
        test_support::{card_settings, cutout, decode},
    };

    #[test]
    fn composing_only_under_the_subject_changes_no_byte() {
        for opts in card_settings() {
            // Wide enough that the subject reaches under the watermark.
            for src in [cutout(500, 380), cutout(1400, 300)] {
                for size in CARD_SIZES {
                    let mut p = Prepared::new(&src, &opts);
                    let (partial, whole) =
                        (p.card(size).unwrap(), p.card_with(size, false).unwrap());
                    assert_eq!(
                        partial.bytes, whole.bytes,
                        "{size:?} {:?} {:?}",
                        opts.background, opts.watermark.gravity
                    );
                }
            }
        }
    }

    #[test]
    fn subject_is_fitted_not_stretched() {
        // A 4:1 opaque strip: on the 1200×630 card it must stay 4:1 (1200×300), centred.
        let strip =
            DynamicImage::ImageRgb8(RgbImage::from_pixel(800, 200, image::Rgb([0, 0, 255])));
        let opts = RenderOptions {
            watermark: Watermark {
                logo: None,
                ..Watermark::default()
            },
            ..RenderOptions::default()
        };
        let r = render_share(&strip, &opts).unwrap();
        let og = decode(&r.og);
        let blue = |x, y| {
            let p: &image::Rgb<u8> = og.get_pixel(x, y);
            p.0[2] > 200 && p.0[0] < 60
        };
        assert!(blue(600, 315) && blue(5, 200) && blue(1195, 440));
        // Above and below the strip is the softened, blurred cover: lighter than the strip.
        assert!(!blue(600, 100) && !blue(600, 560));
    }
}
