//! What a print shop makes of a cut-out: cropped to the pet with a margin, on a canvas of a
//! print size, scaled and placed, with a sticker's outline and a soft drop shadow, over a
//! colour or a photo, or its alpha alone. Run by the one pipeline ([`crate::cutout`]) after
//! the refinement, so the CLI, the API and the remove.bg-compatible route agree.
//!
//! Every size is relative to the subject (its alpha's bounding box, specks ignored), so an
//! option looks the same on a 1 MP preview and a 12 MP print.

pub mod blur;
pub mod components;
pub mod edt;
mod options;

use image::{DynamicImage, GrayImage, RgbImage, RgbaImage};

pub use options::{
    Channels, DEFAULT_PRINT_DPI, Effects, FIELDS, Length, Outline, PRINT_PRESETS, Position, Shadow,
    Size, parse_bool, parse_color,
};

use crate::{
    refusal::Refusal,
    resize::{self, Filter},
};

/// Alpha from which a pixel counts as part of the subject for its box (about 6%): fainter
/// pixels are the matte's tail, not the pet.
pub const PRESENT: u8 = 16;

/// Parts of the subject smaller than this share of its largest part are specks (a remnant of
/// the background, a detached leaf): ignored by the crop and erased when any effect runs.
pub const SPECK_FRACTION: f64 = 0.005;

/// A box in the output, in whole pixels (remove.bg's `X-Foreground-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Rect {
    pub left: u32,
    pub top: u32,
    pub width: u32,
    pub height: u32,
}

/// What lies under the subject.
#[derive(Debug, Clone, Copy)]
pub enum Backdrop<'a> {
    Transparent,
    Color([u8; 4]),
    /// A photo, fitted to the canvas by cover (scaled to fill it, centred, the rest cut).
    Image(&'a RgbImage),
}

/// The finished picture and where the subject is in it.
#[derive(Debug, Clone)]
pub struct Laid {
    pub picture: DynamicImage,
    pub subject: Rect,
}

/// A box in floating-point pixels: `[x0, y0, x1, y1)`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Span {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Span {
    fn w(&self) -> f64 {
        self.x1 - self.x0
    }
    fn h(&self) -> f64 {
        self.y1 - self.y0
    }
    fn grow(self, d: f64) -> Span {
        Span {
            x0: self.x0 - d,
            y0: self.y0 - d,
            x1: self.x1 + d,
            y1: self.y1 + d,
        }
    }
    fn shift(self, dx: f64, dy: f64) -> Span {
        Span {
            x0: self.x0 + dx,
            y0: self.y0 + dy,
            x1: self.x1 + dx,
            y1: self.y1 + dy,
        }
    }
    fn union(self, o: Span) -> Span {
        Span {
            x0: self.x0.min(o.x0),
            y0: self.y0.min(o.y0),
            x1: self.x1.max(o.x1),
            y1: self.y1.max(o.y1),
        }
    }
}

/// The bounding box of the pixels of `alpha` at least [`PRESENT`] (`None` when there are none).
fn bounds(width: usize, present: impl Iterator<Item = bool>) -> Option<Span> {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for (i, p) in present.enumerate() {
        if p {
            let (x, y) = (i % width, i / width);
            x0 = x0.min(x);
            x1 = x1.max(x + 1);
            y0 = y0.min(y);
            y1 = y1.max(y + 1);
        }
    }
    (x0 != usize::MAX).then_some(Span {
        x0: x0 as f64,
        y0: y0 as f64,
        x1: x1 as f64,
        y1: y1 as f64,
    })
}

/// The subject's box in a cut-out's alpha (no specks removed: the cut-out is as it is).
pub fn subject_box(alpha: &GrayImage) -> Rect {
    let b = bounds(
        alpha.width() as usize,
        alpha.as_raw().iter().map(|&a| a >= PRESENT),
    );
    b.map_or(Rect::default(), |b| Rect {
        left: b.x0 as u32,
        top: b.y0 as u32,
        width: b.w() as u32,
        height: b.h() as u32,
    })
}

