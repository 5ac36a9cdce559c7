//! Foreground colour estimation: the multi-level method of Germer, Uelwer, Conrad and Harmeling
//! (2020), as pymatting's `estimate_foreground_ml` (the one transparent-background runs).
//!
//! For each pixel it solves `I = αF + (1−α)B` for the foreground F and background B, smoothed
//! towards the neighbours' F and B where α changes, level by level from a 1×1 picture up to the
//! full size (nearest resampling, Gauss–Seidel sweeps in raster order: pymatting's schedule),
//! each sweep in fixed stripes of rows run on all cores with the `parallel` feature.
//!
//! Where α is flat (all 0 or all 1 around a pixel) the answer is known without solving: F is
//! the photo's colour under the subject, and background pixels have no colour to show. So each
//! level is swept only within [`MARGIN`] pixels of where α changes; a value outside reaches the
//! band through at least [`MARGIN`] relaxation steps, each of which shrinks it at least by half,
//! so the result differs from a full sweep by less than 2⁻¹² of a colour.

use super::plane::Plane;

/// Smoothness of F and B (pymatting's `regularization`).
pub const REGULARIZATION: f32 = 1e-5;
/// Weight of α's gradient in the smoothness (pymatting's `gradient_weight`).
pub const GRADIENT_WEIGHT: f32 = 1.0;
const SMALL_ITERATIONS: usize = 10;
const BIG_ITERATIONS: usize = 2;
const SMALL_SIZE: usize = 32;
/// How far from where α changes each level is swept, in that level's pixels.
pub const MARGIN: usize = 12;

/// Rows per stripe of a sweep (see [`estimate`]).
const STRIPE: usize = 64;

/// A row's F and B as they were before a sweep.
type Edge = (Vec<u16>, Vec<u16>);

/// F and B are laid out in columns [`COLUMN`] pixels wide, each column's rows one after the
/// other, so the pixels near an edge sit together in memory: a stretch of an edge runs
/// through one column for many rows, which are then one contiguous run, where in rows of the
/// whole width each row's few edge pixels touched a page (4 KiB, 682 pixels) of their own. On
/// a noisy 12 MP cut-out (3.1 M pixels swept; AMD EPYC Zen 4) the stage's page faults fell from
/// 32,100 to 15,100; on 3 such photos through `remove`, 134k–147k → 112k–121k faults and peak
/// RSS 550–599 → 465–504 MB, for the same time within the machine's noise. The order of the
/// sweeps is unchanged, and so is every output byte.
const COLUMN_SHIFT: usize = 6;
const COLUMN: usize = 1 << COLUMN_SHIFT;

/// Where pixel `(x, y)`'s three values start in a plane of a level `h` rows high.
#[inline]
fn at(x: usize, y: usize, h: usize) -> usize {
    3 * ((((x >> COLUMN_SHIFT) * h + y) << COLUMN_SHIFT) | (x & (COLUMN - 1)))
}

/// Values in a plane of a `w`×`h` level.
fn plane_len(w: usize, h: usize) -> usize {
    3 * w.div_ceil(COLUMN) * COLUMN * h
}

/// A plane shared by the stripes of a sweep, each of which reads and writes only its own rows.
#[derive(Clone, Copy)]
struct Rows(*mut u16);

// SAFETY: stripes touch disjoint rows of the plane (see `estimate`), so sharing the pointer
// between threads races on nothing.
unsafe impl Send for Rows {}
unsafe impl Sync for Rows {}

/// F and B are kept as 16-bit fractions of 1 (steps of 1/65535, a 257th of an 8-bit level),
/// computed in `f32`: half the memory of `f32` planes. At 12 MP the full level's F and B are
/// 72 MB each instead of 144, and the pages the edge touches are first touched (a page fault
/// each, served by the host too on a virtual machine) once per photo and thread.
const SCALE: f32 = 65535.0;

#[inline]
fn store(v: f32) -> u16 {
    (v * SCALE + 0.5) as u16
}

