//! `Conv2d` of `modules/layers.py`: a bias-free convolution with "same" padding, then
//! BatchNorm (unless `bn=False`), then ReLU (when `relu=True`).
//!
//! Upstream computes the padding as `k_eff // 2 + (k_eff % 2 - 1)` with
//! `k_eff = k + (k - 1) * (dilation - 1)`: `k_eff // 2` for odd effective kernels (every kernel in
//! InSPyReNet is odd), one less for even ones.

use burn::{
    config::Config,
    module::Module,
    nn::{
        BatchNorm, BatchNormConfig, PaddingConfig2d,
        conv::{Conv2d, Conv2dConfig},
    },
    tensor::{Device, Tensor, activation::relu},
};

#[derive(Config, Debug)]
pub struct ConvBnConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// `[kh, kw]`.
    pub kernel_size: [usize; 2],
    #[config(default = 1)]
    pub dilation: usize,
    #[config(default = true)]
    pub bn: bool,
    #[config(default = false)]
    pub relu: bool,
}

/// Upstream's padding for one dimension of a "same" convolution.
fn same_pad(kernel: usize, dilation: usize) -> usize {
    let k_eff = kernel + (kernel - 1) * (dilation - 1);
    (k_eff / 2 + k_eff % 2).saturating_sub(1)
}

impl ConvBnConfig {
    /// A square kernel.
    pub fn square(in_channels: usize, out_channels: usize, k: usize) -> Self {
        Self::new(in_channels, out_channels, [k, k])
    }

    pub fn init(&self, device: &Device) -> ConvBn {
        let [kh, kw] = self.kernel_size;
        let d = self.dilation;
        let (ph, pw) = (same_pad(kh, d), same_pad(kw, d));
        ConvBn {
            conv: Conv2dConfig::new([self.in_channels, self.out_channels], self.kernel_size)
                .with_padding(PaddingConfig2d::Explicit(ph, pw, ph, pw))
                .with_dilation([d, d])
                .with_bias(false)
                .init(device),
            bn: self
                .bn
                .then(|| BatchNormConfig::new(self.out_channels).init(device)),
            relu: self.relu,
        }
    }
}

#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: Option<BatchNorm>,
    pub relu: bool,
}

impl ConvBn {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // [B, in, H, W] -> [B, out, H, W]
        let x = self.conv.forward(x);
        // BatchNorm computes in its parameters' dtype (f32 also in half precision, see
        // `InSPyReNet::with_precision`), and hands back the input's.
        let x = match &self.bn {
            Some(bn) => {
                let dtype = x.dtype();
                bn.forward(x.cast(bn.gamma.val().dtype())).cast(dtype)
            }
            None => x,
        };
        if self.relu { relu(x) } else { x }
    }
}

#[cfg(test)]
mod tests {
    use super::same_pad;

    #[test]
    fn padding_matches_upstream_formula() {
        // (kernel, dilation) -> pad, from `k_eff // 2 + (k_eff % 2 - 1)`.
        for (k, d, pad) in [
            (1, 1, 0),
            (3, 1, 1),
            (3, 3, 3),
            (3, 7, 7),
            (5, 1, 2),
            (7, 1, 3),
            (4, 1, 1),
        ] {
            assert_eq!(same_pad(k, d), pad, "k={k} d={d}");
        }
    }
}
