//! Raster helpers: resizing, backgrounds, alpha blending and the watermark (logo and text
//! line) laid on a canvas.

use std::fmt;

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use font8x8::UnicodeFonts;
use image::{GrayImage, RgbImage, RgbaImage};

use super::{Background, Gravity, RenderOptions, Watermark};

fn resize_err(e: impl fmt::Display) -> String {
    format!("resize failed: {e}")
}

pub(super) fn resize_rgba(
    resizer: &mut Resizer,
    src: &RgbaImage,
    w: u32,
    h: u32,
) -> Result<RgbaImage, String> {
    let mut dst = RgbaImage::new(w, h);
    let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    resizer.resize(src, &mut dst, &opts).map_err(resize_err)?;
    Ok(dst)
}

/// The part `rect` = `(x, y, w, h)` of the `size` canvas behind the subject (a blurred one only
/// whole).
pub(super) fn background(
    resizer: &mut Resizer,
    colours: Option<&RgbImage>,
    (cw, ch): (u32, u32),
    (rx, ry, w, h): (u32, u32, u32, u32),
    transparent: bool,
    bg: Background,
) -> Result<RgbImage, String> {
    match (transparent, bg) {
        (true, Background::Color(c)) => Ok(RgbImage::from_pixel(w, h, image::Rgb(c))),
        (true, Background::Gradient(top, bottom)) => {
            // Ordered (4×4 Bayer) dithering at the canvas's own coordinates, so any part of the
            // card gets the same pixels: a gentle gradient over a tall card otherwise shows
            // 8-bit bands about 60 px apart.
            const BAYER: [f32; 16] = [
                0.0, 8.0, 2.0, 10.0, 12.0, 4.0, 14.0, 6.0, 3.0, 11.0, 1.0, 9.0, 15.0, 7.0, 13.0,
                5.0,
            ];
            let mut img = RgbImage::new(w, h);
            for (y, row) in img.rows_mut().enumerate() {
                let cy = ry + y as u32;
                let t = cy as f32 / (ch.max(2) - 1) as f32;
                let v: [f32; 3] = std::array::from_fn(|i| {
                    f32::from(top[i]) * (1.0 - t) + f32::from(bottom[i]) * t
                });
                for (x, p) in row.enumerate() {
                    let cx = rx + x as u32;
                    let d = (BAYER[((cy & 3) * 4 + (cx & 3)) as usize] + 0.5) / 16.0;
                    p.0 = v.map(|c| (c + d).floor().clamp(0.0, 255.0) as u8);
                }
            }
            Ok(img)
        }
        // Blurred cover: crop to the canvas's aspect, shrink 24× (averaging), then stretch back
        // bilinearly — a smooth, cheap blur whatever the source size.
        _ => {
            let Some(rgb) = colours else {
                return Err("a blurred background needs the picture's colours".into());
            };
            if (rx, ry, w, h) != (0, 0, cw, ch) {
                return Err("a blurred background is made whole".into());
            }
            let (sw, sh) = (f64::from(rgb.width()), f64::from(rgb.height()));
            let scale = (f64::from(w) / sw).max(f64::from(h) / sh);
            let (cw, ch) = (f64::from(w) / scale, f64::from(h) / scale);
            let (tw, th) = ((w / 24).max(2), (h / 24).max(2));
            let mut small = RgbImage::new(tw, th);
            let opts = ResizeOptions::new()
                .resize_alg(ResizeAlg::Convolution(FilterType::Box))
                .crop((sw - cw) / 2.0, (sh - ch) / 2.0, cw, ch);
            resizer.resize(rgb, &mut small, &opts).map_err(resize_err)?;
            let mut big = RgbImage::new(w, h);
            let up = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
            resizer.resize(&small, &mut big, &up).map_err(resize_err)?;
            // Soften so the subject stands out.
            for p in big.pixels_mut() {
                for c in &mut p.0 {
                    *c = ((u16::from(*c) * 3 + 255) / 4) as u8;
                }
            }
            Ok(big)
        }
    }
}

