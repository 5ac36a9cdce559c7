//! The multipart form reader of the upload routes: at most one file of each of the names
//! `image`, `mask` and `bg_image`, refused as soon as it crosses the size limit, and a few short text
//! fields.
//!
//! It answers [`Refusal`]s and depends on axum, `bytes`, `base64` and `shared` only: the fuzz
//! target `multipart` (`tests/fuzz/`) compiles this very file without the rest of the server.

use std::collections::HashMap;

use axum::{
    extract::{Multipart, multipart::MultipartRejection},
    http::StatusCode,
};
use bytes::{Bytes, BytesMut};

use shared::refusal::Refusal;

/// A parsed multipart form: at most one `image` file, one `mask` file, one `bg_image` file and
/// a few short text fields.
#[derive(Debug, Default)]
pub struct Form {
    pub image: Option<Bytes>,
    pub mask: Option<Bytes>,
    pub bg_image: Option<Bytes>,
    pub fields: HashMap<String, String>,
}

impl Form {
    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }
}

const MAX_FIELDS: usize = 40;

/// Where a file field of a form goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Image,
    Mask,
    BgImage,
    /// The photo as base64 text (remove.bg's `image_file_b64`), a text field.
    ImageBase64,
}

/// The file fields of this product's forms.
pub const FILES: &[(&str, Slot)] = &[
    ("image", Slot::Image),
    ("mask", Slot::Mask),
    ("bg_image", Slot::BgImage),
];

/// The file fields of remove.bg's form (`POST /v1.0/removebg`).
pub const REMOVEBG_FILES: &[(&str, Slot)] = &[
    ("image_file", Slot::Image),
    ("image_file_b64", Slot::ImageBase64),
    ("bg_image_file", Slot::BgImage),
];

/// A photo sent as base64 text (standard or URL-safe alphabet, padding and whitespace
/// optional, a `data:` URL prefix allowed), refused over `max_bytes` once decoded.
pub fn decode_base64(field: &str, text: &[u8], max_bytes: usize) -> Result<Bytes, Refusal> {
    use base64::Engine;
    let text: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let text = match text.iter().position(|&b| b == b',') {
        Some(i) if text.starts_with(b"data:") => &text[i + 1..],
        _ => &text[..],
    };
    let text: Vec<u8> = text
        .iter()
        .map(|&b| match b {
            b'-' => b'+',
            b'_' => b'/',
            b => b,
        })
        .filter(|&b| b != b'=')
        .collect();
    if text.len() / 4 * 3 > max_bytes {
        return Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE.as_u16(),
            "file_too_large",
            format!("the `{field}` image is larger than the limit of {max_bytes} bytes"),
        ));
    }
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(&text)
        .map(Bytes::from)
        .map_err(|e| Refusal::bad("invalid_base64", format!("`{field}` is not base64: {e}")))
}
const MAX_FIELD_BYTES: usize = 2048;

fn multipart_error(e: impl std::fmt::Display) -> Refusal {
    Refusal::bad(
        "invalid_multipart",
        format!("the request is not a valid multipart/form-data upload: {e}"),
    )
}

/// Reads and drops the rest of a refused upload (the route's body limit bounds it). An answer
/// sent while the client is still sending makes the server close the connection, and the client
/// sees a reset instead of the refusal (a browser: "network error", not "the file is too large").
async fn drain(multipart: &mut Multipart) {
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

/// Read a multipart form, refusing a file over `max_bytes` as soon as it crosses the limit. A
/// refused form's rest is read and dropped before the answer, up to the route's body limit.
pub async fn read_form(
    multipart: Result<Multipart, MultipartRejection>,
    max_bytes: usize,
) -> Result<Form, Refusal> {
    read_form_named(multipart, max_bytes, FILES).await
}

/// [`read_form`] with the form's own names for its files.
pub async fn read_form_named(
    multipart: Result<Multipart, MultipartRejection>,
    max_bytes: usize,
    files: &[(&str, Slot)],
) -> Result<Form, Refusal> {
    let mut multipart = multipart.map_err(|e| {
        Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE.as_u16(),
            "invalid_multipart",
            format!("expected a multipart/form-data body with an `image` field: {e}"),
        )
    })?;
    match read_fields(&mut multipart, max_bytes, files).await {
        Ok(form) => Ok(form),
        Err(refused) => {
            drain(&mut multipart).await;
            Err(refused)
        }
    }
}

async fn read_fields(
    multipart: &mut Multipart,
    max_bytes: usize,
    files: &[(&str, Slot)],
) -> Result<Form, Refusal> {
    let mut form = Form::default();
    let mut count = 0;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        count += 1;
        if count > MAX_FIELDS {
            return Err(Refusal::bad("invalid_multipart", "too many form fields"));
        }
        let name = field.name().unwrap_or_default().to_owned();
        let kind = files.iter().find(|(n, _)| *n == name).map(|f| f.1);
        let file = kind.map(|k| match k {
            Slot::Image | Slot::ImageBase64 => &mut form.image,
            Slot::Mask => &mut form.mask,
            Slot::BgImage => &mut form.bg_image,
        });
        if let Some(slot) = file {
            if slot.is_some() {
                return Err(Refusal::bad(
                    "invalid_multipart",
                    format!("more than one `{name}` field (or more than one image source)"),
                ));
            }
            let base64 = kind == Some(Slot::ImageBase64);
            if field.file_name().is_none() && !base64 {
                return Err(Refusal::bad(
                    "invalid_multipart",
                    format!("`{name}` must be a file, not a text field"),
                ));
            }
            let too_large = || {
                Refusal::new(
                    StatusCode::PAYLOAD_TOO_LARGE.as_u16(),
                    "file_too_large",
                    format!("the `{name}` file is larger than the limit of {max_bytes} bytes"),
                )
            };
            // Base64 is 4 bytes of text for 3 of file.
            let limit = if base64 {
                max_bytes / 3 * 4 + 1024
            } else {
                max_bytes
            };
            let mut buf = BytesMut::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    multipart_error(e)
                }
            })? {
                if buf.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                buf.extend_from_slice(&chunk);
            }
            *slot = Some(if base64 {
                decode_base64(&name, &buf, max_bytes)?
            } else {
                buf.freeze()
            });
        } else {
            let mut buf = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                if buf.len() + chunk.len() > MAX_FIELD_BYTES {
                    return Err(Refusal::bad(
                        "invalid_option",
                        format!("the field `{name}` is longer than {MAX_FIELD_BYTES} bytes"),
                    ));
                }
                buf.extend_from_slice(&chunk);
            }
            let value = String::from_utf8(buf).map_err(|_| {
                Refusal::bad(
                    "invalid_option",
                    format!("the field `{name}` is not UTF-8 text"),
                )
            })?;
            form.fields.insert(name, value);
        }
    }
    Ok(form)
}
