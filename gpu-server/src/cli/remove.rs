//! `gpu-server remove`: background removal for files and folders, in the spirit of
//! transparent-background's and rembg's command lines.

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use shared::{
    compose::{MaskOptions, OutputType},
    cutout::{self, CutoutOptions, Mask},
    encode::OutputFormat,
    intake::{self, Limits},
    refine::Refine,
};

use super::ModelArgs;
use crate::model::Segmenter;

const EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Photos, or folders whose JPEG/PNG/WebP files are all processed.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output file (for one input photo) or folder (created if missing).
    #[arg(short, long)]
    pub output: PathBuf,
    /// rgba | mask | trimap | white | green | color:R,G,B | blur
    #[arg(long = "type", default_value = "rgba")]
    pub output_type: OutputType,
    /// off | foreground | matting: alpha matting at full resolution in the band the mask is
    /// unsure of, and the subject's own colour under soft edges. Default: matting (off for
    /// `--type mask`).
    #[arg(long)]
    pub refine: Option<Refine>,
    /// Use this mask (an 8-bit grey PNG, any size, stretched to the photo) instead of the
    /// model's; one input photo only.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Hard threshold 0..1 on the mask (default: keep the soft mask).
    #[arg(long, value_parser = parse_threshold)]
    pub threshold: Option<f32>,
    /// Remove the subject and keep the background instead.
    #[arg(long)]
    pub reverse: bool,
    /// png | webp | jpeg (JPEG has no transparency: transparent areas become white).
    #[arg(long, default_value = "png")]
    pub format: OutputFormat,
    #[command(flatten)]
    pub model: ModelArgs,
}

impl RemoveArgs {
    /// The cut-out's options, as the API's form gives them.
    pub fn cutout_options(&self) -> CutoutOptions {
        CutoutOptions {
            output: self.output_type,
            mask: MaskOptions {
                threshold: self.threshold,
                reverse: self.reverse,
            },
            format: self.format,
            refine: self
                .refine
                .unwrap_or(CutoutOptions::default_refine(self.output_type)),
        }
    }
}

fn parse_threshold(s: &str) -> Result<f32, String> {
    let t: f32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&t) {
        Ok(t)
    } else {
        Err(format!("{t} is outside 0..1"))
    }
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Expand folders (sorted, not recursive) into their image files; keep files as given.
fn collect_inputs(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = fs::read_dir(input)
                .with_context(|| format!("reading folder {}", input.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && is_image(p))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

/// One input photo and an output path with an extension: write exactly there. Otherwise the
/// output is a folder and each result is named after its photo.
fn output_path(args: &RemoveArgs, single: bool, input: &Path) -> PathBuf {
    if single && args.output.extension().is_some() && !args.output.is_dir() {
        return args.output.clone();
    }
    // Append the extension to the stem as text: `with_extension` would replace the last dot's
    // suffix of names such as `rex.v2.jpg`.
    let mut name = input.file_stem().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(args.format.extension());
    args.output.join(name)
}

/// Where masks come from: the model, or the one the caller supplied.
enum Masks {
    Model(Segmenter),
    Supplied(Vec<u8>),
}

fn process(masks: &Masks, args: &RemoveArgs, input: &Path, output: &Path) -> anyhow::Result<()> {
    let bytes = fs::read(input).context("cannot read the file")?;
    let limits = Limits::default();
    let decoded = intake::decode(&bytes, &limits)?;
    let mask = match masks {
        Masks::Model(seg) => seg
            .masks(&[&decoded.rgb8()])
            .pop()
            .expect("one mask per photo"),
        Masks::Supplied(png) => {
            let (w, h) = (decoded.image.width(), decoded.image.height());
            Mask::decode(png, &limits, w, h)?
        }
    };
    let encoded = cutout::finish(&decoded.image, mask, &args.cutout_options())
        .map_err(anyhow::Error::msg)?
        .bytes;
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    // Write beside the target and rename, so a failure never leaves half a file.
    let tmp = output.with_extension("partial");
    fs::write(&tmp, encoded).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, output).with_context(|| format!("writing {}", output.display()))?;
    Ok(())
}

pub fn run(args: RemoveArgs) -> anyhow::Result<ExitCode> {
    let files = collect_inputs(&args.inputs)?;
    if files.is_empty() {
        bail!("no JPEG, PNG or WebP files among the inputs");
    }
    let masks = match &args.mask {
        Some(path) => {
            if files.len() != 1 {
                bail!("--mask goes with exactly one input photo");
            }
            Masks::Supplied(
                fs::read(path).with_context(|| format!("reading the mask {}", path.display()))?,
            )
        }
        None => Masks::Model(args.model.segmenter()?),
    };
    let single = files.len() == 1 && args.inputs.len() == 1 && !args.inputs[0].is_dir();
    let bar = ProgressBar::new(files.len() as u64);
    if files.len() > 1 {
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed_precise} eta {eta} {msg}")
                .expect("valid template"),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut failed = 0usize;
    let mut written = std::collections::HashSet::new();
    for input in &files {
        bar.set_message(
            input
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
        let output = output_path(&args, single, input);
        if !written.insert(output.clone()) {
            failed += 1;
            bar.suspend(|| {
                eprintln!(
                    "skipped {}: another input already wrote {}",
                    input.display(),
                    output.display()
                )
            });
            bar.inc(1);
            continue;
        }
        match process(&masks, &args, input, &output) {
            Ok(()) => {
                if files.len() == 1 {
                    eprintln!("{} -> {}", input.display(), output.display());
                }
            }
            Err(e) => {
                failed += 1;
                bar.suspend(|| eprintln!("skipped {}: {e:#}", input.display()));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let done = files.len() - failed;
    eprintln!("{done} of {} done, {failed} skipped", files.len());
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
