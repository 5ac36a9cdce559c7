//! The empty cards (background and watermark, no subject) as JPEG blocks, computed once per
//! settings and card size and shared by every card made with them.

use std::sync::{Arc, Mutex};

use fast_image_resize::Resizer;
use image::{GrayImage, RgbaImage};

use super::{
    Background, RenderOptions, Watermark,
    raster::{background, lay, watermark_block},
};
use crate::jpeg::{Coefficients, Encoder};

/// What makes an empty card: its size and every setting that changes its pixels.
#[derive(Debug)]
struct CardKey {
    size: (u32, u32),
    background: Background,
    watermark: Watermark,
    jpeg_quality: u8,
}

impl CardKey {
    /// Compared in place, so a cache hit copies nothing (the logo included).
    fn is(&self, opts: &RenderOptions, size: (u32, u32)) -> bool {
        self.size == size
            && self.background == opts.background
            && self.jpeg_quality == opts.jpeg_quality
            && self.watermark == opts.watermark
    }
}

/// An empty card, ready to take a subject.
pub(super) struct CardBase {
    key: CardKey,
    /// The JPEG blocks of the background with the watermark.
    pub(super) coefficients: Coefficients,
    /// The watermark at this card's scale, laid again over the subject.
    pub(super) watermark: Option<RgbaImage>,
}

/// Empty cards kept (three sizes for a few settings at once; about 4 MB each).
const CARD_BASES_KEPT: usize = 12;

static CARD_BASES: Mutex<Vec<Arc<CardBase>>> = Mutex::new(Vec::new());

/// The empty card (background and watermark, no subject) of a cut-out at `size` with `opts`:
/// computed once per process (or Worker isolate) and settings, then shared.
pub(super) fn card_base(
    resizer: &mut Resizer,
    opts: &RenderOptions,
    (w, h): (u32, u32),
    text: Option<&GrayImage>,
) -> Result<Arc<CardBase>, String> {
    let lock = || {
        CARD_BASES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    if let Some(found) = lock().iter().find(|b| b.key.is(opts, (w, h))) {
        return Ok(Arc::clone(found));
    }
    let mut canvas = background(resizer, None, (w, h), (0, 0, w, h), true, opts.background)?;
    let watermark = watermark_block(
        resizer,
        w,
        h,
        &opts.watermark,
        opts.watermark.logo.as_ref(),
        text,
    )?;
    if let Some(block) = &watermark {
        lay(&mut canvas, block, &opts.watermark, (w, h), (0, 0));
    }
    let base = Arc::new(CardBase {
        key: CardKey {
            size: (w, h),
            background: opts.background,
            watermark: opts.watermark.clone(),
            jpeg_quality: opts.jpeg_quality,
        },
        coefficients: Encoder::new(opts.jpeg_quality).quantise(&canvas),
        watermark,
    });
    let mut bases = lock();
    if bases.len() >= CARD_BASES_KEPT {
        bases.remove(0);
    }
    bases.push(Arc::clone(&base));
    Ok(base)
}
