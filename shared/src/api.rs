//! The JSON the service and the edge Worker speak, and the share manifest they both store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable machine code, for example `unsupported_format` or `queue_full`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

/// `POST /api/v2/remove-background` with `Accept: application/json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RemoveResponse {
    /// Content hash of the input, model and options.
    pub result_id: String,
    /// Where the processed image can be fetched.
    pub image_url: String,
    /// Signed token that lets this result be shared (`POST /api/v2/share-image`).
    pub share_token: String,
    /// Unix seconds after which the token is refused.
    pub share_token_expires_at: u64,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    /// The subject's box in the picture (also the `X-Foreground-*` headers).
    pub foreground_top: u32,
    pub foreground_left: u32,
    pub foreground_width: u32,
    pub foreground_height: u32,
    /// `hit` when the answer came from the result cache without inference.
    pub cache: String,
    pub model: String,
    pub processing_ms: f64,
}

/// `POST /api/v2/share-image`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareResponse {
    /// Content hash of the shared image and its rendering.
    pub id: String,
    /// The share page (Open Graph, Twitter card and Pinterest tags).
    pub share_url: String,
    /// The watermarked image.
    pub image_url: String,
    /// 1200×630 JPEG (Facebook, X, LinkedIn).
    pub og_image_url: String,
    /// 1000×1500 JPEG (Pinterest).
    pub pinterest_image_url: String,
    /// 1080×1080 JPEG.
    pub square_image_url: String,
    /// The platform asked for.
    pub platform: String,
    /// The link that opens the asked-for platform's share dialog.
    pub intent_url: String,
    /// Intent links for every platform, by name.
    pub intents: BTreeMap<String, String>,
}

/// One stored image of a share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredImage {
    pub width: u32,
    pub height: u32,
    pub content_type: String,
    pub bytes: u64,
}

/// `shares/<id>/meta.json`, written after every image of the share, so a page that exists
/// never points at a missing image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareManifest {
    pub id: String,
    pub title: String,
    /// Description used as og:description and image alt text.
    pub alt: String,
    pub image: StoredImage,
    pub og: StoredImage,
    pub pinterest: StoredImage,
    pub square: StoredImage,
    /// Unix seconds.
    pub created_at: u64,
}

/// The object keys of a share, shared by every store.
pub mod keys {
    pub fn result(id: &str) -> String {
        format!("results/{id}")
    }
    /// The subject's box in a result (`shared::effects::Rect` as JSON), written before it.
    pub fn result_box(id: &str) -> String {
        format!("results/{id}.box")
    }
    /// A result's share-ready card subjects (`shared::render::CardSubjects`).
    pub fn card_subjects(id: &str) -> String {
        format!("results/{id}.cards")
    }
    pub fn manifest(id: &str) -> String {
        format!("shares/{id}/meta.json")
    }
    pub fn image(id: &str) -> String {
        format!("shares/{id}/image.png")
    }
    pub fn og(id: &str) -> String {
        format!("shares/{id}/og.jpg")
    }
    pub fn pinterest(id: &str) -> String {
        format!("shares/{id}/pin.jpg")
    }
    pub fn square(id: &str) -> String {
        format!("shares/{id}/square.jpg")
    }
}

/// The public file names under `/og/` and `/i/`, parsed back to (id, variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareFile {
    Og,
    Pinterest,
    Square,
    Image,
}

impl ShareFile {
    /// The variant's name, as ETags spell it.
    pub fn name(self) -> &'static str {
        match self {
            ShareFile::Og => "og",
            ShareFile::Pinterest => "pinterest",
            ShareFile::Square => "square",
            ShareFile::Image => "image",
        }
    }

    /// Parse `<id>.jpg`, `<id>-pin.jpg`, `<id>-square.jpg` (under `/og/`) or `<id>.png` (under
    /// `/i/`). Anything else, including path tricks, is `None`.
    pub fn parse(name: &str, under_og: bool) -> Option<(String, ShareFile)> {
        let (stem, file) = if under_og {
            let stem = name.strip_suffix(".jpg")?;
            if let Some(id) = stem.strip_suffix("-pin") {
                (id, ShareFile::Pinterest)
            } else if let Some(id) = stem.strip_suffix("-square") {
                (id, ShareFile::Square)
            } else {
                (stem, ShareFile::Og)
            }
        } else {
            (name.strip_suffix(".png")?, ShareFile::Image)
        };
        crate::ids::is_valid_id(stem).then(|| (stem.to_owned(), file))
    }

    pub fn key(self, id: &str) -> String {
        match self {
            ShareFile::Og => keys::og(id),
            ShareFile::Pinterest => keys::pinterest(id),
            ShareFile::Square => keys::square(id),
            ShareFile::Image => keys::image(id),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ShareFile::Image => "image/png",
            _ => "image/jpeg",
        }
    }
}

