//! From photos to masks: the models the product runs ([`ModelKind`]), where they run
//! ([`Backend`]), and [`Segmenter`], which batches photos through a [`SegmentationModel`] (each
//! model's own preprocessing and postprocessing live in its folder).

use std::fmt;

use burn::tensor::{Device, Tensor, TensorData};
use image::{GrayImage, RgbImage};
use shared::cutout::Mask;

use super::{
    assets::{AssetError, ModelDir},
    inspyrenet::{self, Mode, Resize},
    precision::Precision,
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
            // Pinned to Vulkan; the shader compiler is the build's (SPIR-V with `vulkan`).
            #[cfg(feature = "wgpu")]
            Backend::Vulkan => Ok(Device::new(
                burn::backend::WgpuDevice::new(burn::backend::WgpuDeviceKind::DefaultDevice)
                    .on(burn::backend::WgpuBackend::Vulkan),
            )),
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

/// What the segmenter needs of a model: its input size, preprocessing, forward pass and
/// postprocessing. Each model implements it in its own folder (`u2netp/`, `inspyrenet/`), so a
/// new model touches its folder and [`ModelKind`], nothing else.
pub trait SegmentationModel: fmt::Debug + Send {
    /// The network's input (width, height) for a photo of `width`×`height`.
    fn input_size(&self, width: u32, height: u32) -> (u32, u32);
    /// The photo as the network's CHW input of `size`.
    fn preprocess(&self, photo: &RgbImage, size: (u32, u32)) -> Vec<f32>;
    /// `[B, 3, h, w] -> [B, 1, h, w]`.
    fn forward(&self, x: Tensor<4>) -> Tensor<4>;
    /// One map of `size` back to an 8-bit mask of the photo's `(width, height)`.
    fn postprocess(&self, map: &[f32], size: (u32, u32), photo: (u32, u32)) -> GrayImage;
    /// The same model computing in `precision` (its parameters cast once).
    fn with_precision(self: Box<Self>, precision: Precision) -> Box<dyn SegmentationModel>;
}

/// A loaded model on a device.
#[derive(Debug)]
pub struct Segmenter {
    kind: ModelKind,
    backend: Backend,
    device: Device,
    model: Box<dyn SegmentationModel>,
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
        let model: Box<dyn SegmentationModel> = match kind.inspyrenet_mode() {
            None => Box::new(models.load_u2netp(&device)?),
            Some(mode) => Box::new(inspyrenet::Remover::new(
                models.load_inspyrenet(mode, &device)?,
                resize,
            )),
        };
        Ok(Segmenter {
            kind,
            backend,
            device,
            model,
            resize,
            precision: Precision::F32,
        })
    }

    /// The same model computing in `precision` (its parameters cast once, here).
    pub fn with_precision(self, precision: Precision) -> Self {
        if precision == self.precision {
            return self;
        }
        Segmenter {
            model: self.model.with_precision(precision),
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

    /// Pays the process's one-time costs before the first photo does.
    ///
    /// On a GPU: the network once at its input size, for batches of 1 and (where one pass
    /// takes that many) `batch`, so each kernel is compiled and, with autotune, measured before
    /// the first photo or `serve`'s `/ready`. On the first GPU lent to the project (NVIDIA
    /// H200, Vulkan, no tuning cache) InSPyReNet's first 1024² pass took ~130 s and every
    /// later one 0.6 s: `serve` answered its first upload 503 after `REQUEST_TIMEOUT_SECS`.
    ///
    /// On the CPU, U²-Netp once at 128²: the kernels' transformed weights (cached from then
    /// on), Burn's first use of each parameter, the worker threads, the code paged in. At 128²
    /// a U²-Netp pass is about a sixth of a 320² one; convolutions keep their 320² kernel choice
    /// down to the layers that run at 10² (4² here), whose weights are small. InSPyReNet on the
    /// CPU is left as it is (a warm-up would cost as much as a photo).
    pub fn warm_up(&self, batch: usize) {
        if self.backend != Backend::Cpu {
            let side = self.kind.input_size();
            let (w, h) = self.model.input_size(side, side);
            let input = vec![0.0f32; 3 * w as usize * h as usize];
            let mut batches = vec![1, batch.clamp(1, self.max_batch())];
            batches.dedup();
            for n in batches {
                self.saliency_wh(&vec![input.clone(); n], (w, h));
            }
            return;
        }
        const SIDE: u32 = 128;
        if self.kind != ModelKind::U2netp {
            return;
        }
        let input = vec![0.0f32; (3 * SIDE * SIDE) as usize];
        self.saliency(&[input], SIDE);
    }

    /// Run the network on preprocessed CHW inputs of `side`², returning one `side`² map each.
    pub fn saliency(&self, inputs: &[Vec<f32>], side: u32) -> Vec<Vec<f32>> {
        self.saliency_wh(inputs, (side, side))
    }

    /// The most photos one forward pass takes on this model and backend; larger batches run as
    /// several passes. InSPyReNet on wgpu runs one photo a pass: on the first GPU lent to the
    /// project (NVIDIA H200, Vulkan, `scripts/gpu-kit run`) a batch of 4 at 1024² failed in
    /// the backbone (a matmul asked for 131,072 workgroups in one dimension, over Vulkan's
    /// limit, and a 2 GiB buffer, over the device's), while every batch of 1 ran; PyTorch's
    /// own batch of 4 gained 10% per image in f32 there.
    pub fn max_batch(&self) -> usize {
        match (self.kind.inspyrenet_mode(), self.backend) {
            (Some(_), Backend::Wgpu | Backend::Vulkan) => 1,
            _ => usize::MAX,
        }
    }

    /// [`Self::saliency`] for `w`×`h` inputs, in passes of at most [`Self::max_batch`].
    fn saliency_wh(&self, inputs: &[Vec<f32>], size: (u32, u32)) -> Vec<Vec<f32>> {
        inputs
            .chunks(self.max_batch())
            .flat_map(|pass| self.forward_pass(pass, size))
            .collect()
    }

    fn forward_pass(&self, inputs: &[Vec<f32>], (w, h): (u32, u32)) -> Vec<Vec<f32>> {
        if inputs.is_empty() {
            return Vec::new();
        }
        let (w, h) = (w as usize, h as usize);
        let batch = inputs.len();
        let flat: Vec<f32> = inputs.iter().flat_map(|v| v.iter().copied()).collect();
        let x = Tensor::<4>::from_data(TensorData::new(flat, [batch, 3, h, w]), &self.device)
            .cast(self.precision.dtype());
        let y = self.model.forward(x); // [B, 1, h, w]
        let data: Vec<f32> = y
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("converted to f32");
        data.chunks_exact(w * h).map(<[f32]>::to_vec).collect()
    }

    /// Masks at each photo's own size, with the grid each was made on (the network's input).
    /// Photos that share an input size are inferred as one batch (always, with a static input
    /// size).
    pub fn masks(&self, photos: &[&RgbImage]) -> Vec<Mask> {
        let sizes: Vec<(u32, u32)> = photos
            .iter()
            .map(|p| self.model.input_size(p.width(), p.height()))
            .collect();
        let mut masks: Vec<Option<Mask>> = vec![None; photos.len()];
        for i in 0..photos.len() {
            if masks[i].is_some() {
                continue;
            }
            let group: Vec<usize> = (i..photos.len())
                .filter(|&j| sizes[j] == sizes[i] && masks[j].is_none())
                .collect();
            let inputs: Vec<Vec<f32>> = group
                .iter()
                .map(|&j| self.model.preprocess(photos[j], sizes[j]))
                .collect();
            let maps = self.saliency_wh(&inputs, sizes[i]);
            for (&j, map) in group.iter().zip(maps) {
                let p = photos[j];
                masks[j] = Some(Mask {
                    pixels: self
                        .model
                        .postprocess(&map, sizes[j], (p.width(), p.height())),
                    grid: sizes[j].0.max(sizes[j].1),
                });
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