/// Straight-alpha "over": `src` laid on `dst`.
#[inline]
fn over(dst: &mut [u8; 4], src: [u8; 4]) {
    let sa = u32::from(src[3]);
    if sa == 255 {
        *dst = src;
        return;
    }
    if sa == 0 {
        return;
    }
    if dst[3] == 0 {
        *dst = src;
        return;
    }
    let da = u32::from(dst[3]) * (255 - sa); // ×255²
    let oa = sa * 255 + da; // ×255²
    for c in 0..3 {
        let v = (u32::from(src[c]) * sa * 255 + u32::from(dst[c]) * da + oa / 2) / oa;
        dst[c] = v as u8;
    }
    dst[3] = ((oa + 127) / 255) as u8;
}

/// Where a `pw`×`ph` piece placed at `(x, y)` meets a `cw`×`ch` canvas: the piece's rows,
/// its first column and the number of columns (`None` when they do not meet).
fn overlap(
    (cw, ch): (u32, u32),
    (pw, ph): (u32, u32),
    (x, y): (i64, i64),
) -> Option<(std::ops::Range<i64>, i64, usize)> {
    let (cw, ch, pw, ph) = (i64::from(cw), i64::from(ch), i64::from(pw), i64::from(ph));
    let (sx0, sy0) = ((-x).max(0), (-y).max(0));
    let (sx1, sy1) = (pw.min(cw - x), ph.min(ch - y));
    (sx1 > sx0 && sy1 > sy0).then(|| (sy0..sy1, sx0, (sx1 - sx0) as usize))
}

/// What is drawn on the canvas, in order: the sticker's border (a coverage plane in one
/// colour) and the subject, or the two made one picture when they are resampled.
enum Piece {
    Image(RgbaImage),
    Paint {
        coverage: Vec<u8>,
        width: u32,
        height: u32,
        color: [u8; 4],
    },
}

impl Piece {
    fn size(&self) -> (u32, u32) {
        match self {
            Piece::Image(i) => i.dimensions(),
            Piece::Paint { width, height, .. } => (*width, *height),
        }
    }

    /// `f(destination, first)` for each canvas row the piece at `at` covers: the row's
    /// covered bytes and the index of the piece's first pixel in it (rows in parallel with the
    /// `parallel` feature).
    fn each_row(
        &self,
        canvas: &mut RgbaImage,
        at: (i64, i64),
        f: impl Fn(&mut [u8], usize) + Sync,
    ) {
        let (cw, (x, y)) = (canvas.width() as usize, at);
        let Some((rows, sx0, n)) = overlap(canvas.dimensions(), self.size(), at) else {
            return;
        };
        let pw = i64::from(self.size().0);
        let (cy0, cy1) = ((rows.start + y) as usize, (rows.end + y) as usize);
        let bytes = &mut canvas.as_mut()[cy0 * cw * 4..cy1 * cw * 4];
        let first = (sx0 + x) as usize * 4;
        let row = |(i, dst): (usize, &mut [u8])| {
            let sy = rows.start + i as i64;
            f(&mut dst[first..first + n * 4], (sy * pw + sx0) as usize);
        };
        #[cfg(feature = "parallel")]
        {
            use rayon::prelude::*;
            bytes.par_chunks_mut(cw * 4).enumerate().for_each(row);
        }
        #[cfg(not(feature = "parallel"))]
        bytes.chunks_mut(cw * 4).enumerate().for_each(row);
    }

