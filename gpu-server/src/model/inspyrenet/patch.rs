//! `PatchEmbed` and `PatchMerging` of `backbones/SwinTransformer.py`.

use burn::{
    module::Module,
    nn::{
        LayerNorm, LayerNormConfig, Linear, LinearConfig,
        conv::{Conv2d, Conv2dConfig},
    },
    tensor::{Device, Tensor, ops::PadMode},
};

/// 4×4 patches to `embed_dim` channels (a strided conv), then LayerNorm.
#[derive(Module, Debug)]
pub struct PatchEmbed {
    pub proj: Conv2d,
    pub norm: LayerNorm,
    pub patch_size: usize,
}

impl PatchEmbed {
    pub fn new(patch_size: usize, embed_dim: usize, device: &Device) -> Self {
        PatchEmbed {
            proj: Conv2dConfig::new([3, embed_dim], [patch_size, patch_size])
                .with_stride([patch_size, patch_size])
                .init(device),
            norm: LayerNormConfig::new(embed_dim).init(device),
            patch_size,
        }
    }

    /// [B, 3, H, W] -> [B, C, ⌈H/4⌉, ⌈W/4⌉]; sizes not divisible by 4 are zero-padded at the
    /// bottom and right.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let p = self.patch_size;
        let (pad_b, pad_r) = ((p - h % p) % p, (p - w % p) % p);
        let x = if pad_b + pad_r > 0 {
            x.pad((0, pad_r, 0, pad_b), PadMode::Constant(0.0))
        } else {
            x
        };
        let x = self.proj.forward(x);
        let [b, c, wh, ww] = x.dims();
        // LayerNorm over channels: [B, C, Wh·Ww] -> [B, Wh·Ww, C] and back.
        let x = self
            .norm
            .forward(x.reshape([b, c, wh * ww]).swap_dims(1, 2));
        x.swap_dims(1, 2).reshape([b, c, wh, ww])
    }
}

/// Halves the resolution: each 2×2 neighbourhood's four tokens are concatenated (order
/// (0,0), (1,0), (0,1), (1,1) as (row, column)), normalised and projected to `2·dim`.
#[derive(Module, Debug)]
pub struct PatchMerging {
    pub reduction: Linear,
    pub norm: LayerNorm,
}

impl PatchMerging {
    pub fn new(dim: usize, device: &Device) -> Self {
        PatchMerging {
            reduction: LinearConfig::new(4 * dim, 2 * dim)
                .with_bias(false)
                .init(device),
            norm: LayerNormConfig::new(4 * dim).init(device),
        }
    }

    /// [B, H·W, C] -> [B, ⌈H/2⌉·⌈W/2⌉, 2C].
    pub fn forward(&self, x: Tensor<3>, h: usize, w: usize) -> Tensor<3> {
        let [b, _, c] = x.dims();
        let x = x.reshape([b, h, w, c]);
        let x = if h % 2 == 1 || w % 2 == 1 {
            x.pad([(0, h % 2), (0, w % 2), (0, 0)], PadMode::Constant(0.0))
        } else {
            x
        };
        let (h2, w2) = (h.div_ceil(2), w.div_ceil(2));
        // [B, H/2, row, W/2, col, C] -> [B, H/2, W/2, col, row, C]: x0, x1, x2, x3 in order.
        let x = x
            .reshape([b, h2, 2, w2, 2, c])
            .permute([0, 1, 3, 4, 2, 5])
            .reshape([b, h2 * w2, 4 * c]);
        self.reduction.forward(self.norm.forward(x))
    }
}
