//! Coverage-guided fuzz targets of every parser of untrusted bytes.
//!
//! Each target is a function of arbitrary bytes that must never panic, hang or allocate without
//! bound, and that checks what the code promises about its answer (a refusal is a 4xx, a decoded
//! image is within the limits, a page stays escaped). `scripts/fuzz` runs them under libFuzzer
//! (the `libfuzzer` feature and coverage instrumentation); `tests/replay.rs` runs every
//! committed input through them in `cargo test`, so a crash once found stays fixed.
//!
//! Why libFuzzer through `libfuzzer-sys` and not `cargo fuzz` or `cargo afl`: these machines
//! have stable Rust only. `cargo fuzz` adds nightly-only sanitizer flags; rustc's stable
//! `-C passes=sancov-module` with LLVM's coverage options gives libFuzzer the same edge and
//! comparison feedback, and `libfuzzer-sys` builds libFuzzer itself with the C++ compiler
//! Debian has. AFL++ would need its own build and runs a process per input (fork server), far
//! slower on two cores than libFuzzer's in-process loop. Without AddressSanitizer (nightly),
//! memory errors are what safe Rust already rules out; what is left to find is panics,
//! overflows (built with overflow checks), hangs (`-timeout`) and unbounded memory
//! (`-rss_limit_mb`).

use std::sync::OnceLock;

use axum::{
    body::Body,
    extract::{FromRequest, Multipart},
    http::{Request, header},
};
use image::{GenericImageView, RgbImage, RgbaImage};
use shared::{
    api::{ShareFile, ShareManifest, StoredImage},
    compose::OutputType,
    cutout::Mask,
    effects::{self, Backdrop, Effects},
    encode::OutputFormat,
    ids::is_valid_id,
    intake::{self, Limits},
    page::{PageConfig, share_page},
    publish::share_fields,
    refine::Refine,
    refusal::Refusal,
    render::CardSubjects,
    token,
};

/// The server's multipart form reader, this very file: the rest of the server (Burn, the models)
/// would have to be built with coverage instrumentation too, which doubles CI's build for code
/// the reader never calls.
#[path = "../../../gpu-server/src/server/routes/form.rs"]
#[allow(dead_code)]
pub mod form;

/// A fuzz target: its name (the binary, the corpus folder) and its function.
#[derive(Debug)]
pub struct Target {
    pub name: &'static str,
    pub check: fn(&[u8]),
}

impl Target {
    /// One input through the target: returns, or panics with what broke.
    pub fn run(&self, data: &[u8]) {
        (self.check)(data)
    }
}

