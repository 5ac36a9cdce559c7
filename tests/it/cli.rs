//! `gpu-server remove` as a user runs it: files and folders in, images out.

use std::fs;

use tests::{fixture, gpu_server, mean_abs, output, scratch};

#[test]
fn mask_agrees_with_rembg_at_input_size() {
    let out = scratch("cli-mask");
    let target = out.join("chelsea-mask.png");
    let result = output(
        gpu_server()
            .args(["remove", "--type", "mask", "-o"])
            .arg(&target)
            .arg(fixture("u2netp/chelsea.png")),
    );
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let mask = image::open(&target).unwrap();
    assert_eq!(
        mask.color(),
        image::ColorType::L8,
        "mask is 8-bit greyscale"
    );
    let reference = image::open(fixture("u2netp/chelsea.mask.png"))
        .unwrap()
        .to_luma8();
    let diff = mean_abs(&mask.to_luma8(), &reference);
    assert!(diff <= 1.0, "mean abs {diff} levels > 1/255");
}

#[test]
fn folder_with_a_bad_file_does_the_rest_and_reports_it() {
    let input = scratch("cli-folder-in");
    let out = scratch("cli-folder-out");
    fs::copy(fixture("u2netp/coffee.png"), input.join("coffee.png")).unwrap();
    fs::copy(fixture("u2netp/astronaut.png"), input.join("astronaut.png")).unwrap();
    fs::write(input.join("broken.jpg"), b"\xFF\xD8\xFFnot really a jpeg").unwrap();
    fs::write(input.join("notes.txt"), b"ignored: not an image extension").unwrap();
    let result = output(
        gpu_server()
            .args([
                "remove",
                "--type",
                "white",
                "--format",
                "jpeg",
                "--timings",
                "-o",
            ])
            .arg(&out)
            .arg(&input),
    );
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        !result.status.success(),
        "a skipped file makes the exit status non-zero"
    );
    // `--timings`: one JSON line per photo, in the inputs' order, the model's stage timed for
    // the photos that reached it.
    let timings: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = timings
        .iter()
        .map(|t| t["photo"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        names,
        ["astronaut.png", "broken.jpg", "coffee.png"],
        "{stderr}"
    );
    for t in &timings {
        for stage in ["read_ms", "model_ms", "finish_ms"] {
            assert!(t[stage].as_f64().unwrap() >= 0.0, "{t}");
        }
    }
    assert!(
        timings[0]["model_ms"].as_f64().unwrap() > 1.0,
        "{}",
        timings[0]
    );
    assert!(
        stderr.contains("skipped") && stderr.contains("broken.jpg"),
        "{stderr}"
    );
    assert!(stderr.contains("2 of 3 done, 1 skipped"), "{stderr}");
    for name in ["coffee.jpg", "astronaut.jpg"] {
        let img = image::open(out.join(name)).unwrap();
        assert_eq!(img.color(), image::ColorType::Rgb8, "{name}");
    }
    let coffee = image::open(out.join("coffee.jpg")).unwrap();
    assert_eq!((coffee.width(), coffee.height()), (300, 200));
    assert!(!out.join("broken.jpg").exists());
    assert!(fs::read_dir(&out).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".partial")
    }));
}

#[test]
fn rgba_cutout_is_transparent_where_the_mask_is_zero() {
    let out = scratch("cli-rgba");
    let target = out.join("cat.webp");
    let result = output(
        gpu_server()
            .args(["remove", "--format", "webp", "--threshold", "0.5", "-o"])
            .arg(&target)
            .arg(fixture("u2netp/chelsea.png")),
    );
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let img = image::open(&target).unwrap().to_rgba8();
    let alphas: Vec<u8> = img.pixels().map(|p| p.0[3]).collect();
    assert!(
        alphas.iter().all(|&a| a == 0 || a == 255),
        "threshold makes alpha binary"
    );
    let opaque = alphas.iter().filter(|&&a| a == 255).count() as f64 / alphas.len() as f64;
    assert!(
        (0.2..0.9).contains(&opaque),
        "the cat covers part of the photo: {opaque}"
    );
}

#[test]
fn bad_arguments_are_refused_clearly() {
    let result = output(gpu_server().args(["remove", "--type", "sepia", "-o", "x.png", "y.png"]));
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("unknown output type"), "{stderr}");

    let result = output(gpu_server().args(["remove", "--threshold", "2", "-o", "x.png", "y.png"]));
    assert!(String::from_utf8_lossy(&result.stderr).contains("outside 0..1"));
}

/// `bench` times the model at TARGET_SIZE when one is given (U²-Netp too: the GPU kit profiles
/// lavapipe at 128²), and refuses a side that is not a multiple of 32.
#[test]
fn bench_times_the_side_asked_for() {
    let result = output(gpu_server().args([
        "bench",
        "--target-size",
        "64",
        "--iters",
        "1",
        "--warmup",
        "0",
    ]));
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(json["model"], "u2netp", "{json}");
    assert_eq!(json["side"], 64, "{json}");
    assert!(
        json["median_ms_per_image"].as_f64().unwrap() > 0.0,
        "{json}"
    );

    let result = output(gpu_server().args(["bench", "--target-size", "100", "--iters", "1"]));
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("multiple of 32"), "{stderr}");
}

