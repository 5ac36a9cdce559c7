//! Share rendering: watermark a picture and lay it out as the images social networks show.
//!
//! One renderer for both shells: the GPU service calls it natively and the edge Worker in WASM,
//! so the same input gives the same bytes. Resizing uses `fast_image_resize` (far faster than
//! `image`'s own in WASM) and JPEG output [`crate::jpeg`]. A card of a cut-out is its
//! background and watermark, the same for every share with the same settings, plus the pet in
//! the middle: the empty card's JPEG blocks are computed once per settings and card size
//! ([`card_base`]), and per share only the macro blocks under the pet are composed and
//! transformed (those where it is wholly transparent are copied), with the same bytes as doing
//! the whole card. [`CardSubjects`] go one step further for stored results: the pet already
//! fitted to each card, so a card needs no decoding and no resizing. Nothing here allocates more
//! than a few canvases of the output sizes beyond the decoded source.

use std::{
    fmt,
    str::FromStr,
    sync::{Arc, Mutex},
};

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use font8x8::UnicodeFonts;
use image::{DynamicImage, GrayImage, RgbImage, RgbaImage};
use sha2::{Digest, Sha256};

use crate::{
    api::StoredImage,
    encode::{OutputFormat, encode},
    jpeg::{Coefficients, Encoder, MCU_SIDE, McuRegion},
};

/// Changes whenever the rendering changes, so share ids (content hashes) change with it.
pub const RENDER_VERSION: &str = "render/v2";

/// The default watermark: a paw print the project drew (`scripts/generate_logo.py`).
pub const DEFAULT_LOGO_PNG: &[u8] = include_bytes!("../assets/watermark.png");

/// The share image sizes.
pub const OG_SIZE: (u32, u32) = (1200, 630);
pub const PINTEREST_SIZE: (u32, u32) = (1000, 1500);
pub const SQUARE_SIZE: (u32, u32) = (1080, 1080);

/// Where the watermark goes. `Tile` repeats it over the whole picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gravity {
    NorthWest,
    North,
    NorthEast,
    West,
    Center,
    East,
    SouthWest,
    South,
    SouthEast,
    Tile,
}

impl FromStr for Gravity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase().replace(['_', ' '], "-");
        Ok(match s.as_str() {
            "north-west" | "northwest" | "nw" | "top-left" => Gravity::NorthWest,
            "north" | "n" | "top" => Gravity::North,
            "north-east" | "northeast" | "ne" | "top-right" => Gravity::NorthEast,
            "west" | "w" | "left" => Gravity::West,
            "center" | "centre" | "c" => Gravity::Center,
            "east" | "e" | "right" => Gravity::East,
            "south-west" | "southwest" | "sw" | "bottom-left" => Gravity::SouthWest,
            "south" | "s" | "bottom" => Gravity::South,
            "south-east" | "southeast" | "se" | "bottom-right" => Gravity::SouthEast,
            "tile" => Gravity::Tile,
            _ => {
                return Err(format!(
                    "unknown gravity {s:?}: expected one of nw, n, ne, w, center, e, sw, s, se, tile"
                ));
            }
        })
    }
}

/// Distance of the watermark from the edges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Offset {
    Pixels(u32),
    /// A fraction of the canvas's shorter side.
    Fraction(f32),
}

impl Offset {
    fn pixels(self, w: u32, h: u32) -> i64 {
        match self {
            Offset::Pixels(p) => i64::from(p),
            Offset::Fraction(f) => (f64::from(f) * f64::from(w.min(h))).round() as i64,
        }
    }
}

impl FromStr for Offset {
    type Err = String;
    /// `24` or `24px` are pixels; `0.03` or `3%` a fraction of the shorter side.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad =
            || format!("bad offset {s:?}: expected pixels (24, 24px) or a fraction (0.03, 3%)");
        if let Some(p) = s.strip_suffix('%') {
            let v: f32 = p.trim().parse().map_err(|_| bad())?;
            return (0.0..=50.0)
                .contains(&v)
                .then_some(Offset::Fraction(v / 100.0))
                .ok_or_else(bad);
        }
        let p = s.strip_suffix("px").unwrap_or(s);
        if let Ok(px) = p.parse::<u32>() {
            return Ok(Offset::Pixels(px));
        }
        let v: f32 = p.parse().map_err(|_| bad())?;
        (0.0..=0.5)
            .contains(&v)
            .then_some(Offset::Fraction(v))
            .ok_or_else(bad)
    }
}

