//! `gpu-server bench`: median inference time on this machine, for `scripts/bench-u2netp`.

use std::{path::PathBuf, process::ExitCode, time::Instant};

use clap::Args;
use shared::{
    cutout::{self, CutoutOptions},
    intake::{self, Limits},
};

use super::ModelArgs;
use crate::model::Segmenter;

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
    /// Time the whole cut-out of this photo instead (bytes in, RGBA PNG bytes out: decode,
    /// preprocess, inference, mask, compose, encode: `shared::cutout`, what the API runs), the
    /// same work as rembg's `remove()`.
    #[arg(long)]
    pub photo: Option<PathBuf>,
}

/// Median of `iters` timed runs after `warmup` untimed ones, plus min and max, in ms.
fn time(warmup: usize, iters: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
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
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[0], times[times.len() - 1])
}

/// The cut-out as PNG bytes, and the milliseconds spent in decode, mask (preprocess,
/// inference, postprocess), compose and encode.
fn cutout_png(seg: &Segmenter, bytes: &[u8]) -> anyhow::Result<(Vec<u8>, [f64; 4])> {
    let mut stages = [0.0; 4];
    let mut lap = {
        let mut t = Instant::now();
        move |stage: &mut f64| {
            *stage = t.elapsed().as_secs_f64() * 1e3;
            t = Instant::now();
        }
    };
    let opts = CutoutOptions::default();
    let decoded = intake::decode(bytes, &Limits::default())?;
    lap(&mut stages[0]);
    let mask = seg.masks(&[&decoded.rgb8()]).pop().expect("one mask");
    lap(&mut stages[1]);
    let out = cutout::compose(&decoded.image, mask, &opts);
    lap(&mut stages[2]);
    let png = cutout::encode(&out, &opts).map_err(anyhow::Error::msg)?;
    lap(&mut stages[3]);
    Ok((png, stages))
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let seg = args.model.segmenter()?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    if let Some(photo) = &args.photo {
        let bytes = std::fs::read(photo)?;
        let png_bytes = cutout_png(&seg, &bytes)?.0.len();
        let mut per_stage: Vec<[f64; 4]> = Vec::new();
        let (median, min, max) = time(args.warmup, args.iters, || {
            let (_, stages) = cutout_png(&seg, &bytes).expect("the photo decoded once already");
            per_stage.push(stages);
        });
        let stage_median = |i: usize| {
            let mut v: Vec<f64> = per_stage.iter().map(|s| s[i]).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "{}",
            serde_json::json!({
                "model": seg.kind(),
                "backend": seg.backend(),
                "precision": seg.precision(),
                "photo": photo,
                "png_bytes": png_bytes,
                "median_ms": median,
                "stages_median_ms": {
                    "decode": stage_median(0),
                    "mask": stage_median(1),
                    "compose": stage_median(2),
                    "encode_png": stage_median(3),
                },
                "min_ms": min,
                "max_ms": max,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    let side = args.model.model.input_size();
    let n = (side * side * 3) as usize;
    // A deterministic, non-constant input; timing does not depend on the values.
    let input: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let batch = vec![input; args.batch.max(1)];
    let (median, min, max) = time(args.warmup, args.iters, || {
        seg.saliency(&batch, side);
    });
    let per = |ms: f64| ms / batch.len() as f64;
    println!(
        "{}",
        serde_json::json!({
            "model": seg.kind(),
            "backend": seg.backend(),
            "precision": seg.precision(),
            "batch": batch.len(),
            "load_ms": load_ms,
            "median_ms_per_image": per(median),
            "min_ms_per_image": per(min),
            "max_ms_per_image": per(max),
        })
    );
    Ok(ExitCode::SUCCESS)
}
