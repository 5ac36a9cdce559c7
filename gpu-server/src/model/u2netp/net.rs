//! The `U2NETP` network: encoder, decoder, side outputs and fusion.

use burn::{
    config::Config,
    module::Module,
    nn::{
        PaddingConfig2d,
        conv::{Conv2d, Conv2dConfig},
    },
    tensor::{Device, Tensor, activation::sigmoid},
};

use super::{
    super::cpu::{Activation, conv2d},
    pool2x,
    rsu::{Rsu, RsuConfig},
    rsu4f::{Rsu4F, Rsu4FConfig},
    upsample_like,
};

#[derive(Config, Debug)]
pub struct U2NetpConfig {
    #[config(default = 3)]
    pub in_ch: usize,
    #[config(default = 1)]
    pub out_ch: usize,
}

impl U2NetpConfig {
    pub fn init(&self, device: &Device) -> U2Netp {
        let rsu = |height, in_ch| RsuConfig::new(height, in_ch, 16, 64).init(device);
        let rsu4f = |in_ch| Rsu4FConfig::new(in_ch, 16, 64).init(device);
        let side = || {
            Conv2dConfig::new([64, self.out_ch], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        U2Netp {
            stage1: rsu(7, self.in_ch),
            stage2: rsu(6, 64),
            stage3: rsu(5, 64),
            stage4: rsu(4, 64),
            stage5: rsu4f(64),
            stage6: rsu4f(64),
            stage5d: rsu4f(128),
            stage4d: rsu(4, 128),
            stage3d: rsu(5, 128),
            stage2d: rsu(6, 128),
            stage1d: rsu(7, 128),
            side1: side(),
            side2: side(),
            side3: side(),
            side4: side(),
            side5: side(),
            side6: side(),
            outconv: Conv2dConfig::new([6 * self.out_ch, self.out_ch], [1, 1]).init(device),
        }
    }
}

#[derive(Module, Debug)]
pub struct U2Netp {
    pub stage1: Rsu,
    pub stage2: Rsu,
    pub stage3: Rsu,
    pub stage4: Rsu,
    pub stage5: Rsu4F,
    pub stage6: Rsu4F,
    pub stage5d: Rsu4F,
    pub stage4d: Rsu,
    pub stage3d: Rsu,
    pub stage2d: Rsu,
    pub stage1d: Rsu,
    pub side1: Conv2d,
    pub side2: Conv2d,
    pub side3: Conv2d,
    pub side4: Conv2d,
    pub side5: Conv2d,
    pub side6: Conv2d,
    pub outconv: Conv2d,
}

impl U2Netp {
    /// The fused saliency map `d0` (after sigmoid), the output rembg uses.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // Encoder: [B, 3, H, W] -> [B, 64, H, W] -> pooled by 2 at each stage.
        let hx1 = self.stage1.forward(vec![x]); // [B, 64, H, W]
        let hx2 = self.stage2.forward(vec![pool2x(hx1.clone())]); // [B, 64, H/2, W/2]
        let hx3 = self.stage3.forward(vec![pool2x(hx2.clone())]); // [B, 64, H/4, W/4]
        let hx4 = self.stage4.forward(vec![pool2x(hx3.clone())]); // [B, 64, H/8, W/8]
        let hx5 = self.stage5.forward(vec![pool2x(hx4.clone())]); // [B, 64, H/16, W/16]
        let hx6 = self.stage6.forward(vec![pool2x(hx5.clone())]); // [B, 64, H/32, W/32]

        // Decoder: upsample, concatenate with the skip, refine. [B, 128, h, w] -> [B, 64, h, w]
        let up = |t: &Tensor<4>, like: &Tensor<4>| upsample_like(t.clone(), like);
        let hx5d = self.stage5d.forward(vec![up(&hx6, &hx5), hx5]);
        let hx4d = self.stage4d.forward(vec![up(&hx5d, &hx4), hx4]);
        let hx3d = self.stage3d.forward(vec![up(&hx4d, &hx3), hx3]);
        let hx2d = self.stage2d.forward(vec![up(&hx3d, &hx2), hx2]);
        let hx1d = self.stage1d.forward(vec![up(&hx2d, &hx1), hx1]); // [B, 64, H, W]

        // Side outputs, each upsampled to full size: [B, 64, h, w] -> [B, 1, H, W]
        let side = |conv: &Conv2d, x: Tensor<4>| conv2d(vec![x], conv, Activation::None, None);
        let d1 = side(&self.side1, hx1d);
        let d2 = upsample_like(side(&self.side2, hx2d), &d1);
        let d3 = upsample_like(side(&self.side3, hx3d), &d1);
        let d4 = upsample_like(side(&self.side4, hx4d), &d1);
        let d5 = upsample_like(side(&self.side5, hx5d), &d1);
        let d6 = upsample_like(side(&self.side6, hx6), &d1);

        // Fusion: [B, 6, H, W] -> [B, 1, H, W]
        let d0 = self
            .outconv
            .forward(Tensor::cat(vec![d1, d2, d3, d4, d5, d6], 1));
        sigmoid(d0)
    }

    /// Every convolution in execution order, which is the order of the ONNX graph's Conv nodes.
    pub(super) fn convs_mut(&mut self) -> Vec<&mut Conv2d> {
        let mut out = Vec::with_capacity(119);
        out.extend(self.stage1.convs_mut());
        out.extend(self.stage2.convs_mut());
        out.extend(self.stage3.convs_mut());
        out.extend(self.stage4.convs_mut());
        out.extend(self.stage5.convs_mut());
        out.extend(self.stage6.convs_mut());
        out.extend(self.stage5d.convs_mut());
        out.extend(self.stage4d.convs_mut());
        out.extend(self.stage3d.convs_mut());
        out.extend(self.stage2d.convs_mut());
        out.extend(self.stage1d.convs_mut());
        out.extend([
            &mut self.side1,
            &mut self.side2,
            &mut self.side3,
            &mut self.side4,
            &mut self.side5,
            &mut self.side6,
            &mut self.outconv,
        ]);
        out
    }
}