#[test]
fn names_with_dots_keep_their_stem_and_collisions_are_reported() {
    let input = scratch("cli-dots-in");
    let other = scratch("cli-dots-other");
    let out = scratch("cli-dots-out");
    fs::copy(fixture("u2netp/coffee.png"), input.join("rex.v2.png")).unwrap();
    fs::copy(fixture("u2netp/coffee.png"), input.join("rex.png")).unwrap();
    fs::copy(fixture("u2netp/coffee.png"), other.join("rex.png")).unwrap();
    let result = output(
        gpu_server()
            .args(["remove", "--type", "mask", "-o"])
            .arg(&out)
            .arg(&input)
            .arg(&other),
    );
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        out.join("rex.v2.png").exists() && out.join("rex.png").exists(),
        "{stderr}"
    );
    assert!(stderr.contains("another input already wrote"), "{stderr}");
    assert!(stderr.contains("2 of 3 done, 1 skipped"), "{stderr}");
}

/// `--mask` uses a supplied mask instead of the model's (no weights needed), `--refine off`
/// keeps it exactly, the default refines it, and a bad mask is refused naming it.
#[test]
fn a_supplied_mask_is_refined_or_kept() {
    let out = scratch("cli-mask");
    let mask = out.join("mask.png");
    // A mask on a coarser grid than the photo, with a soft edge down the middle.
    image::GrayImage::from_fn(150, 100, |x, _| {
        image::Luma([(x.saturating_sub(70) * 25).min(255) as u8])
    })
    .save(&mask)
    .unwrap();
    let run = |extra: &[&str], target: &std::path::Path| {
        let result = output(
            gpu_server()
                .arg("remove")
                .args(extra)
                .arg("--mask")
                .arg(&mask)
                .arg("-o")
                .arg(target)
                .arg(fixture("u2netp/chelsea.png")),
        );
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        image::open(target).unwrap()
    };
    let off = run(&["--refine", "off", "--type", "mask"], &out.join("off.png")).to_luma8();
    let expected = image::imageops::resize(
        &image::open(&mask).unwrap().to_luma8(),
        451,
        300,
        image::imageops::FilterType::Triangle,
    );
    assert_eq!(off.dimensions(), (451, 300));
    assert!(
        mean_abs(&off, &expected) < 1.0,
        "off is the supplied mask, stretched"
    );
    let matted = run(
        &["--type", "mask", "--refine", "matting"],
        &out.join("matting.png"),
    )
    .to_luma8();
    assert_ne!(matted, off, "matting changes the soft edge");
    let rgba = run(&[], &out.join("cut.png")).to_rgba8();
    assert_eq!(
        rgba.get_pixel(5, 150).0[3],
        0,
        "left of the edge is background"
    );
    assert_eq!(
        rgba.get_pixel(445, 150).0[3],
        255,
        "right of it is the subject"
    );

    let bad = out.join("bad.png");
    image::RgbImage::new(20, 20).save(&bad).unwrap();
    let result = output(
        gpu_server()
            .args(["remove", "--mask"])
            .arg(&bad)
            .arg("-o")
            .arg(out.join("x.png"))
            .arg(fixture("u2netp/chelsea.png")),
    );
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("greyscale"), "{stderr}");
}

/// The print options on the command line: the same names and values as the API's fields,
/// `--format auto` naming the file by what it wrote, and bad values refused naming the flag's
/// field.
#[test]
fn print_options_as_flags() {
    let out = scratch("cli-print");
    let mask = out.join("mask.png");
    // The subject: a 151×100 block of the 451×300 photo.
    image::GrayImage::from_fn(451, 300, |x, y| {
        image::Luma([if (150..301).contains(&x) && (100..200).contains(&y) {
            255
        } else {
            0
        }])
    })
    .save(&mask)
    .unwrap();
    let run = |extra: &[&str], target: &std::path::Path| {
        output(
            gpu_server()
                .arg("remove")
                .args(["--refine", "off", "--mask"])
                .arg(&mask)
                .args(extra)
                .arg("-o")
                .arg(target)
                .arg(fixture("u2netp/chelsea.png")),
        )
    };
    let sticker = out.join("sticker.png");
    let r = run(
        &[
            "--crop",
            "--crop-margin",
            "10px",
            "--outline",
            "--outline-width",
            "4%",
            "--shadow",
        ],
        &sticker,
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let pic = image::open(&sticker).unwrap().to_rgba8();
    // 6 px of border (4% of 151) each side, a shadow to the lower right, 10 px of margin.
    assert!(
        pic.width() > 151 + 12 + 20 && pic.height() > 100 + 12 + 20,
        "{:?}",
        pic.dimensions()
    );
    assert_eq!(pic.get_pixel(5, 60).0[3], 0, "margin");
    assert!(
        pic.pixels().any(|p| p.0 == [255, 255, 255, 255]),
        "a white border"
    );

    // A print: the folder output with --format auto is named by the format written.
    let folder = out.join("prints");
    let r = run(
        &[
            "--size",
            "4x6in",
            "--bg-color",
            "white",
            "--format",
            "auto",
            "--crop",
        ],
        &folder,
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let jpg = folder.join("chelsea.jpg");
    let bytes = std::fs::read(&jpg).unwrap();
    assert_eq!(&bytes[6..11], b"JFIF\0");
    assert_eq!(u16::from_be_bytes([bytes[14], bytes[15]]), 300, "300 dpi");
    assert_eq!(
        image::open(&jpg).unwrap().to_rgb8().dimensions(),
        (1200, 1800)
    );

    for (flags, field) in [
        (&["--size", "huge"][..], "`size`"),
        (&["--outline-color", "#12"][..], "`outline_color`"),
        (&["--type", "trimap", "--crop"][..], "trimap"),
    ] {
        let r = run(flags, &out.join("bad.png"));
        assert!(!r.status.success());
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains(field), "{field}: {err}");
    }
}
