//! One share render, natively: PNG bytes in → decode → 1200×630 Open Graph card (fit, background,
//! watermark) → JPEG out; and the same card from the picture's share-ready card subjects (what
//! gpu-server stores beside a result), which it writes next to the PNG as `<name>.cards` for the
//! Worker's benchmark. Prints the medians and the fastest of N runs, in milliseconds, as JSON.
//!
//!   cargo run --release -p shared --example bench_render -- picture.png [runs]

use std::time::Instant;

use shared::{
    intake::{self, Limits},
    render::{CardSubjects, OG_SIZE, RenderOptions, render_card, render_og},
};

/// Median and fastest of the timings after three warm-up runs.
fn stats(mut v: Vec<f64>) -> (f64, f64) {
    let mut v = v.split_off(3);
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: bench_render <png> [runs]");
    let runs: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(30);
    let png = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let opts = RenderOptions::default();
    let (mut times, mut decode_times) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    let mut out = Vec::new();
    for _ in 0..runs + 3 {
        let t0 = Instant::now();
        let decoded = intake::decode(&png, &Limits::default()).expect("a valid picture");
        let t1 = Instant::now();
        let og = render_og(&decoded.image, &opts).expect("render");
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        decode_times.push((t1 - t0).as_secs_f64() * 1e3);
        out = og.bytes;
    }
    // What gpu-server adds to a result: the subjects prepared and packed.
    let decoded = intake::decode(&png, &Limits::default()).expect("a valid picture");
    let mut prepare_times = Vec::with_capacity(runs);
    let mut cards = Vec::new();
    for _ in 0..runs.min(10) + 3 {
        let t0 = Instant::now();
        cards = CardSubjects::new(&decoded.image, &png)
            .expect("subjects")
            .expect("a cut-out (with transparency)")
            .to_bytes()
            .expect("every subject");
        prepare_times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let cards_path = format!("{}.cards", path.trim_end_matches(".png"));
    std::fs::write(&cards_path, &cards).unwrap_or_else(|e| panic!("{cards_path}: {e}"));
    let mut card_times = Vec::with_capacity(runs);
    for _ in 0..runs + 3 {
        let t0 = Instant::now();
        let subjects = CardSubjects::from_bytes_for(&cards, &[OG_SIZE]).expect("subjects");
        let og = render_card(&subjects, OG_SIZE, &opts).expect("render");
        card_times.push(t0.elapsed().as_secs_f64() * 1e3);
        assert_eq!(og.bytes, out, "the same card either way");
    }
    let ((median_ms, min_ms), (decode_ms, _)) = (stats(times), stats(decode_times));
    let (cards_ms, cards_min_ms) = stats(card_times);
    let (prepare_ms, _) = stats(prepare_times);
    println!(
        "{{\"median_ms\": {median_ms:.2}, \"min_ms\": {min_ms:.2}, \"decode_ms\": {decode_ms:.2}, \"cards_median_ms\": {cards_ms:.2}, \"cards_min_ms\": {cards_min_ms:.2}, \"cards_bytes\": {}, \"cards_prepare_ms\": {prepare_ms:.2}, \"runs\": {runs}, \"jpeg_bytes\": {}}}",
        cards.len(),
        out.len()
    );
}
