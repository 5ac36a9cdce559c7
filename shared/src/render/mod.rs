//! Share rendering: watermark a picture and lay it out as the images social networks show.
//!
//! One renderer for both shells: the GPU service calls it natively and the edge Worker in WASM,
//! so the same input gives the same bytes. Resizing uses `fast_image_resize` (far faster than
//! `image`'s own in WASM) and JPEG output [`crate::jpeg`]. A card of a cut-out is its
//! background and watermark, the same for every share with the same settings, plus the pet in
//! the middle: the empty card's JPEG blocks are computed once per settings and card size
//! (`card_cache::card_base`), and per share only the macro blocks under the pet are composed and
//! transformed (those where it is wholly transparent are copied), with the same bytes as doing
//! the whole card. [`CardSubjects`] go one step further for stored results: the pet already
//! fitted to each card, so a card needs no decoding and no resizing. Nothing here allocates more
//! than a few canvases of the output sizes beyond the decoded source.

mod card_cache;
mod options;
mod pipeline;
mod raster;
mod subjects;
#[cfg(test)]
mod test_support;

use image::{DynamicImage, RgbImage};

use crate::{
    api::StoredImage,
    encode::{OutputFormat, encode},
};
use pipeline::Prepared;
use raster::{background, over, resize_rgba, stamp};

pub use options::{
    Background, DEFAULT_LOGO_PNG, Gravity, Offset, RenderOptions, ShareStyle, Watermark,
    default_logo,
};
pub use subjects::CardSubjects;

/// Changes whenever the rendering changes, so share ids (content hashes) change with it.
pub const RENDER_VERSION: &str = "render/v4";

/// The share image sizes.
pub const OG_SIZE: (u32, u32) = (1200, 630);
pub const PINTEREST_SIZE: (u32, u32) = (1000, 1500);
pub const SQUARE_SIZE: (u32, u32) = (1080, 1080);

/// The card sizes, in the order [`CardSubjects`] keeps them.
pub const CARD_SIZES: [(u32, u32); 3] = [OG_SIZE, PINTEREST_SIZE, SQUARE_SIZE];

/// One encoded share image.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub content_type: &'static str,
}

impl Encoded {
    pub fn stored(&self) -> StoredImage {
        StoredImage {
            width: self.width,
            height: self.height,
            content_type: self.content_type.to_owned(),
            bytes: self.bytes.len() as u64,
        }
    }
}

/// Every image of a share.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The whole picture, watermarked, PNG.
    pub image: Encoded,
    /// 1200×630 JPEG.
    pub og: Encoded,
    /// 1000×1500 JPEG.
    pub pinterest: Encoded,
    /// 1080×1080 JPEG.
    pub square: Encoded,
}

/// One `size` card (one of [`CARD_SIZES`]) from share-ready subjects: what the Worker does for
/// a stored result, with the same bytes as [`render_share`] on the picture.
pub fn render_card(
    subjects: &CardSubjects,
    size: (u32, u32),
    opts: &RenderOptions,
) -> Result<Encoded, String> {
    if !CardSubjects::suffice_for(opts) {
        return Err("a blurred background or the sticker style needs the whole picture".into());
    }
    Prepared::from_subjects(subjects, opts).card(size)
}

/// Only the 1200×630 Open Graph card (what a crawler asks for first; the benchmark's unit).
pub fn render_og(source: &DynamicImage, opts: &RenderOptions) -> Result<Encoded, String> {
    let source = styled(source, opts)?;
    Prepared::new(&source, opts).card(OG_SIZE)
}