    /// The piece laid `over` the canvas at `(x, y)`.
    fn draw(&self, canvas: &mut RgbaImage, at: (i64, i64)) {
        match self {
            Piece::Image(img) => self.each_row(canvas, at, |dst, from| {
                let src = &img.as_raw()[from * 4..from * 4 + dst.len()];
                for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
                    let d: &mut [u8; 4] = d.try_into().expect("4 bytes");
                    over(d, [s[0], s[1], s[2], s[3]]);
                }
            }),
            Piece::Paint {
                coverage, color, ..
            } => {
                let ca = u32::from(color[3]);
                self.each_row(canvas, at, |dst, from| {
                    let cov = &coverage[from..from + dst.len() / 4];
                    for (d, &c) in dst.chunks_exact_mut(4).zip(cov) {
                        if c > 0 {
                            let d: &mut [u8; 4] = d.try_into().expect("4 bytes");
                            let a = ((u32::from(c) * ca + 127) / 255) as u8;
                            over(d, [color[0], color[1], color[2], a]);
                        }
                    }
                })
            }
        }
    }

    /// The piece laid under what the canvas holds at `(x, y)` (the canvas over it).
    fn draw_under(&self, canvas: &mut RgbaImage, at: (i64, i64)) {
        let Piece::Paint {
            coverage, color, ..
        } = self
        else {
            unreachable!("only paint goes under");
        };
        let ca = u32::from(color[3]);
        self.each_row(canvas, at, |dst, from| {
            let cov = &coverage[from..from + dst.len() / 4];
            for (d, &c) in dst.chunks_exact_mut(4).zip(cov) {
                if c > 0 && d[3] < 255 {
                    let a = ((u32::from(c) * ca + 127) / 255) as u8;
                    let mut p = [color[0], color[1], color[2], a];
                    over(&mut p, [d[0], d[1], d[2], d[3]]);
                    d.copy_from_slice(&p);
                }
            }
        })
    }

    /// The piece's alpha laid over `plane` (`cw` wide) at `(x, y)`.
    fn draw_alpha(&self, plane: &mut [u8], (cw, ch): (u32, u32), at: (i64, i64)) {
        let (x, y) = at;
        let Some((rows, sx0, n)) = overlap((cw, ch), self.size(), at) else {
            return;
        };
        let pw = i64::from(self.size().0);
        let cw = i64::from(cw);
        let mix = |d: &mut u8, a: u32| {
            let b = u32::from(*d);
            *d = (a + (b * (255 - a) + 127) / 255) as u8;
        };
        for sy in rows {
            let start = ((sy + y) * cw + sx0 + x) as usize;
            let dst = &mut plane[start..start + n];
            let from = (sy * pw + sx0) as usize;
            match self {
                Piece::Image(img) => {
                    let src = &img.as_raw()[from * 4..(from + n) * 4];
                    for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                        mix(d, u32::from(s[3]));
                    }
                }
                Piece::Paint {
                    coverage, color, ..
                } => {
                    let ca = u32::from(color[3]);
                    for (d, &c) in dst.iter_mut().zip(&coverage[from..from + n]) {
                        mix(d, (u32::from(c) * ca + 127) / 255);
                    }
                }
            }
        }
    }
}

