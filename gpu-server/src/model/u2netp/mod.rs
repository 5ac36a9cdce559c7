//! U²-Netp: the small (1.1M parameter) U²-Net for salient object segmentation.
//!
//! Derived from `U2NETP` in <https://github.com/xuebinqin/U-2-Net> (`model/u2net.py`,
//! Apache-2.0), as exported to ONNX and shipped by rembg. The module tree mirrors upstream:
//! six encoder stages (RSU7, RSU6, RSU5, RSU4, RSU4F, RSU4F), five decoder stages, six side
//! outputs and a 1×1 fusion conv. Any input size works; rembg feeds 320×320.

mod net;
mod rebnconv;
mod rsu;
mod rsu4f;
mod weights;

pub use net::{U2Netp, U2NetpConfig};
pub use weights::{ImportError, import_onnx};

use burn::tensor::Tensor;
use image::{GrayImage, RgbImage};
use shared::resize::{self, Filter};

use super::{ModelKind, Precision, cpu, segmenter::SegmentationModel};

/// rembg's pipeline (`SimpleSession.predict` + `BaseSession.normalize`): RGB, Lanczos resize to
/// 320×320, divide by the image's maximum value, ImageNet mean/std; the fused map `d0` is
/// min-max normalised, truncated to 8 bits and Lanczos-resized back to the photo.
impl SegmentationModel for U2Netp {
    fn input_size(&self, _: u32, _: u32) -> (u32, u32) {
        let side = ModelKind::U2netp.input_size();
        (side, side)
    }

    fn preprocess(&self, photo: &RgbImage, _: (u32, u32)) -> Vec<f32> {
        preprocess_u2netp(photo)
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        U2Netp::forward(self, x)
    }

    fn postprocess(&self, map: &[f32], (side, _): (u32, u32), (w, h): (u32, u32)) -> GrayImage {
        postprocess_u2netp(map, side, w, h)
    }

    fn with_precision(self: Box<Self>, precision: Precision) -> Box<dyn SegmentationModel> {
        Box::new(precision.cast(*self))
    }
}

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// rembg's `normalize`: Lanczos to 320², divide by the maximum, then mean/std. Returns CHW.
pub fn preprocess_u2netp(rgb: &RgbImage) -> Vec<f32> {
    let size = ModelKind::U2netp.input_size();
    let small = resize::rgb(rgb, size, size, Filter::Lanczos3);
    preprocess_resized(&small)
}

/// The normalisation half of [`preprocess_u2netp`], for an image already at 320².
pub fn preprocess_resized(small: &RgbImage) -> Vec<f32> {
    let plane = (small.width() * small.height()) as usize;
    // rembg divides by np.max(image); an all-black image would divide by zero there.
    let max = f32::from(small.as_raw().iter().copied().max().unwrap_or(0).max(1));
    let mut chw = vec![0.0f32; 3 * plane];
    for (i, px) in small.pixels().enumerate() {
        for c in 0..3 {
            chw[c * plane + i] = (f32::from(px.0[c]) / max - MEAN[c]) / STD[c];
        }
    }
    chw
}

/// rembg's mask: min-max normalise, `(pred * 255).astype(uint8)`, Lanczos to the photo's size.
pub fn postprocess_u2netp(map: &[f32], side: u32, width: u32, height: u32) -> GrayImage {
    let (lo, hi) = map
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let range = hi - lo;
    let bytes = map
        .iter()
        .map(|&v| {
            let n = if range > 0.0 { (v - lo) / range } else { 0.0 };
            (n * 255.0) as u8 // truncation, as numpy's astype
        })
        .collect();
    let small = GrayImage::from_raw(side, side, bytes).expect("map is side×side");
    resize::gray(&small, width, height, Filter::Lanczos3)
}

/// `nn.MaxPool2d(2, stride=2, ceil_mode=True)`: odd sizes round up, e.g. 5 -> 3.
fn pool2x(x: Tensor<4>) -> Tensor<4> {
    // [B, C, H, W] -> [B, C, ceil(H/2), ceil(W/2)]
    cpu::max_pool2x(x)
}

/// Upstream `_upsample_like`: bilinear, `align_corners=False`, to the target's spatial size.
fn upsample_like(src: Tensor<4>, target: &Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = target.dims();
    let [_, _, sh, sw] = src.dims();
    if (sh, sw) == (h, w) {
        // Same-size bilinear with half-pixel centres is the identity.
        return src;
    }
    cpu::upsample_bilinear(src, [h, w])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocess_divides_by_max_then_standardises() {
        let img = RgbImage::from_fn(320, 320, |x, _| {
            image::Rgb([if x == 0 { 200 } else { 100 }, 0, 0])
        });
        let chw = preprocess_resized(&img);
        assert_eq!(chw.len(), 3 * 320 * 320);
        assert!((chw[0] - (1.0 - 0.485) / 0.229).abs() < 1e-6);
        assert!((chw[1] - (0.5 - 0.485) / 0.229).abs() < 1e-6);
        assert!((chw[320 * 320] - (0.0 - 0.456) / 0.224).abs() < 1e-6);
    }

    #[test]
    fn black_image_does_not_divide_by_zero() {
        let chw = preprocess_resized(&RgbImage::new(320, 320));
        assert!(chw.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn postprocess_min_max_truncates_and_resizes() {
        let mut map = vec![0.25f32; 4];
        map[3] = 0.75;
        map[1] = 0.5;
        let m = postprocess_u2netp(&map, 2, 2, 2);
        // (0.5-0.25)/0.5*255 = 127.5 -> 127 (truncated, as numpy does)
        assert_eq!(m.as_raw(), &[0, 127, 0, 255]);
        let flat = postprocess_u2netp(&[0.3; 4], 2, 5, 7);
        assert_eq!(flat.dimensions(), (5, 7));
        assert!(flat.pixels().all(|p| p.0[0] == 0));
    }
}
