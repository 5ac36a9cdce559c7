//! `ImagePyramid` of `modules/layers.py`: the Laplacian pyramid that turns each stage's
//! Laplacian map into a saliency map twice as large.
//!
//! `expand` upsamples by inserting zeros (`pixel_shuffle` of `[x, 0, 0, 0]`) and blurs with a 7×7
//! Gaussian (σ = 1, OpenCV's `getGaussianKernel`) times 4 after *reflect* padding;
//! `reconstruct` adds the Laplacian resized with `align_corners=True`. Upstream's size check
//! there compares a shape with a tensor, which is never equal, so the resize always runs
//! (an identity when sizes already match); kept as is.

use burn::tensor::{
    Device, Tensor, TensorData,
    module::conv2d,
    ops::{ConvOptions, PadMode},
};

use super::bilinear;

const KSIZE: usize = 7;

/// `cv2.getGaussianKernel(7, 1)`, outer product, as float32 (computed in f64 like OpenCV).
pub fn gaussian_kernel() -> [f32; KSIZE * KSIZE] {
    let sigma = 1.0f64;
    let scale = -0.5 / (sigma * sigma);
    let c = (KSIZE as f64 - 1.0) / 2.0;
    let mut k = [0.0f64; KSIZE];
    for (i, v) in k.iter_mut().enumerate() {
        let x = i as f64 - c;
        *v = (scale * x * x).exp();
    }
    let sum: f64 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    let mut out = [0.0f32; KSIZE * KSIZE];
    for (i, a) in k.iter().enumerate() {
        for (j, b) in k.iter().enumerate() {
            out[i * KSIZE + j] = (a * b) as f32;
        }
    }
    out
}

/// The pyramid for one-channel maps.
#[derive(Debug, Clone)]
pub struct ImagePyramid {
    /// `[1, 1, 7, 7]`, already multiplied by 4 for `expand`.
    kernel4: Tensor<4>,
}

impl ImagePyramid {
    pub fn new(device: &Device) -> Self {
        let k: Vec<f32> = gaussian_kernel().iter().map(|v| v * 4.0).collect();
        ImagePyramid {
            kernel4: Tensor::from_data(TensorData::new(k, [1, 1, KSIZE, KSIZE]), device),
        }
    }

    /// [B, 1, H, W] -> [B, 1, 2H, 2W].
    pub fn expand(&self, x: Tensor<4>) -> Tensor<4> {
        let kernel = self.kernel4.clone().cast(x.dtype());
        let [b, c, h, w] = x.dims();
        // pixel_shuffle(cat([x, 0, 0, 0])): x lands on even rows and columns, zeros elsewhere.
        let x = x.reshape([b, c, h, 1, w, 1]);
        let x = Tensor::cat(vec![x.clone(), x.zeros_like()], 5);
        let x = Tensor::cat(vec![x.clone(), x.zeros_like()], 3);
        let x = x.reshape([b, c, 2 * h, 2 * w]);
        let p = KSIZE / 2;
        let x = x.pad((p, p, p, p), PadMode::Reflect);
        conv2d(x, kernel, None, ConvOptions::new([1, 1], [0, 0], [1, 1], 1))
    }

    /// `expand(x) + bilinear(laplacian, align_corners=True)`.
    pub fn reconstruct(&self, x: Tensor<4>, laplacian: Tensor<4>) -> Tensor<4> {
        let expanded = self.expand(x);
        let [_, _, h, w] = expanded.dims();
        expanded + bilinear(laplacian, [h, w], true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_matches_opencv() {
        // cv2.getGaussianKernel(7, 1).ravel()
        let opencv: [f64; KSIZE] = [
            0.004_433_048,
            0.054_005_582,
            0.242_036_22,
            0.399_050_3,
            0.242_036_22,
            0.054_005_582,
            0.004_433_048,
        ];
        let k = gaussian_kernel();
        for i in 0..KSIZE {
            for j in 0..KSIZE {
                let want = (opencv[i] * opencv[j]) as f32;
                assert!((k[i * KSIZE + j] - want).abs() < 1e-7, "({i},{j})");
            }
        }
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn expand_keeps_a_constant_map_constant() {
        let device = Device::flex();
        let x = Tensor::<4>::ones([1, 1, 8, 8], &device);
        let y = ImagePyramid::new(&device).expand(x);
        assert_eq!(y.dims(), [1, 1, 16, 16]);
        let v: Vec<f32> = y.into_data().try_into_vec().unwrap();
        // Each 2×2 block away from the borders sums every kernel tap once: its mean is 1.
        let block = (v[8 * 16 + 8] + v[8 * 16 + 9] + v[9 * 16 + 8] + v[9 * 16 + 9]) / 4.0;
        assert!((block - 1.0).abs() < 1e-5, "{block}");
        assert!((v[8 * 16 + 8] - 1.0).abs() < 0.05, "{}", v[8 * 16 + 8]);
    }
}
