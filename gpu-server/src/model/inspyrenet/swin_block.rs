//! `SwinTransformerBlock` and `Mlp` of `backbones/SwinTransformer.py`: (shifted) window
//! attention and an MLP, each pre-normed with a residual.

use burn::{
    module::Module,
    nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig},
    tensor::{Device, Tensor, activation::gelu, ops::PadMode},
};

use super::window_attention::WindowAttention;

#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl Mlp {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        // Exact (erf) GELU, as `nn.GELU()`.
        self.fc2.forward(gelu(self.fc1.forward(x)))
    }
}

/// [B, Hp, Wp, C] -> [B·windows, ws², C].
pub fn window_partition(x: Tensor<4>, ws: usize) -> Tensor<3> {
    let [b, h, w, c] = x.dims();
    x.reshape([b, h / ws, ws, w / ws, ws, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b * (h / ws) * (w / ws), ws * ws, c])
}

/// [B·windows, ws², C] -> [B, Hp, Wp, C].
pub fn window_reverse(windows: Tensor<3>, ws: usize, h: usize, w: usize) -> Tensor<4> {
    let [bw, _, c] = windows.dims();
    let b = bw / ((h / ws) * (w / ws));
    windows
        .reshape([b, h / ws, w / ws, ws, ws, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, h, w, c])
}

#[derive(Module, Debug)]
pub struct SwinTransformerBlock {
    pub norm1: LayerNorm,
    pub attn: WindowAttention,
    pub norm2: LayerNorm,
    pub mlp: Mlp,
    pub window_size: usize,
    /// 0, or `window_size / 2` for every second block.
    pub shift_size: usize,
}

impl SwinTransformerBlock {
    pub fn new(
        dim: usize,
        num_heads: usize,
        window_size: usize,
        shift_size: usize,
        device: &Device,
    ) -> Self {
        let hidden = dim * 4; // mlp_ratio 4
        SwinTransformerBlock {
            norm1: LayerNormConfig::new(dim).init(device),
            attn: WindowAttention::new(dim, window_size, num_heads, device),
            norm2: LayerNormConfig::new(dim).init(device),
            mlp: Mlp {
                fc1: LinearConfig::new(dim, hidden).init(device),
                fc2: LinearConfig::new(hidden, dim).init(device),
            },
            window_size,
            shift_size,
        }
    }

    /// `x` [B, H·W, C] -> [B, H·W, C]. `mask` is the layer's shifted-window mask.
    pub fn forward(&self, x: Tensor<3>, h: usize, w: usize, mask: &Tensor<3>) -> Tensor<3> {
        let [b, l, c] = x.dims();
        assert_eq!(l, h * w, "input feature has wrong size");
        let ws = self.window_size;
        let shortcut = x.clone();
        let x = self.norm1.forward(x).reshape([b, h, w, c]);

        // Zero-pad to whole windows (after the norm, as upstream).
        let (pad_b, pad_r) = ((ws - h % ws) % ws, (ws - w % ws) % ws);
        let x = if pad_b + pad_r > 0 {
            x.pad([(0, pad_b), (0, pad_r), (0, 0)], PadMode::Constant(0.0))
        } else {
            x
        };
        let (hp, wp) = (h + pad_b, w + pad_r);

        let s = self.shift_size as i64;
        let shifted = if s > 0 { x.roll(&[-s, -s], &[1, 2]) } else { x };
        let windows = window_partition(shifted, ws);
        let windows = self.attn.forward(windows, (s > 0).then_some(mask));
        let shifted = window_reverse(windows, ws, hp, wp);
        let x = if s > 0 {
            shifted.roll(&[s, s], &[1, 2])
        } else {
            shifted
        };
        let x = if pad_b + pad_r > 0 {
            x.slice([0..b, 0..h, 0..w, 0..c])
        } else {
            x
        };

        let x = shortcut + x.reshape([b, h * w, c]);
        x.clone() + self.mlp.forward(self.norm2.forward(x))
    }
}
