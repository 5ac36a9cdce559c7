//! The PNG writer of results: rows filtered as Pillow filters them or all `Up`, whichever
//! deflates smaller on a sample of each piece, and the zlib stream deflated in independent
//! pieces on all cores (with the `parallel` feature), the same bytes however many cores.
//!
//! Why our own and not the `png` crate's encoder: measured on a 12 MP cut-out (AMD EPYC, one
//! core), its fast mode (fdeflate) writes 15–19 MB in 0.1 s, its zlib levels are single-threaded
//! (level 4 with `Up` filtering: 11.4 MB in 0.45–0.53 s), and rembg's (Pillow, zlib level 6) is
//! 11.6 MB in 3.7 s. Pieces deflated side by side give about rembg's size in a tenth of its
//! time. Each piece ends on a byte boundary (a sync flush), so the pieces concatenate into one
//! valid deflate stream; they share no history, which costs a fraction of a percent. zlib-rs is
//! called through its zlib C API (`libz-rs-sys`, still pure Rust) rather than through flate2 for
//! Pillow's `Filtered` strategy and memory level, and for `deflateTune` (see `SEARCH`).

/// How `Up`-filtered pieces are deflated: zlib-rs's level 5, which (like zlib-ng) runs levels
/// 4–6 with a fast "medium" matcher. On noisy photos, where `Up` wins, a lazier search gains
/// 0.5% for half as much time again (the noisy 12 MP cut-out: 28.29 → 28.15 MB over three).
const UP_LEVEL: i32 = 5;
/// How adaptively filtered pieces are deflated: the lazy matcher of zlib-rs's levels 7–9
/// (`deflate_slow`) with zlib's own level-5 limits ([`SEARCH`]), which zlib-rs's levels do not
/// offer. On the adaptively filtered pieces of our default cut-outs of the 12 noisy 1024×683
/// photos of `scripts/bench-u2netp` (AMD EPYC Zen 4, one core, deflate alone): level 5 8.18 MB
/// in 408 ms, level 7 7.80 MB in 1,009 ms, level 7 with these limits 7.88 MB in 520 ms.
const ADAPTIVE_LEVEL: i32 = 7;
/// The lazy matcher's limits (good, lazy, nice, chain) for [`ADAPTIVE_LEVEL`]: zlib's level 5.
const SEARCH: (i32, i32, i32, i32) = (8, 16, 32, 32);
/// Filtered bytes per piece deflated both ways to choose its filtering.
const SAMPLE_BYTES: usize = 32 << 10;
/// Filtered bytes per independently deflated piece: big enough that the lost history is
/// negligible, small enough that a 12 MP picture keeps every core busy.
const PIECE: usize = 1 << 20;

/// The PNG colour types this writer takes (8 bits per channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Grey,
    Rgb,
    Rgba,
}

impl Layout {
    fn channels(self) -> usize {
        match self {
            Layout::Grey => 1,
            Layout::Rgb => 3,
            Layout::Rgba => 4,
        }
    }

