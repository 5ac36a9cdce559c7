//! The page's preview of a result: a lossy WebP with its alpha kept exactly, several times
//! smaller than the PNG the customer downloads (which stays the stored result, untouched).
//!
//! libwebp through its `-sys` bindings: no pure-Rust encoder writes lossy WebP (the `image`
//! crate's is lossless only), and libwebp is the reference encoder browsers' WebP comes from.
//! The unsafe code is the few calls of its simple encoding API; everything it allocates is
//! freed by [`Picture`]'s drop, and its output is copied into a `Vec` by [`append`].

use std::ffi::c_int;

use libwebp_sys as webp;

/// Colour quality (libwebp's 0–100 scale; `cwebp`'s default is 75). 90 keeps fur and noise
/// detail a customer zooming the preview would miss at 75.
pub const QUALITY: f32 = 90.0;

/// WebP's largest side.
pub const MAX_SIDE: u32 = 16383;

/// The preview's longest side: the page's 736 px column at 2× for a portrait photo. A 12 MP
/// cut-out takes libwebp 1.4–1.8 s at full size (1.78 MB, AMD EPYC) and about a quarter of that
/// at this size (0.45 MB); the customer's download is the full-size PNG.
pub const PREVIEW_SIDE: u32 = 2048;

/// The page's preview of a result: `picture` scaled (Lanczos3, alpha premultiplied) to at most
/// [`PREVIEW_SIDE`] a side, as lossy WebP.
pub fn preview(picture: &image::RgbaImage) -> Result<Vec<u8>, String> {
    let (w, h) = picture.dimensions();
    let long = w.max(h);
    if long <= PREVIEW_SIDE {
        return webp_rgba(picture.as_raw(), w, h);
    }
    let scale = f64::from(PREVIEW_SIDE) / f64::from(long);
    let side = |n: u32| ((f64::from(n) * scale).round() as u32).clamp(1, PREVIEW_SIDE);
    // fast_image_resize (SIMD, alpha premultiplied for the filter) rather than the Pillow-exact
    // resize the model's input needs: a preview needs no bit-exactness, and at 12 MP this took
    // the preview from 590–730 to 500–590 ms (AMD EPYC; the rest is libwebp's encoding).
    let mut small = image::RgbaImage::new(side(w), side(h));
    let opts = fast_image_resize::ResizeOptions::new().resize_alg(
        fast_image_resize::ResizeAlg::Convolution(fast_image_resize::FilterType::Lanczos3),
    );
    fast_image_resize::Resizer::new()
        .resize(picture, &mut small, &opts)
        .map_err(|e| format!("scaling the preview: {e}"))?;
    webp_rgba(small.as_raw(), small.width(), small.height())
}

/// Frees the picture's planes however the encoding ends.
struct Picture(webp::WebPPicture);

impl Drop for Picture {
    fn drop(&mut self) {
        // SAFETY: the picture was initialised by `WebPPicture::new`; freeing an initialised
        // picture whose planes were never allocated is allowed.
        unsafe { webp::WebPPictureFree(&mut self.0) };
    }
}

/// libwebp's writer callback: appends each piece of output to the `Vec<u8>` behind the
/// picture's `custom_ptr`.
unsafe extern "C" fn append(
    data: *const u8,
    size: usize,
    picture: *const webp::WebPPicture,
) -> c_int {
    // SAFETY: `encode` points `custom_ptr` at a live `Vec<u8>` for the duration of
    // `WebPEncode`, and libwebp hands `size` readable bytes at `data`.
    unsafe {
        let out = &mut *(*picture).custom_ptr.cast::<Vec<u8>>();
        if size > 0 {
            out.extend_from_slice(std::slice::from_raw_parts(data, size));
        }
    }
    1
}

