//! From photos to masks: preprocessing, batched inference and postprocessing.
//!
//! U²-Netp follows rembg exactly (`SimpleSession.predict` + `BaseSession.normalize`): RGB,
//! Lanczos resize to 320×320, divide by the image's maximum value, ImageNet mean/std; the fused
//! map `d0` is min-max normalised, truncated to 8 bits and Lanczos-resized back to the photo.

use std::fmt;

use burn::tensor::{Device, Tensor, TensorData};
use image::{GrayImage, RgbImage};
use shared::resize::{self, Filter};

use super::{
    assets::{AssetError, ModelDir},
    inspyrenet::{self, InSPyReNet, Mode, Resize},
    precision::Precision,
    u2netp::U2Netp,
};

/// The models the product can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// U²-Netp (1.1M parameters), embedded; 320×320 input.
    U2netp,
    /// InSPyReNet Swin-B, `ckpt_base.pth` (operator-supplied); 1024×1024.
    InspyrenetBase,
    /// InSPyReNet Swin-B, `ckpt_fast.pth` (operator-supplied); 384×384.
    InspyrenetFast,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::U2netp => "u2netp",
            ModelKind::InspyrenetBase => "inspyrenet-base",
            ModelKind::InspyrenetFast => "inspyrenet-fast",
        }
    }

    /// The square input side the model is fed (InSPyReNet: its base size, for static resize).
    pub fn input_size(self) -> u32 {
        match self {
            ModelKind::U2netp => 320,
            ModelKind::InspyrenetBase => 1024,
            ModelKind::InspyrenetFast => 384,
        }
    }

    pub fn inspyrenet_mode(self) -> Option<Mode> {
        match self {
            ModelKind::U2netp => None,
            ModelKind::InspyrenetBase => Some(Mode::Base),
            ModelKind::InspyrenetFast => Some(Mode::Fast),
        }
    }

    pub fn from_inspyrenet_mode(mode: Mode) -> Self {
        match mode {
            Mode::Base => ModelKind::InspyrenetBase,
            Mode::Fast => ModelKind::InspyrenetFast,
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where inference runs. `cpu` is always built; the others need their cargo feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// Burn's Flex backend on the CPU.
    Cpu,
    /// wgpu on the best adapter (Vulkan, Metal or DX12); feature `wgpu`.
    Wgpu,
    /// wgpu pinned to Vulkan (also Mesa's lavapipe without a GPU); feature `wgpu`.
    Vulkan,
    /// CUDA on GPU 0; feature `cuda`.
    Cuda,
}

impl Backend {
    pub fn device(self) -> Result<Device, String> {
        match self {
            Backend::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "wgpu")]
            Backend::Vulkan => Ok(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Ok(Device::cuda(0)),
            #[allow(unreachable_patterns)]
            other => Err(format!(
                "this build has no {other:?} backend; rebuild with `--features {}`",
                match other {
                    Backend::Cuda => "cuda",
                    _ => "wgpu",
                }
            )),
        }
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

#[derive(Debug)]
enum Net {
    U2netp(Box<U2Netp>),
    Inspyrenet(Box<InSPyReNet>),
}

/// A loaded model on a device.
#[derive(Debug)]
pub struct Segmenter {
    kind: ModelKind,
    backend: Backend,
    device: Device,
    net: Net,
    /// How InSPyReNet sizes photos (unused by U²-Netp).
    resize: Resize,
    precision: Precision,
}

impl Segmenter {
    /// Load `kind` on `backend`; InSPyReNet resizes statically to its base size.
    pub fn load(kind: ModelKind, backend: Backend, models: &ModelDir) -> Result<Self, LoadError> {
        let resize = Resize::Static {
            side: kind.input_size(),
        };
        Self::load_with(kind, backend, models, resize)
    }

    pub fn load_with(
        kind: ModelKind,
        backend: Backend,
        models: &ModelDir,
        resize: Resize,
    ) -> Result<Self, LoadError> {
        let device = backend.device().map_err(LoadError::Backend)?;
        let net = match kind.inspyrenet_mode() {
            None => Net::U2netp(Box::new(models.load_u2netp(&device)?)),
            Some(mode) => Net::Inspyrenet(Box::new(models.load_inspyrenet(mode, &device)?)),
        };
        Ok(Segmenter {
            kind,
            backend,
            device,
            net,
            resize,
            precision: Precision::F32,
        })
    }

    /// The same model computing in `precision` (its parameters cast once, here).
    pub fn with_precision(self, precision: Precision) -> Self {
        if precision == self.precision {
            return self;
        }
        let net = match self.net {
            Net::U2netp(net) => Net::U2netp(Box::new(precision.cast(*net))),
            Net::Inspyrenet(net) => Net::Inspyrenet(Box::new(net.with_precision(precision))),
        };
        Segmenter {
            net,
            precision,
            ..self
        }
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn resize(&self) -> Resize {
        self.resize
    }

    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Run the network on preprocessed CHW inputs of `side`², returning one `side`² map each.
    pub fn saliency(&self, inputs: &[Vec<f32>], side: u32) -> Vec<Vec<f32>> {
        self.saliency_wh(inputs, (side, side))
    }

    /// [`Self::saliency`] for `w`×`h` inputs.
    fn saliency_wh(&self, inputs: &[Vec<f32>], (w, h): (u32, u32)) -> Vec<Vec<f32>> {
        if inputs.is_empty() {
            return Vec::new();
        }
        let (w, h) = (w as usize, h as usize);
        let batch = inputs.len();
        let flat: Vec<f32> = inputs.iter().flat_map(|v| v.iter().copied()).collect();
        let x = Tensor::<4>::from_data(TensorData::new(flat, [batch, 3, h, w]), &self.device)
            .cast(self.precision.dtype());
        let y = match &self.net {
            Net::U2netp(net) => net.forward(x),     // [B, 1, h, w]
            Net::Inspyrenet(net) => net.forward(x), // [B, 1, h, w], each in [0, 1]
        };
        let data: Vec<f32> = y
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("converted to f32");
        data.chunks_exact(w * h).map(<[f32]>::to_vec).collect()
    }

    /// Masks at each photo's own size. Photos that share an input size are inferred as one
    /// batch (always, with static resize).
    pub fn masks(&self, photos: &[&RgbImage]) -> Vec<GrayImage> {
        if matches!(self.net, Net::U2netp(_)) {
            let side = self.kind.input_size();
            let inputs: Vec<Vec<f32>> = photos.iter().map(|p| preprocess_u2netp(p)).collect();
            return self
                .saliency(&inputs, side)
                .iter()
                .zip(photos)
                .map(|(map, p)| postprocess_u2netp(map, side, p.width(), p.height()))
                .collect();
        }
        let sizes: Vec<(u32, u32)> = photos
            .iter()
            .map(|p| self.resize.input_size(p.width(), p.height()))
            .collect();
        let mut masks: Vec<Option<GrayImage>> = vec![None; photos.len()];
        for i in 0..photos.len() {
            if masks[i].is_some() {
                continue;
            }
            let group: Vec<usize> = (i..photos.len())
                .filter(|&j| sizes[j] == sizes[i] && masks[j].is_none())
                .collect();
            let inputs: Vec<Vec<f32>> = group
                .iter()
                .map(|&j| inspyrenet::preprocess::preprocess(photos[j], sizes[j]))
                .collect();
            let maps = self.saliency_wh(&inputs, sizes[i]);
            for (&j, map) in group.iter().zip(maps) {
                let p = photos[j];
                masks[j] = Some(inspyrenet::preprocess::postprocess(
                    &map,
                    sizes[j],
                    (p.width(), p.height()),
                ));
            }
        }
        masks
            .into_iter()
            .map(|m| m.expect("every photo masked"))
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Backend(String),
    #[error(transparent)]
    Assets(#[from] AssetError),
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
