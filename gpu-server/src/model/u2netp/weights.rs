//! Importing rembg's `u2netp.onnx` into the Burn module.
//!
//! The export (PyTorch 1.9, opset 11) folded every BatchNorm into its convolution and renamed
//! the backbone initializers to numbers in graph order (`1967`, `1968`, …), so names carry no
//! structure. What does: the Conv nodes appear in execution order, which for U²-Netp is also
//! the module registration order. The remap is therefore positional, checked conv by conv
//! against shape, dilation and padding, so a different graph fails loudly instead of loading
//! weights into the wrong layers.
//!
//! | ONNX Conv nodes (graph order) | count | Burn module                                   |
//! |-------------------------------|-------|-----------------------------------------------|
//! | `Conv_0` … `Conv_132`         | 14    | `stage1` (RSU7): in, encoder 1-6, bottom, decoder 6d-1d |
//! | next                          | 12    | `stage2` (RSU6)                               |
//! | next                          | 10    | `stage3` (RSU5)                               |
//! | next                          | 8     | `stage4` (RSU4)                               |
//! | next                          | 8     | `stage5` (RSU4F): in, 1, 2, 3, 4, 3d, 2d, 1d  |
//! | next                          | 8     | `stage6` (RSU4F)                              |
//! | next                          | 8     | `stage5d` (RSU4F)                             |
//! | next                          | 8, 10, 12, 14 | `stage4d`, `stage3d`, `stage2d`, `stage1d` |
//! | `side1.weight` … `side6.bias` | 6     | `side1` … `side6`                             |
//! | `outconv.weight`/`.bias`      | 1     | `outconv`                                     |
//!
//! Total: 119 convolutions, each `weight [out, in, kh, kw]` and `bias [out]`, copied as is
//! (ONNX and Burn share the OIHW layout).

use burn::{
    module::Param,
    nn::PaddingConfig2d,
    tensor::{Device, Tensor, TensorData},
};

use super::{U2Netp, U2NetpConfig};
use crate::model::onnx::{self, OnnxError};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error("the ONNX graph has {found} convolutions; U²-Netp has {expected}")]
    ConvCount { found: usize, expected: usize },
    #[error(
        "conv #{index} ({node}): {what} is {found:?} in the ONNX graph but {expected:?} in U²-Netp"
    )]
    Mismatch {
        index: usize,
        node: String,
        what: &'static str,
        found: Vec<i64>,
        expected: Vec<i64>,
    },
    #[error("conv #{index} ({node}) has no bias; the export should have folded BatchNorm into one")]
    NoBias { index: usize, node: String },
}

/// Build a U²-Netp on `device` with the weights of an ONNX export of `U2NETP`.
pub fn import_onnx(onnx_bytes: &[u8], device: &Device) -> Result<U2Netp, ImportError> {
    let nodes = onnx::conv_nodes(onnx_bytes)?;
    let mut model = U2NetpConfig::new().init(device);
    let mut convs = model.convs_mut();
    if nodes.len() != convs.len() {
        return Err(ImportError::ConvCount {
            found: nodes.len(),
            expected: convs.len(),
        });
    }
    for (index, (node, conv)) in nodes.into_iter().zip(convs.iter_mut()).enumerate() {
        let check = |what, found: Vec<i64>, expected: Vec<i64>| {
            if found == expected {
                Ok(())
            } else {
                Err(ImportError::Mismatch {
                    index,
                    node: node.name.clone(),
                    what,
                    found,
                    expected,
                })
            }
        };
        let to_i64 = |v: &[usize]| v.iter().map(|&x| x as i64).collect::<Vec<_>>();
        check(
            "weight shape",
            to_i64(&node.weight.shape),
            to_i64(&conv.weight.dims()),
        )?;
        check("dilations", node.dilations.clone(), to_i64(&conv.dilation))?;
        let pads = match conv.padding {
            PaddingConfig2d::Explicit(t, l, b, r) => to_i64(&[t, l, b, r]),
            _ => vec![0; 4], // the 1×1 fusion conv is unpadded
        };
        check("pads", node.pads.clone(), pads)?;
        let bias = node.bias.ok_or_else(|| ImportError::NoBias {
            index,
            node: node.name.clone(),
        })?;
        let data = |w: onnx::Weight| TensorData::new(w.data, w.shape);
        conv.weight = Param::from_tensor(Tensor::from_data(data(node.weight), device));
        conv.bias = Some(Param::from_tensor(Tensor::from_data(data(bias), device)));
    }
    Ok(model)
}