/// What fills the canvas behind a transparent cut-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    Color([u8; 3]),
    /// Top colour to bottom colour.
    Gradient([u8; 3], [u8; 3]),
    /// The picture's own colours, blurred (cut-outs keep their original colours under alpha).
    Blur,
}

fn parse_colour(s: &str) -> Option<[u8; 3]> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix('#') {
        if hex.len() != 6 {
            return None;
        }
        let v = u32::from_str_radix(hex, 16).ok()?;
        return Some([(v >> 16) as u8, (v >> 8) as u8, v as u8]);
    }
    let parts: Vec<u8> = s
        .split(',')
        .map(|p| p.trim().parse().ok())
        .collect::<Option<_>>()?;
    <[u8; 3]>::try_from(parts).ok()
}

impl FromStr for Background {
    type Err = String;
    /// `blur`, `white`, `#rrggbb`, `color:R,G,B`, `gradient:#top|#bottom`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let bad = || {
            format!(
                "bad background {s:?}: expected blur, white, #rrggbb, color:R,G,B or gradient:#top|#bottom"
            )
        };
        if s == "blur" {
            return Ok(Background::Blur);
        }
        if s == "white" {
            return Ok(Background::Color([255; 3]));
        }
        if let Some(g) = s.strip_prefix("gradient:") {
            let (top, bottom) = g.split_once('|').ok_or_else(bad)?;
            let top = parse_colour(top).ok_or_else(bad)?;
            let bottom = parse_colour(bottom).ok_or_else(bad)?;
            return Ok(Background::Gradient(top, bottom));
        }
        parse_colour(s.strip_prefix("color:").unwrap_or(&s))
            .map(Background::Color)
            .ok_or_else(bad)
    }
}

/// The watermark laid over every shared image.
#[derive(Debug, Clone, PartialEq)]
pub struct Watermark {
    /// Logo with alpha; `None` draws no logo.
    pub logo: Option<RgbaImage>,
    /// Optional line of text under the logo (printable ASCII; others are shown as `?`).
    pub text: Option<String>,
    pub gravity: Gravity,
    pub offset: Offset,
    /// 0..=1.
    pub opacity: f32,
    /// Logo width as a fraction of the canvas's shorter side.
    pub scale: f32,
}

impl Default for Watermark {
    fn default() -> Self {
        Watermark {
            logo: Some(default_logo()),
            text: None,
            gravity: Gravity::SouthEast,
            offset: Offset::Fraction(0.03),
            opacity: 0.85,
            scale: 0.14,
        }
    }
}

/// The embedded default logo, decoded.
pub fn default_logo() -> RgbaImage {
    image::load_from_memory_with_format(DEFAULT_LOGO_PNG, image::ImageFormat::Png)
        .expect("the embedded logo is a valid PNG")
        .to_rgba8()
}

/// How shares are rendered.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    pub watermark: Watermark,
    /// Behind transparent cut-outs. Opaque photos always get their own blurred copy around them.
    pub background: Background,
    pub jpeg_quality: u8,
    /// The longer side of the full watermarked image (`/i/<id>.png`).
    pub image_max_side: u32,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            watermark: Watermark::default(),
            background: Background::Gradient([250, 246, 240], [226, 232, 240]),
            jpeg_quality: 85,
            image_max_side: 1600,
        }
    }
}