/// Every target. The three intake targets run the same function from different seeds, so that
/// each decoder gets its own share of the executions and its own corpus.
pub const TARGETS: &[Target] = &[
    Target {
        name: "intake_png",
        check: intake,
    },
    Target {
        name: "intake_jpeg",
        check: intake,
    },
    Target {
        name: "intake_webp",
        check: intake,
    },
    Target {
        name: "mask",
        check: mask,
    },
    Target {
        name: "multipart",
        check: multipart,
    },
    Target {
        name: "token",
        check: token,
    },
    Target {
        name: "ids",
        check: ids,
    },
    Target {
        name: "subjects",
        check: subjects,
    },
    Target {
        name: "share_page",
        check: share_page_of,
    },
    Target {
        name: "fields",
        check: fields,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> &'static Target {
    TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"))
}

/// Limits small enough that an input costs microseconds, not a 50 MP decode, with the same
/// checks in the same order as the real ones.
pub const LIMITS: Limits = Limits {
    max_bytes: 1 << 20,
    max_pixels: 1 << 20,
    min_side: 16,
};

fn assert_refusal(r: &Refusal) {
    assert!(
        (400..500).contains(&r.status),
        "a refusal is a 4xx: {} {} {}",
        r.status,
        r.code,
        r.message
    );
    assert!(!r.code.is_empty() && !r.message.is_empty());
}

/// Sniff, inspect the header, decode under the limits: each answers the same about the same
/// bytes, and a decoded picture is within the limits.
pub fn intake(data: &[u8]) {
    let header = intake::inspect(data, &LIMITS);
    match intake::decode(data, &LIMITS) {
        Ok(decoded) => {
            let header = header.expect("a decodable image has a readable header");
            assert_eq!(intake::sniff(data).ok(), Some(header.format));
            assert_eq!(decoded.format, header.format);
            let (w, h) = decoded.image.dimensions();
            // EXIF orientation may swap the sides.
            assert!(
                (w, h) == (header.width, header.height) || (h, w) == (header.width, header.height),
                "decoded {w}×{h}, header {}×{}",
                header.width,
                header.height
            );
            assert!(u64::from(w) * u64::from(h) <= LIMITS.max_pixels);
            assert!(w >= LIMITS.min_side && h >= LIMITS.min_side);
            let rgb = decoded.rgb8();
            assert_eq!(rgb.dimensions(), (w, h));
        }
        Err(e) => {
            assert_refusal(&Refusal::from(e));
        }
    }
}

/// A supplied mask: a grey PNG stretched to the photo, or an `invalid_mask` refusal.
pub fn mask(data: &[u8]) {
    let (width, height) = (40, 30);
    match Mask::decode(data, &LIMITS, width, height) {
        Ok(m) => {
            assert_eq!(m.pixels.dimensions(), (width, height));
            assert!(m.grid >= LIMITS.min_side);
        }
        Err(e) => {
            let r = Refusal::from(e);
            assert_refusal(&r);
            assert_eq!(r.code, "invalid_mask");
        }
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}

/// The file size limit of the multipart target: small, so the fuzzer reaches it.
pub const MULTIPART_MAX_FILE: usize = 4096;
/// The boundary the multipart target's requests declare.
pub const BOUNDARY: &str = "fuzzboundary";

/// The upload form reader over an arbitrary body: the first byte picks the product's form
/// (even) or remove.bg's (odd, with base64 images); the rest is the body.
pub fn multipart(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let files = if which % 2 == 0 {
        form::FILES
    } else {
        form::REMOVEBG_FILES
    };
    let request = Request::builder()
        .method("POST")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(body.to_vec()))
        .expect("a request");
    let answer = runtime().block_on(async {
        let multipart = Multipart::from_request(request, &()).await;
        form::read_form_named(multipart, MULTIPART_MAX_FILE, files).await
    });
    match answer {
        Ok(form) => {
            for file in [&form.image, &form.mask, &form.bg_image]
                .into_iter()
                .flatten()
            {
                assert!(file.len() <= MULTIPART_MAX_FILE);
            }
            assert!(form.fields.len() <= 40);
            for (name, value) in &form.fields {
                assert!(value.len() <= 2048, "field {name} is {} bytes", value.len());
                assert!(!files.iter().any(|(n, _)| n == name));
            }
        }
        Err(r) => assert_refusal(&r),
    }
}

const SECRET: &[u8] = b"fuzzing-secret";
/// The time the token target verifies at.
pub const NOW: u64 = 1_800_000_000;

/// A share token: valid only in its one canonical spelling, for its own id, before expiry.
pub fn token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match token::verify(SECRET, text, NOW) {
        Ok(claims) => {
            assert!(is_valid_id(&claims.result_id));
            assert!(claims.expires_at > NOW);
            assert_eq!(
                token::sign(SECRET, &claims.result_id, claims.expires_at),
                text.trim(),
                "a token verified in a spelling other than the one signed"
            );
            assert!(token::verify_for(SECRET, text, &claims.result_id, NOW).is_ok());
            assert!(token::verify(b"another secret", text, NOW).is_err());
        }
        Err(e) => {
            assert_eq!(e.http_status(), 403);
            assert_refusal(&Refusal::from(e));
        }
    }
}

/// Ids and the public file names built on them: only 32 lowercase hex digits are an id, and a
/// parsed name spells back exactly, so nothing else reaches a storage key.
pub fn ids(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let valid = is_valid_id(text);
    assert_eq!(
        valid,
        text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    );
    for under_og in [false, true] {
        if let Some((id, file)) = ShareFile::parse(text, under_og) {
            assert!(is_valid_id(&id));
            let spelled = match file {
                ShareFile::Og => format!("{id}.jpg"),
                ShareFile::Pinterest => format!("{id}-pin.jpg"),
                ShareFile::Square => format!("{id}-square.jpg"),
                ShareFile::Image => format!("{id}.png"),
            };
            assert_eq!(spelled, text);
            assert!(file.key(&id).contains(&id));
        }
    }
}

