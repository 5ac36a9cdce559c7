//! The settings both shells read, once: each one's environment variable and default.
//!
//! gpu-server reads them as flags and env vars (clap takes the names and defaults from here),
//! the Worker from its vars (`wrangler.toml`), and a test checks that the README's tables say
//! the same. Settings only gpu-server has (queue, batching, storage, model) are its clap
//! arguments, declared once there.

use std::str::FromStr;

/// One setting: its variable, its default (as the variable would hold it) and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub env: &'static str,
    /// Empty: unset.
    pub default: &'static str,
    pub about: &'static str,
}

impl Setting {
    /// The value from a lookup of variables, trimmed; the default when missing or blank.
    pub fn read(&self, var: impl Fn(&str) -> Option<String>) -> String {
        var(self.env)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| self.default.to_owned())
    }

    /// [`read`](Self::read), parsed; an error names the variable and the value.
    pub fn parse<T: FromStr>(&self, var: impl Fn(&str) -> Option<String>) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.read(var);
        v.parse()
            .map_err(|e| format!("{}: `{v}` is not valid: {e}", self.env))
    }

    /// The default, parsed (the table's defaults are valid; a test parses each).
    pub fn default_as<T: FromStr>(&self) -> T
    where
        T::Err: std::fmt::Debug,
    {
        self.default
            .parse()
            .expect("the settings table's defaults parse")
    }
}

pub const SITE_NAME: Setting = Setting {
    env: "SITE_NAME",
    default: "Pet Cutout",
    about: "name shown on share pages",
};
pub const SHOP_URL: Setting = Setting {
    env: "SHOP_URL",
    default: "/",
    about: "where the share page's \"make your own\" link points",
};
pub const PUBLIC_BASE_URL: Setting = Setting {
    env: "PUBLIC_BASE_URL",
    default: "",
    about: "absolute base of share links and og: tags; unset: the request's own origin",
};
pub const CORS_ALLOWED_ORIGINS: Setting = Setting {
    env: "CORS_ALLOWED_ORIGINS",
    default: "",
    about: "origins allowed to call the API from a browser, comma-separated, or `*`",
};
pub const MAX_UPLOAD_BYTES: Setting = Setting {
    env: "MAX_UPLOAD_BYTES",
    default: "25000000",
    about: "largest upload in bytes",
};
pub const MAX_PIXELS: Setting = Setting {
    env: "MAX_PIXELS",
    default: "50000000",
    about: "largest upload in pixels, read from the header before decoding",
};
pub const SHARE_TOKEN_SECRET: Setting = Setting {
    env: "SHARE_TOKEN_SECRET",
    default: "",
    about: "HMAC secret of share tokens, at least 16 characters, the same on both shells",
};
pub const WATERMARK_TEXT: Setting = Setting {
    env: "WATERMARK_TEXT",
    default: "",
    about: "a line of text under the watermark logo",
};
pub const WATERMARK_GRAVITY: Setting = Setting {
    env: "WATERMARK_GRAVITY",
    default: "se",
    about: "watermark position: nw, n, ne, w, center, e, sw, s, se or tile",
};
pub const WATERMARK_OFFSET: Setting = Setting {
    env: "WATERMARK_OFFSET",
    default: "0.03",
    about: "distance from the edges: pixels, or a fraction of the shorter side",
};
pub const WATERMARK_OPACITY: Setting = Setting {
    env: "WATERMARK_OPACITY",
    default: "0.85",
    about: "watermark opacity, 0..1",
};
pub const WATERMARK_SCALE: Setting = Setting {
    env: "WATERMARK_SCALE",
    default: "0.14",
    about: "logo width relative to the shorter side",
};
pub const SHARE_BACKGROUND: Setting = Setting {
    env: "SHARE_BACKGROUND",
    default: "gradient:#faf6f0|#e2e8f0",
    about: "behind transparent cut-outs: blur, white, #rrggbb or gradient:#top|#bottom",
};

pub const SHARE_STYLE: Setting = Setting {
    env: "SHARE_STYLE",
    default: "plain",
    about: "share cards of transparent cut-outs: plain, or sticker (cropped, a white die-cut border and a soft shadow)",
};

/// Every setting both shells read.
pub const BOTH: &[Setting] = &[
    SITE_NAME,
    SHOP_URL,
    PUBLIC_BASE_URL,
    CORS_ALLOWED_ORIGINS,
    MAX_UPLOAD_BYTES,
    MAX_PIXELS,
    SHARE_TOKEN_SECRET,
    WATERMARK_TEXT,
    WATERMARK_GRAVITY,
    WATERMARK_OFFSET,
    WATERMARK_OPACITY,
    WATERMARK_SCALE,
    SHARE_BACKGROUND,
    SHARE_STYLE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_names_are_unique() {
        let _: usize = MAX_UPLOAD_BYTES.default_as();
        let _: u64 = MAX_PIXELS.default_as();
        let _: f32 = WATERMARK_OPACITY.default_as();
        let _: f32 = WATERMARK_SCALE.default_as();
        let mut names: Vec<_> = BOTH.iter().map(|s| s.env).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BOTH.len());
    }

    #[test]
    fn reads_trim_and_fall_back_to_the_default() {
        let var = |k: &str| match k {
            "SITE_NAME" => Some("  Paws  ".to_owned()),
            "SHOP_URL" => Some("   ".to_owned()),
            "MAX_PIXELS" => Some("lots".to_owned()),
            _ => None,
        };
        assert_eq!(SITE_NAME.read(var), "Paws");
        assert_eq!(SHOP_URL.read(var), "/");
        assert_eq!(MAX_UPLOAD_BYTES.parse::<usize>(var).unwrap(), 25_000_000);
        let e = MAX_PIXELS.parse::<u64>(var).unwrap_err();
        assert!(e.contains("MAX_PIXELS") && e.contains("lots"), "{e}");
    }
}
