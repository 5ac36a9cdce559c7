//! `RSU4F`: the residual U-block that keeps full resolution and widens with dilation 1/2/4/8
//! instead of pooling (upstream `RSU4F`; field names are upstream's).

use burn::{
    config::Config,
    module::Module,
    tensor::{Device, Tensor},
};

use super::rebnconv::{RebnConv, RebnConvConfig};

#[derive(Config, Debug)]
pub struct Rsu4FConfig {
    pub in_ch: usize,
    pub mid_ch: usize,
    pub out_ch: usize,
}

impl Rsu4FConfig {
    pub fn init(&self, device: &Device) -> Rsu4F {
        let (i, m, o) = (self.in_ch, self.mid_ch, self.out_ch);
        let conv = |c_in, c_out, d| RebnConvConfig::new(c_in, c_out).with_dirate(d).init(device);
        Rsu4F {
            rebnconvin: conv(i, o, 1),
            rebnconv1: conv(o, m, 1),
            rebnconv2: conv(m, m, 2),
            rebnconv3: conv(m, m, 4),
            rebnconv4: conv(m, m, 8),
            rebnconv3d: conv(m * 2, m, 4),
            rebnconv2d: conv(m * 2, m, 2),
            rebnconv1d: conv(m * 2, o, 1),
        }
    }
}

#[derive(Module, Debug)]
pub struct Rsu4F {
    pub rebnconvin: RebnConv,
    pub rebnconv1: RebnConv,
    pub rebnconv2: RebnConv,
    pub rebnconv3: RebnConv,
    pub rebnconv4: RebnConv,
    pub rebnconv3d: RebnConv,
    pub rebnconv2d: RebnConv,
    pub rebnconv1d: RebnConv,
}

impl Rsu4F {
    /// The block on the channel concatenation of `inputs`.
    pub fn forward(&self, inputs: Vec<Tensor<4>>) -> Tensor<4> {
        // All at [B, *, H, W]
        let hxin = self.rebnconvin.forward(inputs, None); // [B, out, H, W]
        let hx1 = self.rebnconv1.forward(vec![hxin.clone()], None); // [B, mid, H, W]
        let hx2 = self.rebnconv2.forward(vec![hx1.clone()], None);
        let hx3 = self.rebnconv3.forward(vec![hx2.clone()], None);
        let hx4 = self.rebnconv4.forward(vec![hx3.clone()], None);
        let hx3d = self.rebnconv3d.forward(vec![hx4, hx3], None); // [B, 2*mid, H, W] -> [B, mid, H, W]
        let hx2d = self.rebnconv2d.forward(vec![hx3d, hx2], None);
        self.rebnconv1d.forward(vec![hx2d, hx1], Some(hxin)) // hx1d + hxin: [B, out, H, W]
    }

    /// Convolutions in execution order (the order the ONNX export lists them).
    pub fn convs_mut(&mut self) -> Vec<&mut burn::nn::conv::Conv2d> {
        vec![
            &mut self.rebnconvin.conv_s1,
            &mut self.rebnconv1.conv_s1,
            &mut self.rebnconv2.conv_s1,
            &mut self.rebnconv3.conv_s1,
            &mut self.rebnconv4.conv_s1,
            &mut self.rebnconv3d.conv_s1,
            &mut self.rebnconv2d.conv_s1,
            &mut self.rebnconv1d.conv_s1,
        ]
    }
}