/// The picture as the share style shows it: a transparent cut-out made a sticker (cropped to
/// the pet, a white die-cut border, a soft shadow: the print options' own code), anything else
/// as it is.
fn styled<'a>(
    source: &'a DynamicImage,
    opts: &RenderOptions,
) -> Result<std::borrow::Cow<'a, DynamicImage>, String> {
    if opts.style == ShareStyle::Plain
        || !source.color().has_alpha()
        || source.to_rgba8().pixels().all(|p| p.0[3] == 255)
    {
        return Ok(std::borrow::Cow::Borrowed(source));
    }
    let fields = [
        ("crop", "true"),
        ("crop_margin", "4%"),
        ("outline", "true"),
        ("shadow", "true"),
        ("shadow_opacity", "35"),
    ];
    let fx =
        crate::effects::Effects::from_fields(|n| fields.iter().find(|(k, _)| *k == n).map(|f| f.1))
            .map_err(|r| r.message)?;
    let laid = crate::effects::apply(
        source.to_rgba8(),
        crate::effects::Backdrop::Transparent,
        &fx,
        crate::cutout::max_canvas_pixels(),
    )
    .map_err(|r| r.message)?;
    Ok(std::borrow::Cow::Owned(laid.picture))
}

/// Render every share image of `source` (a cut-out with alpha or an opaque photo).
pub fn render_share(source: &DynamicImage, opts: &RenderOptions) -> Result<Rendered, String> {
    render_share_with(source, None, opts)
}

/// [`render_share`], taking the cards' subjects from `subjects` where it has them (the same
/// bytes: they are what [`CardSubjects::new`] made of the same picture).
pub fn render_share_with(
    source: &DynamicImage,
    subjects: Option<&CardSubjects>,
    opts: &RenderOptions,
) -> Result<Rendered, String> {
    let source = styled(source, opts)?;
    let subjects = subjects.filter(|_| CardSubjects::suffice_for(opts));
    let mut p = Prepared::new(&source, opts);
    p.fitted = subjects.filter(|s| s.source == p.size && p.transparent);
    let og = p.card(OG_SIZE)?;
    let pinterest = p.card(PINTEREST_SIZE)?;
    let square = p.card(SQUARE_SIZE)?;
    let Prepared {
        rgba,
        transparent,
        colours,
        text,
        mut resizer,
        ..
    } = p;
    let rgba = rgba.ok_or("no picture to render")?;
    let logo = opts.watermark.logo.as_ref();

    let (iw, ih) = fit(
        rgba.width(),
        rgba.height(),
        opts.image_max_side,
        opts.image_max_side,
    );
    let (iw, ih) = if iw >= rgba.width() {
        (rgba.width(), rgba.height())
    } else {
        (iw, ih)
    };
    let mut full = if transparent {
        background(
            &mut resizer,
            colours.as_ref(),
            (iw, ih),
            (0, 0, iw, ih),
            true,
            opts.background,
        )?
    } else {
        RgbImage::new(iw, ih)
    };
    let subject = if (iw, ih) == rgba.dimensions() {
        std::borrow::Cow::Borrowed(&*rgba)
    } else {
        std::borrow::Cow::Owned(resize_rgba(&mut resizer, &rgba, iw, ih)?)
    };
    over(&mut full, &subject, 0, 0, 1.0);
    stamp(
        &mut resizer,
        &mut full,
        &opts.watermark,
        logo,
        text.as_ref(),
    )?;
    let image = Encoded {
        bytes: encode(&DynamicImage::ImageRgb8(full), OutputFormat::Png)?,
        width: iw,
        height: ih,
        content_type: "image/png",
    };
    Ok(Rendered {
        image,
        og,
        pinterest,
        square,
    })
}

/// The largest size with the source's aspect ratio inside `max_w`×`max_h` (at least 1×1).
pub fn fit(w: u32, h: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    let scale = (f64::from(max_w) / f64::from(w)).min(f64::from(max_h) / f64::from(h));
    let fw = (f64::from(w) * scale).round().clamp(1.0, f64::from(max_w)) as u32;
    let fh = (f64::from(h) * scale).round().clamp(1.0, f64::from(max_h)) as u32;
    (fw, fh)
}

#[cfg(test)]
mod tests {
    use super::test_support::{cutout, decode};
    use super::*;