/// Lay the cut-out `subject` (RGBA, straight alpha, the photo's size) out as `fx` asks over
/// `backdrop`. `max_pixels` bounds the canvas (a 400 naming the option that made it larger).
pub fn apply(
    subject: RgbaImage,
    backdrop: Backdrop<'_>,
    fx: &Effects,
    max_pixels: u64,
) -> Result<Laid, Refusal> {
    let (w, h) = subject.dimensions();
    let (wu, hu) = (w as usize, h as usize);
    let mut subject = subject;

    // The subject's parts, specks erased.
    let parts = components::parts(wu, hu, true, &subject.as_raw()[3..], 4, |a| a >= PRESENT);
    let keep = parts.large(SPECK_FRACTION);
    let raw: &mut [u8] = &mut subject;
    let mut bbox: Option<Span> = None;
    for (r, &part) in parts.runs.iter().zip(&parts.part) {
        let (y, x0, x1) = (r.y as usize, r.x0 as usize, r.x1 as usize);
        if keep[part as usize] {
            let run = Span {
                x0: x0 as f64,
                y0: y as f64,
                x1: x1 as f64,
                y1: (y + 1) as f64,
            };
            bbox = Some(bbox.map_or(run, |b| b.union(run)));
        } else {
            raw[(y * wu + x0) * 4..(y * wu + x1) * 4].fill(0);
        }
    }
    let photo = Span {
        x0: 0.0,
        y0: 0.0,
        x1: f64::from(w),
        y1: f64::from(h),
    };
    let long = bbox.map_or(0.0, |b| b.w().max(b.h()));

    // The layer: the subject (and its outline) over `region`, in the photo's coordinates.
    let outline_px = match (fx.outline, bbox) {
        (Some(o), Some(_)) => f64::from(o.width) / 100.0 * long,
        _ => 0.0,
    };
    let border = match (fx.outline, bbox) {
        (Some(o), Some(b)) => {
            let region = b.grow(outline_px.ceil() + 2.0);
            Some((border(&subject, region, outline_px as f32), region, o.color))
        }
        _ => None,
    };
    let sticker_box = bbox.map(|b| b.grow(outline_px.ceil()));
    let shadow = fx.shadow.filter(|_| bbox.is_some()).map(|s| {
        let sigma = f64::from(s.blur) / 100.0 * long;
        let off = (
            f64::from(s.offset.0) / 100.0 * long,
            f64::from(s.offset.1) / 100.0 * long,
        );
        (s, sigma, off)
    });

    // What the canvas frames: the subject with its outline and shadow (cropped or scaled), or
    // the whole photo.
    let content = match (fx.crop || fx.scale.is_some(), sticker_box) {
        (true, Some(b)) => match shadow {
            Some((_, sigma, (dx, dy))) => b.union(b.shift(dx, dy).grow(2.5 * sigma)),
            None => b,
        },
        _ => photo,
    };
    let subject_span = bbox.unwrap_or(photo);

    // Canvas, margins, scale, placement.
    let dpi = fx.dpi.unwrap_or(DEFAULT_PRINT_DPI);
    let asked = fx.size.map(|s| s.pixels(dpi));
    let [t, r, b, l] = fx.crop_margin;
    let (mt, mr, mb, ml) = if fx.crop {
        match asked {
            Some((cw, ch)) => (
                t.px(ch as f32),
                r.px(cw as f32),
                b.px(ch as f32),
                l.px(cw as f32),
            ),
            None => (
                t.px(subject_span.h() as f32),
                r.px(subject_span.w() as f32),
                b.px(subject_span.h() as f32),
                l.px(subject_span.w() as f32),
            ),
        }
    } else {
        (0.0, 0.0, 0.0, 0.0)
    };
    let (mt, mr, mb, ml) = (
        f64::from(mt).round(),
        f64::from(mr).round(),
        f64::from(mb).round(),
        f64::from(ml).round(),
    );
    let (cw, ch) = match asked {
        Some(s) => s,
        None if fx.crop => (
            (content.w() + ml + mr).round().max(1.0) as u32,
            (content.h() + mt + mb).round().max(1.0) as u32,
        ),
        None => (w, h),
    };
    if u64::from(cw) * u64::from(ch) > max_pixels {
        let field = if asked.is_some() {
            "size"
        } else {
            "crop_margin"
        };
        return Err(Refusal::bad(
            "invalid_option",
            format!(
                "`{field}`: the canvas would be {cw}×{ch} pixels, more than the {max_pixels} allowed"
            ),
        ));
    }
    let (aw, ah) = (f64::from(cw) - ml - mr, f64::from(ch) - mt - mb);
    if aw < 1.0 || ah < 1.0 {
        return Err(Refusal::bad(
            "invalid_option",
            "`crop_margin`: the margins leave no room for the subject on this canvas",
        ));
    }
    let k = match (fx.scale, asked) {
        (Some(s), _) => {
            f64::from(s) * (f64::from(cw) / content.w()).min(f64::from(ch) / content.h())
        }
        (None, Some(_)) => (aw / content.w()).min(ah / content.h()),
        (None, None) => 1.0,
    };
    let moved = fx.crop || fx.scale.is_some() || asked.is_some();
    let position = fx.position.unwrap_or(if moved {
        Position::At(50.0, 50.0)
    } else {
        Position::Original
    });
    let (fxr, fyr) = match position {
        Position::At(x, y) => (f64::from(x) / 100.0, f64::from(y) / 100.0),
        Position::Original => {
            let rel = |lo: f64, extent: f64, total: f64| {
                if total - extent > 0.5 {
                    (lo / (total - extent)).clamp(0.0, 1.0)
                } else {
                    0.5
                }
            };
            (
                rel(content.x0, content.w(), f64::from(w)),
                rel(content.y0, content.h(), f64::from(h)),
            )
        }
    };
    let ox = ml + (aw - content.w() * k) * fxr;
    let oy = mt + (ah - content.h() * k) * fyr;
    let to_canvas = |x: f64, y: f64| ((x - content.x0) * k + ox, (y - content.y0) * k + oy);

    // The pieces at the canvas's scale: drawn as they are, or made one picture and resampled.
    let place = |r: Span| {
        let (x, y) = to_canvas(r.x0, r.y0);
        (x.round() as i64, y.round() as i64)
    };
    let paint = |(coverage, r, color): (Vec<u8>, Span, [u8; 4])| Piece::Paint {
        coverage,
        width: r.w() as u32,
        height: r.h() as u32,
        color,
    };
    let pieces: Vec<(Piece, (i64, i64))> = if (k - 1.0).abs() < 1e-9 {
        let mut pieces = Vec::new();
        if let Some(b) = border {
            let at = place(b.1);
            pieces.push((paint(b), at));
        }
        pieces.push((Piece::Image(subject), place(photo)));
        pieces
    } else {
        let (layer, region) = match border {
            Some(b) => {
                let region = b.1;
                let mut layer = RgbaImage::new(region.w() as u32, region.h() as u32);
                paint(b).draw(&mut layer, (0, 0));
                Piece::Image(subject).draw(&mut layer, (-(region.x0 as i64), -(region.y0 as i64)));
                (layer, region)
            }
            None => (subject, photo),
        };
        let sw = (region.w() * k).round().max(1.0) as u32;
        let sh = (region.h() * k).round().max(1.0) as u32;
        let scaled = resize::rgba(&layer, sw, sh, Filter::Lanczos3);
        vec![(Piece::Image(scaled), place(region))]
    };

    let mut pieces = pieces;
    // The subject exactly covering the canvas with nothing under it but its border (no crop,
    // no shadow): it is the canvas, and the border is drawn under it (no 48 MB copy at 12 MP).
    let whole = shadow.is_none()
        && matches!(pieces.last(), Some((Piece::Image(i), (0, 0))) if i.dimensions() == (cw, ch));
    if whole {
        let Some((Piece::Image(mut canvas), _)) = pieces.pop() else {
            unreachable!("checked above");
        };
        for (piece, at) in pieces.iter().rev() {
            piece.draw_under(&mut canvas, *at);
        }
        return Ok(finish(
            canvas,
            backdrop,
            fx.channels,
            subject_rect(bbox, to_canvas, (cw, ch)),
        ));
    }
    let mut canvas = RgbaImage::new(cw, ch);
    if let Some((s, sigma, (dx, dy))) = shadow {
        let (sx, sy) = ((dx * k).round() as i64, (dy * k).round() as i64);
        let mut plane = vec![0u8; cw as usize * ch as usize];
        for (piece, (x, y)) in &pieces {
            piece.draw_alpha(&mut plane, (cw, ch), (x + sx, y + sy));
        }
        let soft = blur::gaussian(&plane, cw as usize, ch as usize, (sigma * k) as f32);
        let opacity = (s.opacity / 100.0 * 255.0).round() as u32;
        for (p, &a) in canvas.as_mut().chunks_exact_mut(4).zip(&soft) {
            p[3] = ((u32::from(a) * opacity + 127) / 255) as u8;
        }
    }
    for (piece, at) in &pieces {
        piece.draw(&mut canvas, *at);
    }

    Ok(finish(
        canvas,
        backdrop,
        fx.channels,
        subject_rect(bbox, to_canvas, (cw, ch)),
    ))
}

