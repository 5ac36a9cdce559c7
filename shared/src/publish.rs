//! The share flow, once for both shells (gpu-server's `POST /api/v2/share-image` and the edge
//! Worker's): [`share`] checks the form and the token, finds the picture, reuses an existing
//! share or renders a new one, and stores its objects in the order that keeps a page from ever
//! pointing at a missing image. The shells adapt it to their storage ([`Store`]) and decide
//! where the render runs (a blocking thread under a permit, or the isolate itself).

use std::future::Future;

use crate::{
    api::{ShareManifest, ShareResponse, keys, share_response},
    ids::{content_id, is_valid_id},
    intake::{self, Limits},
    refusal::Refusal,
    render::{CardSubjects, RenderOptions, Rendered, render_share_with},
    share::Platform,
    token,
};

/// Longest accepted title, in characters.
pub const MAX_TITLE_CHARS: usize = 140;

/// The text fields of a share form, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareFields {
    pub platform: Platform,
    /// Trimmed; empty when none was given.
    pub title: String,
}

/// Check `platform` (required) and `title` (optional, at most [`MAX_TITLE_CHARS`]).
pub fn share_fields(platform: Option<&str>, title: Option<&str>) -> Result<ShareFields, Refusal> {
    let platform = platform
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Refusal::bad("missing_platform", "the form has no `platform` field"))?
        .parse()
        .map_err(|e: crate::share::UnknownPlatform| {
            Refusal::new(400, "invalid_platform", e.to_string())
        })?;
    let title = title.unwrap_or("").trim().to_owned();
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(Refusal::new(
            400,
            "invalid_title",
            format!("the title is longer than {MAX_TITLE_CHARS} characters"),
        ));
    }
    Ok(ShareFields { platform, title })
}

/// The share's id: the source picture's bytes, the title and everything that changes the
/// rendering. Same inputs, same id, same stored bytes, on either shell.
pub fn share_id(source: &[u8], title: &str, render_fingerprint: &str) -> String {
    content_id(&[source, title.as_bytes(), render_fingerprint.as_bytes()])
}

/// The manifest of a freshly rendered share.
pub fn manifest(
    id: &str,
    title: &str,
    site_name: &str,
    rendered: &Rendered,
    created_at: u64,
) -> ShareManifest {
    ShareManifest {
        id: id.to_owned(),
        title: if title.is_empty() {
            site_name.to_owned()
        } else {
            title.to_owned()
        },
        alt: if title.is_empty() {
            "A pet photo with its background removed".to_owned()
        } else {
            title.to_owned()
        },
        image: rendered.image.stored(),
        og: rendered.og.stored(),
        pinterest: rendered.pinterest.stored(),
        square: rendered.square.stored(),
        created_at,
    }
}

/// One object to store.
#[derive(Debug, Clone)]
pub struct Object {
    pub key: String,
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    /// Served with a year's `Cache-Control` (the images; the manifest is read, not served).
    pub immutable: bool,
}

/// What a share stores: its images (in any order, or at once), then the manifest, last, only
/// after every image is stored: pages and answers are made from an existing manifest only.
#[derive(Debug, Clone)]
pub struct ShareObjects {
    pub images: [Object; 4],
    pub manifest: Object,
}

/// The objects of a rendered share and its manifest.
pub fn objects(rendered: Rendered, manifest: &ShareManifest) -> ShareObjects {
    let id = &manifest.id;
    let obj = |key: String, e: crate::render::Encoded| Object {
        key,
        bytes: e.bytes,
        content_type: e.content_type,
        immutable: true,
    };
    ShareObjects {
        images: [
            obj(keys::image(id), rendered.image),
            obj(keys::og(id), rendered.og),
            obj(keys::pinterest(id), rendered.pinterest),
            obj(keys::square(id), rendered.square),
        ],
        manifest: Object {
            key: keys::manifest(id),
            bytes: serde_json::to_vec(manifest).expect("a manifest always serialises"),
            content_type: "application/json",
            immutable: false,
        },
    }
}

/// Storage as the share flow sees it: a key-value store of immutable objects.
///
/// `async fn` needs no runtime, so `shared` stays runtime-free; gpu-server implements it over
/// `object_store`, the Worker over R2. An `Err` is the store being unreachable, with the detail
/// for the log.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// The object's bytes, or `None` when there is none.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Store an object whole (a failure leaves nothing readable under its key).
    async fn put(&self, object: Object) -> Result<(), String>;
}

