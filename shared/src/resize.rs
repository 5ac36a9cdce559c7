//! Pillow-exact resampling.
//!
//! The segmentation models' reference preprocessing (rembg, transparent-background) resizes
//! with Pillow, and U²-Netp's output moves by up to 5e-2 when its input differs by one or two
//! levels in places, so "close to Pillow" is not enough. This module reproduces Pillow's
//! `ImagingResample` for 8-bit images bit for bit: the same filter support scaling, the same
//! coefficient normalisation and rounding to 22-bit fixed point, and the same two passes
//! (horizontal over only the rows the vertical pass needs, then vertical) with an 8-bit
//! intermediate. (Derived from Pillow's `libImaging/Resample.c`, MIT-CMU licence.)

use image::{GrayImage, ImageBuffer, Pixel, RgbImage, RgbaImage};

/// The resampling filters the product uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Pillow's `LANCZOS` (Lanczos3): model preprocessing and mask upsampling (rembg).
    Lanczos3,
    /// Pillow's `BILINEAR` (triangle, widened when downscaling): InSPyReNet's static resize.
    Bilinear,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Lanczos3 => 3.0,
            Filter::Bilinear => 1.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Lanczos3 => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// For each output position: the first input index, and fixed-point weights for the window.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>, // (xmin, count)
    weights: Vec<i32>,           // out_size × ksize
}

/// Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc`, for the span `in0..in1`
/// of the input (Pillow's `box`; the whole input is `0..in_size`): output pixel `xx` is centred
/// on input position `in0 + (xx + ½)·scale`, and reads nothing outside the input.
fn coeffs_box(in_size: usize, (in0, in1): (f64, f64), out_size: usize, filter: Filter) -> Coeffs {
    let scale = (in1 - in0) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = in0 + (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // Truncation toward zero, as C's (int) cast.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(count) {
            let w = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut weights[xx * ksize..(xx + 1) * ksize];
        for (x, out) in row.iter_mut().enumerate().take(count) {
            let w = if ww != 0.0 { k[x] / ww } else { k[x] };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            *out = if w < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        bounds.push((xmin, count));
    }
    Coeffs {
        ksize,
        bounds,
        weights,
    }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Run `f(row_index, row)` over the rows of `out` (each `row_len` long), in parallel when the
/// `parallel` feature is on (native builds; the wasm Worker stays single-threaded).
fn for_each_row(out: &mut [u8], row_len: usize, f: impl Fn(usize, &mut [u8]) + Sync + Send) {
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(row_len)
            .enumerate()
            .with_min_len(8)
            .for_each(|(y, row)| f(y, row));
    }
    #[cfg(not(feature = "parallel"))]
    out.chunks_mut(row_len)
        .enumerate()
        .for_each(|(y, row)| f(y, row));
}

/// Horizontal pass over rows `y0..y0 + rows` of `src` (width `w`, `C` channels).
fn horizontal<const C: usize>(src: &[u8], w: usize, y0: usize, rows: usize, c: &Coeffs) -> Vec<u8> {
    let out_w = c.bounds.len();
    let mut out = vec![0u8; out_w * rows * C];
    for_each_row(&mut out, out_w * C, |y, dst| {
        let line = &src[(y0 + y) * w * C..(y0 + y + 1) * w * C];
        for (xx, &(xmin, count)) in c.bounds.iter().enumerate() {
            let k = &c.weights[xx * c.ksize..xx * c.ksize + count];
            let mut acc = [1i32 << (PRECISION_BITS - 1); C];
            for (i, &kw) in k.iter().enumerate() {
                let px = &line[(xmin + i) * C..(xmin + i + 1) * C];
                for ch in 0..C {
                    acc[ch] += i32::from(px[ch]) * kw;
                }
            }
            for ch in 0..C {
                dst[xx * C + ch] = clip8(acc[ch]);
            }
        }
    });
    out
}

/// Vertical pass: `src` has width `w`; bounds are relative to its first row.
fn vertical<const C: usize>(src: &[u8], w: usize, c: &Coeffs, shift: usize) -> Vec<u8> {
    let out_h = c.bounds.len();
    let stride = w * C;
    let mut out = vec![0u8; out_h * stride];
    for_each_row(&mut out, stride, |yy, dst| {
        let (ymin, count) = c.bounds[yy];
        let k = &c.weights[yy * c.ksize..yy * c.ksize + count];
        let mut acc = vec![1i32 << (PRECISION_BITS - 1); stride];
        for (i, &kw) in k.iter().enumerate() {
            let row = &src[(ymin - shift + i) * stride..(ymin - shift + i + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i32::from(p) * kw;
            }
        }
        for (o, &a) in dst.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    });
    out
}

/// Pillow's `ImagingResampleInner` for 8-bit images with `C` interleaved channels.
fn resample<const C: usize>(
    src: &[u8],
    (w, h): (usize, usize),
    (out_w, out_h): (usize, usize),
    filter: Filter,
) -> Vec<u8> {
    let whole = (0.0, 0.0, w as f64, h as f64);
    resample_box::<C>(src, (w, h), whole, (out_w, out_h), filter)
}

/// [`resample`] of the region `(x0, y0, x1, y1)` of the input (Pillow's `box`).
fn resample_box<const C: usize>(
    src: &[u8],
    (w, h): (usize, usize),
    (x0, y0, x1, y1): (f64, f64, f64, f64),
    (out_w, out_h): (usize, usize),
    filter: Filter,
) -> Vec<u8> {
    let need_h = out_w != w || x0 != 0.0 || x1 != w as f64;
    let need_v = out_h != h || y0 != 0.0 || y1 != h as f64;
    let cv = coeffs_box(h, (y0, y1), out_h, filter);
    if !need_h && !need_v {
        return src.to_vec();
    }
    if !need_h {
        return vertical::<C>(src, w, &cv, 0);
    }
    let ch = coeffs_box(w, (x0, x1), out_w, filter);
    if !need_v {
        return horizontal::<C>(src, w, 0, h, &ch);
    }
    // Only the rows the vertical pass reads are resampled horizontally.
    let first = cv.bounds[0].0;
    let (last_min, last_count) = cv.bounds[out_h - 1];
    let rows = last_min + last_count - first;
    let tmp = horizontal::<C>(src, w, first, rows, &ch);
    vertical::<C>(&tmp, out_w, &cv, first)
}

fn resize_typed<P: Pixel<Subpixel = u8>, const C: usize>(
    src: &ImageBuffer<P, Vec<u8>>,
    width: u32,
    height: u32,
    filter: Filter,
) -> ImageBuffer<P, Vec<u8>> {
    assert!(width > 0 && height > 0, "resize to an empty image");
    let (w, h) = src.dimensions();
    let raw = resample::<C>(
        src.as_raw(),
        (w as usize, h as usize),
        (width as usize, height as usize),
        filter,
    );
    ImageBuffer::from_raw(width, height, raw).expect("resampler output matches its dimensions")
}

/// Resize an RGB image as Pillow's `Image.resize` does.
pub fn rgb(src: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    resize_typed::<_, 3>(src, width, height, filter)
}

/// The region `(x0, y0, x1, y1)` of an RGB image (fractional pixels) resized to
/// `width`×`height`, as Pillow's `Image.resize(size, filter, box)` does: what resizing the
/// whole image and cutting out the region would give, without the whole image at the new size.
pub fn rgb_box(
    src: &RgbImage,
    region: (f64, f64, f64, f64),
    width: u32,
    height: u32,
    filter: Filter,
) -> RgbImage {
    assert!(width > 0 && height > 0, "resize to an empty image");
    let (w, h) = src.dimensions();
    let (x0, y0, x1, y1) = region;
    assert!(
        0.0 <= x0 && x0 < x1 && x1 <= f64::from(w) && 0.0 <= y0 && y0 < y1 && y1 <= f64::from(h),
        "resize box {region:?} outside {w}×{h}"
    );
    let raw = resample_box::<3>(
        src.as_raw(),
        (w as usize, h as usize),
        region,
        (width as usize, height as usize),
        filter,
    );
    ImageBuffer::from_raw(width, height, raw).expect("resampler output matches its dimensions")
}

/// Resize a single-channel image (a mask) as Pillow's `Image.resize` does for mode `L`.
pub fn gray(src: &GrayImage, width: u32, height: u32, filter: Filter) -> GrayImage {
    resize_typed::<_, 1>(src, width, height, filter)
}

/// Resize an RGBA image as Pillow does: premultiply (`RGBa`), resample, unpremultiply, so
/// transparent pixels do not bleed dark fringes into edges.
pub fn rgba(src: &RgbaImage, width: u32, height: u32, filter: Filter) -> RgbaImage {
    let mut pre = src.clone();
    for p in pre.pixels_mut() {
        let a = u32::from(p.0[3]);
        for c in &mut p.0[..3] {
            // Pillow's MULDIV255 with rounding.
            let t = u32::from(*c) * a + 128;
            *c = ((t + (t >> 8)) >> 8) as u8;
        }
    }
    let mut out = resize_typed::<_, 4>(&pre, width, height, filter);
    for p in out.pixels_mut() {
        let a = u32::from(p.0[3]);
        if a != 0 && a != 255 {
            for c in &mut p.0[..3] {
                *c = ((u32::from(*c) * 255 + a / 2) / a).min(255) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    #[test]
    fn constant_image_stays_constant() {
        let src = GrayImage::from_pixel(37, 23, Luma([200]));
        let out = gray(&src, 320, 320, Filter::Lanczos3);
        assert_eq!(out.dimensions(), (320, 320));
        assert!(out.pixels().all(|p| p.0[0] == 200));
        let down = gray(&src, 5, 3, Filter::Bilinear);
        assert!(down.pixels().all(|p| p.0[0] == 200));
    }

    #[test]
    fn same_size_is_identity() {
        let src = RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8 * 30, y as u8 * 30, 7]));
        assert_eq!(rgb(&src, 8, 8, Filter::Lanczos3), src);
    }

    #[test]
    fn matches_pillow_exactly() {
        // Values printed by Pillow 12.3 for the same inputs:
        //   Image.frombytes("L", (6, 1), bytes([0, 50, 100, 150, 200, 250])).resize(...)
        let src = GrayImage::from_raw(6, 1, vec![0, 50, 100, 150, 200, 250]).unwrap();
        assert_eq!(
            gray(&src, 4, 1, Filter::Lanczos3).as_raw(),
            &[13, 86, 164, 237]
        );
        assert_eq!(
            gray(&src, 9, 1, Filter::Lanczos3).as_raw(),
            &[0, 19, 60, 93, 125, 157, 190, 231, 253]
        );
        // Both passes, with clipping:
        //   Image.frombytes("L", (3, 5), bytes([...])).resize((2, 7), LANCZOS) / ((5, 2), BILINEAR)
        let src = GrayImage::from_raw(
            3,
            5,
            vec![0, 90, 255, 30, 60, 200, 255, 0, 10, 7, 140, 33, 99, 99, 250],
        )
        .unwrap();
        assert_eq!(
            gray(&src, 2, 7, Filter::Lanczos3).as_raw(),
            &[22, 204, 8, 196, 74, 103, 166, 0, 94, 32, 59, 148, 93, 205]
        );
        assert_eq!(
            gray(&src, 5, 2, Filter::Bilinear).as_raw(),
            &[71, 66, 60, 124, 167, 94, 93, 92, 99, 104]
        );
    }

    #[test]
    fn transparent_pixels_do_not_darken_edges() {
        // Left half opaque red, right half fully transparent black.
        let src = RgbaImage::from_fn(16, 4, |x, _| {
            if x < 8 {
                image::Rgba([255, 0, 0, 255])
            } else {
                image::Rgba([0, 0, 0, 0])
            }
        });
        let out = rgba(&src, 7, 2, Filter::Lanczos3);
        for p in out.pixels().filter(|p| p.0[3] > 16) {
            assert!(p.0[0] > 240, "edge pixel darkened: {:?}", p.0);
        }
    }

    #[test]
    fn a_box_gives_the_whole_resize_cut_to_it() {
        let src = RgbImage::from_fn(23, 17, |x, y| {
            image::Rgb([(x * 11 + y * 3) as u8, (x * y) as u8, (255 - x * 7) as u8])
        });
        // (scaled size, the cut inside it): up and down, a cut on one axis or both.
        for filter in [Filter::Bilinear, Filter::Lanczos3] {
            for ((sw, sh), (x0, y0, w, h)) in [
                ((92, 68), (30, 5, 20, 40)),
                ((40, 30), (0, 7, 40, 9)),
                ((23, 51), (0, 20, 23, 3)),
                ((11, 8), (3, 1, 5, 6)),
            ] {
                let whole = rgb(&src, sw, sh, filter);
                let cut = image::imageops::crop_imm(&whole, x0, y0, w, h).to_image();
                let (fx, fy) = (23.0 / f64::from(sw), 17.0 / f64::from(sh));
                let region = (
                    f64::from(x0) * fx,
                    f64::from(y0) * fy,
                    f64::from(x0 + w) * fx,
                    f64::from(y0 + h) * fy,
                );
                let boxed = rgb_box(&src, region, w, h, filter);
                // The same sums; a weight's last bit may round the other way.
                let worst = cut
                    .as_raw()
                    .iter()
                    .zip(boxed.as_raw())
                    .map(|(&a, &b)| a.abs_diff(b))
                    .max();
                assert!(
                    worst <= Some(1),
                    "{filter:?} {sw}×{sh} cut {x0},{y0} {w}×{h}: {worst:?}"
                );
            }
        }
    }
}