/// `rgba` (straight alpha, `width`×`height`) as a lossy WebP at [`QUALITY`], its alpha plane
/// lossless. Errors name what libwebp refused (sizes over [`MAX_SIDE`], memory).
pub fn webp_rgba(rgba: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(format!(
            "{width}×{height} is outside WebP's 1–{MAX_SIDE} pixels a side"
        ));
    }
    let stride = width as usize * 4;
    if rgba.len() != stride * height as usize {
        return Err(format!(
            "{} bytes are not {width}×{height} RGBA",
            rgba.len()
        ));
    }
    let mut config = webp::WebPConfig::new().map_err(|()| "libwebp: config version")?;
    config.quality = QUALITY;
    // libwebp's default effort. On the 12 MP cut-out's preview (AMD EPYC) method 2 was about
    // 25% faster for 2% more bytes; "sharp YUV" conversion was slower and larger.
    config.method = 4;
    config.alpha_compression = 1;
    config.alpha_quality = 100;
    // The alpha plane on a second thread.
    config.thread_level = 1;
    // SAFETY: `config` is an initialised `WebPConfig`.
    if unsafe { webp::WebPValidateConfig(&config) } == 0 {
        return Err("libwebp: invalid config".into());
    }
    let mut picture = Picture(webp::WebPPicture::new().map_err(|()| "libwebp: picture version")?);
    picture.0.width = width as c_int;
    picture.0.height = height as c_int;
    // SAFETY: `rgba` holds `height` rows of `stride` bytes (checked above); libwebp copies them
    // into planes it owns, freed by `Picture`'s drop.
    if unsafe { webp::WebPPictureImportRGBA(&mut picture.0, rgba.as_ptr(), stride as c_int) } == 0 {
        return Err(format!(
            "libwebp: cannot import the picture ({:?})",
            picture.0.error_code
        ));
    }
    let mut out: Vec<u8> = Vec::with_capacity(rgba.len() / 16);
    picture.0.writer = Some(append);
    picture.0.custom_ptr = (&mut out as *mut Vec<u8>).cast();
    // SAFETY: config and picture are initialised and valid; `custom_ptr` points at `out`,
    // which outlives the call, and `append` is the writer that expects it.
    let ok = unsafe { webp::WebPEncode(&config, &mut picture.0) };
    picture.0.custom_ptr = std::ptr::null_mut();
    if ok == 0 {
        return Err(format!("libwebp: {:?}", picture.0.error_code));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lossy_preview_keeps_alpha_and_colour_close() {
        // A soft-edged disc with sensor-like noise on a transparent ground.
        let (w, h) = (240u32, 160u32);
        let mut rgba = vec![0u8; (w * h * 4) as usize];
        for y in 0..h {
            for x in 0..w {
                let d =
                    (((x as f32 - 120.0).powi(2) + (y as f32 - 80.0).powi(2)).sqrt() - 60.0) / 6.0;
                let a = (0.5 - d).clamp(0.0, 1.0);
                let noise = (x
                    .wrapping_mul(2654435761)
                    .wrapping_add(y.wrapping_mul(40503))
                    >> 27) as u8;
                let i = ((y * w + x) * 4) as usize;
                if a > 0.0 {
                    rgba[i..i + 4].copy_from_slice(&[
                        180 + noise,
                        120,
                        60 + noise,
                        (a * 255.0).round() as u8,
                    ]);
                }
            }
        }
        let bytes = webp_rgba(&rgba, w, h).unwrap();
        assert_eq!(&bytes[..4], b"RIFF");
        assert_eq!(&bytes[8..12], b"WEBP");
        let back = image::load_from_memory(&bytes).unwrap().to_rgba8();
        assert_eq!(back.dimensions(), (w, h));
        let (mut alpha_err, mut colour_err, mut weight) = (0u64, 0f64, 0f64);
        for (p, q) in rgba.chunks(4).zip(back.as_raw().chunks(4)) {
            alpha_err = alpha_err.max(u64::from(p[3].abs_diff(q[3])));
            let a = f64::from(p[3]) / 255.0;
            colour_err += a * (0..3).map(|c| f64::from(p[c].abs_diff(q[c]))).sum::<f64>() / 3.0;
            weight += a;
        }
        assert_eq!(alpha_err, 0, "the alpha plane is lossless");
        let colour_err = colour_err / weight;
        assert!(colour_err < 6.0, "colour error {colour_err}");
        assert!(bytes.len() < rgba.len() / 8, "{} bytes", bytes.len());
    }

    #[test]
    fn sizes_webp_cannot_hold_are_refused() {
        assert!(webp_rgba(&[], 0, 10).is_err());
        assert!(
            webp_rgba(&vec![0; 16384 * 4], 16384, 1)
                .unwrap_err()
                .contains("16383")
        );
        assert!(webp_rgba(&[0; 12], 2, 2).unwrap_err().contains("RGBA"));
    }
}
