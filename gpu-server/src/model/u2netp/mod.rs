//! U²-Netp: the small (1.1M parameter) U²-Net for salient object segmentation.
//!
//! Derived from `U2NETP` in <https://github.com/xuebinqin/U-2-Net> (`model/u2net.py`,
//! Apache-2.0), as exported to ONNX and shipped by rembg. The module tree mirrors upstream:
//! six encoder stages (RSU7, RSU6, RSU5, RSU4, RSU4F, RSU4F), five decoder stages, six side
//! outputs and a 1×1 fusion conv. Any input size works; rembg feeds 320×320.

mod net;
mod rebnconv;
mod rsu;
mod rsu4f;
mod weights;

pub use net::{U2Netp, U2NetpConfig};
pub use weights::{ImportError, import_onnx};

use burn::tensor::Tensor;

use super::cpu;

/// `nn.MaxPool2d(2, stride=2, ceil_mode=True)`: odd sizes round up, e.g. 5 -> 3.
fn pool2x(x: Tensor<4>) -> Tensor<4> {
    // [B, C, H, W] -> [B, C, ceil(H/2), ceil(W/2)]
    cpu::max_pool2x(x)
}

/// Upstream `_upsample_like`: bilinear, `align_corners=False`, to the target's spatial size.
fn upsample_like(src: Tensor<4>, target: &Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = target.dims();
    let [_, _, sh, sw] = src.dims();
    if (sh, sw) == (h, w) {
        // Same-size bilinear with half-pixel centres is the identity.
        return src;
    }
    cpu::upsample_bilinear(src, [h, w])
}
