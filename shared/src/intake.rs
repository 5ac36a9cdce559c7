//! Image intake: recognise, bound, decode and orient an uploaded photo.
//!
//! Order matters for safety: the format is recognised from the magic bytes (never from a file
//! name or a client's content type), the byte size and the header's pixel dimensions are checked
//! before any pixel is decoded, and the decoder runs under an allocation limit so that a
//! decompression bomb fails cleanly instead of exhausting memory.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, metadata::Orientation};

/// Formats the product accepts as uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
    WebP,
}

impl ImageFormat {
    /// The format's usual name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "JPEG",
            ImageFormat::Png => "PNG",
            ImageFormat::WebP => "WebP",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
            ImageFormat::WebP => "image/webp",
        }
    }

    fn to_image(self) -> image::ImageFormat {
        match self {
            ImageFormat::Jpeg => image::ImageFormat::Jpeg,
            ImageFormat::Png => image::ImageFormat::Png,
            ImageFormat::WebP => image::ImageFormat::WebP,
        }
    }
}

/// Limits applied to every upload before and during decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted encoded size in bytes.
    pub max_bytes: usize,
    /// Largest accepted width × height, read from the header before decoding.
    pub max_pixels: u64,
    /// Smallest accepted width and height: a few pixels cannot hold a pet.
    pub min_side: u32,
}

impl Default for Limits {
    /// 25 MB and 50 megapixels: a 48 MP phone photo passes, a 20000×20000 header does not.
    fn default() -> Self {
        Limits {
            max_bytes: crate::settings::MAX_UPLOAD_BYTES.default_as(),
            max_pixels: crate::settings::MAX_PIXELS.default_as(),
            min_side: 16,
        }
    }
}

/// Why an upload was refused. Each variant has a stable machine code (see [`IntakeError::code`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IntakeError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("the file is not a JPEG, PNG or WebP image")]
    UnsupportedFormat,
    #[error("the image is {width}×{height} pixels; the limit is {limit} pixels")]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    #[error("the image has no pixels ({width}×{height})")]
    ZeroSize { width: u32, height: u32 },
    #[error("the image is {width}×{height} pixels; both sides must be at least {min} pixels")]
    TooSmall { width: u32, height: u32, min: u32 },
    #[error("the image could not be decoded: {0}")]
    Corrupt(String),
}

impl IntakeError {
    /// Stable machine-readable code, used in API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            IntakeError::Empty => "empty_file",
            IntakeError::TooLarge { .. } => "file_too_large",
            IntakeError::UnsupportedFormat => "unsupported_format",
            IntakeError::TooManyPixels { .. } => "image_too_large",
            IntakeError::ZeroSize { .. } => "invalid_image",
            IntakeError::TooSmall { .. } => "image_too_small",
            IntakeError::Corrupt(_) => "invalid_image",
        }
    }

    /// The HTTP status both shells answer: 413 too big, 415 not an image, 422 unreadable.
    pub fn http_status(&self) -> u16 {
        match self {
            IntakeError::TooLarge { .. } | IntakeError::TooManyPixels { .. } => 413,
            IntakeError::UnsupportedFormat => 415,
            _ => 422,
        }
    }
}

/// Recognise the format from the leading magic bytes.
pub fn sniff(bytes: &[u8]) -> Result<ImageFormat, IntakeError> {
    if bytes.is_empty() {
        return Err(IntakeError::Empty);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Ok(ImageFormat::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Ok(ImageFormat::Png)
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Ok(ImageFormat::WebP)
    } else {
        Err(IntakeError::UnsupportedFormat)
    }
}

/// A decoded, upright image and what it was.
#[derive(Debug)]
pub struct Decoded {
    pub image: DynamicImage,
    pub format: ImageFormat,
}

impl Decoded {
    /// The picture as 8-bit RGB (alpha dropped, as the models' reference preprocessing does),
    /// borrowed when the decoder already produced that layout (most JPEGs).
    pub fn rgb8(&self) -> std::borrow::Cow<'_, image::RgbImage> {
        match self.image.as_rgb8() {
            Some(rgb) => std::borrow::Cow::Borrowed(rgb),
            None => std::borrow::Cow::Owned(self.image.to_rgb8()),
        }
    }
}

