//! The print-shop options as the CLI's flags and the API's form fields give them, parsed once
//! by [`Effects::from_fields`]: each has the same name and the same values on both.

use std::fmt::Write;

use crate::refusal::Refusal;

/// A length given in pixels or as a percentage of a reference (the subject, or the canvas).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Length {
    Px(f32),
    Percent(f32),
}

impl Length {
    /// In pixels, `of` being the 100% reference.
    pub fn px(self, of: f32) -> f32 {
        match self {
            Length::Px(v) => v,
            Length::Percent(p) => p / 100.0 * of,
        }
    }

    fn parse(s: &str) -> Option<Length> {
        let s = s.trim();
        let (num, pct) = match s.strip_suffix('%') {
            Some(n) => (n, true),
            None => (s.strip_suffix("px").unwrap_or(s), false),
        };
        let v: f32 = num.trim().parse().ok().filter(|v: &f32| v.is_finite())?;
        Some(if pct {
            Length::Percent(v)
        } else {
            Length::Px(v)
        })
    }

    fn write(self, out: &mut String) {
        match self {
            Length::Px(v) => write!(out, "{v}px"),
            Length::Percent(v) => write!(out, "{v}%"),
        }
        .expect("writing to a String");
    }
}

/// The canvas size asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    Pixels(u32, u32),
    /// A print size in millimetres, made pixels at the `dpi` (300 when none is given).
    Print {
        width_mm: f32,
        height_mm: f32,
    },
}

/// The print sizes a shop names, width × height in millimetres (portrait).
pub const PRINT_PRESETS: [(&str, f32, f32); 8] = [
    ("4x6in", 101.6, 152.4),
    ("5x7in", 127.0, 177.8),
    ("8x10in", 203.2, 254.0),
    ("11x14in", 279.4, 355.6),
    ("a5", 148.0, 210.0),
    ("a4", 210.0, 297.0),
    ("a3", 297.0, 420.0),
    ("letter", 215.9, 279.4),
];

/// The resolution written into print files when the caller names a print size and no `dpi`.
pub const DEFAULT_PRINT_DPI: u16 = 300;

impl Size {
    fn parse(s: &str) -> Option<Size> {
        let s = s.trim().to_ascii_lowercase();
        if let Some(&(_, w, h)) = PRINT_PRESETS.iter().find(|(n, _, _)| *n == s) {
            return Some(Size::Print {
                width_mm: w,
                height_mm: h,
            });
        }
        for (unit, mm) in [("in", 25.4f32), ("cm", 10.0), ("mm", 1.0)] {
            if let Some(dims) = s.strip_suffix(unit) {
                let (w, h) = dims.split_once('x')?;
                let (w, h): (f32, f32) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
                if !(w.is_finite() && h.is_finite() && w > 0.0 && h > 0.0) {
                    return None;
                }
                return Some(Size::Print {
                    width_mm: w * mm,
                    height_mm: h * mm,
                });
            }
        }
        let (w, h) = s.strip_suffix("px").unwrap_or(&s).split_once('x')?;
        let (w, h): (u32, u32) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
        (w > 0 && h > 0).then_some(Size::Pixels(w, h))
    }

    /// The canvas in pixels at `dpi`.
    pub fn pixels(self, dpi: u16) -> (u32, u32) {
        match self {
            Size::Pixels(w, h) => (w, h),
            Size::Print {
                width_mm,
                height_mm,
            } => {
                let px = |mm: f32| (mm / 25.4 * f32::from(dpi)).round().max(1.0) as u32;
                (px(width_mm), px(height_mm))
            }
        }
    }
}

/// Where the subject goes on the canvas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Position {
    /// Where it was in the photo (relative to the free space).
    Original,
    /// At x%, y% of the free space (50%, 50% is the centre).
    At(f32, f32),
}

/// A soft drop shadow, every size relative to the subject's long side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shadow {
    /// 0..=100.
    pub opacity: f32,
    /// The Gaussian's σ, in % of the subject's long side.
    pub blur: f32,
    /// Offset right and down, in % of the subject's long side.
    pub offset: (f32, f32),
}

