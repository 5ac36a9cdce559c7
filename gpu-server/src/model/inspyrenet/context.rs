//! `modules/context_module.py`: the pyramidal attention encoders `PAA_kernel` and `PAA_e` that
//! turn each backbone feature into `depth` channels.

// Field names are the checkpoint's keys (`Hattn`, `Wattn`).
#![allow(non_snake_case)]

use burn::{
    module::Module,
    tensor::{Device, Tensor, activation::relu},
};

use super::{
    conv::{ConvBn, ConvBnConfig},
    self_attention::{Axis, SelfAttention},
};

/// One receptive-field branch: 1×1, 1×k, k×1, height and width attention, 3×3 dilated by k.
#[derive(Module, Debug)]
pub struct PaaKernel {
    pub conv0: ConvBn,
    pub conv1: ConvBn,
    pub conv2: ConvBn,
    pub conv3: ConvBn,
    pub Hattn: SelfAttention,
    pub Wattn: SelfAttention,
}

impl PaaKernel {
    pub fn new(in_channels: usize, out: usize, receptive: usize, device: &Device) -> Self {
        PaaKernel {
            conv0: ConvBnConfig::square(in_channels, out, 1).init(device),
            conv1: ConvBnConfig::new(out, out, [1, receptive]).init(device),
            conv2: ConvBnConfig::new(out, out, [receptive, 1]).init(device),
            conv3: ConvBnConfig::square(out, out, 3)
                .with_dilation(receptive)
                .init(device),
            Hattn: SelfAttention::new(out, Axis::Height, device),
            Wattn: SelfAttention::new(out, Axis::Width, device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // [B, in, H, W] -> [B, out, H, W]
        let x = self
            .conv2
            .forward(self.conv1.forward(self.conv0.forward(x)));
        let hx = self.Hattn.forward(x.clone());
        let wx = self.Wattn.forward(x);
        self.conv3.forward(hx + wx)
    }
}

/// `PAA_e`: a 1×1 branch and three `PaaKernel`s (k = 3, 5, 7), fused by a 3×3 conv, plus a
/// 1×1 residual, then ReLU.
#[derive(Module, Debug)]
pub struct PaaE {
    pub branch0: ConvBn,
    pub branch1: PaaKernel,
    pub branch2: PaaKernel,
    pub branch3: PaaKernel,
    pub conv_cat: ConvBn,
    pub conv_res: ConvBn,
}

impl PaaE {
    pub fn new(in_channels: usize, out: usize, device: &Device) -> Self {
        PaaE {
            branch0: ConvBnConfig::square(in_channels, out, 1).init(device),
            branch1: PaaKernel::new(in_channels, out, 3, device),
            branch2: PaaKernel::new(in_channels, out, 5, device),
            branch3: PaaKernel::new(in_channels, out, 7, device),
            conv_cat: ConvBnConfig::square(4 * out, out, 3).init(device),
            conv_res: ConvBnConfig::square(in_channels, out, 1).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // [B, in, H, W] -> [B, out, H, W]
        let branches = vec![
            self.branch0.forward(x.clone()),
            self.branch1.forward(x.clone()),
            self.branch2.forward(x.clone()),
            self.branch3.forward(x.clone()),
        ];
        let cat = self.conv_cat.forward(Tensor::cat(branches, 1));
        relu(cat + self.conv_res.forward(x))
    }
}