/// The subject's box in the canvas.
fn subject_rect(
    bbox: Option<Span>,
    to_canvas: impl Fn(f64, f64) -> (f64, f64),
    (cw, ch): (u32, u32),
) -> Rect {
    let Some(b) = bbox else {
        return Rect::default();
    };
    let (sx0, sy0) = to_canvas(b.x0, b.y0);
    let (sx1, sy1) = to_canvas(b.x1, b.y1);
    let clip = |v: f64, max: u32| v.round().clamp(0.0, f64::from(max)) as u32;
    let (sx0, sy0, sx1, sy1) = (clip(sx0, cw), clip(sy0, ch), clip(sx1, cw), clip(sy1, ch));
    Rect {
        left: sx0,
        top: sy0,
        width: sx1 - sx0,
        height: sy1 - sy0,
    }
}

/// The canvas (subject, border, shadow) as the asked channels over the backdrop.
fn finish(canvas: RgbaImage, backdrop: Backdrop<'_>, channels: Channels, subject: Rect) -> Laid {
    let (cw, ch) = canvas.dimensions();
    let picture = if channels == Channels::Alpha {
        DynamicImage::ImageLuma8(
            GrayImage::from_raw(
                cw,
                ch,
                canvas.as_raw().chunks_exact(4).map(|p| p[3]).collect(),
            )
            .expect("one byte per pixel"),
        )
    } else {
        match backdrop {
            Backdrop::Transparent => DynamicImage::ImageRgba8(canvas),
            Backdrop::Color(c) => {
                let mut base = RgbaImage::from_pixel(cw, ch, image::Rgba(c));
                Piece::Image(canvas).draw(&mut base, (0, 0));
                if c[3] == 255 {
                    DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(base).to_rgb8())
                } else {
                    DynamicImage::ImageRgba8(base)
                }
            }
            Backdrop::Image(photo) => {
                let mut base = DynamicImage::ImageRgb8(cover(photo, cw, ch)).to_rgba8();
                Piece::Image(canvas).draw(&mut base, (0, 0));
                DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(base).to_rgb8())
            }
        }
    };
    Laid { picture, subject }
}

