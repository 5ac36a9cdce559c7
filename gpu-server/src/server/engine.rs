//! Inference off the async runtime: one worker thread owns the model, fed by a bounded queue.
//!
//! Requests that arrive together are inferred as one batch (up to `batch_size`, waiting at most
//! `batch_wait` for the batch to fill), which is what makes a GPU pay. The model loads on the
//! worker at start (and runs once, so that a GPU compiles its kernels) while the server already
//! answers `/health`; `/ready` tells when it is done.

use std::{
    panic::AssertUnwindSafe,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
        mpsc::{self, RecvTimeoutError, SyncSender, TrySendError},
    },
    time::{Duration, Instant},
};

use image::RgbImage;
use tokio::sync::{oneshot, watch};

use crate::model::{
    Backend, ModelKind, Precision, Segmenter, assets::ModelDir, inspyrenet::Resize,
};

/// The model's state as the HTTP layer sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelStatus {
    Loading,
    Ready { load_ms: f64, device: String },
    Failed(String),
}

/// A finished inference.
#[derive(Debug)]
pub struct Inferred {
    /// The photo, handed back.
    pub rgb: RgbImage,
    pub mask: shared::cutout::Mask,
    /// Time the batch took on the device.
    pub infer_ms: f64,
    /// How many images shared that batch.
    pub batch: usize,
    /// Time spent waiting in the queue.
    pub queued_ms: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the processing queue is full")]
    QueueFull,
    #[error("the model is not available: {0}")]
    Unavailable(String),
    #[error("inference failed: {0}")]
    Failed(String),
}

struct Job {
    rgb: RgbImage,
    reply: oneshot::Sender<Result<Inferred, EngineError>>,
    enqueued: Instant,
}

/// Observer of each batch (for metrics): batch size and seconds.
pub type BatchObserver = Arc<dyn Fn(usize, f64) + Send + Sync>;

pub struct Engine {
    tx: Mutex<Option<SyncSender<Job>>>,
    status: watch::Receiver<ModelStatus>,
    depth: Arc<AtomicUsize>,
    kind: ModelKind,
    backend: Backend,
    precision: Precision,
    /// See [`Engine::variant`]; fixed for the process, so made once.
    variant: String,
    batch_size: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("kind", &self.kind)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// What the engine loads: the model, where it runs, its weights and how photos are sized.
#[derive(Debug, Clone)]
pub struct ServedModel {
    pub kind: ModelKind,
    pub backend: Backend,
    pub models: ModelDir,
    pub resize: Resize,
    pub precision: Precision,
}

/// [`Engine::variant`] of a served model.
fn variant(kind: ModelKind, resize: Resize, precision: Precision) -> String {
    let mut v = String::new();
    if kind != ModelKind::U2netp {
        match resize {
            Resize::Static { side } if side == kind.input_size() => {}
            Resize::Static { side } => v.push_str(&format!("|static{side}")),
            Resize::Dynamic => v.push_str("|dynamic"),
        }
    }
    if precision != Precision::F32 {
        v.push('|');
        v.push_str(precision.name());
    }
    v
}

impl Engine {
    /// Start the worker thread; it loads the model, then serves the queue.
    pub fn start(
        ServedModel {
            kind,
            backend,
            models,
            resize,
            precision,
        }: ServedModel,
        queue: usize,
        batch_size: usize,
        batch_wait: Duration,
        observe: BatchObserver,
    ) -> Engine {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue.max(1));
        let (status_tx, status) = watch::channel(ModelStatus::Loading);
        let depth = Arc::new(AtomicUsize::new(0));
        let worker_depth = depth.clone();
        std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || {
                let t0 = Instant::now();
                let loaded = std::panic::catch_unwind(|| {
                    Segmenter::load_with(kind, backend, &models, resize)
                        .map(|s| s.with_precision(precision))
                });
                let segmenter = match loaded {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "model failed to load");
                        status_tx.send_replace(ModelStatus::Failed(e.to_string()));
                        fail_all(rx, &worker_depth, &e.to_string());
                        return;
                    }
                    Err(_) => {
                        let msg = "the model loader panicked".to_owned();
                        status_tx.send_replace(ModelStatus::Failed(msg.clone()));
                        fail_all(rx, &worker_depth, &msg);
                        return;
                    }
                };
                // `/ready` once the first photo no longer pays for compiling (and tuning) the
                // kernels: Cloud Run's startup probe holds traffic until then.
                let warm = Instant::now();
                if std::panic::catch_unwind(AssertUnwindSafe(|| segmenter.warm_up(batch_size))).is_err() {
                    let msg = "the model's warm-up pass panicked".to_owned();
                    status_tx.send_replace(ModelStatus::Failed(msg.clone()));
                    fail_all(rx, &worker_depth, &msg);
                    return;
                }
                let warm_ms = warm.elapsed().as_secs_f64() * 1e3;
                let load_ms = t0.elapsed().as_secs_f64() * 1e3;
                tracing::info!(model = %kind, ?backend, precision = precision.name(), load_ms, warm_ms, "model loaded");
                status_tx.send_replace(ModelStatus::Ready {
                    load_ms,
                    device: format!("{backend:?}").to_lowercase(),
                });
                serve(
                    &segmenter,
                    rx,
                    &worker_depth,
                    batch_size,
                    batch_wait,
                    &observe,
                );
            })
            .expect("spawn the inference thread");
        Engine {
            tx: Mutex::new(Some(tx)),
            status,
            depth,
            kind,
            backend,
            precision,
            variant: variant(kind, resize, precision),
            batch_size,
        }
    }

    /// The settings besides the model that change a mask, as a cache-key suffix: empty for the
    /// model's defaults (static resize at its base size, f32), so those keys stay as they were.
    pub fn variant(&self) -> &str {
        &self.variant
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn status(&self) -> ModelStatus {
        self.status.borrow().clone()
    }

    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Images queued or in inference now.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Wait until the model is loaded (or failed), at most `limit`.
    pub async fn wait_ready(&self, limit: Duration) -> ModelStatus {
        let mut rx = self.status.clone();
        let done = rx.wait_for(|s| !matches!(s, ModelStatus::Loading));
        match tokio::time::timeout(limit, done).await {
            Ok(Ok(s)) => s.clone(),
            _ => self.status(),
        }
    }

    /// Queue one image; answers its mask. Never waits for room: a full queue is an error.
    pub async fn infer(&self, rgb: RgbImage) -> Result<Inferred, EngineError> {
        if let ModelStatus::Failed(reason) = self.status() {
            return Err(EngineError::Unavailable(reason));
        }
        let (reply, rx) = oneshot::channel();
        let job = Job {
            rgb,
            reply,
            enqueued: Instant::now(),
        };
        {
            let guard = self.tx.lock().expect("engine sender lock");
            let Some(tx) = guard.as_ref() else {
                return Err(EngineError::Unavailable("shutting down".into()));
            };
            match tx.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => return Err(EngineError::QueueFull),
                Err(TrySendError::Disconnected(_)) => {
                    return Err(EngineError::Unavailable(
                        "the inference worker stopped".into(),
                    ));
                }
            }
            self.depth.fetch_add(1, Ordering::Relaxed);
        }
        rx.await
            .unwrap_or_else(|_| Err(EngineError::Failed("the inference worker stopped".into())))
    }

    /// Stop taking work; the worker finishes what is queued and exits.
    pub fn close(&self) {
        self.tx.lock().expect("engine sender lock").take();
    }
}

