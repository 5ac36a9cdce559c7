//! `gpu-server remove`: background removal for files and folders, in the spirit of
//! transparent-background's and rembg's command lines.

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use shared::{
    compose::{MaskOptions, OutputType},
    cutout::{self, CutoutOptions, Mask},
    effects::Effects,
    encode::OutputFormat,
    intake::{self, Limits},
    refine::Refine,
};

use super::ModelArgs;
use super::cores::{self, FinishCores, Wait};
use crate::model::{Backend, Segmenter};

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
    /// png | webp | jpeg | auto (JPEG has no transparency: transparent areas become white;
    /// auto is PNG when anything is transparent, else JPEG).
    #[arg(long, default_value = "png")]
    pub format: OutputFormat,
    /// Print each photo's stage times (read and decode, model, refine/encode/write) to stderr,
    /// one JSON line per photo.
    #[arg(long)]
    pub timings: bool,
    #[command(flatten)]
    pub effects: EffectsArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// The print-shop options, each the API's form field of the same name (`--crop-margin` is
/// `crop_margin`), parsed by the same [`Effects::from_fields`].
#[derive(Debug, Clone, Default, Args)]
pub struct EffectsArgs {
    /// Crop to the subject (specks ignored).
    #[arg(long)]
    pub crop: bool,
    /// Margin around the cropped subject: 1, 2 or 4 lengths as CSS (20px, 5% of the subject).
    #[arg(long)]
    pub crop_margin: Option<String>,
    /// The canvas: WxH pixels, a print size (4x6in, 10x15cm) or a preset: 4x6in, 5x7in,
    /// 8x10in, 11x14in, a5, a4, a3, letter.
    #[arg(long)]
    pub size: Option<String>,
    /// Resolution written into the file, 72..1200 (300 with a print size).
    #[arg(long)]
    pub dpi: Option<String>,
    /// The subject's share of the canvas: 10%..100%.
    #[arg(long)]
    pub scale: Option<String>,
    /// original | center | "x% y%".
    #[arg(long)]
    pub position: Option<String>,
    /// A soft drop shadow.
    #[arg(long)]
    pub shadow: bool,
    /// 0..100 (default 50).
    #[arg(long)]
    pub shadow_opacity: Option<String>,
    /// Softness, % of the subject's long side (default 2).
    #[arg(long)]
    pub shadow_blur: Option<String>,
    /// "x% y%" of the subject's long side (default "1% 2%").
    #[arg(long)]
    pub shadow_offset: Option<String>,
    /// A sticker border (one closed contour).
    #[arg(long)]
    pub outline: bool,
    /// #rrggbb, #rrggbbaa or a colour name (default white).
    #[arg(long)]
    pub outline_color: Option<String>,
    /// % of the subject's long side (default 3).
    #[arg(long)]
    pub outline_width: Option<String>,
    /// Background colour: #rrggbb, #rrggbbaa or a colour name.
    #[arg(long)]
    pub bg_color: Option<String>,
    /// Background photo, fitted by cover.
    #[arg(long)]
    pub bg_image: Option<PathBuf>,
    /// rgba | alpha (the final alpha alone).
    #[arg(long)]
    pub channels: Option<String>,
}

impl EffectsArgs {
    pub fn effects(&self) -> anyhow::Result<Effects> {
        let flag = |on: bool| on.then_some("true");
        let fields: [(&str, Option<&str>); 15] = [
            ("crop", flag(self.crop)),
            ("crop_margin", self.crop_margin.as_deref()),
            ("size", self.size.as_deref()),
            ("dpi", self.dpi.as_deref()),
            ("scale", self.scale.as_deref()),
            ("position", self.position.as_deref()),
            ("shadow", flag(self.shadow)),
            ("shadow_opacity", self.shadow_opacity.as_deref()),
            ("shadow_blur", self.shadow_blur.as_deref()),
            ("shadow_offset", self.shadow_offset.as_deref()),
            ("outline", flag(self.outline)),
            ("outline_color", self.outline_color.as_deref()),
            ("outline_width", self.outline_width.as_deref()),
            ("bg_color", self.bg_color.as_deref()),
            ("channels", self.channels.as_deref()),
        ];
        Effects::from_fields(|name| fields.iter().find(|(n, _)| *n == name).and_then(|f| f.1))
            .map_err(|r| anyhow::anyhow!(r.message))
    }
}

