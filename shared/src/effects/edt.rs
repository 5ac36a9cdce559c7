//! The exact Euclidean distance transform (Felzenszwalb and Huttenlocher, "Distance Transforms
//! of Sampled Functions", 2012): for every pixel the squared distance to the nearest pixel of a
//! set, in O(pixels), exact (no chamfer approximation, no repeated dilation).
//!
//! The first pass runs down the columns as sweeps over whole rows (contiguous memory); the
//! second takes the lower envelope of parabolas along each row, rows in parallel with the
//! `parallel` feature.

/// The squared Euclidean distance from each pixel to the nearest pixel of `set` (0 inside it),
/// row-major like `set`. Where `set` is empty everything is at least `(width + height)²`.
/// (Used by the tests: the product works on runs of parts and bounded distances.)
#[cfg(test)]
pub fn squared(set: &[bool], width: usize, height: usize) -> Vec<f32> {
    assert_eq!(set.len(), width * height, "set size");
    let mut out = vec![0f32; width * height];
    let limit = (width + height).min(usize::from(u16::MAX) - 1) as u16;
    let far = f32::from(limit + 1).powi(2);
    let mark = |y: usize, row: &mut [bool]| row.copy_from_slice(&set[y * width..(y + 1) * width]);
    within(width, height, mark, limit, &mut out, far, |d| d);
    out
}

/// The squared distance to the nearest pixel of a set, exact up to `limit` px, mapped by
/// `map` into `out` (`far` where it is more than `limit`). `mark(y, row)` sets the pixels of
/// the set in row `y` (`row` comes all false). Only what is within `limit` of the set is worked
/// on, and nothing of the image's size is allocated but one `u16` plane.
pub fn within<T: Copy + Send + Sync>(
    width: usize,
    height: usize,
    mark: impl Fn(usize, &mut [bool]),
    limit: u16,
    out: &mut [T],
    far: T,
    map: impl Fn(f32) -> T + Sync,
) {
    assert_eq!(out.len(), width * height, "output size");
    assert!(limit < u16::MAX, "limit");
    if width == 0 || height == 0 {
        return;
    }
    // Vertical distance to the nearest set pixel of the same column, capped past the limit.
    let cap = limit + 1;
    let mut g = vec![cap; width * height];
    let mut row = vec![false; width];
    for y in 0..height {
        row.fill(false);
        mark(y, &mut row);
        let row = &row;
        let (done, rest) = g.split_at_mut(y * width);
        let dst = &mut rest[..width];
        if y == 0 {
            for (d, &s) in dst.iter_mut().zip(row) {
                *d = if s { 0 } else { cap };
            }
        } else {
            let above = &done[(y - 1) * width..];
            for ((d, &s), &a) in dst.iter_mut().zip(row).zip(above) {
                *d = if s { 0 } else { (a + 1).min(cap) };
            }
        }
    }
    for y in (0..height - 1).rev() {
        let (head, tail) = g.split_at_mut((y + 1) * width);
        let dst = &mut head[y * width..];
        for (d, &b) in dst.iter_mut().zip(&tail[..width]) {
            *d = (*d).min(b + 1);
        }
    }
    let limit = usize::from(limit);
    let row = |scratch: &mut Scratch, (g, out): (&[u16], &mut [T])| {
        let Some(lo) = g.iter().position(|&v| v < cap) else {
            out.fill(far);
            return;
        };
        let hi = g
            .iter()
            .rposition(|&v| v < cap)
            .expect("one is below the cap");
        let (x0, x1) = (lo.saturating_sub(limit), (hi + limit + 1).min(width));
        out[..x0].fill(far);
        out[x1..].fill(far);
        envelope(
            scratch,
            g,
            cap,
            lo,
            hi,
            &mut out[x0..x1],
            x0,
            &map,
            far,
            limit,
        );
    };
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        g.par_chunks(width)
            .zip(out.par_chunks_mut(width))
            .for_each_init(Scratch::default, row);
    }
    #[cfg(not(feature = "parallel"))]
    {
        let mut scratch = Scratch::default();
        g.chunks(width)
            .zip(out.chunks_mut(width))
            .for_each(|r| row(&mut scratch, r));
    }
}

/// The envelope's parabolas (apex column, g²) and where each starts to be the lowest, kept
/// from row to row.
#[derive(Default)]
struct Scratch {
    v: Vec<(f32, f32)>,
    z: Vec<f32>,
}