#[inline]
fn load(q: u16) -> f32 {
    f32::from(q) * (1.0 / SCALE)
}

/// α per pixel in 0..1.
pub trait Alpha: Sync {
    fn len(&self) -> usize;
    fn at(&self, i: usize) -> f32;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Alpha for [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    fn at(&self, i: usize) -> f32 {
        f32::from(self[i]) / 255.0
    }
}

impl Alpha for [f32] {
    fn len(&self) -> usize {
        <[f32]>::len(self)
    }
    fn at(&self, i: usize) -> f32 {
        self[i]
    }
}

/// The estimated foreground colour: valid at the pixels `active` marks (every pixel where α is
/// strictly between 0 and 1, and their neighbourhood); elsewhere the photo's own colour is the
/// answer.
#[derive(Debug, Clone)]
pub struct Foreground {
    pub width: usize,
    pub height: usize,
    /// RGB as fractions of 65535, in columns of [`COLUMN`] pixels (see [`Foreground::colour_at`]),
    /// meaningful where `active` (elsewhere anything).
    rgb: Plane<u16>,
    pub active: Vec<bool>,
}

impl Foreground {
    /// The colour at pixel `i` as 8 bits, if estimated there.
    #[inline]
    pub fn rgb8(&self, i: usize) -> Option<[u8; 3]> {
        self.rgb8_at(i % self.width, i / self.width)
    }

    /// The colour at pixel `i` in 0..1, if estimated there.
    #[inline]
    pub fn colour(&self, i: usize) -> Option<[f32; 3]> {
        self.colour_at(i % self.width, i / self.width)
    }

    /// The colour at pixel `(x, y)` as 8 bits, if estimated there.
    #[inline]
    pub fn rgb8_at(&self, x: usize, y: usize) -> Option<[u8; 3]> {
        self.colour_at(x, y)
            .map(|c| c.map(|v| (v * 255.0 + 0.5) as u8))
    }

    /// The colour at pixel `(x, y)` in 0..1, if estimated there.
    #[inline]
    pub fn colour_at(&self, x: usize, y: usize) -> Option<[f32; 3]> {
        self.active[y * self.width + x].then(|| {
            let c = &self.rgb[at(x, y, self.height)..][..3];
            [0, 1, 2].map(|k| load(c[k]))
        })
    }

