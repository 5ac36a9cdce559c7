//! The generated seeds: small images of every colour type each decoder reads, the repository's
//! intake fixtures, real forms, real tokens, a real card subjects file.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, Rgba, RgbaImage};
use shared::{ids::content_id, render::CardSubjects, token};

use crate::{BOUNDARY, NOW, SECRET};

type Seed = (&'static str, String, Vec<u8>);

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("encodes");
    out.into_inner()
}

/// A small picture with some structure (gradients and an edge), in every colour layout.
fn pictures() -> Vec<(&'static str, DynamicImage)> {
    let rgba = RgbaImage::from_fn(20, 17, |x, y| {
        Rgba([
            (x * 12) as u8,
            (y * 14) as u8,
            ((x + y) * 7) as u8,
            if x > 10 { 255 } else { (y * 15) as u8 },
        ])
    });
    let rgba = DynamicImage::ImageRgba8(rgba);
    vec![
        ("grey", DynamicImage::ImageLuma8(rgba.to_luma8())),
        (
            "grey_alpha",
            DynamicImage::ImageLumaA8(rgba.to_luma_alpha8()),
        ),
        ("rgb", DynamicImage::ImageRgb8(rgba.to_rgb8())),
        ("rgba", rgba.clone()),
        ("grey16", DynamicImage::ImageLuma16(rgba.to_luma16())),
        ("rgba16", DynamicImage::ImageRgba16(rgba.to_rgba16())),
    ]
}

fn images(out: &mut Vec<Seed>) {
    for (name, picture) in pictures() {
        out.push((
            "intake_png",
            format!("{name}.png"),
            encode(&picture, ImageFormat::Png),
        ));
        if matches!(name, "grey" | "rgb") {
            out.push((
                "intake_jpeg",
                format!("{name}.jpg"),
                encode(&picture, ImageFormat::Jpeg),
            ));
        }
        if matches!(name, "rgb" | "rgba") {
            let webp = encode(&picture, ImageFormat::WebP);
            out.push(("intake_webp", format!("{name}.lossless.webp"), webp));
        }
        if name.starts_with("grey") {
            out.push((
                "mask",
                format!("{name}.png"),
                encode(&picture, ImageFormat::Png),
            ));
        }
    }
    // The repository's intake fixtures: CMYK and EXIF-rotated JPEGs, lossy WebP, 16-bit PNG.
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/intake");
    let mut files: Vec<_> = std::fs::read_dir(fixtures)
        .expect("tests/fixtures/intake")
        .map(|e| e.expect("a fixture").path())
        .collect();
    files.sort();
    for path in files {
        let bytes = std::fs::read(&path).expect("a fixture");
        let target = match shared::intake::sniff(&bytes) {
            Ok(shared::intake::ImageFormat::Png) => "intake_png",
            Ok(shared::intake::ImageFormat::Jpeg) => "intake_jpeg",
            Ok(shared::intake::ImageFormat::WebP) => "intake_webp",
            Err(_) => continue,
        };
        let name = path.file_name().expect("a name").to_string_lossy();
        out.push((target, format!("fixture-{name}"), bytes));
    }
}

fn forms(out: &mut Vec<Seed>) {
    use base64::Engine;
    let png = encode(&pictures()[0].1, ImageFormat::Png);
    let form = |which: u8, parts: &[(&str, Option<&str>, &[u8])]| {
        [vec![which], tests::multipart_with(BOUNDARY, parts).1].concat()
    };
    let product = form(
        0,
        &[
            ("image", Some("pet.png"), &png),
            ("mask", Some("mask.png"), &png),
            ("type", None, b"rgba"),
            ("title", None, "Rex \u{1F436}".as_bytes()),
        ],
    );
    out.push(("multipart", "product.form".into(), product));
    let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    let data_url = format!("data:image/png;base64,{b64}");
    let removebg = form(
        1,
        &[
            ("image_file_b64", None, data_url.as_bytes()),
            ("size", None, b"preview"),
            ("bg_image_file", Some("bg.png"), &png),
        ],
    );
    out.push(("multipart", "removebg.form".into(), removebg));
}

fn texts(out: &mut Vec<Seed>) {
    let id = content_id(&[b"a result"]);
    out.push((
        "token",
        "valid".into(),
        token::sign(SECRET, &id, NOW + 3600).into_bytes(),
    ));
    out.push((
        "token",
        "expired".into(),
        token::sign(SECRET, &id, NOW - 1).into_bytes(),
    ));
    for (i, name) in [
        id.clone(),
        format!("{id}.jpg"),
        format!("{id}-pin.jpg"),
        format!("{id}-square.jpg"),
        format!("{id}.png"),
        format!("../{id}.png"),
    ]
    .into_iter()
    .enumerate()
    {
        out.push(("ids", format!("name{i}"), name.into_bytes()));
    }
    for (i, title) in [
        "Rex on the sofa",
        "<script>alert('hi')</script> & \"friends\"",
        "Émile 🐈\u{0}\u{7}\ttab",
    ]
    .into_iter()
    .enumerate()
    {
        out.push(("share_page", format!("title{i}"), title.as_bytes().to_vec()));
    }
    for (i, form) in [
        "crop=true\ncrop_margin=10%\nsize=a4\ndpi=300\nposition=center\nscale=80%\n",
        "outline=true\noutline_color=#ffffff\noutline_width=3\nshadow=true\nshadow_opacity=0.5\nshadow_blur=4\nshadow_offset=2,3\n",
        "bg_color=#336699\nchannels=rgba\nsize=40x30\nplatform=pinterest\ntitle=Rex\n",
        "bg_image=1\nsize=64x64\nscale=original\nposition=20%,80%\ntype=rgba\nformat=auto\nrefine=matting\n",
    ]
    .into_iter()
    .enumerate()
    {
        out.push(("fields", format!("form{i}"), form.as_bytes().to_vec()));
    }
}

fn subjects(out: &mut Vec<Seed>) {
    let cutout = RgbaImage::from_fn(12, 9, |x, y| {
        Rgba([
            90,
            60,
            30,
            if (3..9).contains(&x) && (2..7).contains(&y) {
                255
            } else {
                0
            },
        ])
    });
    let picture = DynamicImage::ImageRgba8(cutout);
    let encoded = encode(&picture, ImageFormat::Png);
    let subjects = CardSubjects::new(&picture, &encoded)
        .expect("subjects")
        .expect("a cut-out with transparency");
    let bytes = subjects.to_bytes().expect("written");
    for (which, name) in [(7u8, "all"), (1, "og")] {
        let mut seed = vec![which];
        seed.extend_from_slice(&bytes);
        out.push(("subjects", format!("{name}.cards"), seed));
    }
}

pub(crate) fn all() -> Vec<Seed> {
    let mut out = Vec::new();
    images(&mut out);
    forms(&mut out);
    texts(&mut out);
    subjects(&mut out);
    out
}
