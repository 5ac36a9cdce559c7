//! One share render, natively: PNG bytes in → decode → 1200×630 Open Graph card (fit, background,
//! watermark) → JPEG out. Prints the median and the fastest of N runs, in milliseconds, as JSON.
//!
//!   cargo run --release -p shared --example bench_render -- picture.png [runs]

use std::time::Instant;

use shared::{
    intake::{self, Limits},
    render::{RenderOptions, render_og},
};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: bench_render <png> [runs]");
    let runs: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(30);
    let png = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let opts = RenderOptions::default();
    let (mut times, mut decode_times) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    let mut out_len = 0;
    for _ in 0..runs + 3 {
        let t0 = Instant::now();
        let decoded = intake::decode(&png, &Limits::default()).expect("a valid picture");
        let t1 = Instant::now();
        let og = render_og(&decoded.image, &opts).expect("render");
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        decode_times.push((t1 - t0).as_secs_f64() * 1e3);
        out_len = og.bytes.len();
    }
    let median = |mut v: Vec<f64>| {
        let mut v = v.split_off(3);
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0])
    };
    let ((median_ms, min_ms), (decode_ms, _)) = (median(times), median(decode_times));
    println!(
        "{{\"median_ms\": {median_ms:.2}, \"min_ms\": {min_ms:.2}, \"decode_ms\": {decode_ms:.2}, \"runs\": {runs}, \"jpeg_bytes\": {out_len}}}"
    );
}
