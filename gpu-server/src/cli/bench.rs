//! `gpu-server bench`: median inference time on this machine, for `scripts/bench-u2netp`.

use std::{path::PathBuf, process::ExitCode, time::Instant};

use clap::Args;
use shared::{
    cutout::{self, CutoutOptions, Mask, Stage},
    effects::{self, Backdrop, Effects},
    intake::{self, Limits},
    refine::Refine,
};

use super::ModelArgs;
use crate::model::{Precision, Segmenter};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Timed runs.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// After the timed runs, as many runs again with every CPU kernel call timed: prints where a
    /// forward pass spends its time, layer by layer (layers of one shape share a line), and what
    /// is left outside the kernels.
    #[arg(long, conflicts_with_all = ["photo", "effects_of", "stages_against"])]
    pub profile: bool,
    /// Time the whole cut-out of this photo instead (bytes in, RGBA PNG bytes out: decode,
    /// preprocess, inference, mask, compose, encode: `shared::cutout`, what the API runs), the
    /// same work as rembg's `remove()`.
    #[arg(long)]
    pub photo: Option<PathBuf>,
    /// With --photo: use this mask (8-bit grey PNG, any size) instead of the model's.
    #[arg(long, requires = "photo")]
    pub mask: Option<PathBuf>,
    /// With --photo: off | foreground | matting (default matting, as the CLI and the API).
    #[arg(long, default_value = "matting")]
    pub refine: Refine,
    /// Time each print effect (crop, outline, shadow, and all three) on this cut-out (an RGBA
    /// PNG, e.g. from `gpu-server remove`), as the pipeline runs them after the cut-out.
    #[arg(long, conflicts_with = "photo")]
    pub effects_of: Option<PathBuf>,
    /// Check InSPyReNet Swin-B (1024²) stage by stage against the reference code's outputs in
    /// this folder (`checkpoint.pth`, `outputs.pth`: `scripts/generate_inspyrenet_reference.py
    /// --full DIR`) on --backend in --precision: prints each stage's relative error and bound,
    /// the parity tests' own, and exits 1 past a bound.
    #[arg(long, conflicts_with_all = ["photo", "effects_of"])]
    pub stages_against: Option<PathBuf>,
}