impl Default for Shadow {
    /// Half opacity (remove.bg's default for animals), a soft blur, a little right and down.
    fn default() -> Self {
        Shadow {
            opacity: 50.0,
            blur: 2.0,
            offset: (1.0, 2.0),
        }
    }
}

/// A sticker's border around the subject.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outline {
    pub color: [u8; 4],
    /// In % of the subject's long side.
    pub width: f32,
}

impl Default for Outline {
    fn default() -> Self {
        Outline {
            color: [255, 255, 255, 255],
            width: 3.0,
        }
    }
}

/// Which channels the output has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Channels {
    #[default]
    Rgba,
    /// The final alpha alone, as 8-bit grey.
    Alpha,
}

/// Everything a print shop asks of a cut-out beyond the cut-out itself.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Effects {
    /// Crop to the subject (specks ignored), with `crop_margin` around it.
    pub crop: bool,
    /// Top, right, bottom, left; % of the subject's height (top, bottom) or width.
    pub crop_margin: [Length; 4],
    pub size: Option<Size>,
    pub dpi: Option<u16>,
    /// The subject's share of the canvas, 0.1..=1.
    pub scale: Option<f32>,
    pub position: Option<Position>,
    pub shadow: Option<Shadow>,
    pub outline: Option<Outline>,
    /// A background colour, alpha included.
    pub bg_color: Option<[u8; 4]>,
    pub channels: Channels,
}

impl Default for Length {
    fn default() -> Self {
        Length::Px(0.0)
    }
}

/// Names of every field [`Effects::from_fields`] reads (the API documents them, the CLI has a
/// flag for each).
pub const FIELDS: [&str; 17] = [
    "crop",
    "crop_margin",
    "size",
    "dpi",
    "scale",
    "position",
    "shadow",
    "shadow_opacity",
    "shadow_blur",
    "shadow_offset",
    "outline",
    "outline_color",
    "outline_width",
    "bg_color",
    "channels",
    // Files, read by the shells' form readers.
    "bg_image",
    "mask",
];

fn bad(field: &str, message: impl std::fmt::Display) -> Refusal {
    Refusal::bad("invalid_option", format!("`{field}`: {message}"))
}

/// `true`/`false` and their usual spellings.
pub fn parse_bool(field: &str, v: &str) -> Result<bool, Refusal> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(bad(field, format_args!("must be true or false, got {v:?}"))),
    }
}

/// 1, 2 or 4 values separated by spaces or commas, as CSS margins.
fn four<T: Copy>(s: &str, one: impl Fn(&str) -> Option<T>) -> Option<[T; 4]> {
    let parts: Vec<T> = s
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(one)
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [a] => Some([*a; 4]),
        [v, h] => Some([*v, *h, *v, *h]),
        [t, r, b, l] => Some([*t, *r, *b, *l]),
        _ => None,
    }
}

/// Two values (x y) or one for both; percentages, with or without `%`.
fn pair(s: &str) -> Option<(f32, f32)> {
    let parts: Vec<f32> = s
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.trim_end_matches('%')
                .parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
        })
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [a] => Some((*a, *a)),
        [x, y] => Some((*x, *y)),
        _ => None,
    }
}

fn percent(s: &str) -> Option<f32> {
    let s = s.trim();
    s.trim_end_matches('%')
        .trim()
        .parse::<f32>()
        .ok()
        .filter(|v| v.is_finite())
}

/// A colour: `#rgb`, `#rgba`, `#rrggbb`, `#rrggbbaa` (the `#` optional), or a name.
pub fn parse_color(s: &str) -> Option<[u8; 4]> {
    let s = s.trim().to_ascii_lowercase();
    let named = match s.as_str() {
        "white" => Some([255, 255, 255, 255]),
        "black" => Some([0, 0, 0, 255]),
        "green" => Some([0, 128, 0, 255]),
        "red" => Some([255, 0, 0, 255]),
        "blue" => Some([0, 0, 255, 255]),
        "yellow" => Some([255, 255, 0, 255]),
        "gray" | "grey" => Some([128, 128, 128, 255]),
        "transparent" => Some([0, 0, 0, 0]),
        _ => None,
    };
    if named.is_some() {
        return named;
    }
    let hex = s.strip_prefix('#').unwrap_or(&s);
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let digit = |i: usize| u8::from_str_radix(&hex[i..i + 1], 16).ok();
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    match hex.len() {
        3 | 4 => {
            let mut c = [255u8; 4];
            for (i, v) in c.iter_mut().enumerate().take(hex.len()) {
                *v = digit(i)? * 17;
            }
            Some(c)
        }
        6 | 8 => {
            let mut c = [255u8; 4];
            for (i, v) in c.iter_mut().enumerate().take(hex.len() / 2) {
                *v = byte(2 * i)?;
            }
            Some(c)
        }
        _ => None,
    }
}

