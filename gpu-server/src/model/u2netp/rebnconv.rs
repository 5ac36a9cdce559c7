//! `REBNCONV`: 3×3 convolution (dilated) + BatchNorm + ReLU.
//!
//! The exported ONNX weights have BatchNorm folded into the convolution, so the block is one
//! biased convolution followed by ReLU; the field keeps upstream's `conv_s1` name.

use burn::{
    config::Config,
    module::Module,
    nn::{
        PaddingConfig2d,
        conv::{Conv2d, Conv2dConfig},
    },
    tensor::{Device, Tensor},
};

use crate::model::cpu::{Activation, conv2d};

#[derive(Config, Debug)]
pub struct RebnConvConfig {
    pub in_ch: usize,
    pub out_ch: usize,
    #[config(default = 1)]
    pub dirate: usize,
}

impl RebnConvConfig {
    pub fn init(&self, device: &Device) -> RebnConv {
        let d = self.dirate;
        RebnConv {
            conv_s1: Conv2dConfig::new([self.in_ch, self.out_ch], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(d, d, d, d))
                .with_dilation([d, d])
                .init(device),
        }
    }
}

#[derive(Module, Debug)]
pub struct RebnConv {
    pub conv_s1: Conv2d,
}

impl RebnConv {
    /// `relu(conv(cat(inputs, dim=1)))`, plus `residual` when given (the RSU's final `+ hxin`).
    pub fn forward(&self, inputs: Vec<Tensor<4>>, residual: Option<Tensor<4>>) -> Tensor<4> {
        // [B, Σ in_ch, H, W] -> [B, out_ch, H, W]
        conv2d(inputs, &self.conv_s1, Activation::Relu, residual)
    }
}