/// What an upload's header says, checked against the limits, without decoding any pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

/// Whether a JPEG stops before its end-of-image marker. The decoder would fill the missing
/// rows with grey; an upload cut short is better refused. Markers cannot occur inside
/// entropy-coded data (0xFF is stuffed), so the last start-of-scan must have an EOI after it.
fn jpeg_truncated(bytes: &[u8]) -> bool {
    let last = |marker: u8| {
        bytes
            .windows(2)
            .rposition(|w| w[0] == 0xFF && w[1] == marker)
    };
    match (last(0xDA), last(0xD9)) {
        (Some(sos), Some(eoi)) => eoi < sos,
        (Some(_), None) => true,
        _ => false,
    }
}

/// The frame headers (SOF segments' payloads) of a JPEG, found by walking its segments, whose
/// payloads are skipped (an EXIF thumbnail is a JPEG of its own), and its scans' entropy-coded
/// data, in which a marker is any 0xFF not followed by 0x00 (stuffing) or a restart code.
fn jpeg_frames(bytes: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    let mut i = 2;
    while i + 1 < bytes.len() {
        if bytes[i] != 0xFF {
            i += 1;
            continue;
        }
        let marker = bytes[i + 1];
        match marker {
            0xFF => {
                i += 1;
                continue;
            }
            0x00 | 0x01 | 0xD0..=0xD8 => {
                i += 2;
                continue;
            }
            0xD9 => break,
            _ => {}
        }
        let Some(len) = bytes
            .get(i + 2..i + 4)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            break;
        };
        let end = (i + 2 + len).min(bytes.len());
        if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
            frames.push(bytes.get(i + 4..end).unwrap_or_default());
        }
        i += 2 + len.max(2);
    }
    frames
}

/// JPEG structures the decoder mishandles, refused before it runs. Found by fuzzing
/// (`tests/fuzz/regressions/intake_jpeg/`): zune-jpeg 0.5.15 indexes past its buffers (a
/// panic) when a colour component is sampled more finely than the first, and a file may carry
/// several frame headers for one image. No camera or encoder writes either.
fn jpeg_unsupported(bytes: &[u8]) -> Option<&'static str> {
    let frames = jpeg_frames(bytes);
    if frames.len() > 1 {
        return Some("the JPEG file has more than one frame header");
    }
    let frame = frames.first()?;
    let count = usize::from(*frame.get(5)?);
    let factors: Vec<(u8, u8)> = (0..count)
        .filter_map(|k| frame.get(7 + 3 * k).map(|hv| (hv >> 4, hv & 15)))
        .collect();
    let (h0, v0) = *factors.first()?;
    factors
        .iter()
        .any(|&(h, v)| h > h0 || v > v0)
        .then_some("the JPEG's colour components are sampled more finely than its luminance")
}

/// Runs a decoder step; a decoder that panics on a malformed file (a bug of the decoder) is
/// that file refused, not the request failed. Where panics abort (wasm32), the checks made
/// before decoding ([`jpeg_unsupported`]) are what keeps known cases out.
fn guarded<T>(step: impl FnOnce() -> Result<T, IntakeError>) -> Result<T, IntakeError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).unwrap_or_else(|_| {
        Err(IntakeError::Corrupt(
            "the image decoder failed on this file".into(),
        ))
    })
}

type Reader<'a> = ImageReader<Cursor<&'a [u8]>>;