    #[test]
    fn renders_every_size_as_the_right_format() {
        let r = render_share(&cutout(400, 300), &RenderOptions::default()).unwrap();
        for (e, size) in [
            (&r.og, OG_SIZE),
            (&r.pinterest, PINTEREST_SIZE),
            (&r.square, SQUARE_SIZE),
        ] {
            assert_eq!((e.width, e.height), size);
            assert!(e.bytes.starts_with(&[0xFF, 0xD8, 0xFF]), "JPEG");
            assert_eq!(decode(e).dimensions(), size);
        }
        assert!(r.image.bytes.starts_with(b"\x89PNG"));
        assert_eq!(
            (r.image.width, r.image.height),
            (400, 300),
            "small pictures keep their size"
        );
    }

    #[test]
    fn the_og_card_alone_is_the_same_bytes_as_in_the_full_share() {
        let src = cutout(500, 380);
        let opts = RenderOptions::default();
        assert_eq!(
            render_og(&src, &opts).unwrap().bytes,
            render_share(&src, &opts).unwrap().og.bytes
        );
    }

    #[test]
    fn large_pictures_are_capped_and_rendering_is_deterministic() {
        let big = cutout(3000, 2000);
        let opts = RenderOptions::default();
        let a = render_share(&big, &opts).unwrap();
        assert_eq!((a.image.width, a.image.height), (1600, 1067));
        let b = render_share(&big, &opts).unwrap();
        assert_eq!(a.og.bytes, b.og.bytes);
        assert_eq!(a.image.bytes, b.image.bytes);
    }
}

/// Today's ids, pinned: share ids hash the render fingerprint, and stored shares are found by
/// their ids, so a change here orphans every stored share. Change them only with
/// [`RENDER_VERSION`], on purpose.
#[cfg(test)]
mod pinned {
    use image::RgbaImage;
    use sha2::{Digest, Sha256};

    use super::*;

    fn cutout() -> DynamicImage {
        DynamicImage::ImageRgba8(RgbaImage::from_fn(300, 200, |x, y| {
            let inside = (x as i32 - 150).pow(2) + (y as i32 - 100).pow(2) < 80 * 80;
            image::Rgba([
                (x % 256) as u8,
                (y % 256) as u8,
                120,
                if inside { 255 } else { 0 },
            ])
        }))
    }

    #[test]
    fn fingerprints_ids_and_card_bytes_are_unchanged() {
        let logo = "Some(\"50eed400694ee799971f70a5b84f558c\")";
        assert_eq!(
            RenderOptions::default().fingerprint(),
            format!(
                "render/v4|{logo}|None|SouthEast|Fraction(0.03)|0.85|0.14|Gradient([250, 246, 240], [226, 232, 240])|85|1600"
            )
        );
        let custom = RenderOptions::from_vars(
            |k| match k {
                "WATERMARK_TEXT" => Some("Paws & \"Co\"".into()),
                "WATERMARK_GRAVITY" => Some("tile".into()),
                "WATERMARK_OFFSET" => Some("24px".into()),
                "SHARE_BACKGROUND" => Some("#102030".into()),
                _ => None,
            },
            None,
        )
        .unwrap();
        assert_eq!(
            custom.fingerprint(),
            format!(
                "render/v4|{logo}|Some(\"Paws & \\\"Co\\\"\")|Tile|Pixels(24)|0.85|0.14|Color([16, 32, 48])|85|1600"
            )
        );
        let blur =
            RenderOptions::from_vars(|k| (k == "SHARE_BACKGROUND").then(|| "blur".into()), None)
                .unwrap();
        assert!(
            blur.fingerprint()
                .contains("|Fraction(0.03)|0.85|0.14|Blur|85|1600")
        );
        let no_logo = RenderOptions {
            watermark: Watermark {
                logo: None,
                ..Watermark::default()
            },
            ..RenderOptions::default()
        };
        assert!(
            no_logo
                .fingerprint()
                .starts_with("render/v4|None|None|SouthEast|")
        );
        let names = [
            (Gravity::NorthWest, "NorthWest"),
            (Gravity::North, "North"),
            (Gravity::NorthEast, "NorthEast"),
            (Gravity::West, "West"),
            (Gravity::Center, "Center"),
            (Gravity::East, "East"),
            (Gravity::SouthWest, "SouthWest"),
            (Gravity::South, "South"),
            (Gravity::SouthEast, "SouthEast"),
            (Gravity::Tile, "Tile"),
        ];
        for (g, name) in names {
            assert_eq!(g.id_name(), name);
        }

        let default = RenderOptions::default().fingerprint();
        let from_table = RenderOptions::from_vars(|_| None, None)
            .unwrap()
            .fingerprint();
        assert_eq!(
            from_table, default,
            "the settings table's defaults are the renderer's"
        );
        assert_eq!(
            crate::publish::share_id(b"picture", "Rex", &default),
            "e2fe079665fadc7e8e8860a80846b075"
        );
        let rendered = render_share(&cutout(), &RenderOptions::default()).unwrap();
        let digest = |b: &[u8]| crate::ids::hex(&Sha256::digest(b));
        assert_eq!(
            digest(&rendered.og.bytes),
            "e4679918ff94dcd1c271ac7ed4c4c04860733f49f1c9b1867b10b350c9617ab0"
        );
        assert_eq!(
            digest(&rendered.pinterest.bytes),
            "8d0f7ecf8785516122491c1209bce57340af70e1e54884646267ce3bfeb77a8d"
        );
        // The PNG writer's deflate changes these bytes, not the pixels they decode to (the
        // writer's round-trip tests), so the render version stays.
        assert_eq!(
            digest(&rendered.image.bytes),
            "c6eac4c244b18d71968e0f2bccc53d2c8f46803555194b6bbf4a4301b6dbf3c0"
        );
        let pixels = image::load_from_memory(&rendered.image.bytes)
            .unwrap()
            .to_rgba8();
        assert_eq!(
            digest(pixels.as_raw()),
            "cbf3c57db9a6e073ad787d66aa92ec6d308d46ee7292dfd061d141ab6d4aa4c4"
        );
    }
}