    /// `colours` (interleaved 8-bit RGB, row by row) estimated where `active`.
    pub fn from_rgb8(width: usize, height: usize, colours: &[u8], active: Vec<bool>) -> Self {
        assert_eq!(colours.len(), 3 * width * height, "colours for the size");
        assert_eq!(active.len(), width * height, "active for the size");
        let mut rgb = Plane::scratch(plane_len(width, height));
        for y in 0..height {
            for x in 0..width {
                for c in 0..3 {
                    let v = f32::from(colours[3 * (y * width + x) + c]) / 255.0;
                    rgb[at(x, y, height) + c] = store(v);
                }
            }
        }
        Foreground {
            width,
            height,
            rgb,
            active,
        }
    }
}

/// One level's F and B (RGB, laid out by [`at`]), each value written before it is read: only the pixels
/// of `set` are written, so a [`Plane`] needs no zeroing and its pages away from the edge are
/// never touched.
struct Level {
    w: usize,
    h: usize,
    f: Plane<u16>,
    b: Plane<u16>,
    set: Vec<bool>,
}

/// Level sizes as pymatting computes them: `round(w0^(i/n))`, ties to even, for i = 0..=n.
fn level_sizes(w0: usize, h0: usize) -> Vec<(usize, usize)> {
    let n = (w0.max(h0) as f64).log2().ceil() as i32;
    if n <= 0 {
        return vec![(w0, h0)];
    }
    (0..=n)
        .map(|i| {
            let e = f64::from(i) / f64::from(n);
            (
                (w0 as f64).powf(e).round_ties_even() as usize,
                (h0 as f64).powf(e).round_ties_even() as usize,
            )
        })
        .collect()
}

/// Estimate the foreground colour of `rgb` (interleaved 8-bit RGB, `width`×`height`) under
/// `alpha`.
pub fn estimate<A: Alpha + ?Sized>(
    rgb: &[u8],
    width: usize,
    height: usize,
    alpha: &A,
) -> Foreground {
    let n0 = width * height;
    assert_eq!(rgb.len(), n0 * 3, "picture size");
    assert_eq!(alpha.len(), n0, "alpha size");
    let img = |i: usize, c: usize| f32::from(rgb[3 * i + c]) / 255.0;

    // Mean colours of the sure foreground and background start the coarsest level.
    let (mut fm, mut bm) = ([0f32; 3], [0f32; 3]);
    let (mut fc, mut bc) = (0f32, 0f32);
    for i in 0..n0 {
        let a = alpha.at(i);
        if a > 0.9 {
            for (c, m) in fm.iter_mut().enumerate() {
                *m += img(i, c);
            }
            fc += 1.0;
        }
        if a < 0.1 {
            for (c, m) in bm.iter_mut().enumerate() {
                *m += img(i, c);
            }
            bc += 1.0;
        }
    }
    let fm = fm.map(|v| v / (fc + 1e-5));
    let bm = bm.map(|v| v / (bc + 1e-5));
    let mut prev = Level {
        w: 1,
        h: 1,
        f: Plane::from(&fm.map(store)[..]),
        b: Plane::from(&bm.map(store)[..]),
        set: vec![true],
    };
    for (w, h) in level_sizes(width, height) {
        let n = w * h;
        let full = w == width && h == height;
        // Nearest-neighbour maps from this level to the photo and to the level below
        // (pymatting's `resize_nearest`), as tables: no division per pixel.
        let xs: Vec<usize> = (0..w).map(|x| (x * width / w).min(width - 1)).collect();
        let ys: Vec<usize> = (0..h).map(|y| (y * height / h).min(height - 1)).collect();
        let pxs: Vec<usize> = (0..w).map(|x| (x * prev.w / w).min(prev.w - 1)).collect();
        let src = |i: usize| {
            if full {
                i
            } else {
                ys[i / w] * width + xs[i % w]
            }
        };
        // α at this level; the full level reads the caller's α in place.
        let a_level: Option<Vec<f32>> = (!full).then(|| (0..n).map(|i| alpha.at(src(i))).collect());
        let av = |i: usize| match &a_level {
            Some(v) => v[i],
            None => alpha.at(i),
        };
        // Where the update is not the trivial one: α strictly between 0 and 1, or unlike a
        // neighbour's.
        let mut band = vec![false; n];
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let a = av(i);
                band[i] = (a > 0.0 && a < 1.0)
                    || (x > 0 && av(i - 1) != a)
                    || (x + 1 < w && av(i + 1) != a)
                    || (y > 0 && av(i - w) != a)
                    || (y + 1 < h && av(i + w) != a);
            }
        }
        let small = w <= SMALL_SIZE && h <= SMALL_SIZE;
        // Values are set within MARGIN + 1 of the band; pixels all of whose neighbours are set
        // (at least MARGIN from the band's edge of the set region) are swept.
        let set = if small {
            vec![true; n]
        } else {
            super::morph::dilate(&band, w, h, MARGIN + 1)
        };
        drop(band);
        let mut level = Level {
            w,
            h,
            f: Plane::scratch(plane_len(w, h)),
            b: Plane::scratch(plane_len(w, h)),
            set,
        };
        // Start values from the level below.
        for y in 0..h {
            let py = (y * prev.h / h).min(prev.h - 1);
            for x in 0..w {
                let i = y * w + x;
                if !level.set[i] {
                    continue;
                }
                let j = py * prev.w + pxs[x];
                let (to, from) = (at(x, y, h), at(pxs[x], py, prev.h));
                if prev.set[j] {
                    level.f[to..to + 3].copy_from_slice(&prev.f[from..from + 3]);
                    level.b[to..to + 3].copy_from_slice(&prev.b[from..from + 3]);
                } else {
                    // Never reached by a sweep below: the photo's colour stands for both.
                    let s = src(i);
                    for c in 0..3 {
                        level.f[to + c] = store(img(s, c));
                        level.b[to + c] = store(img(s, c));
                    }
                }
            }
        }
        let sweep = |set: &[bool], x: usize, y: usize| {
            let i = y * w + x;
            set[i]
                && (small
                    || (x > 0
                        && x + 1 < w
                        && y > 0
                        && y + 1 < h
                        && set[i - 1]
                        && set[i + 1]
                        && set[i - w]
                        && set[i + w]))
        };
        let iterations = if small {
            SMALL_ITERATIONS
        } else {
            BIG_ITERATIONS
        };
        for _ in 0..iterations {
            // Stripes of rows are swept on their own (on all cores with the `parallel`
            // feature), each in raster order; across a stripe's edge a pixel reads its
            // neighbour as it was before this sweep. The stripes are fixed, so the result is
            // the same on any number of cores and on wasm32.
            let stripes = h.div_ceil(STRIPE);
            // Row y as it is, row by row (only its set pixels: the others are never read, and
            // reading them would map pages in for nothing).
            let row = |y: usize| {
                let (mut f, mut b) = (vec![0u16; 3 * w], vec![0u16; 3 * w]);
                for x in (0..w).filter(|&x| level.set[y * w + x]) {
                    let from = at(x, y, h);
                    f[3 * x..3 * x + 3].copy_from_slice(&level.f[from..from + 3]);
                    b[3 * x..3 * x + 3].copy_from_slice(&level.b[from..from + 3]);
                }
                (f, b)
            };
            let above: Vec<Option<Edge>> = (0..stripes)
                .map(|k| (k > 0).then(|| row(k * STRIPE - 1)))
                .collect();
            let below: Vec<Option<Edge>> = (0..stripes)
                .map(|k| (k + 1 < stripes).then(|| row((k + 1) * STRIPE)))
                .collect();
            let set = &level.set;
            let (f, b) = (Rows(level.f.as_mut_ptr()), Rows(level.b.as_mut_ptr()));
            let len = level.f.len();
            let work = |k: usize| {
                // SAFETY: stripe k reads and writes rows y0..y1 of F and B alone (rows beyond
                // come from `above` and `below`), and no two stripes share a row; indices are
                // `at` of pixels of the level, under `len`.
                let read = |p: Rows, i: usize| unsafe {
                    debug_assert!(i < len);
                    *p.0.add(i)
                };
                let write = |p: Rows, i: usize, v: u16| unsafe {
                    debug_assert!(i < len);
                    *p.0.add(i) = v;
                };
                let y0 = k * STRIPE;
                let y1 = (y0 + STRIPE).min(h);
                for y in y0..y1 {
                    if !set[y * w..(y + 1) * w].contains(&true) {
                        continue;
                    }
                    for x in 0..w {
                        if !sweep(set, x, y) {
                            continue;
                        }
                        let i = y * w + x;
                        let s = if full { i } else { ys[y] * width + xs[x] };
                        let a0 = av(i);
                        let a1 = 1.0 - a0;
                        let mut a00 = a0 * a0;
                        let a01 = a0 * a1;
                        let mut a11 = a1 * a1;
                        let mut b0 = [0f32; 3];
                        let mut b1 = [0f32; 3];
                        for c in 0..3 {
                            let v = img(s, c);
                            b0[c] = a0 * v;
                            b1[c] = a1 * v;
                        }
                        // Left, right, up, down, clamped at the border (pymatting's order).
                        let neighbours = [
                            (x.saturating_sub(1), y),
                            ((x + 1).min(w - 1), y),
                            (x, y.saturating_sub(1)),
                            (x, (y + 1).min(h - 1)),
                        ];
                        for (nx, ny) in neighbours {
                            let j = ny * w + nx;
                            let da = REGULARIZATION + GRADIENT_WEIGHT * (a0 - av(j)).abs();
                            a00 += da;
                            a11 += da;
                            let edge = if ny < y0 {
                                Some(above[k].as_ref().expect("a stripe above"))
                            } else if ny >= y1 {
                                Some(below[k].as_ref().expect("a stripe below"))
                            } else {
                                None
                            };
                            for c in 0..3 {
                                let (fv, bv) = match edge {
                                    Some((ef, eb)) => (ef[3 * nx + c], eb[3 * nx + c]),
                                    None => {
                                        let o = at(nx, ny, h) + c;
                                        (read(f, o), read(b, o))
                                    }
                                };
                                b0[c] += da * load(fv);
                                b1[c] += da * load(bv);
                            }
                        }
                        let inv_det = 1.0 / (a00 * a11 - a01 * a01);
                        let (m00, m01, m11) = (inv_det * a11, inv_det * -a01, inv_det * a00);
                        let o = at(x, y, h);
                        for c in 0..3 {
                            write(f, o + c, store((m00 * b0[c] + m01 * b1[c]).clamp(0.0, 1.0)));
                            write(b, o + c, store((m01 * b0[c] + m11 * b1[c]).clamp(0.0, 1.0)));
                        }
                    }
                }
            };
            #[cfg(feature = "parallel")]
            {
                use rayon::prelude::*;
                (0..stripes).into_par_iter().for_each(work);
            }
            #[cfg(not(feature = "parallel"))]
            (0..stripes).for_each(work);
        }
        if full {
            let active = (0..n).map(|i| sweep(&level.set, i % w, i / w)).collect();
            return Foreground {
                width,
                height,
                rgb: level.f,
                active,
            };
        }
        prev = level;
    }
    // The last level is the full size; should it not be, nothing is estimated.
    Foreground {
        width,
        height,
        rgb: Plane::scratch(0),
        active: vec![false; n0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_as_pymatting() {
        // pymatting: n = ceil(log2(max)) levels above 1×1, w = round(w0 ** (i / n)).
        let s = level_sizes(451, 300);
        assert_eq!(s.len(), 10);
        assert_eq!(s[0], (1, 1));
        assert_eq!(*s.last().unwrap(), (451, 300));
        assert_eq!(s[4], (15, 13)); // 451^(4/9) = 15.07, 300^(4/9) = 12.60
    }

    #[test]
    fn recovers_a_known_foreground() {
        // Red subject over a blue background, mixed by a soft ramp: F should come out red, in
        // every stripe of the sweep.
        let (w, h) = (64, 3 * STRIPE + 10);
        let mut rgb = vec![0u8; w * h * 3];
        let mut alpha = vec![0u8; w * h];
        for y in 0..h {
            for x in 0..w {
                let a = ((x as f32 - 24.0) / 16.0).clamp(0.0, 1.0);
                let i = y * w + x;
                alpha[i] = (a * 255.0).round() as u8;
                let a = f32::from(alpha[i]) / 255.0;
                let mix = |f: f32, b: f32| (a * f + (1.0 - a) * b).round() as u8;
                rgb[3 * i..3 * i + 3].copy_from_slice(&[
                    mix(220.0, 20.0),
                    mix(30.0, 60.0),
                    mix(40.0, 200.0),
                ]);
            }
        }
        let fg = estimate(&rgb, w, h, alpha.as_slice());
        for y in [20, STRIPE - 1, STRIPE, 2 * STRIPE + 5, h - 3] {
            for x in 26..40 {
                let i = y * w + x;
                let c = fg.rgb8(i).expect("the ramp is estimated");
                assert!(
                    c[0].abs_diff(220) <= 6 && c[1].abs_diff(30) <= 6 && c[2].abs_diff(40) <= 6,
                    "({x}, {y}): {c:?}"
                );
            }
        }
        // Far inside the subject nothing is estimated: the photo's colour stands.
        assert!(fg.rgb8(20 * w + 63).is_none());
    }
}
