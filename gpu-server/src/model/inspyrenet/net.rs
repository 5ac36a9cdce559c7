//! `InSPyReNet` of `InSPyReNet.py`: the Swin backbone, five context encoders, the decoder
//! (stride 8) and three SICA stages that climb a Laplacian pyramid to full resolution.
//!
//! Only upstream's inference path with `threshold=None` (what `Remover` builds) is ported: one
//! pass, no low/high-resolution blending, so `Transition` ([`super::transition`], ported and
//! tested against the reference) takes no part.

use burn::{
    config::Config,
    module::Module,
    tensor::{Device, FloatDType, Tensor, activation::sigmoid},
};

use super::{
    super::Precision,
    bilinear,
    context::PaaE,
    decoder::PaaD,
    pyramid::ImagePyramid,
    sica::Sica,
    swin::{SwinConfig, SwinTransformer},
};

#[derive(Config, Debug)]
pub struct InSPyReNetConfig {
    pub backbone: SwinConfig,
    /// Channels of every decoder feature (64 in the released checkpoints).
    #[config(default = 64)]
    pub depth: usize,
    /// `[h, w]` the SICA context is pooled at (stage s uses `base_size / 2^s`): 1024² for
    /// `base`, 384² for `fast`.
    pub base_size: [usize; 2],
}

impl InSPyReNetConfig {
    /// `InSPyReNet_SwinB(depth=64, base_size)`.
    pub fn swin_b(base_size: usize) -> Self {
        Self::new(SwinConfig::swin_b(), [base_size, base_size])
    }

    pub fn init(&self, device: &Device) -> InSPyReNet {
        let ch = self.backbone.out_channels();
        let d = self.depth;
        let stage = |s: u32| self.base_size.map(|v| v / 2usize.pow(s));
        InSPyReNet {
            backbone: self.backbone.init(device),
            context1: PaaE::new(ch[0], d, device),
            context2: PaaE::new(ch[1], d, device),
            context3: PaaE::new(ch[2], d, device),
            context4: PaaE::new(ch[3], d, device),
            context5: PaaE::new(ch[4], d, device),
            decoder: PaaD::new(3 * d, d, device),
            attention0: Sica::new(d, d, stage(0), true, device),
            attention1: Sica::new(2 * d, d, stage(1), true, device),
            attention2: Sica::new(2 * d, d, stage(2), false, device),
        }
    }
}

#[derive(Module, Debug)]
pub struct InSPyReNet {
    pub backbone: SwinTransformer,
    pub context1: PaaE,
    pub context2: PaaE,
    pub context3: PaaE,
    pub context4: PaaE,
    pub context5: PaaE,
    pub decoder: PaaD,
    pub attention0: Sica,
    pub attention1: Sica,
    pub attention2: Sica,
}

/// Every intermediate the parity tests compare.
#[derive(Debug, Clone)]
pub struct Stages {
    /// The backbone's five features.
    pub features: [Tensor<4>; 5],
    /// Saliency maps, strides 8, 4, 2, 1.
    pub d3: Tensor<4>,
    pub d2: Tensor<4>,
    pub d1: Tensor<4>,
    pub d0: Tensor<4>,
    /// Laplacian maps, strides 4, 2, 1.
    pub p2: Tensor<4>,
    pub p1: Tensor<4>,
    pub p0: Tensor<4>,
}

impl InSPyReNet {
    /// `forward_inspyre`: [B, 3, H, W] (H, W multiples of 32) -> every stage.
    pub fn stages(&self, x: Tensor<4>) -> Stages {
        let [_, _, h, w] = x.dims();
        let features = self.backbone.forward(x);
        let [x1, x2, x3, x4, x5] = features.clone();
        let x1 = self.context1.forward(x1); // stride 4
        let x2 = self.context2.forward(x2); // 4
        let x3 = self.context3.forward(x3); // 8
        let x4 = self.context4.forward(x4); // 16
        let x5 = self.context5.forward(x5); // 32

        let (f3, d3) = self.decoder.forward([x3, x4, x5]); // 8
        let pyramid = ImagePyramid::new(&d3.device());

        let f3 = bilinear(f3, [h / 4, w / 4], false);
        let (f2, p2) = self
            .attention2
            .forward(Tensor::cat(vec![x2, f3], 1), d3.clone(), None);
        let d2 = pyramid.reconstruct(d3.clone(), p2.clone()); // 4

        let x1 = bilinear(x1, [h / 2, w / 2], false);
        let f2 = bilinear(f2, [h / 2, w / 2], false);
        let (f1, p1) =
            self.attention1
                .forward(Tensor::cat(vec![x1, f2], 1), d2.clone(), Some(p2.clone()));
        let d1 = pyramid.reconstruct(d2.clone(), p1.clone()); // 2

        let f1 = bilinear(f1, [h, w], false);
        let (_, p0) = self.attention0.forward(f1, d1.clone(), Some(p1.clone()));
        let d0 = pyramid.reconstruct(d1.clone(), p0.clone()); // 1

        Stages {
            features,
            d3,
            d2,
            d1,
            d0,
            p2,
            p1,
            p0,
        }
    }

    /// This network computing in `precision`. In f16, three things stay f32:
    /// - BatchNorm (parameters and arithmetic): a running variance above 65504 is infinite in
    ///   f16, and SICA's context projections see sums over the whole stage, whose variances
    ///   grow with the number of pixels;
    /// - SICA's context (the pooling over up to 1024² positions, and its key/value projections):
    ///   a sum over a million positions leaves f16's range;
    /// - the final sigmoid and min-max ([`Self::forward`]).
    pub fn with_precision(self, precision: Precision) -> Self {
        precision.cast_keeping(self, &["bn", "conv_key", "conv_value"])
    }

    /// `forward_inference` with `threshold=None`: `sigmoid(d0)` min-max normalised to [0, 1].
    ///
    /// Upstream normalises over the whole batch tensor; `Remover` always runs one image, so
    /// normalising each image on its own is what it computes, and a photo's mask does not
    /// depend on which photos share its batch. Computed in f32 whatever the network's precision.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        normalise(sigmoid(self.stages(x).d0.cast(FloatDType::F32)))
    }
}

/// Per-image `(p - min) / (max - min + 1e-8)` of [B, 1, H, W].
pub fn normalise(pred: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = pred.dims();
    let flat = pred.reshape([b, c * h * w]);
    let min = flat.clone().min_dim(1);
    let max = flat.clone().max_dim(1);
    ((flat - min.clone()) / (max - min + 1e-8)).reshape([b, c, h, w])
}
