//! Loading the original PyTorch checkpoints (`ckpt_base.pth`, `ckpt_fast.pth`), strictly, and
//! converting them once to Burn's own format for fast cold starts.
//!
//! Strict means: every tensor of the model is found with the right shape, and every tensor of
//! the checkpoint is used. Two kinds of checkpoint entries are not parameters and are accounted
//! for explicitly: BatchNorm's `num_batches_tracked` (a training counter) and Swin's
//! `relative_position_index` (a constant buffer, which must equal the one this port computes).
//! Anything else left over is an error that names it.

use std::path::{Path, PathBuf};

use burn::{
    store::{BurnpackStore, ModuleSnapshot, PytorchStore, pytorch_reader::PytorchReader},
    tensor::Device,
};

use super::{InSPyReNet, InSPyReNetConfig, window_attention::relative_position_index};

/// Checkpoint entries that are not parameters, and why they are not loaded.
pub const NOT_PARAMETERS: [(&str, &str); 2] = [
    ("num_batches_tracked", "BatchNorm's training step counter"),
    (
        "relative_position_index",
        "Swin's constant index buffer, checked against the computed one",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read the checkpoint {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("the checkpoint {path} does not fit InSPyReNet: {problems}")]
    Mismatch { path: PathBuf, problems: String },
    #[error("cannot write the converted weights {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

fn shown(items: &[String]) -> String {
    const MAX: usize = 8;
    let mut s = items
        .iter()
        .take(MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > MAX {
        s.push_str(&format!(" and {} more", items.len() - MAX));
    }
    s
}

/// Load a `torch.save(model.state_dict())` checkpoint of upstream's `InSPyReNet`.
pub fn load_checkpoint(
    path: &Path,
    config: &InSPyReNetConfig,
    device: &Device,
) -> Result<InSPyReNet, WeightsError> {
    let read_err = |reason: String| WeightsError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let mut problems = Vec::new();
    let mut wrong_index = Vec::new();

    // The index buffers are not loaded, so check them here.
    let reader = PytorchReader::new(path).map_err(|e| read_err(e.to_string()))?;
    let ws = config.backbone.window_size;
    let expected = relative_position_index(ws);
    for (name, tensor) in reader.tensors() {
        if !name.ends_with("relative_position_index") {
            continue;
        }
        let bytes = tensor
            .read()
            .map_err(|e| read_err(format!("{name}: {e}")))?;
        let found: Vec<i64> = bytes
            .chunks_exact(8)
            .map(|b| i64::from_ne_bytes(b.try_into().expect("8 bytes")))
            .collect();
        if tensor.shape() != [ws * ws, ws * ws] || found != expected {
            wrong_index.push(name.clone());
        }
    }
    drop(reader);
    if !wrong_index.is_empty() {
        wrong_index.sort();
        problems.push(format!(
            "not the index of a {ws}×{ws} window: {}",
            shown(&wrong_index)
        ));
    }

    let mut model = config.init(device);
    // Shape errors, missing and unused tensors come back in the result and are reported
    // together below, rather than as the store's first failure.
    let mut store = PytorchStore::from_file(path)
        .validate(false)
        .allow_partial(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| read_err(e.to_string()))?;
    if !result.errors.is_empty() {
        let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        problems.push(shown(&errors));
    }
    if !result.missing.is_empty() {
        let missing: Vec<String> = result.missing.iter().map(|(p, _)| p.clone()).collect();
        problems.push(format!("missing {}", shown(&missing)));
    }
    let unused: Vec<String> = result
        .unused
        .iter()
        .filter(|k| !NOT_PARAMETERS.iter().any(|(leaf, _)| k.ends_with(leaf)))
        .cloned()
        .collect();
    if !unused.is_empty() {
        problems.push(format!("not used by the model: {}", shown(&unused)));
    }
    if problems.is_empty() {
        Ok(model)
    } else {
        Err(WeightsError::Mismatch {
            path: path.to_path_buf(),
            problems: problems.join("; "),
        })
    }
}

/// Save a loaded model in Burn's own format (`.bpk`), atomically.
pub fn save_burnpack(model: &InSPyReNet, path: &Path) -> Result<(), WeightsError> {
    let write_err = |reason: String| WeightsError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let tmp = path.with_extension("bpk.partial");
    let mut store = BurnpackStore::from_file(&tmp)
        .auto_extension(false)
        .overwrite(true);
    model
        .save_into(&mut store)
        .map_err(|e| write_err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| write_err(e.to_string()))
}

/// Load weights saved by [`save_burnpack`]; every tensor must be present.
pub fn load_burnpack(
    path: &Path,
    config: &InSPyReNetConfig,
    device: &Device,
) -> Result<InSPyReNet, WeightsError> {
    let mut model = config.init(device);
    let mut store = BurnpackStore::from_file(path)
        .auto_extension(false)
        .validate(true)
        .allow_partial(false);
    let result = model
        .load_from(&mut store)
        .map_err(|e| WeightsError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if !result.is_success() || !result.unused.is_empty() {
        return Err(WeightsError::Mismatch {
            path: path.to_path_buf(),
            problems: format!(
                "{} missing, {} unused",
                result.missing.len(),
                result.unused.len()
            ),
        });
    }
    Ok(model)
}
