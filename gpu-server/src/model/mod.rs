//! Segmentation models and their weights. This layer knows tensors and images, not HTTP.

pub mod assets;
pub mod cpu;
pub mod inspyrenet;
pub mod onnx;
mod precision;
mod segmenter;
pub mod u2netp;

pub use precision::{Precision, softmax};
pub use segmenter::{Backend, ModelKind, SegmentationModel, Segmenter};
pub use u2netp::{postprocess_u2netp, preprocess_u2netp};
