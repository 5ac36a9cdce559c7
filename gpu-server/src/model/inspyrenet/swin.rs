//! `SwinTransformer` and `BasicLayer` of `backbones/SwinTransformer.py`: the hierarchical
//! backbone. Swin-B is embed 128, depths 2-2-18-2, heads 4-8-16-32, window 12.
//!
//! Outputs five features: the patch embedding (stride 4, before any block) and each stage's
//! output after its `norm{i}` (strides 4, 8, 16, 32), all NCHW.

use burn::{
    config::Config,
    module::Module,
    nn::{LayerNorm, LayerNormConfig},
    tensor::{Device, Tensor, TensorData},
};

use super::{
    patch::{PatchEmbed, PatchMerging},
    swin_block::SwinTransformerBlock,
};

#[derive(Config, Debug)]
pub struct SwinConfig {
    pub embed_dim: usize,
    pub depths: Vec<usize>,
    pub num_heads: Vec<usize>,
    pub window_size: usize,
}

impl SwinConfig {
    /// `SwinB()`: the backbone of InSPyReNet's `base` and `fast` checkpoints.
    pub fn swin_b() -> Self {
        Self::new(128, vec![2, 2, 18, 2], vec![4, 8, 16, 32], 12)
    }

    /// Channels of the five outputs.
    pub fn out_channels(&self) -> [usize; 5] {
        let e = self.embed_dim;
        [e, e, 2 * e, 4 * e, 8 * e]
    }

    pub fn init(&self, device: &Device) -> SwinTransformer {
        assert_eq!(self.depths.len(), 4, "Swin has four stages");
        assert_eq!(self.num_heads.len(), 4, "one head count per stage");
        let layers = (0..4)
            .map(|i| {
                let dim = self.embed_dim << i;
                let ws = self.window_size;
                BasicLayer {
                    blocks: (0..self.depths[i])
                        .map(|j| {
                            let shift = if j % 2 == 0 { 0 } else { ws / 2 };
                            SwinTransformerBlock::new(dim, self.num_heads[i], ws, shift, device)
                        })
                        .collect(),
                    downsample: (i < 3).then(|| PatchMerging::new(dim, device)),
                    window_size: ws,
                    shift_size: ws / 2,
                }
            })
            .collect();
        let norm = |i: usize| LayerNormConfig::new(self.embed_dim << i).init(device);
        SwinTransformer {
            patch_embed: PatchEmbed::new(4, self.embed_dim, device),
            layers,
            norm0: norm(0),
            norm1: norm(1),
            norm2: norm(2),
            norm3: norm(3),
        }
    }
}

/// One stage: its blocks (even ones plain, odd ones shifted), then patch merging.
#[derive(Module, Debug)]
pub struct BasicLayer {
    pub blocks: Vec<SwinTransformerBlock>,
    pub downsample: Option<PatchMerging>,
    pub window_size: usize,
    pub shift_size: usize,
}

impl BasicLayer {
    /// The shifted-window mask, `[windows, ws², ws²]`: 0 within a region, −100 across.
    fn attention_mask(&self, h: usize, w: usize, device: &Device) -> Tensor<3> {
        let (ws, s) = (self.window_size, self.shift_size);
        let (hp, wp) = (h.div_ceil(ws) * ws, w.div_ceil(ws) * ws);
        // Upstream labels the slices (0, -ws), (-ws, -s), (-s, None) of each axis.
        let region = |i: usize, len: usize| {
            if i < len - ws {
                0
            } else if i < len - s {
                1
            } else {
                2
            }
        };
        let n = ws * ws;
        let (wy, wx) = (hp / ws, wp / ws);
        let mut mask = Vec::with_capacity(wy * wx * n * n);
        let mut labels = vec![0usize; n];
        for y in 0..wy {
            for x in 0..wx {
                for (p, label) in labels.iter_mut().enumerate() {
                    *label = region(y * ws + p / ws, hp) * 3 + region(x * ws + p % ws, wp);
                }
                for &a in &labels {
                    mask.extend(labels.iter().map(|&b| if a == b { 0.0f32 } else { -100.0 }));
                }
            }
        }
        Tensor::from_data(TensorData::new(mask, [wy * wx, n, n]), device)
    }

    /// [B, H·W, C] -> (stage output [B, H·W, C], next input [B, ⌈H/2⌉·⌈W/2⌉, 2C]).
    pub fn forward(&self, x: Tensor<3>, h: usize, w: usize) -> (Tensor<3>, Tensor<3>) {
        let mask = self.attention_mask(h, w, &x.device()).cast(x.dtype());
        let x = self
            .blocks
            .iter()
            .fold(x, |x, block| block.forward(x, h, w, &mask));
        let down = match &self.downsample {
            Some(merge) => merge.forward(x.clone(), h, w),
            None => x.clone(),
        };
        (x, down)
    }
}

#[derive(Module, Debug)]
pub struct SwinTransformer {
    pub patch_embed: PatchEmbed,
    pub layers: Vec<BasicLayer>,
    pub norm0: LayerNorm,
    pub norm1: LayerNorm,
    pub norm2: LayerNorm,
    pub norm3: LayerNorm,
}

impl SwinTransformer {
    /// [B, 3, H, W] -> five features (see the module docs).
    pub fn forward(&self, x: Tensor<4>) -> [Tensor<4>; 5] {
        let x = self.patch_embed.forward(x);
        let [b, c, mut h, mut w] = x.dims();
        let first = x.clone();
        let mut x = x.reshape([b, c, h * w]).swap_dims(1, 2);
        let norms = [&self.norm0, &self.norm1, &self.norm2, &self.norm3];
        let mut outs = Vec::with_capacity(4);
        for (layer, norm) in self.layers.iter().zip(norms) {
            let (out, down) = layer.forward(x, h, w);
            let ch = out.dims()[2];
            outs.push(
                norm.forward(out)
                    .reshape([b, h, w, ch])
                    .permute([0, 3, 1, 2]),
            );
            x = down;
            (h, w) = (h.div_ceil(2), w.div_ceil(2));
        }
        let [o1, o2, o3, o4] = outs.try_into().expect("four stages");
        [first, o1, o2, o3, o4]
    }
}
