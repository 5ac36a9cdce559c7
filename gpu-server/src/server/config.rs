//! Service settings: every one a flag and an environment variable, with defaults that work on a
//! laptop. The original service's variable names are accepted as they were. Those the Worker
//! reads too take their names and defaults from `shared::settings`.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use clap::Args;
use shared::{render::RenderOptions, settings as s};

use crate::{
    cli::ModelArgs,
    model::{ModelKind, Precision, inspyrenet::Mode},
};

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (Cloud Run sets PORT).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Processing cache: a folder, `file:///path`, `gs://bucket[/prefix]`, `s3://bucket[/prefix]`
    /// (R2 with AWS_ENDPOINT), `memory://`, or a bare GCS bucket name. GCS_BUCKET_NAME is the
    /// original service's name for it.
    #[arg(long, env = "STORAGE_BUCKET", default_value = ".data/cache")]
    pub storage_bucket: String,
    /// Share images and kept results; same forms as STORAGE_BUCKET.
    #[arg(long, env = "CUSTOMER_STORAGE_BUCKET", default_value = ".data/shares")]
    pub customer_storage_bucket: String,
    /// Seconds before a storage call is given up (cache misses then, shares 503).
    #[arg(long, env = "STORAGE_TIMEOUT_SECS", default_value_t = 10)]
    pub storage_timeout_secs: u64,

    /// Public base URL for share links and og: tags, no trailing slash. Default: the request's Host.
    #[arg(long, env = s::PUBLIC_BASE_URL.env)]
    pub public_base_url: Option<String>,
    /// Where the share page's "make your own" link points.
    #[arg(long, env = s::SHOP_URL.env, default_value = s::SHOP_URL.default)]
    pub shop_url: String,
    /// Name shown on share pages.
    #[arg(long, env = s::SITE_NAME.env, default_value = s::SITE_NAME.default)]
    pub site_name: String,

    /// HMAC secret for share tokens (shared with the edge Worker). Unset: a random one per
    /// process, so tokens do not survive a restart.
    #[arg(long, env = s::SHARE_TOKEN_SECRET.env, hide_env_values = true)]
    pub share_token_secret: Option<String>,
    /// Lifetime of a share token, seconds.
    #[arg(long, env = "SHARE_TOKEN_TTL_SECS", default_value_t = 7 * 24 * 3600)]
    pub share_token_ttl_secs: u64,

    /// Largest upload in bytes.
    #[arg(long, env = s::MAX_UPLOAD_BYTES.env, default_value = s::MAX_UPLOAD_BYTES.default)]
    pub max_upload_bytes: usize,
    /// Largest upload in pixels (width × height, read from the header before decoding).
    #[arg(long, env = s::MAX_PIXELS.env, default_value = s::MAX_PIXELS.default)]
    pub max_pixels: u64,

    /// Images being processed at once (decoded, queued or in inference); beyond it: 503.
    #[arg(long, env = "QUEUE_SIZE", default_value_t = 4)]
    pub queue_size: usize,
    /// Images inferred together (GPU). Default: 4 on a GPU backend, 1 on the CPU.
    #[arg(long, env = "BATCH_SIZE")]
    pub batch_size: Option<usize>,
    /// How long the first request of a batch waits for others, milliseconds.
    #[arg(long, env = "BATCH_WAIT_MS", default_value_t = 8)]
    pub batch_wait_ms: u64,
    /// Share renders at once; beyond it: 503.
    #[arg(long, env = "RENDER_CONCURRENCY", default_value_t = 4)]
    pub render_concurrency: usize,
    /// Per-request time limit, seconds (a request waiting longer answers 503).
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", default_value_t = 120)]
    pub request_timeout_secs: u64,

    /// Origins allowed to call the API from a browser, comma-separated (`*` for any).
    #[arg(long, env = s::CORS_ALLOWED_ORIGINS.env, value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,

    /// Requests per minute each client may make to the processing and share routes (a token
    /// bucket per client, as many at once); beyond it: 429 `rate_limited` with `Retry-After`.
    /// 0: no limit. A caller with a valid API key is not limited.
    #[arg(long, env = "RATE_LIMIT_PER_MINUTE", default_value_t = 60)]
    pub rate_limit_per_minute: u32,
    /// Proxies in front of the service that append the client's address to `X-Forwarded-For`
    /// (Cloud Run's front end: 1). 0: the connecting address is the client, the header is ignored.
    #[arg(long, env = "TRUSTED_PROXIES", default_value_t = 0)]
    pub trusted_proxies: usize,
    /// Images inferred per UTC day across this instance; beyond it: 429
    /// `daily_budget_exhausted` until midnight UTC (cached results and shares are still
    /// served). 0: no budget. Counted in memory: a restart starts the day again.
    #[arg(long, env = "DAILY_IMAGE_BUDGET", default_value_t = 0)]
    pub daily_image_budget: u64,

    /// Keys of server-to-server callers, comma-separated, sent as `X-Api-Key` or
    /// `Authorization: Bearer`: a keyed caller is not rate limited (the budget still counts), a
    /// wrong key is 401 `invalid_api_key`, and the remove.bg-compatible route needs one.
    #[arg(long, env = "API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Vec<String>,

    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log format: `json` (Cloud Logging) or `text`. Default: json on Cloud Run, text elsewhere.
    #[arg(long, env = "LOG_FORMAT")]
    pub log_format: Option<String>,

    /// Batch and use the GPU's faster paths (the original's flag).
    #[arg(long, env = "ENABLE_GPU_OPTIMIZATIONS", default_value_t = false)]
    pub enable_gpu_optimizations: bool,
    /// InSPyReNet mode (`base` or `fast`), as the original: serves InSPyReNet when its
    /// checkpoint is there (see INSPYRENET_CHECKPOINT), else U²-Netp with a warning.
    #[arg(long, env = "INSPIRENET_MODE")]
    pub inspirenet_mode: Option<String>,

    /// Watermark logo (PNG with alpha). Default: the product's paw print.
    #[arg(long, env = "WATERMARK_LOGO")]
    pub watermark_logo: Option<PathBuf>,
    /// Watermark text under the logo (for example the shop's name).
    #[arg(long, env = s::WATERMARK_TEXT.env)]
    pub watermark_text: Option<String>,
    /// Watermark position: nw, n, ne, w, center, e, sw, s, se or tile.
    #[arg(long, env = s::WATERMARK_GRAVITY.env, default_value = s::WATERMARK_GRAVITY.default)]
    pub watermark_gravity: String,
    /// Distance from the edges: pixels (24) or a fraction of the shorter side (0.03, 3%).
    #[arg(long, env = s::WATERMARK_OFFSET.env, default_value = s::WATERMARK_OFFSET.default)]
    pub watermark_offset: String,
    /// Watermark opacity, 0..1.
    #[arg(long, env = s::WATERMARK_OPACITY.env, default_value = s::WATERMARK_OPACITY.default)]
    pub watermark_opacity: f32,
    /// Logo width relative to the shorter side.
    #[arg(long, env = s::WATERMARK_SCALE.env, default_value = s::WATERMARK_SCALE.default)]
    pub watermark_scale: f32,
    /// Behind transparent cut-outs when shared: blur, white, #rrggbb or gradient:#top|#bottom.
    #[arg(long, env = s::SHARE_BACKGROUND.env, default_value = s::SHARE_BACKGROUND.default)]
    pub share_background: String,
    /// Share cards of transparent cut-outs: `plain`, or `sticker` (cropped, a white die-cut
    /// border and a soft shadow).
    #[arg(long, env = s::SHARE_STYLE.env, default_value = s::SHARE_STYLE.default)]
    pub share_style: String,
}