impl Effects {
    /// The options from named text fields (`get(name)`), each refused with a 400
    /// `invalid_option` naming the field.
    pub fn from_fields<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Effects, Refusal> {
        let mut fx = Effects::default();
        let field = |name: &str| get(name).map(str::trim).filter(|v| !v.is_empty());
        if let Some(v) = field("crop") {
            fx.crop = parse_bool("crop", v)?;
        }
        if let Some(v) = field("crop_margin") {
            fx.crop_margin = four(v, Length::parse)
                .filter(|m| {
                    m.iter().all(|l| match *l {
                        Length::Px(p) => (0.0..=2000.0).contains(&p),
                        Length::Percent(p) => (0.0..=50.0).contains(&p),
                    })
                })
                .ok_or_else(|| {
                    bad(
                        "crop_margin",
                        format_args!(
                            "expected 1, 2 or 4 lengths (0 to 2000 px, or 0 to 50%), got {v:?}"
                        ),
                    )
                })?;
        }
        if let Some(v) = field("size")
            && !matches!(v, "original" | "auto" | "full")
        {
            fx.size = Some(Size::parse(v).ok_or_else(|| {
                bad(
                    "size",
                    format_args!(
                        "expected WxH pixels, W x H in in, cm or mm (4x6in), or one of {}; got {v:?}",
                        PRINT_PRESETS.map(|p| p.0).join(", ")
                    ),
                )
            })?);
        }
        if let Some(v) = field("dpi") {
            fx.dpi = Some(
                v.parse::<u16>()
                    .ok()
                    .filter(|d| (72..=1200).contains(d))
                    .ok_or_else(|| bad("dpi", format_args!("expected 72 to 1200, got {v:?}")))?,
            );
        }
        if let Some(v) = field("scale")
            && v != "original"
        {
            let s = percent(v)
                .map(|p| {
                    if v.ends_with('%') || p > 1.0 {
                        p / 100.0
                    } else {
                        p
                    }
                })
                .filter(|s| (0.1..=1.0).contains(s))
                .ok_or_else(|| {
                    bad(
                        "scale",
                        format_args!("expected original or 10% to 100%, got {v:?}"),
                    )
                })?;
            fx.scale = Some(s);
        }
        if let Some(v) = field("position") {
            fx.position = Some(match v {
                "original" => Position::Original,
                "center" | "centre" => Position::At(50.0, 50.0),
                _ => pair(v)
                    .filter(|(x, y)| (0.0..=100.0).contains(x) && (0.0..=100.0).contains(y))
                    .map(|(x, y)| Position::At(x, y))
                    .ok_or_else(|| {
                        bad(
                            "position",
                            format_args!(
                                "expected original, center, or x% y% between 0 and 100, got {v:?}"
                            ),
                        )
                    })?,
            });
        }
        let shadow_fields = ["shadow_opacity", "shadow_blur", "shadow_offset"];
        let on = match field("shadow") {
            Some(v) => parse_bool("shadow", v)?,
            None => shadow_fields.iter().any(|f| field(f).is_some()),
        };
        if on {
            let mut s = Shadow::default();
            if let Some(v) = field("shadow_opacity") {
                s.opacity = percent(v)
                    .filter(|o| (0.0..=100.0).contains(o))
                    .ok_or_else(|| {
                        bad(
                            "shadow_opacity",
                            format_args!("expected 0 to 100, got {v:?}"),
                        )
                    })?;
            }
            if let Some(v) = field("shadow_blur") {
                s.blur = percent(v)
                    .filter(|b| (0.0..=20.0).contains(b))
                    .ok_or_else(|| {
                        bad(
                            "shadow_blur",
                            format_args!("expected 0% to 20% of the subject, got {v:?}"),
                        )
                    })?;
            }
            if let Some(v) = field("shadow_offset") {
                s.offset = pair(v)
                    .filter(|(x, y)| x.abs() <= 20.0 && y.abs() <= 20.0)
                    .ok_or_else(|| {
                        bad(
                            "shadow_offset",
                            format_args!(
                                "expected x% y%, each -20% to 20% of the subject, got {v:?}"
                            ),
                        )
                    })?;
            }
            fx.shadow = Some(s);
        }
        let on = match field("outline") {
            Some(v) => parse_bool("outline", v)?,
            None => ["outline_color", "outline_width"]
                .iter()
                .any(|f| field(f).is_some()),
        };
        if on {
            let mut o = Outline::default();
            if let Some(v) = field("outline_color") {
                o.color = parse_color(v).ok_or_else(|| {
                    bad(
                        "outline_color",
                        format_args!("expected #rrggbb, #rrggbbaa or a colour name, got {v:?}"),
                    )
                })?;
            }
            if let Some(v) = field("outline_width") {
                o.width = percent(v)
                    .filter(|w| (0.1..=20.0).contains(w))
                    .ok_or_else(|| {
                        bad(
                            "outline_width",
                            format_args!("expected 0.1% to 20% of the subject, got {v:?}"),
                        )
                    })?;
            }
            fx.outline = Some(o);
        }
        if let Some(v) = field("bg_color") {
            fx.bg_color = Some(parse_color(v).ok_or_else(|| {
                bad(
                    "bg_color",
                    format_args!("expected #rrggbb, #rrggbbaa or a colour name, got {v:?}"),
                )
            })?);
        }
        if let Some(v) = field("channels") {
            fx.channels = match v.to_ascii_lowercase().as_str() {
                "rgba" => Channels::Rgba,
                "alpha" => Channels::Alpha,
                _ => {
                    return Err(bad(
                        "channels",
                        format_args!("expected rgba or alpha, got {v:?}"),
                    ));
                }
            };
        }
        Ok(fx)
    }

