//! `RSU-L`: the residual U-block of height L (upstream `RSU7`, `RSU6`, `RSU5`, `RSU4`).
//!
//! Upstream writes each height out by hand; they differ only in depth, so one block with
//! `height` covers them. Upstream key ↔ field:
//! `rebnconvin` ↔ `rebnconvin`, `rebnconv1..rebnconv{L-1}` ↔ `encoder[0..L-1]`,
//! `rebnconv{L}` (dilation 2) ↔ `bottom`, `rebnconv{L-1}d..rebnconv1d` ↔ `decoder[0..L-1]`.

use burn::{
    config::Config,
    module::Module,
    tensor::{Device, Tensor},
};

use super::{
    rebnconv::{RebnConv, RebnConvConfig},
    {pool2x, upsample_like},
};

#[derive(Config, Debug)]
pub struct RsuConfig {
    /// L: the number of resolutions the block visits (7 for RSU7).
    pub height: usize,
    pub in_ch: usize,
    pub mid_ch: usize,
    pub out_ch: usize,
}

impl RsuConfig {
    pub fn init(&self, device: &Device) -> Rsu {
        assert!(self.height >= 3, "RSU height must be at least 3");
        let levels = self.height - 1;
        let encoder = (0..levels)
            .map(|i| {
                let in_ch = if i == 0 { self.out_ch } else { self.mid_ch };
                RebnConvConfig::new(in_ch, self.mid_ch).init(device)
            })
            .collect();
        let decoder = (0..levels)
            .map(|i| {
                let out_ch = if i + 1 == levels {
                    self.out_ch
                } else {
                    self.mid_ch
                };
                RebnConvConfig::new(self.mid_ch * 2, out_ch).init(device)
            })
            .collect();
        Rsu {
            rebnconvin: RebnConvConfig::new(self.in_ch, self.out_ch).init(device),
            encoder,
            bottom: RebnConvConfig::new(self.mid_ch, self.mid_ch)
                .with_dirate(2)
                .init(device),
            decoder,
        }
    }
}

#[derive(Module, Debug)]
pub struct Rsu {
    pub rebnconvin: RebnConv,
    pub encoder: Vec<RebnConv>,
    pub bottom: RebnConv,
    pub decoder: Vec<RebnConv>,
}

impl Rsu {
    /// The block on the channel concatenation of `inputs`.
    pub fn forward(&self, inputs: Vec<Tensor<4>>) -> Tensor<4> {
        // [B, in_ch, H, W] -> [B, out_ch, H, W]
        let hxin = self.rebnconvin.forward(inputs, None);
        // Encoder: hx1 at H×W, then each level pooled to half size (ceil).
        let mut skips = Vec::with_capacity(self.encoder.len());
        let mut hx = hxin.clone();
        for (i, conv) in self.encoder.iter().enumerate() {
            if i > 0 {
                hx = pool2x(hx);
            }
            hx = conv.forward(vec![hx], None);
            skips.push(hx.clone());
        }
        // Bottom: dilated conv at the smallest resolution.
        hx = self.bottom.forward(vec![hx], None);
        // Decoder: upsample to each skip's size, concatenate on channels, convolve; the last
        // level adds the block's input (`hx1d + hxin`).
        let levels = self.decoder.len();
        for (i, (conv, skip)) in self.decoder.iter().zip(skips.into_iter().rev()).enumerate() {
            let hx_up = upsample_like(hx, &skip); // [B, C, h, w] -> [B, C, skip_h, skip_w]
            let residual = (i + 1 == levels).then(|| hxin.clone());
            hx = conv.forward(vec![hx_up, skip], residual); // [B, 2*mid, h, w] -> [B, mid|out, h, w]
        }
        hx
    }

    /// Convolutions in execution order (the order the ONNX export lists them).
    pub fn convs_mut(&mut self) -> Vec<&mut burn::nn::conv::Conv2d> {
        let mut out = vec![&mut self.rebnconvin.conv_s1];
        out.extend(self.encoder.iter_mut().map(|b| &mut b.conv_s1));
        out.push(&mut self.bottom.conv_s1);
        out.extend(self.decoder.iter_mut().map(|b| &mut b.conv_s1));
        out
    }
}
