//! `SelfAttention` of `modules/layers.py`: attention along one spatial axis.
//!
//! Numerics kept from upstream, quirk included: the projections are *viewed* as
//! `(B, -1, axis)` straight from their NCHW memory, without a permute. For the `h` mode that
//! groups values by the flat index modulo `H`, not by row; a "cleaner" port would compute a
//! different function, and the checkpoints were trained on this one.

use burn::{
    module::{Module, Param},
    tensor::{Device, Tensor},
};

use super::conv::{ConvBn, ConvBnConfig};
use crate::model::softmax;

/// Which spatial axis attends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Upstream mode `'h'`.
    Height,
    /// Upstream mode `'w'`.
    Width,
}

#[derive(Module, Debug)]
pub struct SelfAttention {
    pub query_conv: ConvBn,
    pub key_conv: ConvBn,
    pub value_conv: ConvBn,
    /// `[1]`, the residual weight (0 at initialisation upstream).
    pub gamma: Param<Tensor<1>>,
    /// `true` for the height axis.
    pub height: bool,
}

impl SelfAttention {
    pub fn new(in_channels: usize, axis: Axis, device: &Device) -> Self {
        let conv = |out| ConvBnConfig::square(in_channels, out, 1).init(device);
        SelfAttention {
            query_conv: conv(in_channels / 8),
            key_conv: conv(in_channels / 8),
            value_conv: conv(in_channels),
            gamma: Param::from_tensor(Tensor::zeros([1], device)),
            height: axis == Axis::Height,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let axis = if self.height { h } else { w };
        let view = |t: Tensor<4>| {
            let n = t.shape().num_elements() / (b * axis);
            t.reshape([b, n, axis])
        };
        // [B, C/8, H, W] -> [B, axis, C/8·HW/axis]
        let query = view(self.query_conv.forward(x.clone())).swap_dims(1, 2);
        // [B, C/8·HW/axis, axis]
        let key = view(self.key_conv.forward(x.clone()));
        // [B, axis, axis]
        let attention = softmax(query.matmul(key), 2);
        // [B, C·HW/axis, axis]
        let value = view(self.value_conv.forward(x.clone()));
        let out = value
            .matmul(attention.swap_dims(1, 2))
            .reshape([b, c, h, w]);
        out * self.gamma.val().reshape([1, 1, 1, 1]) + x
    }
}