/// A share request's form, as the shell read it (text fields trimmed, empty ones `None`).
#[derive(Debug, Clone, Default)]
pub struct ShareForm {
    pub platform: Option<String>,
    pub title: Option<String>,
    /// The share token `remove-background` answered.
    pub token: Option<String>,
    /// A stored result to share instead of an uploaded picture.
    pub result_id: Option<String>,
    /// The uploaded picture.
    pub image: Option<Vec<u8>>,
}

/// What the flow needs to know of the shell's settings and of the request.
#[derive(Debug, Clone, Copy)]
pub struct ShareContext<'a> {
    /// The share tokens' HMAC secret.
    pub secret: &'a [u8],
    pub limits: Limits,
    /// [`RenderOptions::fingerprint`] of the settings the render step uses.
    pub render_fingerprint: &'a str,
    pub site_name: &'a str,
    /// Absolute base of the links in the answer.
    pub base_url: &'a str,
    /// Unix seconds.
    pub now: u64,
}

/// Why a share was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Refused: answered as it is.
    Refused(Refusal),
    /// Storage is unreachable (the detail, for the log): answered as
    /// [`Refusal::storage_unavailable`]; nothing was half-written.
    Storage(String),
    /// A bug (the detail, for the log): answered with the generic 500.
    Internal(String),
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Refused(r)
    }
}

impl From<intake::IntakeError> for Failure {
    fn from(e: intake::IntakeError) -> Self {
        Failure::Refused(e.into())
    }
}

impl From<token::TokenError> for Failure {
    fn from(e: token::TokenError) -> Self {
        Failure::Refused(e.into())
    }
}

/// The render step of a new share: the shell runs [`RenderJob::run`] where rendering belongs on
/// its side (gpu-server: on a blocking thread, under a render permit and the request timeout;
/// the Worker: in the isolate).
#[derive(Debug)]
pub struct RenderJob {
    /// The picture (checked by [`intake::inspect`]).
    pub source: Vec<u8>,
    /// The stored result's share-ready card subjects, when it has them.
    pub card_subjects: Option<Vec<u8>>,
    pub limits: Limits,
}

impl RenderJob {
    /// Decode and render; `true` when the cards came from the result's card subjects.
    pub fn run(self, opts: &RenderOptions) -> Result<(Rendered, bool), Failure> {
        let subjects = CardSubjects::usable(self.card_subjects.as_deref(), &self.source, opts);
        drop(self.card_subjects);
        let decoded = intake::decode(&self.source, &self.limits)?;
        drop(self.source);
        let rendered = render_share_with(&decoded.image, subjects.as_ref(), opts)
            .map_err(Failure::Internal)?;
        Ok((rendered, subjects.is_some()))
    }
}

/// A share made or found.
#[derive(Debug, Clone)]
pub struct Shared {
    pub response: ShareResponse,
    /// The same picture and title were shared before: that share is answered, nothing rendered.
    pub existing: bool,
    /// A new share's cards were made from the result's share-ready card subjects.
    pub used_card_subjects: bool,
    /// Things worth a warning in the log (an unreadable card-subjects object, say).
    pub warnings: Vec<String>,
}

/// What a share form names as its picture.
enum Picture {
    Upload(Vec<u8>),
    Stored(String),
}