/// Alpha-blend `layer` onto `canvas` at (x, y), clipped, with an extra opacity.
pub(super) fn over(canvas: &mut RgbImage, layer: &RgbaImage, x: i64, y: i64, opacity: f32) {
    let op = (opacity.clamp(0.0, 1.0) * 256.0) as u32;
    let (cw, ch) = (i64::from(canvas.width()), i64::from(canvas.height()));
    let (lw, lh) = (i64::from(layer.width()), i64::from(layer.height()));
    let (x0, x1) = (x.max(0), (x + lw).min(cw));
    let (y0, y1) = (y.max(0), (y + lh).min(ch));
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    let (n, cw, lw) = ((x1 - x0) as usize, cw as usize, lw as usize);
    let canvas = &mut **canvas;
    let layer = layer.as_raw();
    for cy in y0..y1 {
        let c_at = (cy as usize * cw + x0 as usize) * 3;
        let l_at = ((cy - y) as usize * lw + (x0 - x) as usize) * 4;
        let dst = &mut canvas[c_at..c_at + n * 3];
        let src = &layer[l_at..l_at + n * 4];
        for (p, l) in dst.chunks_exact_mut(3).zip(src.chunks_exact(4)) {
            let a = u32::from(l[3]) * op / 256;
            if a == 0 {
                continue;
            }
            for (c, &lc) in p.iter_mut().zip(&l[..3]) {
                *c = ((u32::from(lc) * a + u32::from(*c) * (255 - a) + 127) / 255) as u8;
            }
        }
    }
}

/// The watermark's text line as an alpha mask, if it has one.
pub(super) fn watermark_text(opts: &RenderOptions) -> Option<GrayImage> {
    opts.watermark
        .text
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .map(text_mask)
}

/// A line of text in the 8×8 font as an alpha mask (8 px high, 8 px per character).
fn text_mask(text: &str) -> GrayImage {
    let chars: Vec<char> = text
        .chars()
        .take(60)
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect();
    let mut mask = GrayImage::new(8 * chars.len().max(1) as u32, 8);
    for (i, c) in chars.iter().enumerate() {
        let glyph = font8x8::BASIC_FONTS.get(*c).unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for bit in 0..8 {
                if bits & (1 << bit) != 0 {
                    mask.put_pixel(i as u32 * 8 + bit, row as u32, image::Luma([255]));
                }
            }
        }
    }
    mask
}

/// The watermark block (logo over text) at the canvas's scale.
pub(super) fn watermark_block(
    resizer: &mut Resizer,
    w: u32,
    h: u32,
    wm: &Watermark,
    logo: Option<&RgbaImage>,
    text: Option<&GrayImage>,
) -> Result<Option<RgbaImage>, String> {
    let short = f64::from(w.min(h));
    let logo_w = (short * f64::from(wm.scale.clamp(0.01, 1.0)))
        .round()
        .max(8.0) as u32;
    let logo = match logo {
        Some(l) => {
            let lh = ((f64::from(l.height()) * f64::from(logo_w) / f64::from(l.width())).round()
                as u32)
                .max(1);
            Some(resize_rgba(resizer, l, logo_w, lh)?)
        }
        None => None,
    };
    let text = match text {
        Some(t) => {
            // Text height: a fifth of the logo, or 4% of the canvas without one.
            let th = if logo.is_some() {
                (logo_w / 5).max(8)
            } else {
                ((short * 0.04) as u32).max(8)
            };
            let tw = (t.width() * th / 8).min(w.saturating_sub(4)).max(1);
            let mut scaled = GrayImage::new(tw, th);
            let opts =
                ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
            resizer.resize(t, &mut scaled, &opts).map_err(resize_err)?;
            Some(scaled)
        }
        None => None,
    };
    let (lw, lh) = logo.as_ref().map_or((0, 0), |l| l.dimensions());
    let (tw, th) = text.as_ref().map_or((0, 0), |t| t.dimensions());
    let gap = if logo.is_some() && text.is_some() {
        th / 3
    } else {
        0
    };
    let shadow = (th / 10).max(1);
    let (bw, bh) = (
        lw.max(tw + shadow),
        lh + gap + th + if text.is_some() { shadow } else { 0 },
    );
    if bw == 0 || bh == 0 {
        return Ok(None);
    }
    let mut block = RgbaImage::new(bw, bh);
    if let Some(l) = &logo {
        image::imageops::overlay(&mut block, l, i64::from((bw - lw) / 2), 0);
    }
    if let Some(t) = &text {
        let (x, y) = ((bw - tw - shadow) / 2, lh + gap);
        for (px, py, a) in t.enumerate_pixels() {
            let a = a.0[0];
            if a == 0 {
                continue;
            }
            let s = block.get_pixel_mut(x + px + shadow, y + py + shadow);
            s.0 = [0, 0, 0, s.0[3].max((u16::from(a) * 160 / 255) as u8)];
        }
        for (px, py, a) in t.enumerate_pixels() {
            let a = a.0[0];
            if a == 0 {
                continue;
            }
            let d = block.get_pixel_mut(x + px, y + py);
            let inv = 255 - u32::from(a);
            let blend = |c: u8| ((255 * u32::from(a) + u32::from(c) * inv) / 255) as u8;
            d.0 = [blend(d.0[0]), blend(d.0[1]), blend(d.0[2]), d.0[3].max(a)];
        }
    }
    Ok(Some(block))
}