#[cfg(test)]
mod style_tests {
    use image::{Rgba, RgbaImage};

    use super::*;

    #[test]
    fn the_sticker_style_makes_stickers_of_cut_outs_only() {
        let disc = RgbaImage::from_fn(200, 160, |x, y| {
            let d = ((x as f32 - 100.0).powi(2) + (y as f32 - 80.0).powi(2)).sqrt();
            Rgba([200, 60, 20, if d < 40.0 { 255 } else { 0 }])
        });
        let src = DynamicImage::ImageRgba8(disc);
        let plain = RenderOptions::default();
        let sticker =
            RenderOptions::from_vars(|k| (k == "SHARE_STYLE").then(|| "sticker".to_owned()), None)
                .unwrap();
        assert_eq!(sticker.style, ShareStyle::Sticker);
        // Plain adds nothing to the fingerprint (share ids made before styles stay).
        assert!(!plain.fingerprint().contains("sticker"));
        assert_eq!(
            sticker.fingerprint(),
            format!("{}|sticker", plain.fingerprint())
        );
        let made = styled(&src, &sticker).unwrap().to_rgba8();
        assert!(
            made.width() < 200 && made.height() < 160,
            "cropped: {:?}",
            made.dimensions()
        );
        let white = made
            .pixels()
            .filter(|p| p.0 == [255, 255, 255, 255])
            .count();
        assert!(white > 300, "a white border: {white} pixels");
        assert!(matches!(
            styled_plain(&src, &plain),
            std::borrow::Cow::Borrowed(_)
        ));
        let photo = DynamicImage::ImageRgb8(RgbImage::new(10, 10));
        assert!(matches!(
            styled(&photo, &sticker).unwrap(),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_ne!(
            render_og(&src, &plain).unwrap().bytes,
            render_og(&src, &sticker).unwrap().bytes
        );
        assert!(!CardSubjects::suffice_for(&sticker));
        let bad =
            RenderOptions::from_vars(|k| (k == "SHARE_STYLE").then(|| "glitter".to_owned()), None);
        assert!(bad.unwrap_err().contains("SHARE_STYLE"));
    }

    fn styled_plain<'a>(
        src: &'a DynamicImage,
        opts: &RenderOptions,
    ) -> std::borrow::Cow<'a, DynamicImage> {
        styled(src, opts).unwrap()
    }
}
