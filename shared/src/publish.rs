//! The share flow's rules, once for both shells (gpu-server's `POST /api/v2/share-image` and the
//! edge Worker's): form fields, the share id, the manifest, and the objects to store, in the
//! order that keeps a page from ever pointing at a missing image.

use crate::{
    api::{ShareManifest, keys},
    ids::content_id,
    render::Rendered,
    share::Platform,
};

/// Longest accepted title, in characters.
pub const MAX_TITLE_CHARS: usize = 140;

/// A refused request: HTTP status, stable code, a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }
}

/// The text fields of a share form, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareFields {
    pub platform: Platform,
    /// Trimmed; empty when none was given.
    pub title: String,
}

/// Check `platform` (required) and `title` (optional, at most [`MAX_TITLE_CHARS`]).
pub fn share_fields(platform: Option<&str>, title: Option<&str>) -> Result<ShareFields, Refusal> {
    let platform = platform
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Refusal::new(400, "missing_platform", "the form has no `platform` field"))?
        .parse()
        .map_err(|e: crate::share::UnknownPlatform| {
            Refusal::new(400, "invalid_platform", e.to_string())
        })?;
    let title = title.unwrap_or("").trim().to_owned();
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(Refusal::new(
            400,
            "invalid_title",
            format!("the title is longer than {MAX_TITLE_CHARS} characters"),
        ));
    }
    Ok(ShareFields { platform, title })
}

/// The share's id: the source picture's bytes, the title and everything that changes the
/// rendering. Same inputs, same id, same stored bytes, on either shell.
pub fn share_id(source: &[u8], title: &str, render_fingerprint: &str) -> String {
    content_id(&[source, title.as_bytes(), render_fingerprint.as_bytes()])
}

/// The manifest of a freshly rendered share.
pub fn manifest(
    id: &str,
    title: &str,
    site_name: &str,
    rendered: &Rendered,
    created_at: u64,
) -> ShareManifest {
    ShareManifest {
        id: id.to_owned(),
        title: if title.is_empty() {
            site_name.to_owned()
        } else {
            title.to_owned()
        },
        alt: if title.is_empty() {
            "A pet photo with its background removed".to_owned()
        } else {
            title.to_owned()
        },
        image: rendered.image.stored(),
        og: rendered.og.stored(),
        pinterest: rendered.pinterest.stored(),
        square: rendered.square.stored(),
        created_at,
    }
}

/// One object to store.
#[derive(Debug, Clone)]
pub struct Object {
    pub key: String,
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

/// What a share stores: its images (in any order, or at once), then the manifest, last, only
/// after every image is stored: pages and answers are made from an existing manifest only.
#[derive(Debug, Clone)]
pub struct ShareObjects {
    pub images: [Object; 4],
    pub manifest: Object,
}

/// The objects of a rendered share and its manifest.
pub fn objects(rendered: Rendered, manifest: &ShareManifest) -> ShareObjects {
    let id = &manifest.id;
    let obj = |key: String, e: crate::render::Encoded| Object {
        key,
        bytes: e.bytes,
        content_type: e.content_type,
    };
    ShareObjects {
        images: [
            obj(keys::image(id), rendered.image),
            obj(keys::og(id), rendered.og),
            obj(keys::pinterest(id), rendered.pinterest),
            obj(keys::square(id), rendered.square),
        ],
        manifest: Object {
            key: keys::manifest(id),
            bytes: serde_json::to_vec(manifest).expect("a manifest always serialises"),
            content_type: "application/json",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_checked_with_stable_codes() {
        let ok = share_fields(Some(" x "), Some("  Rex  ")).unwrap();
        assert_eq!(ok.platform, Platform::X);
        assert_eq!(ok.title, "Rex");
        assert_eq!(
            share_fields(None, None).unwrap_err().code,
            "missing_platform"
        );
        assert_eq!(
            share_fields(Some(" "), None).unwrap_err().code,
            "missing_platform"
        );
        let e = share_fields(Some("myspace"), None).unwrap_err();
        assert_eq!((e.status, e.code), (400, "invalid_platform"));
        let long = "é".repeat(MAX_TITLE_CHARS + 1);
        assert_eq!(
            share_fields(Some("facebook"), Some(&long))
                .unwrap_err()
                .code,
            "invalid_title"
        );
        let exact = "é".repeat(MAX_TITLE_CHARS);
        assert!(share_fields(Some("facebook"), Some(&exact)).is_ok());
    }

    #[test]
    fn ids_change_with_every_input() {
        let a = share_id(b"png", "Rex", "render/v1");
        assert_eq!(a, share_id(b"png", "Rex", "render/v1"));
        assert_ne!(a, share_id(b"png!", "Rex", "render/v1"));
        assert_ne!(a, share_id(b"png", "Max", "render/v1"));
        assert_ne!(a, share_id(b"png", "Rex", "render/v2"));
        assert!(crate::ids::is_valid_id(&a));
    }

    #[test]
    fn manifest_last_and_keys_under_the_share() {
        let src = image::DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            40,
            30,
            image::Rgba([10, 200, 30, 255]),
        ));
        let rendered = crate::render::render_share(&src, &Default::default()).unwrap();
        let m = manifest(&"a".repeat(32), "", "Pet Shop", &rendered, 7);
        assert_eq!(m.title, "Pet Shop");
        assert_eq!(m.og.width, 1200);
        let objs = objects(rendered, &m);
        for o in &objs.images {
            assert!(o.key.starts_with(&format!("shares/{}/", m.id)), "{}", o.key);
            assert!(!o.bytes.is_empty());
        }
        assert_eq!(objs.manifest.key, keys::manifest(&m.id));
        let back: ShareManifest = serde_json::from_slice(&objs.manifest.bytes).unwrap();
        assert_eq!(back, m);
    }
}