impl RemoveArgs {
    /// The cut-out's options, as the API's form gives them, checked as the API checks them.
    pub fn cutout_options(&self) -> anyhow::Result<CutoutOptions> {
        let opts = CutoutOptions {
            output: self.output_type,
            mask: MaskOptions {
                threshold: self.threshold,
                reverse: self.reverse,
            },
            format: self.format,
            refine: self
                .refine
                .unwrap_or(CutoutOptions::default_refine(self.output_type)),
            effects: self.effects.effects()?,
        };
        opts.check(self.effects.bg_image.is_some())
            .map_err(|r| anyhow::anyhow!(r.message))?;
        Ok(opts)
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
/// output is a folder and each result is named after its photo (with `--format auto`, the
/// extension of the format each picture was written in).
fn output_path(args: &RemoveArgs, single: bool, input: &Path, format: OutputFormat) -> PathBuf {
    if single && args.output.extension().is_some() && !args.output.is_dir() {
        return args.output.clone();
    }
    // Append the extension to the stem as text: `with_extension` would replace the last dot's
    // suffix of names such as `rex.v2.jpg`.
    let mut name = input.file_stem().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(format.extension());
    args.output.join(name)
}

/// Where masks come from: the model, or the one the caller supplied.
enum Masks {
    Model(Segmenter),
    Supplied(Vec<u8>),
}

/// A photo read and decoded: the pipeline's first stage.
fn read(input: &Path) -> anyhow::Result<intake::Decoded> {
    let bytes = fs::read(input).context("cannot read the file")?;
    Ok(intake::decode(&bytes, &Limits::default())?)
}

/// The photo's mask, from the model or the supplied file: the second stage.
fn mask_of(masks: &Masks, decoded: &intake::Decoded) -> anyhow::Result<Mask> {
    Ok(match masks {
        Masks::Model(seg) => seg
            .masks(&[&decoded.rgb8()])
            .pop()
            .expect("one mask per photo"),
        Masks::Supplied(png) => {
            let (w, h) = (decoded.image.width(), decoded.image.height());
            Mask::decode(png, &Limits::default(), w, h)?
        }
    })
}

/// The cut-out made and written; the path it was written to: the third stage.
fn finish(
    args: &RemoveArgs,
    opts: &CutoutOptions,
    background: Option<&image::RgbImage>,
    single: bool,
    input: &Path,
    decoded: &intake::Decoded,
    mask: Mask,
) -> anyhow::Result<PathBuf> {
    let done = cutout::finish(&decoded.image, mask, opts, background)?;
    let format = if done.content_type == OutputFormat::Jpeg.mime() {
        OutputFormat::Jpeg
    } else {
        opts.format.resolve(&done.picture)
    };
    let output = &output_path(args, single, input, format);
    let encoded = done.bytes;
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    // Write beside the target and rename, so a failure never leaves half a file.
    let tmp = output.with_extension("partial");
    fs::write(&tmp, encoded).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, output).with_context(|| format!("writing {}", output.display()))?;
    Ok(output.clone())
}

/// Milliseconds since `t`.
fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// One photo's time in each stage: read and decode, model, refine/encode/write (ms).
pub type StageMs = [f64; 3];

/// Pixels of the photos decoded and not yet written above which the next photo waits to be
/// read: about two 12 MP photos, so one is decoded and masked while the one before finishes (at
/// 12 MP the finishing takes 3.5–6× the model's time, so the overlap is whole) and a third does
/// not wait in memory besides. Photos of a few megapixels never reach it. A third 12 MP photo
/// in flight was 36 MB of decoded pixels and its mask faulted in afresh: on 3 noisy 12 MP photos
/// (AMD EPYC Zen 4, 2 cores, default output, four alternating runs each) page faults went from
/// 152–154k to 139–151k, peak RSS from 622–630 to 572–620 MB, wall time 4.03–4.30 → 3.71–4.09 s.
const IN_FLIGHT_PIXELS: u64 = 20_000_000;

/// The pixels of the photos in flight (see [`IN_FLIGHT_PIXELS`]), and whether the writing
/// stage has ended (then nobody waits for room any more: a panic there must not leave the
/// reading stage waiting for ever).
#[derive(Default)]
struct InFlight {
    state: std::sync::Mutex<(u64, bool)>,
    freed: std::sync::Condvar,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, bool)> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wait while at least [`IN_FLIGHT_PIXELS`] are in flight.
    fn wait_for_room(&self) {
        let mut state = self.lock();
        while state.0 >= IN_FLIGHT_PIXELS && !state.1 {
            state = self
                .freed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn add(&self, n: u64) {
        self.lock().0 += n;
    }

    fn release(&self, n: u64) {
        self.lock().0 -= n;
        self.freed.notify_all();
    }
}

/// Ends the writing stage for [`InFlight`] when dropped, however the stage ends.
struct WriterGone<'a>(&'a InFlight);

impl Drop for WriterGone<'_> {
    fn drop(&mut self) {
        self.0.lock().1 = true;
        self.0.freed.notify_all();
    }
}