fn reader<'a>(bytes: &'a [u8], limits: &Limits) -> Result<(ImageFormat, Reader<'a>), IntakeError> {
    let format = sniff(bytes)?;
    if bytes.len() > limits.max_bytes {
        return Err(IntakeError::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    if format == ImageFormat::Jpeg && jpeg_truncated(bytes) {
        return Err(IntakeError::Corrupt(
            "the JPEG file is incomplete (cut short during upload?)".into(),
        ));
    }
    if format == ImageFormat::Jpeg
        && let Some(why) = jpeg_unsupported(bytes)
    {
        return Err(IntakeError::Corrupt(why.into()));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.to_image());
    let mut decode_limits = image::Limits::default();
    // The largest legitimate buffer is max_pixels of RGBA 16-bit (8 bytes a pixel), plus room
    // for the decoder's own working memory.
    decode_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8) + (64 << 20));
    reader.limits(decode_limits);
    Ok((format, reader))
}

fn corrupt(limits: &Limits) -> impl Fn(image::ImageError) -> IntakeError + '_ {
    |e| match e {
        image::ImageError::Limits(_) => IntakeError::TooManyPixels {
            width: 0,
            height: 0,
            limit: limits.max_pixels,
        },
        other => IntakeError::Corrupt(other.to_string()),
    }
}