/// Lay the watermark on a canvas.
pub(super) fn stamp(
    resizer: &mut Resizer,
    canvas: &mut RgbImage,
    wm: &Watermark,
    logo: Option<&RgbaImage>,
    text: Option<&GrayImage>,
) -> Result<(), String> {
    let (w, h) = canvas.dimensions();
    if let Some(block) = watermark_block(resizer, w, h, wm, logo, text)? {
        lay(canvas, &block, wm, (w, h), (0, 0));
    }
    Ok(())
}

/// Lay a watermark block where `wm` puts it on a `size` canvas, of which `canvas` is the part
/// at `origin`.
pub(super) fn lay(
    canvas: &mut RgbImage,
    block: &RgbaImage,
    wm: &Watermark,
    (w, h): (u32, u32),
    (ox, oy): (i64, i64),
) {
    let (bw, bh) = (i64::from(block.width()), i64::from(block.height()));
    let (cw, ch) = (i64::from(w), i64::from(h));
    let m = wm.offset.pixels(w, h);
    if wm.gravity == Gravity::Tile {
        let (sx, sy) = (bw * 2 + m, bh * 2 + m);
        let mut y = m;
        let mut row = 0;
        while y < ch {
            let mut x = m + if row % 2 == 1 { sx / 2 } else { 0 } - sx;
            while x < cw {
                over(canvas, block, x - ox, y - oy, wm.opacity * 0.5);
                x += sx;
            }
            y += sy;
            row += 1;
        }
        return;
    }
    let x = match wm.gravity {
        Gravity::NorthWest | Gravity::West | Gravity::SouthWest => m,
        Gravity::North | Gravity::Center | Gravity::South => (cw - bw) / 2,
        _ => cw - bw - m,
    };
    let y = match wm.gravity {
        Gravity::NorthWest | Gravity::North | Gravity::NorthEast => m,
        Gravity::West | Gravity::Center | Gravity::East => (ch - bh) / 2,
        _ => ch - bh - m,
    };
    over(canvas, block, x - ox, y - oy, wm.opacity);
}

#[cfg(test)]
mod tests {
    use image::DynamicImage;

    use super::*;