/// The whole share flow.
///
/// Checks, in this order, each with its refusal: `platform` and `title`; a picture (`image`, or
/// `result_id`: `missing_image`); a `token` (`missing_token`, 400); for an upload, any valid
/// token this service signed, for a result, a token for that result (`invalid_token` /
/// `token_expired`, 403); the result stored (`result_not_found`, 404); the picture's type and
/// limits. Then a share of the same picture, title and settings is answered as it is; a new
/// one is rendered by `render` (see [`RenderJob`]), its images stored, then its manifest, last.
/// Results (and their card subjects) are read from `results`, shares live in `shares` (the same
/// store on the Worker).
pub async fn share<R, F>(
    form: ShareForm,
    ctx: &ShareContext<'_>,
    results: &impl Store,
    shares: &impl Store,
    render: R,
) -> Result<Shared, Failure>
where
    R: FnOnce(RenderJob) -> F,
    F: Future<Output = Result<(Rendered, bool), Failure>>,
{
    let ShareFields { platform, title } =
        share_fields(form.platform.as_deref(), form.title.as_deref())?;
    let picture = match (form.image, form.result_id) {
        (Some(image), _) => Picture::Upload(image),
        (None, Some(result_id)) => Picture::Stored(result_id),
        (None, None) => {
            return Err(Refusal::bad(
                "missing_image",
                "the form needs an `image` file or a `result_id` with its `token`",
            )
            .into());
        }
    };
    let tok = form.token.as_deref().ok_or_else(|| {
        Refusal::bad(
            "missing_token",
            "sharing needs the `token` that remove-background answered",
        )
    })?;

    // The picture, and the stored result's id when it is one.
    let (source, stored) = match picture {
        Picture::Upload(image) => {
            token::verify(ctx.secret, tok, ctx.now)?;
            (image, None)
        }
        Picture::Stored(result_id) => {
            if !is_valid_id(&result_id) {
                return Err(
                    Refusal::not_found("result_not_found", "no result with this id").into(),
                );
            }
            token::verify_for(ctx.secret, tok, &result_id, ctx.now)?;
            let result = results
                .get(&keys::result(&result_id))
                .await
                .map_err(Failure::Storage)?
                .ok_or_else(|| {
                    Refusal::not_found(
                        "result_not_found",
                        "this result is no longer stored; please upload the photo again",
                    )
                })?;
            (result, Some(result_id))
        }
    };
    intake::inspect(&source, &ctx.limits)?;

    let id = share_id(&source, &title, ctx.render_fingerprint);
    // Content-addressed: the same picture and title were shared before; reuse that share.
    if let Some(existing) = shares
        .get(&keys::manifest(&id))
        .await
        .map_err(Failure::Storage)?
        && let Ok(manifest) = serde_json::from_slice::<ShareManifest>(&existing)
    {
        return Ok(Shared {
            response: share_response(ctx.base_url, &manifest, platform),
            existing: true,
            used_card_subjects: false,
            warnings: Vec::new(),
        });
    }

    // A stored result comes with its share-ready card subjects (when it has them); optional:
    // without them the cards are made from the result itself, with the same bytes.
    let mut warnings = Vec::new();
    let card_subjects = match &stored {
        Some(result_id) => results
            .get(&keys::card_subjects(result_id))
            .await
            .unwrap_or_else(|e| {
                warnings.push(format!("cannot read the card subjects: {e}"));
                None
            }),
        None => None,
    };
    let (rendered, used_card_subjects) = render(RenderJob {
        source,
        card_subjects,
        limits: ctx.limits,
    })
    .await?;

    let manifest = manifest(&id, &title, ctx.site_name, &rendered, ctx.now);
    let ShareObjects {
        images,
        manifest: meta,
    } = objects(rendered, &manifest);
    // Images first (together), the manifest last: a page exists only once all its images do.
    futures::future::try_join_all(images.into_iter().map(|o| shares.put(o)))
        .await
        .map_err(Failure::Storage)?;
    shares.put(meta).await.map_err(Failure::Storage)?;
    Ok(Shared {
        response: share_response(ctx.base_url, &manifest, platform),
        existing: false,
        used_card_subjects,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_checked_with_stable_codes() {
        let ok = share_fields(Some(" x "), Some("  Rex  ")).unwrap();
        assert_eq!(ok.platform, Platform::X);
        assert_eq!(ok.title, "Rex");
        assert_eq!(
            share_fields(None, None).unwrap_err().code,
            "missing_platform"
        );
        assert_eq!(
            share_fields(Some(" "), None).unwrap_err().code,
            "missing_platform"
        );
        let e = share_fields(Some("myspace"), None).unwrap_err();
        assert_eq!((e.status, e.code), (400, "invalid_platform"));
        let long = "é".repeat(MAX_TITLE_CHARS + 1);
        assert_eq!(
            share_fields(Some("facebook"), Some(&long))
                .unwrap_err()
                .code,
            "invalid_title"
        );
        let exact = "é".repeat(MAX_TITLE_CHARS);
        assert!(share_fields(Some("facebook"), Some(&exact)).is_ok());
    }

    #[test]
    fn ids_change_with_every_input() {
        let a = share_id(b"png", "Rex", "render/v1");
        assert_eq!(a, share_id(b"png", "Rex", "render/v1"));
        assert_ne!(a, share_id(b"png!", "Rex", "render/v1"));
        assert_ne!(a, share_id(b"png", "Max", "render/v1"));
        assert_ne!(a, share_id(b"png", "Rex", "render/v2"));
        assert!(crate::ids::is_valid_id(&a));
    }

    #[test]
    fn manifest_last_and_keys_under_the_share() {
        let src = image::DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            40,
            30,
            image::Rgba([10, 200, 30, 255]),
        ));
        let rendered = crate::render::render_share(&src, &Default::default()).unwrap();
        let m = manifest(&"a".repeat(32), "", "Pet Shop", &rendered, 7);
        assert_eq!(m.title, "Pet Shop");
        assert_eq!(m.og.width, 1200);
        let objs = objects(rendered, &m);
        for o in &objs.images {
            assert!(o.key.starts_with(&format!("shares/{}/", m.id)), "{}", o.key);
            assert!(!o.bytes.is_empty());
        }
        assert_eq!(objs.manifest.key, keys::manifest(&m.id));
        let back: ShareManifest = serde_json::from_slice(&objs.manifest.bytes).unwrap();
        assert_eq!(back, m);
    }

    /// An in-memory store that logs its writes and can fail the n-th one, or every call.
    #[derive(Default)]
    struct Mem {
        objects: std::cell::RefCell<std::collections::BTreeMap<String, Vec<u8>>>,
        puts: std::cell::RefCell<Vec<String>>,
        fail_from_put: Option<usize>,
        unreachable: bool,
    }

    impl Store for Mem {
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
            if self.unreachable {
                return Err("connection refused".into());
            }
            Ok(self.objects.borrow().get(key).cloned())
        }
        async fn put(&self, object: Object) -> Result<(), String> {
            let n = self.puts.borrow().len();
            if self.unreachable || self.fail_from_put.is_some_and(|f| n >= f) {
                return Err("disk full".into());
            }
            self.puts.borrow_mut().push(object.key.clone());
            self.objects.borrow_mut().insert(object.key, object.bytes);
            Ok(())
        }
    }

    const SECRET: &[u8] = b"publish-test-secret-0123";
    const NOW: u64 = 1_800_000_000;

    fn photo() -> Vec<u8> {
        let img = image::RgbaImage::from_fn(64, 48, |x, y| {
            image::Rgba([
                (x * 4) as u8,
                (y * 5) as u8,
                90,
                if x > 8 { 255 } else { 0 },
            ])
        });
        crate::encode::encode(
            &image::DynamicImage::ImageRgba8(img),
            crate::encode::OutputFormat::Png,
        )
        .unwrap()
    }

    fn ctx<'a>(fingerprint: &'a str) -> ShareContext<'a> {
        ShareContext {
            secret: SECRET,
            limits: Limits::default(),
            render_fingerprint: fingerprint,
            site_name: "Pet Shop",
            base_url: "https://pets.example",
            now: NOW,
        }
    }

    fn upload(token: Option<String>) -> ShareForm {
        ShareForm {
            platform: Some("facebook".into()),
            title: Some("Rex".into()),
            token,
            result_id: None,
            image: Some(photo()),
        }
    }

    fn run(form: ShareForm, results: &Mem, shares: &Mem) -> Result<Shared, Failure> {
        let opts = RenderOptions::default();
        let fingerprint = opts.fingerprint();
        futures::executor::block_on(share(form, &ctx(&fingerprint), results, shares, |job| {
            let opts = &opts;
            async move { job.run(opts) }
        }))
    }

    fn code(r: Result<Shared, Failure>) -> (u16, &'static str) {
        match r {
            Err(Failure::Refused(r)) => (r.status, r.code),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_new_share_stores_its_images_then_its_manifest() {
        let (results, shares) = (Mem::default(), Mem::default());
        let t = token::sign(SECRET, &"ab".repeat(16), NOW + 60);
        let made = run(upload(Some(t.clone())), &results, &shares).unwrap();
        assert!(!made.existing && !made.used_card_subjects);
        let id = made.response.id.clone();
        assert!(
            made.response
                .share_url
                .starts_with("https://pets.example/s/")
        );
        let puts = shares.puts.borrow().clone();
        assert_eq!(puts.len(), 5, "{puts:?}");
        assert_eq!(puts.last().unwrap(), &keys::manifest(&id), "manifest last");
        for key in [
            keys::image(&id),
            keys::og(&id),
            keys::pinterest(&id),
            keys::square(&id),
        ] {
            assert!(puts.contains(&key), "{key} stored");
        }
        assert!(
            results.puts.borrow().is_empty(),
            "nothing written to the results"
        );

        // The same picture and title again: the stored share, nothing rendered or written.
        let again = run(upload(Some(t)), &results, &shares).unwrap();
        assert!(again.existing);
        assert_eq!(again.response.id, id);
        assert_eq!(shares.puts.borrow().len(), 5);
    }

    #[test]
    fn a_store_failing_half_way_leaves_no_manifest() {
        let t = token::sign(SECRET, &"ab".repeat(16), NOW + 60);
        for fail_from in 0..5 {
            let shares = Mem {
                fail_from_put: Some(fail_from),
                ..Mem::default()
            };
            let r = run(upload(Some(t.clone())), &Mem::default(), &shares);
            assert!(matches!(r, Err(Failure::Storage(_))), "{r:?}");
            let stored = shares.objects.borrow();
            assert!(
                !stored.keys().any(|k| k.ends_with("/meta.json")),
                "failing from put {fail_from}: {:?}",
                stored.keys()
            );
        }
        let down = Mem {
            unreachable: true,
            ..Mem::default()
        };
        assert!(matches!(
            run(upload(Some(t)), &Mem::default(), &down),
            Err(Failure::Storage(_))
        ));
    }

    #[test]
    fn uploads_and_results_need_their_tokens() {
        let (results, shares) = (Mem::default(), Mem::default());
        assert_eq!(
            code(run(upload(None), &results, &shares)),
            (400, "missing_token")
        );
        let forged = token::sign(b"another secret entirely", &"ab".repeat(16), NOW + 60);
        assert_eq!(
            code(run(upload(Some(forged)), &results, &shares)),
            (403, "invalid_token")
        );
        let expired = token::sign(SECRET, &"ab".repeat(16), NOW - 1);
        assert_eq!(
            code(run(upload(Some(expired)), &results, &shares)),
            (403, "token_expired")
        );
        assert!(
            shares.puts.borrow().is_empty(),
            "nothing stored without a token"
        );

        // A stored result: its own token only.
        let id = "cd".repeat(16);
        results
            .objects
            .borrow_mut()
            .insert(keys::result(&id), photo());
        let of = |result_id: &str, token: String| ShareForm {
            platform: Some("x".into()),
            result_id: Some(result_id.into()),
            token: Some(token),
            ..ShareForm::default()
        };
        let other = token::sign(SECRET, &"ab".repeat(16), NOW + 60);
        assert_eq!(
            code(run(of(&id, other), &results, &shares)),
            (403, "invalid_token")
        );
        let own = token::sign(SECRET, &id, NOW + 60);
        let made = run(of(&id, own.clone()), &results, &shares).unwrap();
        assert!(!made.used_card_subjects, "this result has no card subjects");
        let ghost = "ef".repeat(16);
        let t = token::sign(SECRET, &ghost, NOW + 60);
        assert_eq!(
            code(run(of(&ghost, t), &results, &shares)),
            (404, "result_not_found")
        );
        assert_eq!(
            code(run(of("../../etc/passwd", own), &results, &shares)),
            (404, "result_not_found")
        );
        let none = ShareForm {
            platform: Some("x".into()),
            ..ShareForm::default()
        };
        assert_eq!(code(run(none, &results, &shares)), (400, "missing_image"));
    }

    #[test]
    fn a_result_shares_from_its_card_subjects_with_the_same_bytes() {
        let picture = photo();
        let decoded = intake::decode(&picture, &Limits::default()).unwrap().image;
        let subjects = CardSubjects::new(&decoded, &picture).unwrap().unwrap();
        let id = "cd".repeat(16);
        let with = Mem::default();
        with.objects
            .borrow_mut()
            .insert(keys::result(&id), picture.clone());
        with.objects
            .borrow_mut()
            .insert(keys::card_subjects(&id), subjects.to_bytes().unwrap());
        let without = Mem::default();
        without
            .objects
            .borrow_mut()
            .insert(keys::result(&id), picture);
        let form = || ShareForm {
            platform: Some("pinterest".into()),
            result_id: Some(id.clone()),
            token: Some(token::sign(SECRET, &id, NOW + 60)),
            ..ShareForm::default()
        };
        let (a_shares, b_shares) = (Mem::default(), Mem::default());
        let a = run(form(), &with, &a_shares).unwrap();
        let b = run(form(), &without, &b_shares).unwrap();
        assert!(a.used_card_subjects && !b.used_card_subjects);
        assert_eq!(a.response.id, b.response.id);
        assert_eq!(*a_shares.objects.borrow(), *b_shares.objects.borrow());
    }
}