/// A stored card subjects file (`results/{id}.cards`), read back: anything that parses writes
/// back to a file that parses to the same subjects. The first byte picks which cards are
/// unpacked (a share of one platform unpacks one).
pub fn subjects(data: &[u8]) {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let cards: Vec<(u32, u32)> = shared::render::CARD_SIZES
        .iter()
        .enumerate()
        .filter(|(i, _)| which & (1 << i) != 0)
        .map(|(_, &c)| c)
        .collect();
    if let Ok(read) = CardSubjects::from_bytes_for(bytes, &cards)
        && cards.len() == shared::render::CARD_SIZES.len()
    {
        let again = read.to_bytes().expect("parsed subjects write back");
        assert_eq!(CardSubjects::from_bytes(&again).as_ref(), Ok(&read));
    }
}

/// The share page with an arbitrary title (what a customer types): the page's markup is the
/// same as with an empty title, character for character of `<>"'`, so the title can open no
/// tag and close no attribute.
pub fn share_page_of(data: &[u8]) {
    let title = String::from_utf8_lossy(data);
    let cfg = PageConfig {
        base_url: "https://share.example.com".into(),
        site_name: "Pet Studio".into(),
        shop_url: "https://shop.example.com/".into(),
    };
    let page = |title: &str| {
        let img = |width, height| StoredImage {
            width,
            height,
            content_type: "image/jpeg".into(),
            bytes: 1,
        };
        share_page(
            &cfg,
            &ShareManifest {
                id: "0123456789abcdef0123456789abcdef".into(),
                title: title.into(),
                alt: format!("{title}, cut out"),
                image: img(800, 600),
                og: img(1200, 630),
                pinterest: img(1000, 1500),
                square: img(1080, 1080),
                created_at: 1,
            },
        )
    };
    let markup = |s: &str| -> [usize; 4] { ['<', '>', '"', '\''].map(|c| s.matches(c).count()) };
    let html = page(&title);
    assert_eq!(
        markup(&html),
        markup(&page("")),
        "the title changed the markup"
    );
    assert!(html.starts_with("<!doctype html>") || html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
}

/// The upload forms' text fields, `name=value` per line: every option parser, then the print
/// layout they ask for on a small cut-out, which must stay within the canvas limit.
pub fn fields(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v))
        .collect();
    let get = |name: &str| pairs.iter().rev().find(|(k, _)| *k == name).map(|p| p.1);
    if let Err(r) = share_fields(get("platform"), get("title")) {
        assert_refusal(&r);
    }
    // Parsers whose only promise here is an answer, not a panic.
    let _ = get("type").map(str::parse::<OutputType>);
    let _ = get("format").map(str::parse::<OutputFormat>);
    let _ = get("refine").map(str::parse::<Refine>);
    let fx = match Effects::from_fields(get) {
        Ok(fx) => fx,
        Err(r) => return assert_refusal(&r),
    };
    assert_eq!(fx.key(), fx.key());
    // A small cut-out: an ellipse with a soft edge and a speck.
    let (w, h) = (24u32, 16u32);
    let subject = RgbaImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - 11.5, y as f32 - 7.5);
        let d = (dx * dx / 64.0 + dy * dy / 25.0).sqrt();
        let a = ((1.2 - d) * 255.0).clamp(0.0, 255.0) as u8;
        let a = if (x, y) == (1, 1) { 255 } else { a };
        image::Rgba([200, (x * 10) as u8, (y * 10) as u8, a])
    });
    let photo = RgbImage::from_pixel(7, 5, image::Rgb([10, 120, 30]));
    let backdrop = match (fx.bg_color, get("bg_image").is_some()) {
        (Some(c), _) => Backdrop::Color(c),
        (None, true) => Backdrop::Image(&photo),
        (None, false) => Backdrop::Transparent,
    };
    const MAX_PIXELS: u64 = 1 << 16;
    match effects::apply(subject, backdrop, &fx, MAX_PIXELS) {
        Ok(laid) => {
            let (cw, ch) = laid.picture.dimensions();
            assert!(u64::from(cw) * u64::from(ch) <= MAX_PIXELS);
            assert!(cw > 0 && ch > 0);
            let s = laid.subject;
            assert!(
                s.left + s.width <= cw && s.top + s.height <= ch,
                "{s:?} in {cw}×{ch}"
            );
        }
        Err(r) => assert_refusal(&r),
    }
}

/// Seeds for each target, made from real encoders and real forms (`scripts/fuzz` writes them
/// beside the committed corpus before a run; `tests/replay.rs` runs them too): `(target, name,
/// bytes)`.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    seeds::all()
}

mod seeds;