    /// The default gradient falls 24 levels over the 1500 px Pinterest card: undithered, each
    /// level is a band 62 px tall. Dithered, the mean of every 4×4 block follows the ramp
    /// within a fraction of a level, and a part of the card is the same pixels as the whole.
    #[test]
    fn gradient_is_dithered_not_banded() {
        let bg = Background::Gradient([250, 246, 240], [226, 232, 240]);
        let mut resizer = Resizer::new();
        let (w, h) = (64u32, 1500u32);
        let card = background(&mut resizer, None, (w, h), (0, 0, w, h), true, bg).unwrap();
        let mut previous = f32::INFINITY;
        for by in 0..h / 4 {
            let mut sum = 0.0;
            for y in by * 4..by * 4 + 4 {
                for x in 0..4 {
                    sum += f32::from(card.get_pixel(x, y)[0]);
                }
            }
            let mean = sum / 16.0;
            let t = (by * 4) as f32 / (h - 1) as f32;
            let ideal = 250.0 * (1.0 - t) + 226.0 * t;
            assert!(
                (mean - ideal).abs() < 0.2,
                "row {}: {mean} vs {ideal}",
                by * 4
            );
            assert!(mean <= previous + 0.5, "row {}: not falling", by * 4);
            previous = mean;
        }
        let part = background(&mut resizer, None, (w, h), (8, 700, 16, 40), true, bg).unwrap();
        for (x, y, p) in part.enumerate_pixels() {
            assert_eq!(p, card.get_pixel(8 + x, 700 + y));
        }
    }
    use crate::render::{
        render_share,
        test_support::{cutout, decode},
    };

    #[test]
    fn transparent_cutouts_get_the_background() {
        let opts = RenderOptions {
            background: Background::Color([0, 200, 0]),
            watermark: Watermark {
                logo: None,
                ..Watermark::default()
            },
            ..RenderOptions::default()
        };
        let r = render_share(&cutout(300, 300), &opts).unwrap();
        let sq = decode(&r.square);
        let corner = sq.get_pixel(20, 20).0;
        assert!(
            corner[1] > 180 && corner[0] < 30,
            "green corner, got {corner:?}"
        );
        let centre = sq.get_pixel(540, 540).0;
        assert!(
            centre[0] > 180 && centre[1] < 70,
            "red subject, got {centre:?}"
        );
    }

    #[test]
    fn watermark_lands_where_gravity_says() {
        let grey =
            DynamicImage::ImageRgb8(RgbImage::from_pixel(600, 600, image::Rgb([60, 60, 60])));
        let brightness = |img: &RgbImage, x0: u32, y0: u32| -> u32 {
            let mut s = 0;
            for y in y0..y0 + 100 {
                for x in x0..x0 + 100 {
                    s += u32::from(img.get_pixel(x, y).0[0]);
                }
            }
            s / 10_000
        };
        for (gravity, bright_corner) in [
            (Gravity::SouthEast, (970, 970)),
            (Gravity::NorthWest, (10, 10)),
        ] {
            let opts = RenderOptions {
                watermark: Watermark {
                    gravity,
                    opacity: 1.0,
                    scale: 0.15,
                    ..Watermark::default()
                },
                ..RenderOptions::default()
            };
            let sq = decode(&render_share(&grey, &opts).unwrap().square);
            let (bx, by) = bright_corner;
            let other = (1080 - 100 - bx, 1080 - 100 - by);
            assert!(
                brightness(&sq, bx, by) > brightness(&sq, other.0, other.1) + 20,
                "{gravity:?}: watermark not in its corner"
            );
        }
    }

    #[test]
    fn text_and_tile_watermarks_render() {
        let grey =
            DynamicImage::ImageRgb8(RgbImage::from_pixel(500, 500, image::Rgb([50, 50, 50])));
        let plain = render_share(
            &grey,
            &RenderOptions {
                watermark: Watermark {
                    logo: None,
                    ..Watermark::default()
                },
                ..RenderOptions::default()
            },
        )
        .unwrap();
        for wm in [
            Watermark {
                logo: None,
                text: Some("Paws & Co".into()),
                ..Watermark::default()
            },
            Watermark {
                gravity: Gravity::Tile,
                ..Watermark::default()
            },
        ] {
            let r = render_share(
                &grey,
                &RenderOptions {
                    watermark: wm.clone(),
                    ..RenderOptions::default()
                },
            )
            .unwrap();
            assert_ne!(decode(&r.og), decode(&plain.og), "{wm:?} drew nothing");
        }
    }
}