impl RenderOptions {
    /// From settings by name, as both shells read them (gpu-server from flags and env, the
    /// Worker from its vars): `WATERMARK_TEXT`, `WATERMARK_GRAVITY` (se), `WATERMARK_OFFSET`
    /// (0.03), `WATERMARK_OPACITY` (0.85), `WATERMARK_SCALE` (0.14), `SHARE_BACKGROUND`
    /// (`gradient:#faf6f0|#e2e8f0`). Missing ones take those defaults; `logo: None` is the
    /// product's own logo.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        logo: Option<RgbaImage>,
    ) -> Result<Self, String> {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let number = |name: &str, default: f32| -> Result<f32, String> {
            get(name).map_or(Ok(default), |v| {
                v.parse::<f32>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .ok_or_else(|| format!("{name}: `{v}` is not a number"))
            })
        };
        let watermark = Watermark {
            logo: Some(logo.unwrap_or_else(default_logo)),
            text: get("WATERMARK_TEXT"),
            gravity: get("WATERMARK_GRAVITY")
                .as_deref()
                .unwrap_or("se")
                .parse()?,
            offset: get("WATERMARK_OFFSET")
                .as_deref()
                .unwrap_or("0.03")
                .parse()?,
            opacity: number("WATERMARK_OPACITY", 0.85)?.clamp(0.0, 1.0),
            scale: number("WATERMARK_SCALE", 0.14)?.clamp(0.01, 1.0),
        };
        let background = get("SHARE_BACKGROUND")
            .as_deref()
            .unwrap_or("gradient:#faf6f0|#e2e8f0")
            .parse()?;
        Ok(RenderOptions {
            watermark,
            background,
            ..RenderOptions::default()
        })
    }

    /// Everything that changes the output, for share ids: same fingerprint, same bytes.
    pub fn fingerprint(&self) -> String {
        let w = &self.watermark;
        let logo = w
            .logo
            .as_ref()
            .map(|l| crate::ids::content_id(&[l.as_raw(), &l.width().to_le_bytes()]));
        format!(
            "{RENDER_VERSION}|{logo:?}|{:?}|{:?}|{:?}|{}|{}|{:?}|{}|{}",
            w.text,
            w.gravity,
            w.offset,
            w.opacity,
            w.scale,
            self.background,
            self.jpeg_quality,
            self.image_max_side
        )
    }
}

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

/// A picture made ready for rendering: converted once, its logo and text prepared.
struct Prepared<'a> {
    opts: &'a RenderOptions,
    /// Borrowed when the picture already is 8-bit RGBA (a cut-out): no 4 MB copy. None when
    /// rendering from share-ready subjects alone.
    rgba: Option<std::borrow::Cow<'a, RgbaImage>>,
    /// The picture's size.
    size: (u32, u32),
    transparent: bool,
    /// The picture's own colours, converted once, for every blurred background that needs them.
    colours: Option<RgbImage>,
    text: Option<GrayImage>,
    resizer: Resizer,
    /// Subjects already fitted to card sizes (a share-ready source), used where they match.
    fitted: Option<&'a CardSubjects>,
}

