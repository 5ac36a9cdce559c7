//! Every stage of the network against the reference code's outputs
//! (`scripts/generate_inspyrenet_reference.py`: `outputs.pth` beside `checkpoint.pth`).
//!
//! The parity tests assert with it, and `gpu-server bench --stages-against DIR` prints it, so
//! the same comparison runs where only the release binary travels (`scripts/gpu-kit` on a lent
//! GPU machine).

use std::path::Path;

use burn::{
    store::pytorch_reader::PytorchReader,
    tensor::{DType, Device, Tensor, TensorData},
};

use super::InSPyReNet;
use crate::model::Precision;

/// The full-size (1024²) check's bound in f32. Measured (dev profile, Flex, against PyTorch 2.15
/// CPU): the backbone features ≤ 1.0e-6, d3 1.4e-5, d0 1.3e-5, p0 1.4e-5, the final map 3.4e-5,
/// but d2 2.2e-4, d1 2.9e-4, p2 2.2e-4, p1 3.1e-4: at 1024² SICA pools 65,536 positions per
/// context vector, and float32 sums in another order differ by that much there.
pub const FULL_TOLERANCE: f32 = 5e-4;

/// The full-size check's bound for a stage in f16: at 1024² SICA pools over 1024² positions,
/// the range f16 cannot hold. Measured (release, Flex): the backbone 1.0e-3..2.6e-3, d3..p1
/// 1.9e-2..2.3e-2, d0 3.3e-3, p0 3.3e-3, the final map 7.6e-3.
pub fn full_half_tolerance(stage: &str) -> f32 {
    if stage.starts_with("features") {
        5e-3
    } else {
        5e-2
    }
}

/// The reference's saved tensors (`outputs.pth`).
pub struct Reference {
    reader: PytorchReader,
}

impl Reference {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let reader = PytorchReader::new(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot read the reference: {e}", path.display()))?;
        Ok(Reference { reader })
    }

    /// A tensor's values (f32) and shape.
    pub fn get(&self, name: &str) -> anyhow::Result<(Vec<f32>, Vec<usize>)> {
        let t = self
            .reader
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("the reference has no {name}"))?;
        let data = t
            .read()
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok((data, t.shape().to_vec()))
    }

    pub fn tensor(&self, name: &str, device: &Device) -> anyhow::Result<Tensor<4>> {
        let (data, shape) = self.get(name)?;
        Ok(Tensor::from_data(TensorData::new(data, shape), device))
    }
}

/// A tensor's values as f32, and its shape.
pub fn values(t: Tensor<4>) -> (Vec<f32>, Vec<usize>) {
    let shape = t.dims().to_vec();
    let data: Vec<f32> = t
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .expect("converted to f32");
    (data, shape)
}

/// max |ours − reference| / max |reference|; infinite when ours has a NaN or an infinity
/// (`f32::max` would skip a NaN).
pub fn relative_error(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len());
    if ours.iter().any(|v| !v.is_finite()) {
        return f32::INFINITY;
    }
    let scale = reference
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(1e-6);
    let err = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    err / scale
}

/// One stage's comparison.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageError {
    pub stage: String,
    pub shape: Vec<usize>,
    pub relative_error: f32,
}

/// Runs every stage on the reference's input (cast to `precision`) and compares each with the
/// reference: the backbone's features, d3..d0, p2..p0 and the final map, in that order.
pub fn stage_errors(
    model: &InSPyReNet,
    reference: &Reference,
    device: &Device,
    precision: Precision,
) -> anyhow::Result<Vec<StageError>> {
    let input = reference.tensor("input", device)?.cast(precision.dtype());
    let stages = model.stages(input.clone());
    anyhow::ensure!(
        stages.d0.dtype() == DType::from(precision.dtype()),
        "the network computes in {:?}, not {}",
        stages.d0.dtype(),
        precision.name()
    );
    let mut outputs: Vec<(String, Tensor<4>)> = stages
        .features
        .iter()
        .enumerate()
        .map(|(i, f)| (format!("features.{i}"), f.clone()))
        .collect();
    for (name, t) in [
        ("d3", &stages.d3),
        ("d2", &stages.d2),
        ("d1", &stages.d1),
        ("d0", &stages.d0),
        ("p2", &stages.p2),
        ("p1", &stages.p1),
        ("p0", &stages.p0),
    ] {
        outputs.push((name.to_string(), t.clone()));
    }
    outputs.push(("pred".into(), model.forward(input)));
    outputs
        .into_iter()
        .map(|(stage, t)| {
            let (ours, shape) = values(t);
            let (want, want_shape) = reference.get(&stage)?;
            anyhow::ensure!(
                shape == want_shape,
                "{stage}: shape {shape:?}, the reference's {want_shape:?}"
            );
            let relative_error = relative_error(&ours, &want);
            Ok(StageError {
                stage,
                shape,
                relative_error,
            })
        })
        .collect()
}
