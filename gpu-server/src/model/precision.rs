//! Numeric precision of inference: `f32` everywhere, or `f16` weights and activations on a GPU
//! (the original service's `ENABLE_GPU_OPTIMIZATIONS`).
//!
//! Half precision casts the float parameters once after loading and the network's input per
//! batch. What PyTorch computes in float inside its half kernels is widened here too: LayerNorm
//! (Burn's own `LayerNorm` widens f16) and softmax ([`softmax`]). A model keeps in f32 the
//! layers whose values do not fit half precision (InSPyReNet: see
//! [`super::inspyrenet::InSPyReNet::with_precision`]). The map handed back is always f32.

use burn::{
    module::{Module, ModuleMapper, Param},
    tensor::{DType, FloatDType, Tensor, activation},
};

/// The float type the network computes in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// IEEE single precision (the reference's own).
    #[default]
    F32,
    /// IEEE half precision: half the memory and, on GPUs with f16 units, faster.
    F16,
}

impl Precision {
    pub fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }

    /// `module` with every float parameter in this precision.
    pub fn cast<M: Module>(self, module: M) -> M {
        self.cast_keeping(module, &[])
    }

    /// [`Self::cast`], except the parameters under a field named in `keep` (at any depth),
    /// which stay as they are: the layers that must compute in f32.
    pub fn cast_keeping<M: Module>(self, module: M, keep: &[&str]) -> M {
        struct Cast<'a> {
            dtype: FloatDType,
            keep: &'a [&'a str],
            path: Vec<String>,
        }
        impl ModuleMapper for Cast<'_> {
            fn enter_module(&mut self, name: &str, _container_type: &str) {
                self.path.push(name.to_owned());
            }
            fn exit_module(&mut self, _name: &str, _container_type: &str) {
                self.path.pop();
            }
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                if self.path.iter().any(|p| self.keep.contains(&p.as_str())) {
                    return param;
                }
                let dtype = self.dtype;
                param.map(|t| t.cast(dtype))
            }
        }
        module.map(&mut Cast {
            dtype: self.dtype(),
            keep,
            path: Vec::new(),
        })
    }
}

/// `softmax(x, dim)`, computed in f32 when `x` is f16 (as PyTorch's half softmax accumulates
/// in float), and returned in `x`'s dtype.
pub fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    if x.dtype() == DType::F16 {
        activation::softmax(x.cast(FloatDType::F32), dim).cast(FloatDType::F16)
    } else {
        activation::softmax(x, dim)
    }
}
