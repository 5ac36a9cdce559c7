//! The render settings: where the watermark goes and how it looks, what fills the background,
//! parsed from settings by name and fingerprinted for share ids.

use std::str::FromStr;

use image::RgbaImage;

use super::RENDER_VERSION;

/// The default watermark: a paw print the project drew (`scripts/generate_logo.py`).
pub const DEFAULT_LOGO_PNG: &[u8] = include_bytes!("../../assets/watermark.png");

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

impl Gravity {
    /// The name ids hash ([`RenderOptions::fingerprint`]).
    pub fn id_name(self) -> &'static str {
        match self {
            Gravity::NorthWest => "NorthWest",
            Gravity::North => "North",
            Gravity::NorthEast => "NorthEast",
            Gravity::West => "West",
            Gravity::Center => "Center",
            Gravity::East => "East",
            Gravity::SouthWest => "SouthWest",
            Gravity::South => "South",
            Gravity::SouthEast => "SouthEast",
            Gravity::Tile => "Tile",
        }
    }
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
    pub(super) fn pixels(self, w: u32, h: u32) -> i64 {
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
    /// The watermark of [`crate::settings`]' defaults.
    fn default() -> Self {
        RenderOptions::default().watermark
    }
}

/// The embedded default logo, decoded.
pub fn default_logo() -> RgbaImage {
    image::load_from_memory_with_format(DEFAULT_LOGO_PNG, image::ImageFormat::Png)
        .expect("the embedded logo is a valid PNG")
        .to_rgba8()
}

/// How a transparent cut-out looks on the share cards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShareStyle {
    /// As it is.
    #[default]
    Plain,
    /// A sticker: cropped to the pet, a white die-cut border and a soft shadow
    /// ([`crate::effects`], the same as the CLI's `--crop --outline --shadow`).
    Sticker,
}

impl FromStr for ShareStyle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "plain" => Ok(ShareStyle::Plain),
            "sticker" => Ok(ShareStyle::Sticker),
            other => Err(format!(
                "unknown share style {other:?}: expected plain or sticker"
            )),
        }
    }
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
    pub style: ShareStyle,
}

/// JPEG quality of the share cards.
const JPEG_QUALITY: u8 = 85;
/// The longer side of the full watermarked image (`/i/<id>.png`).
const IMAGE_MAX_SIDE: u32 = 1600;

impl Default for RenderOptions {
    /// Every setting at its default ([`crate::settings`], read in one place: [`RenderOptions::from_vars`]).
    fn default() -> Self {
        RenderOptions::from_vars(|_| None, None).expect("the settings table's defaults are valid")
    }
}

impl RenderOptions {
    /// From settings by name, as both shells read them (gpu-server from flags and env, the
    /// Worker from its vars): `WATERMARK_TEXT`, `WATERMARK_GRAVITY`, `WATERMARK_OFFSET`,
    /// `WATERMARK_OPACITY`, `WATERMARK_SCALE`, `SHARE_BACKGROUND`, with the defaults of
    /// [`crate::settings`]; `logo: None` is the product's own logo.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        logo: Option<RgbaImage>,
    ) -> Result<Self, String> {
        use crate::settings as s;
        let finite = |setting: s::Setting| -> Result<f32, String> {
            setting.parse::<f32>(&var).and_then(|n| {
                n.is_finite()
                    .then_some(n)
                    .ok_or_else(|| format!("{}: not a finite number", setting.env))
            })
        };
        let text = s::WATERMARK_TEXT.read(&var);
        let watermark = Watermark {
            logo: Some(logo.unwrap_or_else(default_logo)),
            text: (!text.is_empty()).then_some(text),
            gravity: s::WATERMARK_GRAVITY.read(&var).parse()?,
            offset: s::WATERMARK_OFFSET.read(&var).parse()?,
            opacity: finite(s::WATERMARK_OPACITY)?.clamp(0.0, 1.0),
            scale: finite(s::WATERMARK_SCALE)?.clamp(0.01, 1.0),
        };
        let background = s::SHARE_BACKGROUND.read(&var).parse()?;
        let style = s::SHARE_STYLE
            .read(&var)
            .parse()
            .map_err(|e| format!("{}: {e}", s::SHARE_STYLE.env))?;
        Ok(RenderOptions {
            watermark,
            background,
            jpeg_quality: JPEG_QUALITY,
            image_max_side: IMAGE_MAX_SIDE,
            style,
        })
    }

    /// Everything that changes the output, for share ids: same fingerprint, same bytes. Written
    /// field by field (never through `Debug`), so renaming a type or a variant cannot change
    /// every share id; the spelling is the one ids have always hashed (pinned by a test).
    pub fn fingerprint(&self) -> String {
        let w = &self.watermark;
        // `Some("<hash>")` / `None`, `Some("<text>")` / `None`: a string quoted and escaped as
        // Rust escapes it.
        let quoted =
            |v: Option<&str>| v.map_or_else(|| "None".to_owned(), |v| format!("Some({v:?})"));
        let logo = w
            .logo
            .as_ref()
            .map(|l| crate::ids::content_id(&[l.as_raw(), &l.width().to_le_bytes()]));
        let offset = match w.offset {
            Offset::Pixels(p) => format!("Pixels({p})"),
            Offset::Fraction(f) => format!("Fraction({f:?})"),
        };
        let rgb = |[r, g, b]: [u8; 3]| format!("[{r}, {g}, {b}]");
        let background = match self.background {
            Background::Color(c) => format!("Color({})", rgb(c)),
            Background::Gradient(top, bottom) => format!("Gradient({}, {})", rgb(top), rgb(bottom)),
            Background::Blur => "Blur".to_owned(),
        };
        // The plain style adds nothing, so shares made before styles existed keep their ids.
        let style = match self.style {
            ShareStyle::Plain => "",
            ShareStyle::Sticker => "|sticker",
        };
        format!(
            "{RENDER_VERSION}|{}|{}|{}|{offset}|{}|{}|{background}|{}|{}{style}",
            quoted(logo.as_deref()),
            quoted(w.text.as_deref()),
            w.gravity.id_name(),
            w.opacity,
            w.scale,
            self.jpeg_quality,
            self.image_max_side
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
