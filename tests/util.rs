//! Helpers shared by the end-to-end tests.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A fixture under `tests/fixtures`.
pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

/// A fresh, empty scratch directory under the target directory's tmp.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("pet-cutout-tests")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A workspace binary built by the same `cargo test --workspace` run (cargo builds every
/// member's binaries before it runs any test). Test executables live in `<target>/<profile>/deps`.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable is in <target>/<profile>/deps");
    let bin = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (or `cargo build -p {name}` first)",
        bin.display()
    );
    bin
}

/// The `gpu-server` binary, with the caller's model choices cleared from its environment.
pub fn gpu_server() -> Command {
    let mut cmd = Command::new(workspace_bin("gpu-server"));
    cmd.env_remove("BACKEND").env_remove("MODEL");
    cmd
}

/// Run a command, panicking with its output if it could not start.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Mean absolute difference of two same-sized 8-bit greyscale images, in levels.
pub fn mean_abs(a: &image::GrayImage, b: &image::GrayImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    total as f64 / a.as_raw().len() as f64
}