impl<'a> Prepared<'a> {
    fn new(source: &'a DynamicImage, opts: &'a RenderOptions) -> Self {
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
    fn from_subjects(subjects: &'a CardSubjects, opts: &'a RenderOptions) -> Self {
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
    fn card(&mut self, size: (u32, u32)) -> Result<Encoded, String> {
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
fn subject_size(source: (u32, u32), (w, h): (u32, u32), transparent: bool) -> (u32, u32) {
    let margin = if transparent { 0.06 } else { 0.0 };
    let (bw, bh) = (
        (f64::from(w) * (1.0 - 2.0 * margin)) as u32,
        (f64::from(h) * (1.0 - 2.0 * margin)) as u32,
    );
    fit(source.0, source.1, bw, bh)
}

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
struct CardBase {
    key: CardKey,
    /// The JPEG blocks of the background with the watermark.
    coefficients: Coefficients,
    /// The watermark at this card's scale, laid again over the subject.
    watermark: Option<RgbaImage>,
}

/// Empty cards kept (three sizes for a few settings at once; about 4 MB each).
const CARD_BASES_KEPT: usize = 12;

static CARD_BASES: Mutex<Vec<Arc<CardBase>>> = Mutex::new(Vec::new());

/// The empty card (background and watermark, no subject) of a cut-out at `size` with `opts`:
/// computed once per process (or Worker isolate) and settings, then shared.
fn card_base(
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

/// The watermark's text line as an alpha mask, if it has one.
fn watermark_text(opts: &RenderOptions) -> Option<GrayImage> {
    opts.watermark
        .text
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .map(text_mask)
}

/// The card sizes, in the order [`CardSubjects`] keeps them.
pub const CARD_SIZES: [(u32, u32); 3] = [OG_SIZE, PINTEREST_SIZE, SQUARE_SIZE];

/// A cut-out made share-ready: its subject already fitted to each card size. A card made from
/// it is only composed and encoded (no decoding of the whole picture, no resizing), with the
/// same bytes as a card made from the picture. gpu-server stores one beside each result
/// ([`crate::api::keys::card_subjects`]); the Worker renders the result's cards from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardSubjects {
    /// SHA-256 of the encoded picture (the stored result) they were made from.
    picture: [u8; 32],
    /// The cut-out's own size.
    source: (u32, u32),
    /// One per [`CARD_SIZES`], in that order (`None`: not read, see [`Self::from_bytes_for`]).
    subjects: Vec<Option<RgbaImage>>,
}

/// The first bytes of a stored [`CardSubjects`].
const CARD_SUBJECTS_MAGIC: &[u8; 8] = b"PCCARDS1";

impl CardSubjects {
    /// The subjects of a cut-out, `source`, which `encoded` (a lossless file) decodes to; `None`
    /// for a picture with no transparency (a photo, laid out differently).
    pub fn new(source: &DynamicImage, encoded: &[u8]) -> Result<Option<Self>, String> {
        let DynamicImage::ImageRgba8(rgba) = source else {
            return Ok(None);
        };
        if !rgba.pixels().any(|p| p.0[3] < 255) {
            return Ok(None);
        }
        let mut resizer = Resizer::new();
        let subjects = CARD_SIZES
            .iter()
            .map(|&card| {
                let (fw, fh) = subject_size(rgba.dimensions(), card, true);
                let mut subject = resize_rgba(&mut resizer, rgba, fw, fh)?;
                // Invisible pixels compress better blank; `over` never reads them.
                for p in subject.pixels_mut().filter(|p| p.0[3] == 0) {
                    p.0 = [0; 4];
                }
                Ok(Some(subject))
            })
            .collect::<Result<_, String>>()?;
        Ok(Some(CardSubjects {
            picture: Sha256::digest(encoded).into(),
            source: rgba.dimensions(),
            subjects,
        }))
    }

    /// Whether these are the subjects of the picture stored as `encoded`.
    pub fn are_of(&self, encoded: &[u8]) -> bool {
        self.picture == <[u8; 32]>::from(Sha256::digest(encoded))
    }

    /// The stored form: a magic, the picture's digest, the source's size, then each subject's
    /// size, its RGBA pixels as one LZ4 block and that block's CRC-32 (all of them: subjects
    /// read partly cannot be written back).
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        out.extend_from_slice(CARD_SUBJECTS_MAGIC);
        out.extend_from_slice(&self.picture);
        out.extend_from_slice(&self.source.0.to_le_bytes());
        out.extend_from_slice(&self.source.1.to_le_bytes());
        for (s, card) in self.subjects.iter().zip(CARD_SIZES) {
            let Some(s) = s else {
                return Err(format!(
                    "the {}×{} card's subject was not read",
                    card.0, card.1
                ));
            };
            let packed = lz4_flex::block::compress(s.as_raw());
            out.extend_from_slice(&s.width().to_le_bytes());
            out.extend_from_slice(&s.height().to_le_bytes());
            out.extend_from_slice(&(packed.len() as u32).to_le_bytes());
            out.extend_from_slice(&packed);
            out.extend_from_slice(&crc32fast::hash(&packed).to_le_bytes());
        }
        Ok(out)
    }

    /// Reads [`Self::to_bytes`]. Every size is checked against the cards' own before anything
    /// is allocated, so a damaged or forged file costs at most the cards' pixels.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        Self::from_bytes_for(bytes, &CARD_SIZES)
    }

    /// [`Self::from_bytes`], unpacking only the subjects of the card sizes in `cards`.
    pub fn from_bytes_for(bytes: &[u8], cards: &[(u32, u32)]) -> Result<Self, String> {
        let bad = |why: &str| format!("not a card subjects file: {why}");
        let mut rest = bytes
            .strip_prefix(CARD_SUBJECTS_MAGIC.as_slice())
            .ok_or_else(|| bad("no magic"))?;
        fn take<'b>(rest: &mut &'b [u8], n: usize) -> Option<&'b [u8]> {
            let (head, tail) = rest.split_at_checked(n)?;
            *rest = tail;
            Some(head)
        }
        fn word(rest: &mut &[u8]) -> Option<u32> {
            take(rest, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
        let picture: [u8; 32] = take(&mut rest, 32)
            .and_then(|d| d.try_into().ok())
            .ok_or_else(|| bad("cut short"))?;
        let source = (
            word(&mut rest).ok_or_else(|| bad("cut short"))?,
            word(&mut rest).ok_or_else(|| bad("cut short"))?,
        );
        if source.0 == 0 || source.1 == 0 {
            return Err(bad("an empty source"));
        }
        let mut subjects = Vec::with_capacity(CARD_SIZES.len());
        for card in CARD_SIZES {
            let (Some(w), Some(h), Some(len)) = (word(&mut rest), word(&mut rest), word(&mut rest))
            else {
                return Err(bad("cut short"));
            };
            if (w, h) != subject_size(source, card, true) {
                return Err(bad("a subject of the wrong size"));
            }
            let packed = take(&mut rest, len as usize).ok_or_else(|| bad("cut short"))?;
            let crc = word(&mut rest).ok_or_else(|| bad("cut short"))?;
            if !cards.contains(&card) {
                subjects.push(None);
                continue;
            }
            if crc32fast::hash(packed) != crc {
                return Err(bad("damaged (checksum)"));
            }
            let mut pixels = vec![0u8; w as usize * h as usize * 4];
            let n = lz4_flex::block::decompress_into(packed, &mut pixels)
                .map_err(|e| bad(&e.to_string()))?;
            if n != pixels.len() {
                return Err(bad("a subject cut short"));
            }
            subjects.push(Some(
                RgbaImage::from_raw(w, h, pixels).ok_or_else(|| bad("pixels"))?,
            ));
        }
        if !rest.is_empty() {
            return Err(bad("bytes left over"));
        }
        Ok(CardSubjects {
            picture,
            source,
            subjects,
        })
    }

    /// The subjects stored as `stored` if they are the ones of the picture stored as `picture`
    /// and suffice for `opts`; anything else (none, damaged, another picture's) is `None`, and
    /// the cards are made from the picture.
    pub fn usable(stored: Option<&[u8]>, picture: &[u8], opts: &RenderOptions) -> Option<Self> {
        if !Self::suffice_for(opts) {
            return None;
        }
        Self::from_bytes(stored?).ok().filter(|s| s.are_of(picture))
    }

    /// Whether cards with `opts` can be made from the subjects alone (a blurred background
    /// needs the whole picture).
    pub fn suffice_for(opts: &RenderOptions) -> bool {
        opts.background != Background::Blur
    }
}

/// One `size` card (one of [`CARD_SIZES`]) from share-ready subjects: what the Worker does for
/// a stored result, with the same bytes as [`render_share`] on the picture.
pub fn render_card(
    subjects: &CardSubjects,
    size: (u32, u32),
    opts: &RenderOptions,
) -> Result<Encoded, String> {
    if !CardSubjects::suffice_for(opts) {
        return Err("a blurred background needs the whole picture".into());
    }
    Prepared::from_subjects(subjects, opts).card(size)
}

/// Only the 1200×630 Open Graph card (what a crawler asks for first; the benchmark's unit).
pub fn render_og(source: &DynamicImage, opts: &RenderOptions) -> Result<Encoded, String> {
    Prepared::new(source, opts).card(OG_SIZE)
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
    let mut p = Prepared::new(source, opts);
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

fn resize_err(e: impl fmt::Display) -> String {
    format!("resize failed: {e}")
}

fn resize_rgba(
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
fn background(
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
            let mut img = RgbImage::new(w, h);
            for (y, row) in img.rows_mut().enumerate() {
                let t = (ry + y as u32) as f32 / (ch.max(2) - 1) as f32;
                let c: [u8; 3] = std::array::from_fn(|i| {
                    (f32::from(top[i]) * (1.0 - t) + f32::from(bottom[i]) * t).round() as u8
                });
                for p in row {
                    p.0 = c;
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
fn over(canvas: &mut RgbImage, layer: &RgbaImage, x: i64, y: i64, opacity: f32) {
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
fn watermark_block(
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
fn stamp(
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
fn lay(
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
    use super::*;

    fn cutout(w: u32, h: u32) -> DynamicImage {
        // A red disc on transparency.
        DynamicImage::ImageRgba8(RgbaImage::from_fn(w, h, |x, y| {
            let (dx, dy) = (x as f32 - w as f32 / 2.0, y as f32 - h as f32 / 2.0);
            let inside = dx * dx + dy * dy < (w.min(h) as f32 / 2.5).powi(2);
            image::Rgba([220, 30, 30, if inside { 255 } else { 0 }])
        }))
    }

    fn decode(e: &Encoded) -> RgbImage {
        image::load_from_memory(&e.bytes).unwrap().to_rgb8()
    }

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
    fn settings_by_name_default_to_the_defaults() {
        let from_vars = RenderOptions::from_vars(|_| None, None).unwrap();
        assert_eq!(
            from_vars.fingerprint(),
            RenderOptions::default().fingerprint()
        );
        let custom = RenderOptions::from_vars(
            |k| match k {
                "WATERMARK_GRAVITY" => Some("tile".into()),
                "WATERMARK_OPACITY" => Some("7".into()),
                "WATERMARK_TEXT" => Some("  ".into()),
                _ => None,
            },
            None,
        )
        .unwrap();
        assert_eq!(custom.watermark.gravity, Gravity::Tile);
        assert_eq!(custom.watermark.opacity, 1.0);
        assert_eq!(custom.watermark.text, None);
        assert!(
            RenderOptions::from_vars(|k| (k == "WATERMARK_SCALE").then(|| "big".into()), None)
                .is_err()
        );
        assert!(
            RenderOptions::from_vars(|k| (k == "WATERMARK_GRAVITY").then(|| "up".into()), None)
                .is_err()
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

    /// Settings that move the watermark over the subject in different ways.
    fn card_settings() -> Vec<RenderOptions> {
        [
            (
                Background::Gradient([250, 246, 240], [226, 232, 240]),
                None,
                Gravity::SouthEast,
            ),
            (
                Background::Color([10, 20, 30]),
                Some("Paws & Co".to_owned()),
                Gravity::SouthEast,
            ),
            (
                Background::Color([240, 240, 240]),
                Some("tiled".to_owned()),
                Gravity::Tile,
            ),
            (
                Background::Gradient([0, 0, 0], [255, 255, 255]),
                None,
                Gravity::Center,
            ),
        ]
        .into_iter()
        .map(|(background, text, gravity)| RenderOptions {
            background,
            watermark: Watermark {
                text,
                gravity,
                ..Watermark::default()
            },
            ..RenderOptions::default()
        })
        .collect()
    }

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
    fn cards_from_share_ready_subjects_have_the_same_bytes() {
        for opts in card_settings() {
            for src in [cutout(500, 380), cutout(1024, 1024)] {
                let subjects = CardSubjects::new(&src, b"file")
                    .unwrap()
                    .expect("a cut-out");
                let stored = CardSubjects::from_bytes(&subjects.to_bytes().unwrap()).unwrap();
                assert_eq!(stored, subjects);
                let whole = render_share(&src, &opts).unwrap();
                let with = render_share_with(&src, Some(&stored), &opts).unwrap();
                for (size, from_picture, from_picture_with) in [
                    (OG_SIZE, &whole.og, &with.og),
                    (PINTEREST_SIZE, &whole.pinterest, &with.pinterest),
                    (SQUARE_SIZE, &whole.square, &with.square),
                ] {
                    let card = render_card(&stored, size, &opts).unwrap();
                    assert_eq!(card.bytes, from_picture.bytes, "{size:?}");
                    assert_eq!(from_picture_with.bytes, from_picture.bytes, "{size:?}");
                }
                assert_eq!(with.image.bytes, whole.image.bytes);
            }
        }
        // Subjects of another picture are not used for this one.
        let (a, b) = (cutout(500, 380), cutout(380, 500));
        let other = CardSubjects::new(&b, b"b").unwrap().unwrap();
        let opts = RenderOptions::default();
        assert_eq!(
            render_share_with(&a, Some(&other), &opts).unwrap().og.bytes,
            render_og(&a, &opts).unwrap().bytes
        );
        // A blurred background needs the whole picture.
        let blur = RenderOptions {
            background: Background::Blur,
            ..RenderOptions::default()
        };
        let subjects = CardSubjects::new(&a, b"a").unwrap().unwrap();
        assert!(render_card(&subjects, OG_SIZE, &blur).is_err());
        // They know the file they were made from.
        assert!(subjects.are_of(b"a") && !subjects.are_of(b"b"));
        let stored = subjects.to_bytes().unwrap();
        assert!(CardSubjects::usable(Some(&stored), b"a", &opts).is_some());
        assert!(CardSubjects::usable(Some(&stored), b"b", &opts).is_none());
        assert!(CardSubjects::usable(Some(&stored[..100]), b"a", &opts).is_none());
        assert!(CardSubjects::usable(Some(&stored), b"a", &blur).is_none());
        assert!(CardSubjects::usable(None, b"a", &opts).is_none());
    }

    #[test]
    fn share_ready_subjects_are_for_cutouts_and_refuse_damaged_files() {
        let photo = DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 48, image::Rgb([1, 2, 3])));
        assert_eq!(CardSubjects::new(&photo, b"").unwrap(), None);
        let opaque =
            DynamicImage::ImageRgba8(RgbaImage::from_pixel(64, 48, image::Rgba([1, 2, 3, 255])));
        assert_eq!(CardSubjects::new(&opaque, b"").unwrap(), None);

        let bytes = CardSubjects::new(&cutout(300, 200), b"")
            .unwrap()
            .unwrap()
            .to_bytes()
            .unwrap();
        // Mostly transparent: far smaller than the raw pixels.
        let raw: usize = CARD_SIZES
            .iter()
            .map(|&c| {
                let (w, h) = subject_size((300, 200), c, true);
                (w * h * 4) as usize
            })
            .sum();
        assert!(bytes.len() * 4 < raw, "{} of {raw}", bytes.len());
        assert!(CardSubjects::from_bytes(&bytes).is_ok());
        // Read for one card: that card renders, another does not, and it cannot be written.
        let og_only = CardSubjects::from_bytes_for(&bytes, &[OG_SIZE]).unwrap();
        let opts = RenderOptions::default();
        assert_eq!(
            render_card(&og_only, OG_SIZE, &opts).unwrap().bytes,
            render_og(&cutout(300, 200), &opts).unwrap().bytes
        );
        assert!(render_card(&og_only, SQUARE_SIZE, &opts).is_err());
        assert!(og_only.to_bytes().is_err());
        // Every prefix, a wrong magic, bytes left over, a wrong source size, flipped bytes:
        // refused, never a panic.
        for n in (0..bytes.len()).step_by(97) {
            assert!(CardSubjects::from_bytes(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(CardSubjects::from_bytes(&extra).is_err());
        let mut magic = bytes.clone();
        magic[0] ^= 1;
        assert!(CardSubjects::from_bytes(&magic).is_err());
        let mut size = bytes.clone();
        size[40] ^= 1;
        assert!(CardSubjects::from_bytes(&size).is_err());
        let mut huge = bytes.clone();
        huge[40..48].copy_from_slice(&[0xff; 8]);
        assert!(CardSubjects::from_bytes(&huge).is_err());
        for at in (48..bytes.len()).step_by(13) {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x5a;
            assert!(
                CardSubjects::from_bytes(&flipped).is_err(),
                "byte {at} flipped"
            );
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

    #[test]
    fn parses_settings() {
        assert_eq!(
            "bottom-right".parse::<Gravity>().unwrap(),
            Gravity::SouthEast
        );
        assert_eq!("tile".parse::<Gravity>().unwrap(), Gravity::Tile);
        assert!("middle-ish".parse::<Gravity>().is_err());
        assert_eq!("24".parse::<Offset>().unwrap(), Offset::Pixels(24));
        assert_eq!("24px".parse::<Offset>().unwrap(), Offset::Pixels(24));
        assert_eq!("0.05".parse::<Offset>().unwrap(), Offset::Fraction(0.05));
        assert_eq!("5%".parse::<Offset>().unwrap(), Offset::Fraction(0.05));
        assert!("-3".parse::<Offset>().is_err());
        assert_eq!("blur".parse::<Background>().unwrap(), Background::Blur);
        assert_eq!(
            "#ff8000".parse::<Background>().unwrap(),
            Background::Color([255, 128, 0])
        );
        assert_eq!(
            "color:1,2,3".parse::<Background>().unwrap(),
            Background::Color([1, 2, 3])
        );
        assert_eq!(
            "gradient:#ffffff|#000000".parse::<Background>().unwrap(),
            Background::Gradient([255; 3], [0; 3])
        );
        assert!("plaid".parse::<Background>().is_err());
        assert_ne!(
            RenderOptions::default().fingerprint(),
            RenderOptions {
                jpeg_quality: 80,
                ..RenderOptions::default()
            }
            .fingerprint()
        );
    }
}
