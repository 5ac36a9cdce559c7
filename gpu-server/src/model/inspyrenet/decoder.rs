//! `PAA_d` of `modules/decoder_module.py`: fuses the three deepest context features into the
//! coarsest saliency map `d3` (stride 8) and its features `f3`.

// Field names are the checkpoint's keys (`Hattn`, `Wattn`).
#![allow(non_snake_case)]

use burn::{
    module::Module,
    tensor::{Device, Tensor},
};

use super::{
    bilinear,
    conv::{ConvBn, ConvBnConfig},
    self_attention::{Axis, SelfAttention},
};

#[derive(Module, Debug)]
pub struct PaaD {
    pub conv1: ConvBn,
    pub conv2: ConvBn,
    pub conv3: ConvBn,
    pub conv4: ConvBn,
    /// 3×3 to one channel, no BatchNorm, no bias.
    pub conv5: ConvBn,
    pub Hattn: SelfAttention,
    pub Wattn: SelfAttention,
}

impl PaaD {
    pub fn new(in_channels: usize, depth: usize, device: &Device) -> Self {
        let conv = |i, o| ConvBnConfig::square(i, o, 3).init(device);
        PaaD {
            conv1: conv(in_channels, depth),
            conv2: conv(depth, depth),
            conv3: conv(depth, depth),
            conv4: conv(depth, depth),
            conv5: ConvBnConfig::square(depth, 1, 3)
                .with_bn(false)
                .init(device),
            Hattn: SelfAttention::new(depth, Axis::Height, device),
            Wattn: SelfAttention::new(depth, Axis::Width, device),
        }
    }

    /// `[x3, x4, x5]` (strides 8, 16, 32) -> (`f3` [B, depth, H/8, W/8], `d3` [B, 1, H/8, W/8]).
    pub fn forward(&self, fs: [Tensor<4>; 3]) -> (Tensor<4>, Tensor<4>) {
        let [x3, x4, x5] = fs;
        let [_, _, h, w] = x3.dims();
        // Upstream concatenates `fs[::-1]`: the deepest first.
        let up = |t| bilinear(t, [h, w], true);
        let fx = Tensor::cat(vec![up(x5), up(x4), x3], 1);
        let fx = self.conv1.forward(fx);
        let hfx = self.Hattn.forward(fx.clone());
        let wfx = self.Wattn.forward(fx);
        let fx = self.conv2.forward(hfx + wfx);
        let fx = self.conv4.forward(self.conv3.forward(fx));
        let out = self.conv5.forward(fx.clone());
        (fx, out)
    }
}
