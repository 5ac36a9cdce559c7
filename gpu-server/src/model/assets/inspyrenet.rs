//! InSPyReNet's weights: the operator's checkpoint, loaded strictly and converted once to
//! Burn's format (with a stamp naming its source and a SHA-256 sidecar) for the next start.

use std::{fs, path::PathBuf};

use burn::tensor::Device;

use super::{AssetError, ModelDir, file_sha256, write_atomic};
use crate::model::inspyrenet::{self, InSPyReNet, InSPyReNetConfig, Mode};

impl ModelDir {
    pub fn with_inspyrenet_checkpoint(mut self, path: Option<PathBuf>) -> Self {
        self.inspyrenet_checkpoint = path;
        self
    }

    /// The PyTorch checkpoint for `mode`.
    pub fn inspyrenet_checkpoint(&self, mode: Mode) -> PathBuf {
        self.inspyrenet_checkpoint
            .clone()
            .unwrap_or_else(|| self.dir.join(mode.checkpoint_name()))
    }

    /// Its one-time conversion to Burn's format, and the stamp naming what it came from.
    fn inspyrenet_converted(&self, mode: Mode) -> (PathBuf, PathBuf) {
        let bpk = self.dir.join(format!("inspyrenet-{}.bpk", mode.name()));
        let stamp = bpk.with_extension("bpk.source");
        (bpk, stamp)
    }

    /// Whether InSPyReNet `mode` can be loaded (a checkpoint or its conversion is present).
    pub fn has_inspyrenet(&self, mode: Mode) -> bool {
        self.inspyrenet_checkpoint(mode).is_file() || self.inspyrenet_converted(mode).0.is_file()
    }

    /// Load InSPyReNet `mode`: from its conversion when that matches the checkpoint (size and
    /// modification time), else from the checkpoint, strictly, converting it for next time.
    /// A conversion that cannot be written (read-only directory) only costs the next start.
    pub fn load_inspyrenet(&self, mode: Mode, device: &Device) -> Result<InSPyReNet, AssetError> {
        let config = InSPyReNetConfig::swin_b(mode.base_size());
        let checkpoint = self.inspyrenet_checkpoint(mode);
        let (bpk, stamp_path) = self.inspyrenet_converted(mode);
        let stamp = fs::metadata(&checkpoint).ok().map(|m| {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{} {} {}\n", checkpoint.display(), m.len(), mtime)
        });
        let converted_matches = bpk.is_file()
            && match &stamp {
                // No checkpoint: the operator shipped only the conversion.
                None => true,
                Some(s) => fs::read_to_string(&stamp_path).is_ok_and(|found| &found == s),
            };
        if converted_matches {
            // The conversion is checked against its SHA-256 sidecar, as U²-Netp's is: a
            // damaged one is made again from the checkpoint, or refused without one.
            match Self::verify_sidecar(&bpk) {
                Ok(()) => return Ok(inspyrenet::weights::load_burnpack(&bpk, &config, device)?),
                Err(damaged) if stamp.is_none() => return Err(damaged),
                Err(damaged) => {
                    tracing::warn!(error = %damaged, "converting the InSPyReNet checkpoint again");
                }
            }
        }
        let Some(stamp) = stamp else {
            return Err(AssetError::NoCheckpoint {
                mode: mode.name(),
                name: mode.checkpoint_name(),
                path: checkpoint,
            });
        };
        let model = inspyrenet::weights::load_checkpoint(&checkpoint, &config, device)?;
        let saved = inspyrenet::weights::save_burnpack(&model, &bpk)
            .map_err(|e| e.to_string())
            .and_then(|()| file_sha256(&bpk).map_err(|e| e.to_string()))
            .and_then(|sum| {
                write_atomic(&Self::sidecar(&bpk), sum.as_bytes()).map_err(|e| e.to_string())
            })
            .and_then(|()| write_atomic(&stamp_path, stamp.as_bytes()).map_err(|e| e.to_string()));
        if let Err(why) = saved {
            tracing::warn!(%why, "could not cache the converted InSPyReNet weights");
        }
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The conversion is trusted only with a matching sidecar: without a checkpoint to make it
    /// again, a damaged or unchecked one is refused, naming the fix.
    #[test]
    fn a_damaged_conversion_without_its_checkpoint_is_refused() {
        let dir = std::env::temp_dir().join(format!("petcut-insp-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let models = ModelDir::new(&dir);
        let (bpk, _) = models.inspyrenet_converted(Mode::Fast);
        fs::write(&bpk, b"a conversion").unwrap();
        assert!(models.has_inspyrenet(Mode::Fast));
        let refuse = |why: &str| {
            let err = models
                .load_inspyrenet(Mode::Fast, &Device::flex())
                .unwrap_err()
                .to_string();
            assert!(err.contains("damaged") && err.contains(why), "{err}");
        };
        refuse("checksum file unreadable");
        fs::write(ModelDir::sidecar(&bpk), "0".repeat(64)).unwrap();
        refuse("checksum mismatch");
        // A matching sidecar lets it through to the loader (which refuses these bytes itself).
        fs::write(ModelDir::sidecar(&bpk), file_sha256(&bpk).unwrap()).unwrap();
        let err = models
            .load_inspyrenet(Mode::Fast, &Device::flex())
            .unwrap_err()
            .to_string();
        assert!(!err.contains("checksum"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