fn fail_all(rx: mpsc::Receiver<Job>, depth: &AtomicUsize, reason: &str) {
    for job in rx {
        depth.fetch_sub(1, Ordering::Relaxed);
        let _ = job
            .reply
            .send(Err(EngineError::Unavailable(reason.to_owned())));
    }
}

fn serve(
    segmenter: &Segmenter,
    rx: mpsc::Receiver<Job>,
    depth: &AtomicUsize,
    batch_size: usize,
    batch_wait: Duration,
    observe: &BatchObserver,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + batch_wait;
        while batch.len() < batch_size {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        // Requests that gave up (timeout, client gone) are not worth the device time.
        let (live, dropped): (Vec<Job>, Vec<Job>) =
            batch.into_iter().partition(|j| !j.reply.is_closed());
        depth.fetch_sub(dropped.len(), Ordering::Relaxed);
        if live.is_empty() {
            continue;
        }
        let n = live.len();
        let t0 = Instant::now();
        let photos: Vec<&RgbImage> = live.iter().map(|j| &j.rgb).collect();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| segmenter.masks(&photos)));
        drop(photos);
        let secs = t0.elapsed().as_secs_f64();
        observe(n, secs);
        depth.fetch_sub(n, Ordering::Relaxed);
        match result {
            Ok(masks) => {
                for (job, mask) in live.into_iter().zip(masks) {
                    let queued_ms = (t0 - job.enqueued).as_secs_f64() * 1e3;
                    let _ = job.reply.send(Ok(Inferred {
                        rgb: job.rgb,
                        mask,
                        infer_ms: secs * 1e3,
                        batch: n,
                        queued_ms,
                    }));
                }
            }
            Err(_) => {
                tracing::error!(batch = n, "inference panicked");
                for job in live {
                    let _ = job
                        .reply
                        .send(Err(EngineError::Failed("inference panicked".into())));
                }
            }
        }
    }
    tracing::info!("inference worker stopped");
}