/// One row's lower envelope of the parabolas `(x - q)² + g(q)²` of the columns `lo..=hi` below
/// the cap, evaluated at `x0..x0 + out.len()`. In f32: every value that can be within the
/// limit (< 2¹⁶ px) is an integer below 2²⁴, exact.
#[allow(clippy::too_many_arguments)]
fn envelope<T: Copy>(
    scratch: &mut Scratch,
    g: &[u16],
    cap: u16,
    lo: usize,
    hi: usize,
    out: &mut [T],
    x0: usize,
    map: &impl Fn(f32) -> T,
    far: T,
    limit: usize,
) {
    out.fill(far);
    let (v, z) = (&mut scratch.v, &mut scratch.z);
    v.clear();
    z.clear();
    for q in lo..=hi {
        // Beyond the cap nothing is within the limit; inside a run of the set only the run's
        // ends can be nearest to a pixel outside it.
        if g[q] >= cap || g[q] == 0 && q > lo && q < hi && g[q - 1] == 0 && g[q + 1] == 0 {
            continue;
        }
        let qf = q as f32;
        let fq = f32::from(g[q]) * f32::from(g[q]);
        loop {
            let Some(&(p, fp)) = v.last() else {
                v.push((qf, fq));
                z.push(f32::NEG_INFINITY);
                break;
            };
            // Where the parabolas of p and q cross.
            let s = ((fq - fp) / (qf - p) + qf + p) * 0.5;
            if s <= *z.last().expect("one z per apex") {
                v.pop();
                z.pop();
                continue;
            }
            v.push((qf, fq));
            z.push(s);
            break;
        }
    }
    // Each parabola is the lowest over [z_k, z_k+1); only where it is within the limit is
    // anything computed, the rest stays `far`.
    let x1 = x0 + out.len();
    let lim2 = (limit as f32) * (limit as f32);
    for k in 0..v.len() {
        let (q, f) = v[k];
        if f > lim2 {
            continue;
        }
        let r = (lim2 - f).sqrt();
        let from = z[k].max(q - r).ceil().max(x0 as f32) as usize;
        let to = z.get(k + 1).map_or(f32::INFINITY, |&e| e).min(q + r);
        let to = if to.is_finite() {
            to.floor() as usize + 1
        } else {
            x1
        }
        .min(x1);
        for x in from..to {
            let d = x as f32 - q;
            out[x - x0] = map(d * d + f);
        }
    }
    // Inside the set's runs the distance is 0 (their inner parabolas were left out).
    let zero = map(0.0);
    let mut x = x0;
    while x < x1 {
        if g[x] == 0 {
            let start = x;
            while x < x1 && g[x] == 0 {
                x += 1;
            }
            out[start - x0..x - x0].fill(zero);
        } else {
            x += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Squared distance by brute force.
    fn naive(set: &[bool], w: usize, h: usize) -> Vec<f32> {
        let points: Vec<(usize, usize)> = (0..w * h)
            .filter(|&i| set[i])
            .map(|i| (i % w, i / w))
            .collect();
        (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32, (i / w) as f32);
                points
                    .iter()
                    .map(|&(px, py)| (px as f32 - x).powi(2) + (py as f32 - y).powi(2))
                    .fold(f32::INFINITY, f32::min)
            })
            .collect()
    }

    #[test]
    fn equals_brute_force() {
        let mut seed = 7u32;
        for (w, h, density) in [(23, 17, 40), (40, 9, 3), (1, 12, 20), (31, 31, 1)] {
            let set: Vec<bool> = (0..w * h)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 24) % 100 < density
                })
                .collect();
            if !set.iter().any(|&s| s) {
                continue;
            }
            assert_eq!(squared(&set, w, h), naive(&set, w, h), "{w}x{h}");
        }
    }

    #[test]
    fn empty_set_is_far_everywhere() {
        let d = squared(&[false; 12], 4, 3);
        assert!(d.iter().all(|&d| d >= 49.0));
    }

    #[test]
    fn within_a_limit_is_exact_there_and_far_beyond() {
        let (w, h) = (60usize, 45usize);
        let set: Vec<bool> = (0..w * h)
            .map(|i| matches!((i % w, i / w), (10..=12, 20) | (40, 5..=30)))
            .collect();
        let exact = naive(&set, w, h);
        let mut out = vec![0f32; w * h];
        let mark = |y: usize, row: &mut [bool]| row.copy_from_slice(&set[y * w..(y + 1) * w]);
        within(w, h, mark, 7, &mut out, -1.0, |d| d);
        for (e, o) in exact.iter().zip(&out) {
            if *e <= 49.0 {
                assert_eq!(e, o);
            } else {
                assert_eq!(*o, -1.0, "{e}");
            }
        }
    }
}