/// `photo` scaled to cover `width`×`height` and centred, what is beyond cut.
///
/// Only the part that shows is resampled (a resize with a source box): the same pixels as
/// scaling the whole photo and cutting, without the whole photo at that scale, which for a
/// long thin canvas over a small photo (1×34,330 px over 7×5: 48,062×34,330) is gigabytes.
pub fn cover(photo: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (pw, ph) = (f64::from(photo.width()), f64::from(photo.height()));
    let s = (f64::from(width) / pw).max(f64::from(height) / ph);
    let (sw, sh) = (
        ((pw * s).round() as u32).max(width),
        ((ph * s).round() as u32).max(height),
    );
    let (x0, y0) = ((sw - width) / 2, (sh - height) / 2);
    if (sw, sh) == photo.dimensions() {
        return image::imageops::crop_imm(photo, x0, y0, width, height).to_image();
    }
    // The scaled photo's pixel column x is the photo's span x·pw/sw .. (x + 1)·pw/sw.
    let (fx, fy) = (pw / f64::from(sw), ph / f64::from(sh));
    let region = (
        f64::from(x0) * fx,
        f64::from(y0) * fy,
        (f64::from(x0 + width) * fx).min(pw),
        (f64::from(y0 + height) * fy).min(ph),
    );
    resize::rgb_box(photo, region, width, height, Filter::Bilinear)
}

/// The sticker border's coverage over `region` (photo coordinates; beyond the photo is
/// transparent): every pixel within `width` px (exact Euclidean distance) of the subject's
/// half-opaque pixels, anti-aliased over one pixel, its holes filled so the die-cut line is
/// one closed contour around each part.
fn border(subject: &RgbaImage, region: Span, width: f32) -> Vec<u8> {
    let (rw, rh) = (region.w() as usize, region.h() as usize);
    let (x0, y0) = (region.x0 as i64, region.y0 as i64);
    let (w, h) = (i64::from(subject.width()), i64::from(subject.height()));
    // The columns and rows of the region that are inside the photo.
    let (cx0, cx1) = ((-x0).max(0) as usize, (w - x0).clamp(0, rw as i64) as usize);
    let (cy0, cy1) = ((-y0).max(0) as usize, (h - y0).clamp(0, rh as i64) as usize);
    let src_row = |y: usize| {
        let py = (y as i64 + y0) as usize;
        let start = (py * w as usize + (cx0 as i64 + x0) as usize) * 4;
        &subject.as_raw()[start..start + (cx1 - cx0) * 4]
    };
    let mark = |y: usize, row: &mut [bool]| {
        if (cy0..cy1).contains(&y) {
            for (d, p) in row[cx0..cx1].iter_mut().zip(src_row(y).chunks_exact(4)) {
                *d = p[3] >= 128;
            }
        }
    };
    // The border's coverage: 1 within `width`, 0 beyond `width + 1`, linear between.
    let (inner, outer) = ((width - 0.5).max(0.0).powi(2), (width + 0.5).powi(2));
    let mut border = vec![0u8; rw * rh];
    let limit = (width.ceil() as u16).saturating_add(1);
    edt::within(rw, rh, mark, limit, &mut border, 0, |d| {
        if d <= inner {
            255
        } else if d >= outer {
            0
        } else {
            ((width + 0.5 - d.sqrt()) * 255.0 + 0.5) as u8
        }
    });
    // Holes of the opaque core close, with the anti-aliased fringe inside them: only the
    // fringe that faces the outside stays soft.
    for r in components::enclosed(rw, rh, &border, |c| c != 255) {
        let start = r.y as usize * rw;
        border[start + r.x0 as usize..start + r.x1 as usize].fill(255);
    }
    border
}

#[cfg(test)]
mod tests;