    fn colour_type(self) -> u8 {
        match self {
            Layout::Grey => 0,
            Layout::Rgb => 2,
            Layout::Rgba => 6,
        }
    }
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let len = u32::try_from(data.len()).expect("PNG chunks are under 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// `row` less its prediction by PNG filter `kind` (1 `Sub`, 2 `Up`, 3 `Average`, 4 `Paeth`,
/// else `None`) from `above` (zeros above the first row) and the pixel `bpp` bytes to the left.
fn filter_row(kind: u8, row: &[u8], above: &[u8], bpp: usize, out: &mut [u8]) {
    let n = row.len();
    match kind {
        1 => {
            out[..bpp].copy_from_slice(&row[..bpp]);
            for i in bpp..n {
                out[i] = row[i].wrapping_sub(row[i - bpp]);
            }
        }
        2 => {
            for i in 0..n {
                out[i] = row[i].wrapping_sub(above[i]);
            }
        }
        3 => {
            for i in 0..bpp {
                out[i] = row[i].wrapping_sub(above[i] >> 1);
            }
            for i in bpp..n {
                let mean = (u16::from(row[i - bpp]) + u16::from(above[i])) >> 1;
                out[i] = row[i].wrapping_sub(mean as u8);
            }
        }
        4 => {
            for i in 0..bpp {
                out[i] = row[i].wrapping_sub(above[i]);
            }
            for i in bpp..n {
                let (a, b, c) = (
                    i16::from(row[i - bpp]),
                    i16::from(above[i]),
                    i16::from(above[i - bpp]),
                );
                let (pa, pb, pc) = ((b - c).abs(), (a - c).abs(), (a + b - 2 * c).abs());
                let pred = if pa <= pb && pa <= pc {
                    a
                } else if pb <= pc {
                    b
                } else {
                    c
                };
                out[i] = row[i].wrapping_sub(pred as u8);
            }
        }
        _ => out.copy_from_slice(row),
    }
}

/// libpng's and Pillow's measure of how well a filtered row will deflate: the sum of its bytes
/// read as signed distances from zero.
fn distance(filtered: &[u8]) -> u64 {
    filtered
        .iter()
        .map(|&b| u64::from((b as i8).unsigned_abs()))
        .sum()
}

/// Rows `first..first + count` (`rows`) filtered, each led by its filter byte: `Up` throughout,
/// or when `adaptive` per row the filter whose output is nearest zero (libpng's heuristic, as
/// Pillow and so rembg use it).
fn filtered(
    pixels: &[u8],
    stride: usize,
    bpp: usize,
    rows: (usize, usize),
    adaptive: bool,
) -> Vec<u8> {
    let (first, count) = rows;
    let mut out = Vec::with_capacity(count * (stride + 1));
    let zeros = vec![0u8; stride];
    let mut scratch = vec![0u8; stride];
    for y in first..first + count {
        let row = &pixels[y * stride..(y + 1) * stride];
        let above = if y == 0 {
            &zeros[..]
        } else {
            &pixels[(y - 1) * stride..y * stride]
        };
        let mut best = (2u8, u64::MAX);
        if adaptive {
            for kind in 0..5u8 {
                filter_row(kind, row, above, bpp, &mut scratch);
                let d = distance(&scratch);
                if d < best.1 {
                    best = (kind, d);
                }
            }
        }
        out.push(best.0);
        let at = out.len();
        out.resize(at + stride, 0);
        filter_row(best.0, row, above, bpp, &mut out[at..]);
    }
    out
}

/// One piece of the deflate stream: its filtered rows, deflated, ended on a byte boundary (or,
/// for the last, with the final block); and their Adler-32 with its length.
///
/// The filtering is chosen per piece: libpng's adaptive heuristic makes 1024×683 cut-outs 2–3%
/// smaller than `Up` alone but noisy 12 MP ones 8% larger (measured, AMD EPYC), so the piece's
/// first rows ([`SAMPLE_BYTES`], at least two) are filtered and deflated both ways, each as its
/// piece would be, and the smaller way filters the piece. Measured on `scripts/bench-u2netp`'s
/// photos (AMD EPYC Zen 4): the default cut-outs of the 12 noisy 1024×683 photos 8.17 → 7.90 MB
/// (rembg 7.94 MB), of the three noisy 12 MP ones 28.27 → 28.22 MB; the first of those in
/// `gpu-server bench --photo` 11.59 → 11.54 MB in 374–409 → 461–478 ms (two alternating runs of
/// each binary): the lazy search's price. Before, 16 rows deflated at level 1 chose, and every
/// piece was deflated at level 5: at 1024×683 that choice was the wrong one for 15 of the 36
/// pieces.
fn piece(
    pixels: &[u8],
    stride: usize,
    bpp: usize,
    rows: (usize, usize),
    last: bool,
) -> (Vec<u8>, u32, usize) {
    let sample = (rows.0, rows.1.min((SAMPLE_BYTES / stride).max(2)));
    let trial = |adaptive| {
        deflate_filtered(
            &filtered(pixels, stride, bpp, sample, adaptive),
            adaptive,
            false,
        )
    };
    let adaptive = trial(true).len() < trial(false).len();
    let data = filtered(pixels, stride, bpp, rows, adaptive);
    let mut adler = simd_adler32::Adler32::new();
    adler.write(&data);
    (
        deflate_filtered(&data, adaptive, last),
        adler.finish(),
        data.len(),
    )
}

/// Rows filtered adaptively or all `Up`, deflated as suits each (see [`UP_LEVEL`]).
fn deflate_filtered(data: &[u8], adaptive: bool, last: bool) -> Vec<u8> {
    if adaptive {
        deflate(data, ADAPTIVE_LEVEL, Some(SEARCH), last)
    } else {
        deflate(data, UP_LEVEL, None, last)
    }
}

/// `data` as raw deflate at `level` (with the matcher's limits `search`, as `deflateTune` takes
/// them), ended on a byte boundary (a sync flush) or, when `last`, with the final block. The
/// `Filtered` strategy and the largest memory level are Pillow's settings for PNG; they suit
/// filtered rows.
fn deflate(data: &[u8], level: i32, search: Option<(i32, i32, i32, i32)>, last: bool) -> Vec<u8> {
    use libz_rs_sys as z;
    let ok = |code: i32, what: &str| assert_eq!(code, z::Z_OK, "zlib-rs {what}");
    let mut stream = z::z_stream::default();
    let mut out: Vec<u8> = Vec::new();
    // SAFETY: `stream` is initialised by `deflateInit2_` before any other call and ended by
    // `deflateEnd`; `next_in`/`next_out` point into `data` and `out`'s spare capacity, which
    // outlive the calls, for `avail_in`/`avail_out` bytes (each under 4 GiB: the caller deflates
    // pieces of 1 MiB); `out`'s length is set to the bytes deflate wrote there.
    unsafe {
        ok(
            z::deflateInit2_(
                &mut stream,
                level,
                z::Z_DEFLATED,
                // Raw deflate: the pieces are joined under one zlib header.
                -15,
                9,
                z::Z_FILTERED,
                z::zlibVersion(),
                std::mem::size_of::<z::z_stream>() as i32,
            ),
            "deflateInit2",
        );
        if let Some((good, lazy, nice, chain)) = search {
            ok(
                z::deflateTune(&mut stream, good, lazy, nice, chain),
                "deflateTune",
            );
        }
        // Room for the worst case (zlib's bound) and the sync flush's empty block, not zeroed:
        // deflate writes what it produces, about a quarter of the bound on photos, and the
        // pages past it are never touched (zeroing the bound was 48 MB first touched per 12 MP
        // cut-out).
        out.reserve_exact(z::deflateBound(&mut stream, data.len() as _) as usize + 16);
        stream.next_in = data.as_ptr();
        stream.avail_in = u32::try_from(data.len()).expect("a piece under 4 GiB");
        stream.next_out = out.as_mut_ptr();
        stream.avail_out = u32::try_from(out.capacity()).expect("a piece under 4 GiB");
        let flush = if last { z::Z_FINISH } else { z::Z_SYNC_FLUSH };
        let code = z::deflate(&mut stream, flush);
        // With room for the whole output, one call consumes all input and flushes.
        let done = if last { z::Z_STREAM_END } else { z::Z_OK };
        assert_eq!(code, done, "zlib-rs deflate");
        assert_eq!(stream.avail_in, 0, "zlib-rs deflate consumed every byte");
        let produced = stream.total_out as usize;
        z::deflateEnd(&mut stream);
        out.set_len(produced);
    }
    out
}

/// Adler-32 of two byte strings joined, from theirs and the second's length (zlib's
/// `adler32_combine`).
fn adler_combine(a: u32, b: u32, b_len: usize) -> u32 {
    const MOD: u64 = 65521;
    let rem = b_len as u64 % MOD;
    let (a1, a2) = (u64::from(a & 0xFFFF), u64::from(a >> 16));
    let (b1, b2) = (u64::from(b & 0xFFFF), u64::from(b >> 16));
    let sum1 = (a1 + b1 + MOD - 1) % MOD;
    let sum2 = (rem * a1 % MOD + a2 + b2 + MOD - rem) % MOD;
    ((sum2 << 16) | sum1) as u32
}

/// A PNG of `width`×`height` 8-bit `pixels` in `layout`, with a `pHYs` chunk when `dpi` is
/// given.
pub fn write(pixels: &[u8], width: u32, height: u32, layout: Layout, dpi: Option<u16>) -> Vec<u8> {
    let stride = width as usize * layout.channels();
    let height_rows = height as usize;
    assert_eq!(pixels.len(), stride * height_rows, "pixels for the size");
    let rows_per_piece = (PIECE / (stride + 1)).max(1);
    let pieces: Vec<(usize, usize)> = (0..height_rows)
        .step_by(rows_per_piece)
        .map(|first| (first, rows_per_piece.min(height_rows - first)))
        .collect();
    let count = pieces.len();
    let bpp = layout.channels();
    let run =
        |(i, rows): (usize, &(usize, usize))| piece(pixels, stride, bpp, *rows, i + 1 == count);
    #[cfg(feature = "parallel")]
    let deflated: Vec<_> = {
        use rayon::prelude::*;
        pieces.par_iter().enumerate().map(run).collect()
    };
    #[cfg(not(feature = "parallel"))]
    let deflated: Vec<_> = pieces.iter().enumerate().map(run).collect();

    // The zlib stream: header, the pieces, the checksum of the whole.
    let mut adler = 1;
    for (_, piece_adler, len) in &deflated {
        adler = adler_combine(adler, *piece_adler, *len);
    }
    let adler = adler.to_be_bytes();
    // CMF: deflate, 32 KiB window; FLG: the default-level hint, and a multiple of 31.
    let mut parts: Vec<&[u8]> = vec![&[0x78, 0x9C]];
    parts.extend(deflated.iter().map(|d| d.0.as_slice()));
    if deflated.is_empty() {
        // No rows: an empty final block.
        parts.push(&[0x03, 0x00]);
    }
    parts.push(&adler);
    let zlib_len: usize = parts.iter().map(|p| p.len()).sum();

    let mut out = Vec::with_capacity(zlib_len + zlib_len.div_ceil(PIECE) * 12 + 128);
    out.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, layout.colour_type(), 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    if let Some(dpi) = dpi {
        let ppm = (f64::from(dpi) / 0.0254).round() as u32;
        let mut phys = Vec::with_capacity(9);
        phys.extend_from_slice(&ppm.to_be_bytes());
        phys.extend_from_slice(&ppm.to_be_bytes());
        phys.push(1); // the unit is the metre
        chunk(&mut out, b"pHYs", &phys);
    }
    // IDAT chunks of PIECE bytes of the stream, copied from the pieces straight into the file
    // (no joined copy of the stream first: 11 MB less touched per 12 MP cut-out).
    let mut parts = parts.into_iter().flat_map(|p| p.chunks(PIECE)).peekable();
    let mut left = zlib_len;
    while left > 0 {
        let len = left.min(PIECE);
        out.extend_from_slice(&(len as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(b"IDAT");
        let mut need = len;
        while need > 0 {
            let part = parts.peek_mut().expect("the parts hold the stream's bytes");
            let take = need.min(part.len());
            out.extend_from_slice(&part[..take]);
            *part = &part[take..];
            if part.is_empty() {
                parts.next();
            }
            need -= take;
        }
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
        left -= len;
    }
    chunk(&mut out, b"IEND", &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (png::OutputInfo, Vec<u8>, Option<png::PixelDimensions>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let dims = reader.info().pixel_dims;
        buf.truncate(info.buffer_size());
        (info, buf, dims)
    }

    #[test]
    fn round_trips_every_layout_and_size() {
        // Sizes around a piece's boundary too: 700×400 RGBA is several pieces.
        for (w, h) in [(1, 1), (3, 2), (17, 5), (700, 400), (1000, 1)] {
            for layout in [Layout::Grey, Layout::Rgb, Layout::Rgba] {
                let n = w as usize * h as usize * layout.channels();
                let pixels: Vec<u8> = (0..n)
                    .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 ^ (i / 7) as u8)
                    .collect();
                let bytes = write(&pixels, w, h, layout, None);
                let (info, back, _) = decode(&bytes);
                assert_eq!((info.width, info.height), (w, h));
                assert_eq!(back, pixels, "{w}×{h} {layout:?}");
            }
        }
    }

    #[test]
    fn each_piece_takes_the_filtering_that_deflates_it_smaller() {
        // Two pictures where the ways differ: a smooth diagonal gradient (adaptive filtering
        // wins) and a gradient with strong grain, as a noisy photo has (`Up` wins).
        let (w, h, bpp) = (512usize, 200usize, 4usize);
        let stride = w * bpp;
        let gradient: Vec<u8> = (0..stride * h)
            .map(|i| ((i % stride) / bpp + 2 * (i / stride)) as u8 ^ (i % bpp) as u8)
            .collect();
        let hash = |i: usize| {
            (i.wrapping_mul(2654435761)
                .wrapping_add(i >> 3)
                .wrapping_mul(40503)
                >> 13) as i32
        };
        // A sum of four uniform draws: roughly Gaussian, σ about 6 levels.
        let grain = |i: usize| (0..4).map(|k| hash(4 * i + k) % 5).sum::<i32>() * 2 - 16;
        let grainy: Vec<u8> = (0..stride * h)
            .map(|i| {
                let (x, y, c) = ((i % stride) / bpp, i / stride, i % bpp);
                let v = if c == 3 {
                    255
                } else {
                    (60 + x / 8 + y / 4 + c * 30) as i32 + grain(i)
                };
                v.clamp(0, 255) as u8
            })
            .collect();
        for (name, pixels) in [("gradient", &gradient), ("grainy", &grainy)] {
            let rows = (0, h);
            let size = |adaptive| {
                deflate_filtered(
                    &filtered(pixels, stride, bpp, rows, adaptive),
                    adaptive,
                    true,
                )
                .len()
            };
            let (chosen, _, _) = piece(pixels, stride, bpp, rows, true);
            let (a, u) = (size(true), size(false));
            assert_eq!(a < u, name == "gradient", "{name}: adaptive {a}, up {u}");
            assert_eq!(chosen.len(), a.min(u), "{name}: adaptive {a}, up {u}");
        }
    }

    /// PNG's own reconstruction, written from the specification, to check the filters against.
    fn unfilter(data: &[u8], stride: usize, bpp: usize) -> (Vec<u8>, Vec<u8>) {
        let mut out: Vec<u8> = Vec::new();
        let mut kinds = Vec::new();
        for line in data.chunks(stride + 1) {
            let (kind, row) = (line[0], &line[1..]);
            kinds.push(kind);
            let base = out.len();
            for i in 0..stride {
                let a = if i >= bpp {
                    i16::from(out[base + i - bpp])
                } else {
                    0
                };
                let b = if base > 0 {
                    i16::from(out[base - stride + i])
                } else {
                    0
                };
                let c = if base > 0 && i >= bpp {
                    i16::from(out[base - stride + i - bpp])
                } else {
                    0
                };
                let pred = match kind {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => (a + b) / 2,
                    4 => {
                        let p = a + b - c;
                        let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                        if pa <= pb && pa <= pc {
                            a
                        } else if pb <= pc {
                            b
                        } else {
                            c
                        }
                    }
                    _ => panic!("filter type {kind}"),
                };
                out.push(row[i].wrapping_add(pred as u8));
            }
        }
        (out, kinds)
    }

    #[test]
    fn every_filter_reconstructs_and_adaptive_mixes_them() {
        // Rows of different character, so the heuristic picks different filters: flat,
        // horizontal ramps, vertical ramps, diagonal gradients, noise.
        let (w, h, bpp) = (37usize, 40usize, 4usize);
        let stride = w * bpp;
        let mut pixels = vec![0u8; stride * h];
        for y in 0..h {
            for x in 0..stride {
                pixels[y * stride + x] = match y % 5 {
                    0 => 200,
                    1 => (x * 3) as u8,
                    2 => (y * 11) as u8,
                    3 => (x * 2 + y * 5) as u8,
                    _ => ((x * 2654435761 + y * 40503) >> 7) as u8,
                };
            }
        }
        for kind in 0..5u8 {
            let mut data = Vec::new();
            for y in 0..h {
                let above = if y == 0 {
                    vec![0; stride]
                } else {
                    pixels[(y - 1) * stride..y * stride].to_vec()
                };
                let mut row = vec![0; stride];
                filter_row(
                    kind,
                    &pixels[y * stride..(y + 1) * stride],
                    &above,
                    bpp,
                    &mut row,
                );
                data.push(kind);
                data.extend(row);
            }
            assert_eq!(unfilter(&data, stride, bpp).0, pixels, "filter {kind}");
        }
        for adaptive in [false, true] {
            let data = filtered(&pixels, stride, bpp, (0, h), adaptive);
            let (back, kinds) = unfilter(&data, stride, bpp);
            assert_eq!(back, pixels, "adaptive {adaptive}");
            let mut used: Vec<u8> = kinds.clone();
            used.sort_unstable();
            used.dedup();
            if adaptive {
                assert!(used.len() >= 2, "filters used: {used:?}");
            } else {
                assert_eq!(used, [2]);
            }
        }
        // A piece that starts mid-picture filters its first row against the row above it.
        let data = filtered(&pixels, stride, bpp, (10, 5), true);
        let rows = &pixels[9 * stride..15 * stride];
        let (back, _) = unfilter(
            &[vec![0u8], rows[..stride].to_vec(), data].concat(),
            stride,
            bpp,
        );
        assert_eq!(&back[stride..], &pixels[10 * stride..15 * stride]);
    }

    #[test]
    fn writes_the_resolution() {
        let bytes = write(&[0; 4 * 4 * 3], 4, 4, Layout::Rgb, Some(300));
        let (_, _, dims) = decode(&bytes);
        let dims = dims.unwrap();
        assert_eq!((dims.xppu, dims.unit), (11811, png::Unit::Meter));
    }

    #[test]
    fn adler_of_pieces_is_the_adler_of_the_whole() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let whole = {
            let mut a = simd_adler32::Adler32::new();
            a.write(&data);
            a.finish()
        };
        let (x, y) = data.split_at(123_457);
        let part = |d: &[u8]| {
            let mut a = simd_adler32::Adler32::new();
            a.write(d);
            a.finish()
        };
        assert_eq!(adler_combine(part(x), part(y), y.len()), whole);
        assert_eq!(adler_combine(1, whole, data.len()), whole);
    }
}