    /// Whether the picture's geometry or content changes (the DPI alone does not).
    pub fn changes_picture(&self) -> bool {
        let plain = Effects {
            dpi: self.dpi,
            ..Effects::default()
        };
        *self != plain
    }

    /// The resolution to write into the file: the one asked for, or 300 for a print size.
    pub fn file_dpi(&self) -> Option<u16> {
        self.dpi.or(match self.size {
            Some(Size::Print { .. }) => Some(DEFAULT_PRINT_DPI),
            _ => None,
        })
    }

    /// The options for a result's cache key, field by field (never `Debug`); empty when
    /// nothing is asked, so results made before these options existed keep their ids.
    pub fn key(&self) -> String {
        if *self == Effects::default() {
            return String::new();
        }
        let mut k = String::from("fx");
        if self.crop {
            k.push_str("|crop");
            for l in self.crop_margin {
                k.push(' ');
                l.write(&mut k);
            }
        }
        let w = &mut k;
        let mut put = |s: std::fmt::Arguments<'_>| w.write_fmt(s).expect("writing to a String");
        match self.size {
            Some(Size::Pixels(x, y)) => put(format_args!("|size {x}x{y}")),
            Some(Size::Print {
                width_mm,
                height_mm,
            }) => put(format_args!("|size {width_mm}x{height_mm}mm")),
            None => {}
        }
        if let Some(d) = self.dpi {
            put(format_args!("|dpi {d}"));
        }
        if let Some(s) = self.scale {
            put(format_args!("|scale {s}"));
        }
        match self.position {
            Some(Position::Original) => put(format_args!("|position original")),
            Some(Position::At(x, y)) => put(format_args!("|position {x} {y}")),
            None => {}
        }
        if let Some(s) = self.shadow {
            put(format_args!(
                "|shadow {} {} {} {}",
                s.opacity, s.blur, s.offset.0, s.offset.1
            ));
        }
        if let Some(o) = self.outline {
            let [r, g, b, a] = o.color;
            put(format_args!("|outline {r},{g},{b},{a} {}", o.width));
        }
        if let Some([r, g, b, a]) = self.bg_color {
            put(format_args!("|bg {r},{g},{b},{a}"));
        }
        if self.channels == Channels::Alpha {
            put(format_args!("|alpha"));
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Effects, Refusal> {
        Effects::from_fields(|n| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v))
    }

    #[test]
    fn parses_remove_bg_spellings() {
        let fx = parse(&[
            ("crop", "true"),
            ("crop_margin", "10px 5%"),
            ("scale", "80%"),
            ("position", "50% 100%"),
            ("bg_color", "81d4fa77"),
            ("channels", "alpha"),
        ])
        .unwrap();
        assert!(fx.crop);
        assert_eq!(
            fx.crop_margin,
            [
                Length::Px(10.0),
                Length::Percent(5.0),
                Length::Px(10.0),
                Length::Percent(5.0)
            ]
        );
        assert_eq!(fx.scale, Some(0.8));
        assert_eq!(fx.position, Some(Position::At(50.0, 100.0)));
        assert_eq!(fx.bg_color, Some([0x81, 0xd4, 0xfa, 0x77]));
        assert_eq!(fx.channels, Channels::Alpha);
        assert_eq!(parse_color("#fff"), Some([255; 4]));
        assert_eq!(parse_color("f008"), Some([255, 0, 0, 136]));
        assert_eq!(parse_color("12345"), None);
    }

    #[test]
    fn print_sizes_and_dpi() {
        let fx = parse(&[("size", "4x6in")]).unwrap();
        assert_eq!(fx.file_dpi(), Some(300));
        assert_eq!(fx.size.unwrap().pixels(300), (1200, 1800));
        assert_eq!(
            parse(&[("size", "a4")]).unwrap().size.unwrap().pixels(300),
            (2480, 3508)
        );
        assert_eq!(
            parse(&[("size", "800x600")]).unwrap().size,
            Some(Size::Pixels(800, 600))
        );
        assert_eq!(parse(&[("size", "800x600")]).unwrap().file_dpi(), None);
        assert_eq!(parse(&[("dpi", "150")]).unwrap().file_dpi(), Some(150));
        assert!(!parse(&[("dpi", "150")]).unwrap().changes_picture());
    }

    #[test]
    fn shadow_and_outline_turn_on_with_any_of_their_fields() {
        assert_eq!(
            parse(&[("shadow", "true")]).unwrap().shadow,
            Some(Shadow::default())
        );
        let fx = parse(&[("shadow_opacity", "30"), ("outline_width", "2%")]).unwrap();
        assert_eq!(fx.shadow.unwrap().opacity, 30.0);
        assert_eq!(fx.outline.unwrap().width, 2.0);
        assert_eq!(
            parse(&[("outline", "false"), ("outline_width", "2")])
                .unwrap()
                .outline,
            None
        );
    }

    #[test]
    fn refusals_name_the_field() {
        for (field, value) in [
            ("crop", "maybe"),
            ("crop_margin", "1 2 3"),
            ("crop_margin", "70%"),
            ("size", "big"),
            ("size", "0x10"),
            ("dpi", "5"),
            ("scale", "5%"),
            ("position", "left"),
            ("shadow_opacity", "150"),
            ("shadow_offset", "1 2 3"),
            ("outline_color", "#12"),
            ("outline_width", "50%"),
            ("bg_color", "nope"),
            ("channels", "rgb"),
        ] {
            let e = parse(&[(field, value)]).unwrap_err();
            assert_eq!((e.status, e.code), (400, "invalid_option"), "{field}");
            assert!(e.message.contains(&format!("`{field}`")), "{}", e.message);
        }
    }

    #[test]
    fn key_is_empty_by_default_and_differs_by_option() {
        assert_eq!(Effects::default().key(), "");
        let a = parse(&[("outline", "true")]).unwrap().key();
        let b = parse(&[("outline", "true"), ("outline_width", "4")])
            .unwrap()
            .key();
        let c = parse(&[("crop", "true")]).unwrap().key();
        assert!(!a.is_empty() && a != b && a != c && b != c);
    }
}