fn check_size(width: u32, height: u32, limits: &Limits) -> Result<(), IntakeError> {
    if width == 0 || height == 0 {
        return Err(IntakeError::ZeroSize { width, height });
    }
    if width < limits.min_side || height < limits.min_side {
        return Err(IntakeError::TooSmall {
            width,
            height,
            min: limits.min_side,
        });
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(IntakeError::TooManyPixels {
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    Ok(())
}

/// Sniff and check byte and pixel limits from the header alone (cheap: no pixel is decoded).
pub fn inspect(bytes: &[u8], limits: &Limits) -> Result<Header, IntakeError> {
    guarded(|| inspect_unguarded(bytes, limits))
}

fn inspect_unguarded(bytes: &[u8], limits: &Limits) -> Result<Header, IntakeError> {
    let (format, reader) = reader(bytes, limits)?;
    let decoder = reader.into_decoder().map_err(corrupt(limits))?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, limits)?;
    Ok(Header {
        format,
        width,
        height,
    })
}

/// Sniff, check limits, decode and apply the EXIF orientation.
///
/// Every colour type the decoders produce (grey, grey+alpha, RGB, RGBA, 16-bit, CMYK JPEGs,
/// which the JPEG decoder converts to RGB) comes back as a [`DynamicImage`]; callers convert to
/// the 8-bit layout they need.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded, IntakeError> {
    guarded(|| decode_unguarded(bytes, limits))
}

fn decode_unguarded(bytes: &[u8], limits: &Limits) -> Result<Decoded, IntakeError> {
    let (format, reader) = reader(bytes, limits)?;
    let mut decoder = reader.into_decoder().map_err(corrupt(limits))?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, limits)?;
    // A malformed EXIF block is not worth refusing a photo for: treat it as upright.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(corrupt(limits))?;
    image.apply_orientation(orientation);
    Ok(Decoded { image, format })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, Rgb, RgbImage};

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_pixel(width, height, Rgb([10, 20, 30]));
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(img.as_raw(), width, height, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    #[test]
    fn sniffs_by_magic_not_by_name() {
        assert_eq!(sniff(&png(2, 2)).unwrap(), ImageFormat::Png);
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]).unwrap(),
            ImageFormat::Jpeg
        );
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ").unwrap(), ImageFormat::WebP);
        assert_eq!(
            sniff(b"GIF89a....").unwrap_err(),
            IntakeError::UnsupportedFormat
        );
        assert_eq!(sniff(b"").unwrap_err(), IntakeError::Empty);
        assert_eq!(
            sniff(b"RIFF\0\0\0\0WAVE").unwrap_err().code(),
            "unsupported_format"
        );
    }

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| {
            Rgb([(x * 9) as u8, (y * 7) as u8, 90])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut out)
            .write_image(img.as_raw(), width, height, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    #[test]
    fn refuses_the_jpeg_structures_the_decoder_mishandles() {
        let good = jpeg(32, 24);
        assert!(decode(&good, &Limits::default()).is_ok());
        // A thumbnail inside an APP1 segment is a JPEG of its own, frame header included.
        let mut with_thumbnail = good[..2].to_vec();
        let payload = [b"Exif\0\0".as_slice(), &jpeg(16, 16)].concat();
        with_thumbnail.extend_from_slice(&[0xFF, 0xE1]);
        with_thumbnail.extend_from_slice(&(payload.len() as u16 + 2).to_be_bytes());
        with_thumbnail.extend_from_slice(&payload);
        with_thumbnail.extend_from_slice(&good[2..]);
        assert_eq!(jpeg_frames(&with_thumbnail).len(), 1);
        assert!(decode(&with_thumbnail, &Limits::default()).is_ok());

        // The last component sampled 4× horizontally (the fuzzer's find: a decoder panic).
        let sof = good.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        let mut finer = good.clone();
        finer[sof + 4 + 6 + 3 * 2 + 1] = 0x41;
        let e = decode(&finer, &Limits::default()).unwrap_err();
        assert_eq!((e.code(), e.http_status()), ("invalid_image", 422), "{e}");
        assert!(e.to_string().contains("sampled more finely"), "{e}");

        // Two frame headers.
        let frame_len = usize::from(u16::from_be_bytes([good[sof + 2], good[sof + 3]]));
        let frame = good[sof..sof + 2 + frame_len].to_vec();
        let twice = [&good[..sof], &frame, &good[sof..]].concat();
        let e = decode(&twice, &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("more than one frame header"), "{e}");
    }

    #[test]
    fn a_decoder_panic_is_a_refusal() {
        let e = guarded::<()>(|| panic!("a decoder bug")).unwrap_err();
        assert_eq!((e.code(), e.http_status()), ("invalid_image", 422));
    }

    #[test]
    fn checks_bytes_before_decoding() {
        let data = png(4, 4);
        let limits = Limits {
            max_bytes: data.len() - 1,
            ..Limits::default()
        };
        assert!(matches!(
            decode(&data, &limits).unwrap_err(),
            IntakeError::TooLarge { .. }
        ));
    }

    #[test]
    fn checks_pixels_from_the_header() {
        let data = png(300, 200);
        let limits = Limits {
            max_pixels: 300 * 200 - 1,
            ..Limits::default()
        };
        let err = decode(&data, &limits).unwrap_err();
        assert_eq!(
            err,
            IntakeError::TooManyPixels {
                width: 300,
                height: 200,
                limit: 59_999
            }
        );
        assert_eq!(err.code(), "image_too_large");
        assert_eq!(
            decode(&data, &Limits::default()).unwrap().image.width(),
            300
        );
    }

    #[test]
    fn truncated_jpeg_is_refused() {
        let img = RgbImage::from_fn(64, 64, |x, y| Rgb([x as u8 * 4, y as u8 * 4, 0]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
            .encode_image(&img)
            .unwrap();
        assert!(decode(&jpeg, &Limits::default()).is_ok());
        let err = decode(&jpeg[..jpeg.len() - 40], &Limits::default()).unwrap_err();
        assert_eq!(err.code(), "invalid_image");
        assert!(err.to_string().contains("incomplete"), "{err}");
    }

    #[test]
    fn tiny_images_are_refused_from_the_header() {
        let err = inspect(&png(1, 1), &Limits::default()).unwrap_err();
        assert_eq!(err.code(), "image_too_small");
        let h = inspect(&png(16, 40), &Limits::default()).unwrap();
        assert_eq!((h.format, h.width, h.height), (ImageFormat::Png, 16, 40));
    }

    #[test]
    fn truncated_file_is_corrupt_not_a_panic() {
        let data = png(64, 64);
        let err = decode(&data[..data.len() / 2], &Limits::default()).unwrap_err();
        assert_eq!(err.code(), "invalid_image");
    }
}
