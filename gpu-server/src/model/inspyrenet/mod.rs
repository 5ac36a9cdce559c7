//! InSPyReNet with a Swin-B backbone: the production model of the original service.
//!
//! A port of the PyPI package `transparent-background==1.3.4` (`InSPyReNet.py`,
//! `backbones/SwinTransformer.py`, `modules/*`, MIT), as its `Remover(mode, resize)` runs it
//! with `threshold=None`. One file per upstream block; field names are the checkpoint's keys, so
//! `ckpt_base.pth` / `ckpt_fast.pth` load without renaming ([`weights`]). The numerics follow
//! upstream exactly, quirks included (see each block's docs); parity is tested stage by stage
//! against the reference code (`gpu-server/tests/it/inspyrenet_parity.rs`).
//!
//! | upstream                         | here                                   |
//! |----------------------------------|----------------------------------------|
//! | `InSPyReNet`                     | [`net`]                                |
//! | `SwinTransformer`, `BasicLayer`  | [`swin`]                               |
//! | `SwinTransformerBlock`, `Mlp`    | [`swin_block`]                         |
//! | `WindowAttention`                | [`window_attention`]                   |
//! | `PatchEmbed`, `PatchMerging`     | [`patch`]                              |
//! | `PAA_kernel`, `PAA_e`            | [`context`]                            |
//! | `PAA_d`                          | [`decoder`]                            |
//! | `SICA`                           | [`sica`]                               |
//! | `SelfAttention`                  | [`self_attention`]                     |
//! | `Conv2d` (conv + BN + ReLU)      | [`conv`]                               |
//! | `ImagePyramid`                   | [`pyramid`]                            |
//! | `Transition` (LR/HR blending)    | [`transition`]                         |
//! | `Remover`'s transforms           | [`preprocess`]                         |

pub mod context;
pub mod conv;
pub mod decoder;
pub mod net;
pub mod parity;
pub mod patch;
pub mod preprocess;
pub mod pyramid;
pub mod self_attention;
pub mod sica;
pub mod swin;
pub mod swin_block;
pub mod transition;
pub mod weights;
pub mod window_attention;

pub use net::{InSPyReNet, InSPyReNetConfig, Stages};
pub use preprocess::{Mode, Resize};
pub use swin::SwinConfig;

use burn::tensor::{
    Tensor,
    module::interpolate,
    ops::{InterpolateMode, InterpolateOptions},
};

/// `F.interpolate(x, size, mode='bilinear', align_corners=..)` (no antialiasing).
pub fn bilinear(x: Tensor<4>, [h, w]: [usize; 2], align_corners: bool) -> Tensor<4> {
    let [_, _, sh, sw] = x.dims();
    if (sh, sw) == (h, w) {
        // Both corner conventions are the identity at the same size.
        return x;
    }
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_output_size([h, w])
            .with_align_corners(align_corners),
    )
}

/// InSPyReNet as `Remover(mode, resize)` runs it: the network and how photos are sized for it.
#[derive(Debug)]
pub struct Remover {
    net: InSPyReNet,
    resize: Resize,
}

impl Remover {
    pub fn new(net: InSPyReNet, resize: Resize) -> Self {
        Remover { net, resize }
    }
}

impl crate::model::segmenter::SegmentationModel for Remover {
    fn input_size(&self, width: u32, height: u32) -> (u32, u32) {
        self.resize.input_size(width, height)
    }

    fn preprocess(&self, photo: &image::RgbImage, size: (u32, u32)) -> Vec<f32> {
        preprocess::preprocess(photo, size)
    }

    /// Each map in `[0, 1]`.
    fn forward(&self, x: burn::tensor::Tensor<4>) -> burn::tensor::Tensor<4> {
        self.net.forward(x)
    }

    fn postprocess(&self, map: &[f32], size: (u32, u32), photo: (u32, u32)) -> image::GrayImage {
        preprocess::postprocess(map, size, photo)
    }

    fn with_precision(
        self: Box<Self>,
        precision: crate::model::Precision,
    ) -> Box<dyn crate::model::segmenter::SegmentationModel> {
        Box::new(Remover {
            net: self.net.with_precision(precision),
            resize: self.resize,
        })
    }
}
