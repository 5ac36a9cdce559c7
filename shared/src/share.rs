//! Share targets and the links that open them.
//!
//! Intent URLs are opened by the customer's browser (the product itself never calls them), and
//! every value placed in them is percent-encoded.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Where a customer shares. `twitter` and `x` are the same target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Platform {
    Facebook,
    X,
    Pinterest,
    Whatsapp,
    Linkedin,
    Email,
    Copy,
}

impl Platform {
    pub const ALL: [Platform; 7] = [
        Platform::Facebook,
        Platform::X,
        Platform::Pinterest,
        Platform::Whatsapp,
        Platform::Linkedin,
        Platform::Email,
        Platform::Copy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Platform::Facebook => "facebook",
            Platform::X => "x",
            Platform::Pinterest => "pinterest",
            Platform::Whatsapp => "whatsapp",
            Platform::Linkedin => "linkedin",
            Platform::Email => "email",
            Platform::Copy => "copy",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown platform name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown platform {0:?}: expected facebook, twitter, x, pinterest, whatsapp, linkedin, email or copy"
)]
pub struct UnknownPlatform(pub String);

impl FromStr for Platform {
    type Err = UnknownPlatform;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "facebook" => Platform::Facebook,
            "twitter" | "x" => Platform::X,
            "pinterest" => Platform::Pinterest,
            "whatsapp" => Platform::Whatsapp,
            "linkedin" => Platform::Linkedin,
            "email" | "mail" => Platform::Email,
            "copy" | "link" => Platform::Copy,
            _ => {
                let shown: String = s.chars().take(40).collect();
                return Err(UnknownPlatform(shown));
            }
        })
    }
}

/// Percent-encode everything outside RFC 3986's unreserved set.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What an intent link needs: the page to share, its image and a line of text.
#[derive(Debug, Clone)]
pub struct ShareTarget<'a> {
    pub page_url: &'a str,
    pub image_url: &'a str,
    pub text: &'a str,
}

/// The link that opens `platform`'s share dialog (for `copy`, the page URL itself).
pub fn intent_url(platform: Platform, t: &ShareTarget<'_>) -> String {
    let u = percent_encode(t.page_url);
    let text = percent_encode(t.text);
    match platform {
        Platform::Facebook => format!("https://www.facebook.com/sharer/sharer.php?u={u}"),
        Platform::X => format!("https://x.com/intent/post?url={u}&text={text}"),
        Platform::Pinterest => format!(
            "https://www.pinterest.com/pin/create/button/?url={u}&media={}&description={text}",
            percent_encode(t.image_url)
        ),
        Platform::Whatsapp => {
            format!(
                "https://wa.me/?text={}",
                percent_encode(&format!("{} {}", t.text, t.page_url))
            )
        }
        Platform::Linkedin => {
            format!("https://www.linkedin.com/sharing/share-offsite/?url={u}")
        }
        Platform::Email => format!(
            "mailto:?subject={text}&body={}",
            percent_encode(&format!("{}\n\n{}", t.text, t.page_url))
        ),
        Platform::Copy => t.page_url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_platforms_with_aliases() {
        assert_eq!("Twitter".parse::<Platform>().unwrap(), Platform::X);
        assert_eq!("x".parse::<Platform>().unwrap(), Platform::X);
        for p in Platform::ALL {
            assert_eq!(p.name().parse::<Platform>().unwrap(), p);
        }
        let err = "myspace".parse::<Platform>().unwrap_err();
        assert!(err.to_string().contains("myspace"));
    }

    #[test]
    fn intents_encode_their_values() {
        let t = ShareTarget {
            page_url: "https://pets.example/s/abc?x=1&y=2",
            image_url: "https://pets.example/og/abc.jpg",
            text: "Rex & me #1",
        };
        let fb = intent_url(Platform::Facebook, &t);
        assert_eq!(
            fb,
            "https://www.facebook.com/sharer/sharer.php?u=https%3A%2F%2Fpets.example%2Fs%2Fabc%3Fx%3D1%26y%3D2"
        );
        let x = intent_url(Platform::X, &t);
        assert!(x.ends_with("&text=Rex%20%26%20me%20%231"), "{x}");
        let pin = intent_url(Platform::Pinterest, &t);
        assert!(
            pin.contains("media=https%3A%2F%2Fpets.example%2Fog%2Fabc.jpg"),
            "{pin}"
        );
        assert!(intent_url(Platform::Email, &t).starts_with("mailto:?subject=Rex"));
        assert_eq!(intent_url(Platform::Copy, &t), t.page_url);
        assert!(intent_url(Platform::Whatsapp, &t).starts_with("https://wa.me/?text=Rex"));
    }
}