/// Photos go through three stages at once, each on its own thread: reading and decoding the
/// next photo, the model's mask of this one, and refining, encoding and writing the one
/// before, so decoding and writing are not what the user waits for. Channels of one photo
/// keep memory bounded (at most about five photos in flight, and at most about two of 12 MP:
/// [`IN_FLIGHT_PIXELS`]) and the order is the inputs'.
/// While the first photo decodes, the model warms up on the CPU ([`Segmenter::warm_up`]), so
/// the first photo's mask takes what the later ones' take. How the stages share the cores is in
/// [`cores`]. `report` gets each photo's outcome and stage times, in order, on the writing
/// thread.
fn pipeline(
    jobs: &[&Path],
    masks: &Masks,
    args: &RemoveArgs,
    opts: &CutoutOptions,
    background: Option<&image::RgbImage>,
    single: bool,
    report: impl FnMut(&Path, anyhow::Result<PathBuf>, StageMs) + Send,
) {
    use std::sync::mpsc::sync_channel;
    // Each photo travels with its pixel count, released once it is written.
    type Read = (anyhow::Result<intake::Decoded>, StageMs, u64);
    type Masked = (anyhow::Result<(intake::Decoded, Mask)>, StageMs, u64);
    let (to_model, decoded) = sync_channel::<(usize, Read)>(1);
    let (to_writer, masked) = sync_channel::<(usize, Masked)>(1);
    let in_flight = &InFlight::default();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for (i, input) in jobs.iter().enumerate() {
                in_flight.wait_for_room();
                let t = Instant::now();
                let read = read(input);
                let pixels = read.as_ref().map_or(0, |d| {
                    u64::from(d.image.width()) * u64::from(d.image.height())
                });
                in_flight.add(pixels);
                if to_model
                    .send((i, (read, [ms(t), 0.0, 0.0], pixels)))
                    .is_err()
                {
                    break;
                }
            }
        });
        let mut report = report;
        let writer = scope.spawn(move || {
            let _gone = WriterGone(in_flight);
            let mut cores = FinishCores::new();
            for (i, (result, mut stages, pixels)) in masked {
                let input = jobs[i];
                let t = Instant::now();
                let written = cores.run(i + 1 == jobs.len(), || {
                    result.and_then(|(decoded, mask)| {
                        finish(args, opts, background, single, input, &decoded, mask)
                    })
                });
                in_flight.release(pixels);
                stages[2] = ms(t);
                cores.learn(stages[1], stages[2]);
                report(input, written, stages);
            }
        });
        // The model stays on this thread: it was loaded here. On a GPU the first photo compiles
        // the kernels itself: a warm-up pass would only add a pass beside a short decode.
        if let Masks::Model(seg) = masks
            && seg.backend() == Backend::Cpu
        {
            seg.warm_up(1);
        }
        let wait = Wait::here();
        while let Some((i, (result, mut stages, pixels))) = wait.recv(&decoded) {
            let t = Instant::now();
            let masked = result.and_then(|d| mask_of(masks, &d).map(|m| (d, m)));
            stages[1] = ms(t);
            if !wait.send(&to_writer, (i, (masked, stages, pixels))) {
                break;
            }
        }
        drop(to_writer);
        // Help the last photos' finishing until it is done.
        wait.until(|| writer.is_finished());
    });
}