/// Public URLs of a share under a base URL (no trailing slash).
pub fn share_urls(base: &str, id: &str) -> [String; 5] {
    [
        format!("{base}/s/{id}"),
        format!("{base}/i/{id}.png"),
        format!("{base}/og/{id}.jpg"),
        format!("{base}/og/{id}-pin.jpg"),
        format!("{base}/og/{id}-square.jpg"),
    ]
}

/// The full share answer for a stored share.
pub fn share_response(
    base: &str,
    manifest: &ShareManifest,
    platform: crate::share::Platform,
) -> ShareResponse {
    use crate::share::{Platform, ShareTarget, intent_url};
    let [
        share_url,
        image_url,
        og_image_url,
        pinterest_image_url,
        square_image_url,
    ] = share_urls(base, &manifest.id);
    let text = manifest.title.as_str();
    let intents: BTreeMap<String, String> = Platform::ALL
        .iter()
        .map(|&p| {
            let media = if p == Platform::Pinterest {
                &pinterest_image_url
            } else {
                &og_image_url
            };
            let target = ShareTarget {
                page_url: &share_url,
                image_url: media,
                text,
            };
            (p.name().to_owned(), intent_url(p, &target))
        })
        .collect();
    ShareResponse {
        id: manifest.id.clone(),
        intent_url: intents[platform.name()].clone(),
        platform: platform.name().to_owned(),
        share_url,
        image_url,
        og_image_url,
        pinterest_image_url,
        square_image_url,
        intents,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_share_file_names() {
        assert_eq!(
            ShareFile::parse(&format!("{ID}.jpg"), true),
            Some((ID.into(), ShareFile::Og))
        );
        assert_eq!(
            ShareFile::parse(&format!("{ID}-pin.jpg"), true),
            Some((ID.into(), ShareFile::Pinterest))
        );
        assert_eq!(
            ShareFile::parse(&format!("{ID}-square.jpg"), true),
            Some((ID.into(), ShareFile::Square))
        );
        assert_eq!(
            ShareFile::parse(&format!("{ID}.png"), false),
            Some((ID.into(), ShareFile::Image))
        );
        for bad in [
            "../meta.json",
            "x.jpg",
            &format!("{ID}.png"),
            &format!("..%2F{ID}.jpg"),
        ] {
            assert_eq!(ShareFile::parse(bad, true), None, "{bad}");
        }
        assert_eq!(ShareFile::parse(&format!("{ID}.jpg"), false), None);
    }

    #[test]
    fn share_response_has_every_intent() {
        let img = StoredImage {
            width: 1,
            height: 1,
            content_type: "image/jpeg".into(),
            bytes: 1,
        };
        let m = ShareManifest {
            id: ID.into(),
            title: "Rex".into(),
            alt: "Rex".into(),
            image: img.clone(),
            og: img.clone(),
            pinterest: img.clone(),
            square: img,
            created_at: 0,
        };
        let r = share_response(
            "https://pets.example",
            &m,
            crate::share::Platform::Pinterest,
        );
        assert_eq!(r.share_url, format!("https://pets.example/s/{ID}"));
        assert_eq!(r.intents.len(), 7);
        assert!(
            r.intent_url.contains(&format!("og%2F{ID}-pin.jpg")),
            "{}",
            r.intent_url
        );
        assert!(r.intents["facebook"].starts_with("https://www.facebook.com/"));
    }
}