/// `--stages-against`: the full-size parity check where only this binary travels.
fn bench_stages(args: &BenchArgs, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    use crate::model::inspyrenet::{InSPyReNetConfig, parity, weights};
    let device = args.model.backend.device().map_err(anyhow::Error::msg)?;
    let precision = args.model.precision.unwrap_or_default();
    let t = Instant::now();
    let model = weights::load_checkpoint(
        &dir.join("checkpoint.pth"),
        &InSPyReNetConfig::swin_b(1024),
        &device,
    )?
    .with_precision(precision);
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let reference = parity::Reference::open(&dir.join("outputs.pth"))?;
    let t = Instant::now();
    let errors = parity::stage_errors(&model, &reference, &device, precision)?;
    let run_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut within = true;
    let stages: Vec<serde_json::Value> = errors
        .into_iter()
        .map(|e| {
            let bound = match precision {
                Precision::F32 => parity::FULL_TOLERANCE,
                Precision::F16 => parity::full_half_tolerance(&e.stage),
            };
            let ok = e.relative_error <= bound;
            within &= ok;
            serde_json::json!({"stage": e.stage, "shape": e.shape,
                "relative_error": e.relative_error, "bound": bound, "within": ok})
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({"backend": args.model.backend, "precision": precision,
            "load_ms": load_ms, "run_ms": run_ms, "within": within, "stages": stages})
    );
    Ok(if within {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The effects `--effects-of` times, as form fields.
const EFFECTS: [(&str, &[(&str, &str)]); 4] = [
    ("crop", &[("crop", "true")]),
    ("outline", &[("outline", "true")]),
    ("shadow", &[("shadow", "true")]),
    (
        "all",
        &[("crop", "true"), ("outline", "true"), ("shadow", "true")],
    ),
];

fn bench_effects(args: &BenchArgs, path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let cutout = image::open(path)?.into_rgba8();
    let mut out = serde_json::Map::new();
    for (name, fields) in EFFECTS {
        let fx = Effects::from_fields(|n| fields.iter().find(|(k, _)| *k == n).map(|f| f.1))
            .map_err(|r| anyhow::anyhow!(r.message))?;
        let (median, min, _, _) = time(args.warmup, args.iters, || {
            effects::apply(
                cutout.clone(),
                Backdrop::Transparent,
                &fx,
                cutout::max_canvas_pixels(),
            )
            .expect("the effects apply");
        });
        out.insert(
            name.to_owned(),
            serde_json::json!({"median_ms": median, "min_ms": min}),
        );
    }
    let (copy, _, _, _) = time(args.warmup, args.iters, || {
        std::hint::black_box(cutout.clone());
    });
    out.insert("copy_of_input_ms".into(), copy.into());
    out.insert(
        "pixels".into(),
        (u64::from(cutout.width()) * u64::from(cutout.height())).into(),
    );
    println!("{}", serde_json::Value::Object(out));
    Ok(ExitCode::SUCCESS)
}

/// Median of `iters` timed runs after `warmup` untimed ones, plus min and max, in ms.
/// Median, min, max and first of `iters` timed calls of `f` after `warmup` untimed ones.
fn time(warmup: usize, iters: usize, mut f: impl FnMut()) -> (f64, f64, f64, f64) {
    for _ in 0..warmup {
        f();
    }
    let mut times: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let first = times[0];
    times.sort_by(f64::total_cmp);
    (
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        first,
    )
}

/// The stages of one cut-out, in the order they run.
const STAGES: [&str; 8] = [
    "decode",
    "mask",
    "trimap",
    "matting",
    "foreground",
    "compose",
    "effects",
    "encode_png",
];

/// Page faults this process has taken so far (first touches of memory: each costs system
/// time, and on a virtual machine the host's as well); 0 where the platform does not say.
fn faults() -> u64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
            return u64::try_from(usage.ru_minflt + usage.ru_majflt).unwrap_or(0);
        }
    }
    0
}

/// The cut-out as PNG bytes, the milliseconds spent in each of [`STAGES`] (0 where a stage
/// did not run) and the page faults taken in each.
fn cutout_png(
    seg: Option<&Segmenter>,
    supplied: Option<&[u8]>,
    bytes: &[u8],
    refine: Refine,
) -> anyhow::Result<(Vec<u8>, [f64; 8], [u64; 8])> {
    let mut stages = [0.0; 8];
    let mut stage_faults = [0; 8];
    let mut t = Instant::now();
    let mut f = faults();
    let mut lap = |stage: usize| {
        stages[stage] = t.elapsed().as_secs_f64() * 1e3;
        let now = faults();
        stage_faults[stage] = now - f;
        f = now;
        t = Instant::now();
    };
    let opts = CutoutOptions {
        refine,
        ..CutoutOptions::default()
    };
    let limits = Limits::default();
    let decoded = intake::decode(bytes, &limits)?;
    lap(0);
    let mask = match (seg, supplied) {
        (_, Some(png)) => {
            Mask::decode(png, &limits, decoded.image.width(), decoded.image.height())?
        }
        (Some(seg), None) => seg.masks(&[&decoded.rgb8()]).pop().expect("one mask"),
        (None, None) => anyhow::bail!("no model and no mask"),
    };
    lap(1);
    let out = cutout::compose_timed(&decoded.image, mask, &opts, None, &mut |stage| {
        lap(match stage {
            Stage::Trimap => 2,
            Stage::Matting => 3,
            Stage::Foreground => 4,
            Stage::Compose => 5,
            Stage::Effects => 6,
        })
    })?;
    let png = cutout::encode(&out.picture, &opts).map_err(anyhow::Error::msg)?;
    lap(7);
    Ok((png, stages, stage_faults))
}

/// Bytes and milliseconds (median of 3) of each way the finished cut-out `png` can go to the
/// customer: the PNG download, the page's lossy WebP preview (and the same at full size), the
/// API's `format=webp` (lossless), a JPEG on white.
fn formats(png: &[u8]) -> anyhow::Result<serde_json::Value> {
    let picture = image::load_from_memory(png)?;
    let rgba = picture.to_rgba8();
    let (w, h) = rgba.dimensions();
    let timed = |f: &dyn Fn() -> anyhow::Result<Vec<u8>>| -> anyhow::Result<serde_json::Value> {
        let mut ms = Vec::new();
        let mut bytes = 0;
        for _ in 0..3 {
            let t = Instant::now();
            bytes = f()?.len();
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        Ok(serde_json::json!({ "bytes": bytes, "ms": ms[1] }))
    };
    let encode = |format| shared::encode::encode(&picture, format).map_err(anyhow::Error::msg);
    Ok(serde_json::json!({
        "png": timed(&|| encode(shared::encode::OutputFormat::Png))?,
        "webp_full_size": timed(&|| {
            crate::preview::webp_rgba(rgba.as_raw(), w, h).map_err(anyhow::Error::msg)
        })?,
        "webp_preview": timed(&|| crate::preview::preview(&rgba).map_err(anyhow::Error::msg))?,
        "webp_lossless": timed(&|| encode(shared::encode::OutputFormat::Webp))?,
        "jpeg_on_white": timed(&|| encode(shared::encode::OutputFormat::Jpeg))?,
    }))
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    if let Some(path) = &args.effects_of {
        return bench_effects(&args, path);
    }
    if let Some(dir) = &args.stages_against {
        return bench_stages(&args, dir);
    }
    if let Some(photo) = &args.photo {
        let supplied = args.mask.as_ref().map(std::fs::read).transpose()?;
        // A supplied mask needs no model.
        let seg = match supplied {
            Some(_) => None,
            None => Some(args.model.segmenter()?),
        };
        let bytes = std::fs::read(photo)?;
        let run = || cutout_png(seg.as_ref(), supplied.as_deref(), &bytes, args.refine);
        let (png, _, first_faults) = run()?;
        let png_bytes = png.len();
        let formats = formats(&png)?;
        let mut per_stage: Vec<[f64; 8]> = Vec::new();
        let (median, min, max, _) = time(args.warmup, args.iters, || {
            let (_, stages, _) = run().expect("the photo was cut out once already");
            per_stage.push(stages);
        });
        let stage_median = |i: usize| {
            let mut v: Vec<f64> = per_stage.iter().map(|s| s[i]).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let stages: serde_json::Map<String, serde_json::Value> = STAGES
            .iter()
            .enumerate()
            .map(|(i, name)| ((*name).to_owned(), stage_median(i).into()))
            .collect();
        // The first cut-out's faults: later ones reuse memory the allocator kept.
        let first_faults: serde_json::Map<String, serde_json::Value> = STAGES
            .iter()
            .zip(first_faults)
            .map(|(name, n)| ((*name).to_owned(), n.into()))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "model": seg.as_ref().map_or("mask".to_owned(), |s| s.kind().to_string()),
                "backend": seg.as_ref().map(|s| s.backend()),
                "cpu_kernels": crate::model::cpu::Kernels::current().name(),
                "precision": seg.as_ref().map(|s| s.precision()),
                "refine": args.refine,
                "photo": photo,
                "png_bytes": png_bytes,
                "formats": formats,
                "median_ms": median,
                "stages_median_ms": stages,
                "first_run_stage_faults": first_faults,
                "min_ms": min,
                "max_ms": max,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    let seg = args.model.segmenter()?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    // The side the model is fed: TARGET_SIZE under a static resize (for U²-Netp too: any side
    // that is a multiple of 32 runs, as the GPU kit's profile on lavapipe uses), else the
    // model's own.
    let side = match seg.resize() {
        crate::model::inspyrenet::Resize::Static { side } => side,
        crate::model::inspyrenet::Resize::Dynamic => args.model.model.input_size(),
    };
    let n = (side * side * 3) as usize;
    // A deterministic, non-constant input; timing does not depend on the values.
    let input: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let batch = vec![input; args.batch.max(1)];
    let (median, min, max, first) = time(args.warmup, args.iters, || {
        seg.saliency(&batch, side);
    });
    let per = |ms: f64| ms / batch.len() as f64;
    let profile = args
        .profile
        .then(|| profile(&seg, &batch, side, args.iters.max(1)));
    println!(
        "{}",
        serde_json::json!({
            "model": seg.kind(),
            "backend": seg.backend(),
            "cpu_kernels": crate::model::cpu::Kernels::current().name(),
            "precision": seg.precision(),
            "side": side,
            "batch": batch.len(),
            "load_ms": load_ms,
            "median_ms_per_image": per(median),
            "min_ms_per_image": per(min),
            "max_ms_per_image": per(max),
            // After `--warmup 0`, the first forward of the process.
            "first_ms_per_image": per(first),
            "profile": profile,
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// `--profile`: `iters` forward passes with the kernels timed; a table on stderr, the same as
/// JSON for the report.
fn profile(seg: &Segmenter, batch: &[Vec<f32>], side: u32, iters: usize) -> serde_json::Value {
    use crate::model::cpu::profile;
    profile::start();
    let t = Instant::now();
    for _ in 0..iters {
        seg.saliency(batch, side);
    }
    let total_ms = t.elapsed().as_secs_f64() * 1e3 / iters as f64;
    let lines = profile::stop();
    let in_kernels: f64 = lines.iter().map(|(_, l)| l.seconds).sum::<f64>() * 1e3 / iters as f64;
    eprintln!("{:>9} {:>6} {:>6}  layer", "ms/pass", "share", "calls");
    let rows: Vec<serde_json::Value> = lines
        .iter()
        .map(|(name, line)| {
            let ms = line.seconds * 1e3 / iters as f64;
            let calls = line.calls as f64 / iters as f64;
            eprintln!(
                "{ms:>9.2} {:>5.1}% {calls:>6.1}  {name}",
                100.0 * ms / total_ms
            );
            serde_json::json!({"layer": name, "ms_per_pass": ms, "calls_per_pass": calls})
        })
        .collect();
    let outside = total_ms - in_kernels;
    eprintln!(
        "{outside:>9.2} {:>5.1}%         outside these kernels (pre/post-processing, sigmoid, the rest of Burn)",
        100.0 * outside / total_ms
    );
    eprintln!("{total_ms:>9.2} 100.0%         a pass");
    serde_json::json!({"ms_per_pass": total_ms, "outside_kernels_ms": outside, "layers": rows})
}