impl ServeArgs {
    /// The processing-cache location, honouring the original's `GCS_BUCKET_NAME` when
    /// `STORAGE_BUCKET` was not given.
    pub fn cache_location(&self) -> String {
        match std::env::var("GCS_BUCKET_NAME") {
            Ok(name) if !name.is_empty() && std::env::var_os("STORAGE_BUCKET").is_none() => name,
            _ => self.storage_bucket.clone(),
        }
    }

    pub fn batch_size(&self) -> usize {
        let gpu = !matches!(self.model.backend, crate::model::Backend::Cpu);
        self.batch_size
            .unwrap_or(if gpu || self.enable_gpu_optimizations {
                4
            } else {
                1
            })
            .clamp(1, 64)
    }

    /// PRECISION when given; else f16 where ENABLE_GPU_OPTIMIZATIONS asks for it for InSPyReNet
    /// on a GPU backend. U²-Netp stays f32 (f16 moves its masks by up to 30 / 255 at edges, for
    /// little gain on a 1.1M-parameter network), and so does the CPU (where f16 is slower); a
    /// note says so.
    pub fn precision(&self, kind: ModelKind) -> (Precision, Option<String>) {
        if let Some(p) = self.model.precision {
            return (p, None);
        }
        if !self.enable_gpu_optimizations {
            return (Precision::F32, None);
        }
        if kind == ModelKind::U2netp {
            return (
                Precision::F32,
                Some(
                    "ENABLE_GPU_OPTIMIZATIONS: u2netp computes in f32 (PRECISION=f16 forces half precision)"
                        .to_owned(),
                ),
            );
        }
        if matches!(self.model.backend, crate::model::Backend::Cpu) {
            return (
                Precision::F32,
                Some(
                    "ENABLE_GPU_OPTIMIZATIONS on the cpu backend: computing in f32 (PRECISION=f16 forces half precision)"
                        .to_owned(),
                ),
            );
        }
        (Precision::F16, None)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }

    pub fn storage_timeout(&self) -> Duration {
        Duration::from_secs(self.storage_timeout_secs.max(1))
    }

    /// Share rendering settings, checked.
    pub fn render_options(&self) -> anyhow::Result<RenderOptions> {
        let logo = match &self.watermark_logo {
            Some(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("WATERMARK_LOGO {}: {e}", path.display()))?;
                Some(
                    image::load_from_memory(&bytes)
                        .map_err(|e| anyhow::anyhow!("WATERMARK_LOGO {}: {e}", path.display()))?
                        .to_rgba8(),
                )
            }
            None => None,
        };
        let vars = [
            (s::WATERMARK_TEXT.env, self.watermark_text.clone()),
            (
                s::WATERMARK_GRAVITY.env,
                Some(self.watermark_gravity.clone()),
            ),
            (s::WATERMARK_OFFSET.env, Some(self.watermark_offset.clone())),
            (
                s::WATERMARK_OPACITY.env,
                Some(self.watermark_opacity.to_string()),
            ),
            (
                s::WATERMARK_SCALE.env,
                Some(self.watermark_scale.to_string()),
            ),
            (s::SHARE_BACKGROUND.env, Some(self.share_background.clone())),
            (s::SHARE_STYLE.env, Some(self.share_style.clone())),
        ];
        let var = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v.clone())
        };
        RenderOptions::from_vars(var, logo).map_err(anyhow::Error::msg)
    }

    /// The model to serve, and a note when the original's `INSPIRENET_MODE` asked for
    /// InSPyReNet but no checkpoint is configured (U²-Netp serves then; reported, not silent).
    /// An explicit `MODEL=inspyrenet-*` is served as asked (and fails to load without its
    /// checkpoint, naming the fix).
    pub fn served_model(&self) -> anyhow::Result<(ModelKind, Option<String>)> {
        if self.model.model != ModelKind::U2netp {
            return Ok((self.model.model, None));
        }
        let Some(name) = &self.inspirenet_mode else {
            return Ok((ModelKind::U2netp, None));
        };
        let mode = Mode::parse(name).ok_or_else(|| {
            anyhow::anyhow!("INSPIRENET_MODE must be `base` or `fast`, got {name:?}")
        })?;
        let models = self.model.dir();
        if models.has_inspyrenet(mode) {
            return Ok((ModelKind::from_inspyrenet_mode(mode), None));
        }
        Ok((
            ModelKind::U2netp,
            Some(format!(
                "INSPIRENET_MODE={name} asked for InSPyReNet, but its checkpoint {} is not there; serving u2netp",
                models.inspyrenet_checkpoint(mode).display()
            )),
        ))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::model::inspyrenet::Resize;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["gpu-server"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).expect("valid arguments").serve
    }

    #[test]
    fn inspirenet_mode_serves_inspyrenet_only_with_its_checkpoint() {
        let dir = std::env::temp_dir().join(format!("served-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.to_str().unwrap();

        let (kind, note) = args(&["--model-dir", d]).served_model().unwrap();
        assert_eq!((kind, note), (ModelKind::U2netp, None));

        let (kind, note) = args(&["--model-dir", d, "--inspirenet-mode", "base"])
            .served_model()
            .unwrap();
        assert_eq!(kind, ModelKind::U2netp);
        let note = note.expect("a missing checkpoint is reported");
        assert!(
            note.contains("ckpt_base.pth") && note.contains("serving u2netp"),
            "{note}"
        );

        std::fs::write(dir.join("ckpt_fast.pth"), b"operator's file").unwrap();
        let (kind, note) = args(&["--model-dir", d, "--inspirenet-mode", "fast"])
            .served_model()
            .unwrap();
        assert_eq!((kind, note), (ModelKind::InspyrenetFast, None));

        let err = args(&["--model-dir", d, "--inspirenet-mode", "huge"])
            .served_model()
            .unwrap_err();
        assert!(err.to_string().contains("`base` or `fast`"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resize_settings_are_checked() {
        let a = args(&[]);
        assert_eq!(
            a.model.resize_for(ModelKind::InspyrenetBase).unwrap(),
            Resize::Static { side: 1024 }
        );
        assert_eq!(
            a.model.resize_for(ModelKind::InspyrenetFast).unwrap(),
            Resize::Static { side: 384 }
        );
        let a = args(&["--target-size", "640"]);
        assert_eq!(
            a.model.resize_for(ModelKind::InspyrenetBase).unwrap(),
            Resize::Static { side: 640 }
        );
        assert!(
            args(&["--target-size", "1000"])
                .model
                .resize_for(ModelKind::InspyrenetBase)
                .is_err()
        );
        assert_eq!(
            args(&["--resize", "dynamic"])
                .model
                .resize_for(ModelKind::InspyrenetBase)
                .unwrap(),
            Resize::Dynamic
        );
        let err = args(&["--resize", "bicubic"])
            .model
            .resize_for(ModelKind::InspyrenetBase)
            .unwrap_err();
        assert!(err.to_string().contains("INSPIRENET_RESIZE"), "{err}");
    }

    #[test]
    fn half_precision_where_gpu_optimisations_ask_for_it_on_a_gpu() {
        let base = ModelKind::InspyrenetBase;
        assert_eq!(args(&[]).precision(base), (Precision::F32, None));
        let gpu_opt = ["--backend", "cuda", "--enable-gpu-optimizations"];
        assert_eq!(args(&gpu_opt).precision(base), (Precision::F16, None));
        let (p, note) = args(&gpu_opt).precision(ModelKind::U2netp);
        assert_eq!(p, Precision::F32);
        assert!(note.expect("said").contains("u2netp computes in f32"));
        assert_eq!(
            args(&["--backend", "vulkan"]).precision(base),
            (Precision::F32, None)
        );
        let (p, note) = args(&["--enable-gpu-optimizations"]).precision(base);
        assert_eq!(p, Precision::F32);
        assert!(note.expect("said").contains("cpu backend"));
        assert_eq!(
            args(&["--precision", "f16"]).precision(ModelKind::U2netp),
            (Precision::F16, None)
        );
        assert_eq!(
            args(&[&gpu_opt[..], &["--precision", "f32"]].concat()).precision(base),
            (Precision::F32, None)
        );
        assert!(Cli::try_parse_from(["gpu-server", "--precision", "f8"]).is_err());
    }
}