pub fn run(args: RemoveArgs) -> anyhow::Result<ExitCode> {
    // Before anything starts the pool: this thread runs the model (see `cores`).
    cores::join_the_pool();
    let files = collect_inputs(&args.inputs)?;
    if files.is_empty() {
        bail!("no JPEG, PNG or WebP files among the inputs");
    }
    let opts = args.cutout_options()?;
    let background = match &args.effects.bg_image {
        Some(path) => {
            let bytes = fs::read(path)
                .with_context(|| format!("reading the background {}", path.display()))?;
            let decoded = intake::decode(&bytes, &Limits::default())
                .with_context(|| format!("the background {}", path.display()))?;
            Some(decoded.rgb8().into_owned())
        }
        None => None,
    };
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
    let mut jobs = Vec::with_capacity(files.len());
    for input in &files {
        let planned = output_path(&args, single, input, opts.format);
        if written.insert(planned.clone()) {
            jobs.push(input.as_path());
        } else {
            failed += 1;
            bar.suspend(|| {
                eprintln!(
                    "skipped {}: another input already wrote {}",
                    input.display(),
                    planned.display()
                )
            });
            bar.inc(1);
        }
    }
    let many = files.len() > 1;
    pipeline(
        &jobs,
        &masks,
        &args,
        &opts,
        background.as_ref(),
        single,
        |input, result, stages| {
            if args.timings {
                let line = serde_json::json!({
                    "photo": input,
                    "read_ms": stages[0],
                    "model_ms": stages[1],
                    "finish_ms": stages[2],
                });
                bar.suspend(|| eprintln!("{line}"));
            }
            match result {
                Ok(output) => {
                    if !many {
                        eprintln!("{} -> {}", input.display(), output.display());
                    }
                }
                Err(e) => {
                    failed += 1;
                    bar.suspend(|| eprintln!("skipped {}: {e:#}", input.display()));
                }
            }
            bar.set_message(
                input
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
            bar.inc(1);
        },
    );
    bar.finish_and_clear();
    let done = files.len() - failed;
    eprintln!("{done} of {} done, {failed} skipped", files.len());
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[test]
    fn the_reader_waits_for_room_until_a_photo_is_written_or_the_writer_is_gone() {
        let in_flight = InFlight::default();
        in_flight.wait_for_room(); // nothing in flight: no wait
        in_flight.add(12_000_000);
        in_flight.wait_for_room(); // one 12 MP photo: room for the next
        in_flight.add(12_000_000);
        let read_on = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                in_flight.wait_for_room();
                read_on.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(50));
            assert!(
                !read_on.load(Ordering::SeqCst),
                "two 12 MP photos in flight: it waits"
            );
            in_flight.release(12_000_000);
        });
        assert!(read_on.load(Ordering::SeqCst), "one written: it reads on");

        // However the writing stage ends, nobody waits for room any more.
        in_flight.add(12_000_000);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| in_flight.wait_for_room());
            std::thread::sleep(Duration::from_millis(50));
            assert!(!waiter.is_finished());
            drop(WriterGone(&in_flight));
            waiter.join().unwrap();
        });
    }
}
