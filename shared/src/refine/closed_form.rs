//! Closed-form alpha matting (Levin, Lischinski and Weiss 2008) over a trimap's unknown band.
//!
//! The matting Laplacian of 3×3 windows (ε = 1e-7, as pymatting's `cf_laplacian`) is built only
//! for the rows of unknown pixels, only from windows that hold one; known pixels are Dirichlet
//! conditions (sure foreground 1, sure background 0), as in pymatting's `estimate_alpha_cf`. The
//! system `L_U α_U = −R α_K` is solved by conjugate gradients preconditioned by its diagonal,
//! started from the coarse mask, so cost follows the band, not the photo.
//!
//! Layout, for speed: the band is kept as runs along rows and `L_U` as a 5×5 stencil of f32
//! coefficients per unknown, run by run, so the product reads each neighbour of a run as one
//! contiguous slice and vectorises (AVX2 where the CPU has it; the same arithmetic in the same
//! order on every path, so every machine and the Worker get the same bytes). Rows are built per
//! unknown from windows computed once, in pieces on all cores with the `parallel` feature.
//! Measured against the sparse-matrix solver with an incomplete-Cholesky preconditioner in f64
//! that this replaces (AMD EPYC, 2 cores, noisy 1024×683 photos, `gpu-server bench --photo`):
//! the matting stage 872 → 111 ms and 400 → 60 ms, the same quality on `scripts/bench-matting`.
//! Jacobi needs about 4× the iterations of IC(0) to converge (776 against 188 on the parity
//! test's crop), but each costs a fraction: IC(0)'s triangular solves are sequential and
//! indexed, and were half of the old solve's time.

/// Regularisation of each window's colour covariance (pymatting's default).
pub const EPSILON: f64 = 1e-7;

/// Relative residual at which the solve stops.
pub const TOLERANCE: f64 = 1e-6;

/// Most iterations of a direct solve (776 reach [`TOLERANCE`] on the parity test's crop).
pub const MAX_ITERATIONS: usize = 1000;

/// A soft pull of alpha towards the model's mask (Levin et al.'s soft constraints): each
/// unknown pixel adds `weight · c · (α − m)²` to the matting energy, where `m` is the mask
/// there (0..1) and `c = (2m − 1)²` the model's confidence, so alpha is pulled where the model
/// was sure and left to the picture's colours where it was not (`m` near ½).
#[derive(Debug, Clone, Copy)]
pub struct Prior<'a> {
    /// The mask at the picture's size, 0..1.
    pub mask: &'a [f32],
    pub weight: f32,
}

impl Prior<'_> {
    /// The diagonal term and right-hand side term the prior adds at pixel `p`.
    fn terms(&self, p: usize) -> (f32, f32) {
        let m = self.mask[p];
        let c = self.weight * (2.0 * m - 1.0) * (2.0 * m - 1.0);
        (c, c * m)
    }
}

/// What one solve did, for benchmarks and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SolveStats {
    pub unknowns: usize,
    pub iterations: usize,
    pub relative_residual: f64,
}

/// Solve alpha over the unknown band of `trimap` (0 background, 255 foreground, anything else
/// unknown) for `rgb`, a `width`×`height` picture as interleaved RGB in 0..1. `init` is the
/// starting guess (the coarse mask, 0..1) and is overwritten with the result for every pixel:
/// known pixels get 0 or 1, unknown ones the solution, clamped to 0..1.
pub fn solve(
    rgb: &[f32],
    width: usize,
    height: usize,
    trimap: &[u8],
    alpha: &mut [f32],
) -> SolveStats {
    solve_with(rgb, width, height, trimap, alpha, None, MAX_ITERATIONS)
}

/// [`solve`] with a [`Prior`] and at most `max_iterations`.
pub fn solve_with(
    rgb: &[f32],
    width: usize,
    height: usize,
    trimap: &[u8],
    alpha: &mut [f32],
    prior: Option<Prior<'_>>,
    max_iterations: usize,
) -> SolveStats {
    let n_px = width * height;
    assert_eq!(rgb.len(), n_px * 3, "picture size");
    assert_eq!(trimap.len(), n_px, "trimap size");
    assert_eq!(alpha.len(), n_px, "alpha size");
    if let Some(p) = &prior {
        assert_eq!(p.mask.len(), n_px, "prior size");
    }
    let known = |t: u8| t == 0 || t == 255;
    for (a, &t) in alpha.iter_mut().zip(trimap) {
        match t {
            0 => *a = 0.0,
            255 => *a = 1.0,
            _ => *a = a.clamp(0.0, 1.0),
        }
    }
    let pixels: Vec<u32> = (0..n_px as u32)
        .filter(|&p| !known(trimap[p as usize]))
        .collect();
    let n = pixels.len();
    let mut stats = SolveStats {
        unknowns: n,
        ..SolveStats::default()
    };
    if n == 0 || width < 3 || height < 3 {
        return stats;
    }
    let (a, rhs) = system(rgb, width, height, trimap, &pixels, prior);
    let mut x: Vec<f32> = pixels.iter().map(|&p| alpha[p as usize]).collect();
    let (iterations, residual) = pcg(&a, &rhs, &mut x, max_iterations);
    stats.iterations = iterations;
    stats.relative_residual = residual;
    for (&p, &v) in pixels.iter().zip(&x) {
        alpha[p as usize] = v.clamp(0.0, 1.0);
    }
    stats
}

/// `L_U` and `−R·α_K` for the unknown `pixels` (raster order, at least 3×3 picture), with the
/// `prior`'s terms added to the diagonal and the right-hand side.
fn system(
    rgb: &[f32],
    width: usize,
    height: usize,
    trimap: &[u8],
    pixels: &[u32],
    prior: Option<Prior<'_>>,
) -> (Stencil, Vec<f32>) {
    const NONE: u32 = u32::MAX;
    let n = pixels.len();
    let mut index = vec![NONE; width * height];
    for (i, &p) in pixels.iter().enumerate() {
        index[p as usize] = i as u32;
    }
    let band = Band::new(pixels, width, height);
    let windows = Windows::new(rgb, width, height, trimap);
    // Each unknown's row of L (25 entries) and right-hand side −R·α_K (sure foreground is 1,
    // sure background 0): known neighbours leave the matrix, so the product reads unknowns only.
    let mut coef = vec![0f32; 25 * n];
    let mut rhs = vec![0f32; n];
    let pieces = band.pieces();
    for_each_piece(
        &pieces,
        [(&mut coef, 25), (&mut rhs, 1)],
        |piece, [coef, rhs]| {
            for &(_, first, len) in &band.runs[piece.runs.clone()] {
                let (first, len) = (first as usize, len as usize);
                let start = first - piece.unknowns.start;
                let block = &mut coef[25 * start..25 * (start + len)];
                let p0 = pixels[first] as usize;
                windows.rows(rgb, p0 % width, p0 / width, len, block);
                for j in 0..len {
                    let p = pixels[first + j] as usize;
                    let (x, y) = (p % width, p / width);
                    let mut b = 0.0;
                    for k in 0..25 {
                        let v = &mut block[k * len + j];
                        if *v == 0.0 {
                            continue;
                        }
                        // Windows lie inside the picture: entries outside it are 0 already.
                        let q = (y + k / 5 - 2) * width + x + k % 5 - 2;
                        if index[q] == NONE {
                            if trimap[q] == 255 {
                                b -= *v;
                            }
                            *v = 0.0;
                        }
                    }
                    if let Some(prior) = &prior {
                        let (diagonal, pull) = prior.terms(p);
                        block[12 * len + j] += diagonal;
                        b += pull;
                    }
                    rhs[start + j] = b;
                }
            }
        },
    );
    drop((index, windows));
    (Stencil { band, coef, pieces }, rhs)
}

/// Width of the zero border around the grid a vector is scattered on: the 5×5 stencil reaches
/// two pixels out.
const PAD: usize = 2;

/// The unknown pixels as runs along rows, and a padded grid to scatter a vector on, so the
/// product reads each neighbour of a run as one contiguous slice: no column indices, and loops
/// the compiler vectorises.
struct Band {
    /// (first grid position, first unknown, length) of each run.
    runs: Vec<(u32, u32, u32)>,
    /// Grid position of each unknown.
    grid: Vec<u32>,
    /// The grid's width with its border.
    stride: usize,
    len: usize,
}

impl Band {
    fn new(pixels: &[u32], width: usize, height: usize) -> Band {
        let stride = width + 2 * PAD;
        let grid: Vec<u32> = pixels
            .iter()
            .map(|&p| {
                let (x, y) = (p as usize % width, p as usize / width);
                ((y + PAD) * stride + x + PAD) as u32
            })
            .collect();
        let mut runs: Vec<(u32, u32, u32)> = Vec::new();
        for (i, &g) in grid.iter().enumerate() {
            match runs.last_mut() {
                Some((start, _, len)) if *start + *len == g => *len += 1,
                _ => runs.push((g, i as u32, 1)),
            }
        }
        Band {
            runs,
            grid,
            stride,
            len: stride * (height + 2 * PAD),
        }
    }

    /// The runs in pieces of about [`PIECE`] unknowns, each a share of work for one core.
    fn pieces(&self) -> Vec<Piece> {
        let mut pieces: Vec<Piece> = Vec::new();
        let mut start = 0;
        for (r, &(_, first, len)) in self.runs.iter().enumerate() {
            let end = (first + len) as usize;
            if end - pieces.last().map_or(0, |p| p.unknowns.end) >= PIECE
                || r + 1 == self.runs.len()
            {
                let from = pieces.last().map_or(0, |p| p.unknowns.end);
                pieces.push(Piece {
                    runs: start..r + 1,
                    unknowns: from..end,
                });
                start = r + 1;
            }
        }
        pieces
    }

    /// Offset on the grid of the stencil's entry `k` (row-major 5×5, centre 12).
    fn offset(&self, k: usize) -> isize {
        (k / 5) as isize * self.stride as isize + (k % 5) as isize - (2 * self.stride + 2) as isize
    }
}

/// Pixels whose Laplacian rows [`Windows::rows`] computes at once.
const ROWS_AT_ONCE: usize = 16;

/// Unknowns per piece of work: large enough that handing a piece to another core pays.
const PIECE: usize = 16_384;

/// Consecutive runs and the unknowns they hold.
struct Piece {
    runs: std::ops::Range<usize>,
    unknowns: std::ops::Range<usize>,
}

/// Run `f(piece, slices)` for every piece, each `outs[k]` cut into the piece's unknowns ×
/// its stride; on all cores with the `parallel` feature (native builds; the Worker stays
/// single-threaded), and the same arithmetic either way.
fn for_each_piece<const N: usize>(
    pieces: &[Piece],
    outs: [(&mut [f32], usize); N],
    f: impl Fn(&Piece, [&mut [f32]; N]) + Sync + Send,
) {
    let strides = outs.each_ref().map(|(_, stride)| *stride);
    let mut rest = outs.map(|(s, _)| s);
    let parts: Vec<[&mut [f32]; N]> = pieces
        .iter()
        .map(|piece| {
            std::array::from_fn(|k| {
                let (part, tail) =
                    std::mem::take(&mut rest[k]).split_at_mut(piece.unknowns.len() * strides[k]);
                rest[k] = tail;
                part
            })
        })
        .collect();
    #[cfg(feature = "parallel")]
    if pieces.len() > 1 {
        use rayon::prelude::*;
        parts
            .into_par_iter()
            .zip(pieces)
            .for_each(|(part, piece)| f(piece, part));
        return;
    }
    for (part, piece) in parts.into_iter().zip(pieces) {
        f(piece, part);
    }
}

/// Every 3×3 window that holds an unknown pixel: its mean colour and the inverse of its
/// regularised colour covariance, computed once in f64 (ε makes the covariance nearly
/// singular) and kept in f32, by the window's centre.
struct Windows {
    width: usize,
    height: usize,
    /// Where each centre's window is in `data`, `u32::MAX` for none.
    slot: Vec<u32>,
    /// Mean (3), then the inverse's upper triangle (00, 01, 02, 11, 12, 22).
    data: Vec<[f32; 9]>,
}

impl Windows {
    fn new(rgb: &[f32], width: usize, height: usize, trimap: &[u8]) -> Windows {
        let unknown: Vec<bool> = trimap.iter().map(|&t| t != 0 && t != 255).collect();
        let centres = super::morph::dilate(&unknown, width, height, 1);
        drop(unknown);
        let mut slot = vec![u32::MAX; width * height];
        let mut at = Vec::new();
        for y in 1..height - 1 {
            for x in 1..width - 1 {
                let p = y * width + x;
                if centres[p] {
                    slot[p] = at.len() as u32;
                    at.push(p as u32);
                }
            }
        }
        drop(centres);
        let mut data = vec![[0f32; 9]; at.len()];
        let window = |p: usize| -> [f32; 9] {
            let mut c = [[0f64; 3]; 9];
            let mut mean = [0f64; 3];
            for (k, ck) in c.iter_mut().enumerate() {
                let q = 3 * (p + (k / 3) * width + k % 3 - width - 1);
                for ch in 0..3 {
                    ck[ch] = f64::from(rgb[q + ch]);
                    mean[ch] += ck[ch];
                }
            }
            for m in &mut mean {
                *m /= 9.0;
            }
            let (mut a00, mut a01, mut a02) = (EPSILON, 0.0, 0.0);
            let (mut a11, mut a12, mut a22) = (EPSILON, 0.0, EPSILON);
            for ck in &mut c {
                for ch in 0..3 {
                    ck[ch] -= mean[ch];
                }
                a00 += ck[0] * ck[0];
                a01 += ck[0] * ck[1];
                a02 += ck[0] * ck[2];
                a11 += ck[1] * ck[1];
                a12 += ck[1] * ck[2];
                a22 += ck[2] * ck[2];
            }
            let [a00, a01, a02, a11, a12, a22] = [a00, a01, a02, a11, a12, a22].map(|v| v / 9.0);
            let det = a00 * (a11 * a22 - a12 * a12) - a01 * (a01 * a22 - a02 * a12)
                + a02 * (a01 * a12 - a02 * a11);
            let inv = 1.0 / det;
            [
                mean[0],
                mean[1],
                mean[2],
                (a11 * a22 - a12 * a12) * inv,
                (a02 * a12 - a01 * a22) * inv,
                (a01 * a12 - a02 * a11) * inv,
                (a00 * a22 - a02 * a02) * inv,
                (a01 * a02 - a00 * a12) * inv,
                (a00 * a11 - a01 * a01) * inv,
            ]
            .map(|v| v as f32)
        };
        let pieces: Vec<Piece> = (0..at.len())
            .step_by(PIECE)
            .map(|s| Piece {
                runs: 0..0,
                unknowns: s..(s + PIECE).min(at.len()),
            })
            .collect();
        let flat = data.as_flattened_mut();
        for_each_piece(&pieces, [(flat, 9)], |piece, [out]| {
            for (o, &p) in out.chunks_exact_mut(9).zip(&at[piece.unknowns.clone()]) {
                o.copy_from_slice(&window(p as usize));
            }
        });
        Windows {
            width,
            height,
            slot,
            data,
        }
    }

    /// The rows of the matting Laplacian of the `len` unknown pixels from `(x0, y)` along the
    /// row, as [`Windows::row`] gives each (the same operations in the same order, so the same
    /// values), laid out `out[k · len + j]` for entry `k` of pixel `j`: the layout of a run in
    /// [`Stencil`]. Pixels are taken [`ROWS_AT_ONCE`] at a time with every colour and window
    /// they read copied into small arrays first, so that the arithmetic runs across pixels in
    /// vectors; pixel by pixel it was as long as the whole solve at 1024×683.
    fn rows(&self, rgb: &[f32], x0: usize, y: usize, len: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            unsafe { self.rows_avx2(rgb, x0, y, len, out) };
            return;
        }
        self.rows_any(rgb, x0, y, len, out);
    }

    /// [`Windows::rows`] compiled for AVX2 and FMA: 8 lanes instead of SSE's 4.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows_avx2(&self, rgb: &[f32], x0: usize, y: usize, len: usize, out: &mut [f32]) {
        self.rows_any(rgb, x0, y, len, out);
    }

    #[inline(always)]
    fn rows_any(&self, rgb: &[f32], x0: usize, y: usize, len: usize, out: &mut [f32]) {
        const N: usize = ROWS_AT_ONCE;
        let (w, h) = (self.width, self.height);
        for start in (0..len).step_by(N) {
            let count = (len - start).min(N);
            let xs = x0 + start;
            // Colours of the 5 rows around, lane i at column xs + i − 2 (0 outside).
            let mut colour = [[[0f32; N + 4]; 3]; 5];
            for (ry, rows) in colour.iter_mut().enumerate() {
                let Some(py) = (y + ry).checked_sub(2).filter(|&py| py < h) else {
                    continue;
                };
                for i in 0..count + 4 {
                    let Some(px) = (xs + i).checked_sub(2).filter(|&px| px < w) else {
                        continue;
                    };
                    let p = 3 * (py * w + px);
                    for (ch, row) in rows.iter_mut().enumerate() {
                        row[i] = rgb[p + ch];
                    }
                }
            }
            // The windows centred on the 3 rows around, lane i at column xs + i − 1, and
            // whether each lies inside the picture (those that do not count for nothing).
            let mut window = [[[0f32; N + 2]; 9]; 3];
            let mut inside = [[0f32; N + 2]; 3];
            for wy in 0..3 {
                if y + wy < 2 || y + wy >= h {
                    continue;
                }
                let cy = y + wy - 1;
                for i in 0..count + 2 {
                    if xs + i < 2 || xs + i >= w {
                        continue;
                    }
                    let slot = self.slot[cy * w + xs + i - 1];
                    if slot == u32::MAX {
                        continue;
                    }
                    for (v, &d) in self.data[slot as usize].iter().enumerate() {
                        window[wy][v][i] = d;
                    }
                    inside[wy][i] = 1.0;
                }
            }
            let mut acc = [[0f32; N]; 25];
            for wy in 0..3 {
                for wx in 0..3 {
                    let [m0, m1, m2, a00, a01, a02, a11, a12, a22] =
                        std::array::from_fn(|v| &window[wy][v][wx..wx + N]);
                    let mut ci = [[0f32; N]; 3];
                    for j in 0..N {
                        let me = [
                            colour[2][0][j + 2],
                            colour[2][1][j + 2],
                            colour[2][2][j + 2],
                        ];
                        let d = [me[0] - m0[j], me[1] - m1[j], me[2] - m2[j]];
                        ci[0][j] = a00[j] * d[0] + a01[j] * d[1] + a02[j] * d[2];
                        ci[1][j] = a01[j] * d[0] + a11[j] * d[1] + a12[j] * d[2];
                        ci[2][j] = a02[j] * d[0] + a12[j] * d[1] + a22[j] * d[2];
                    }
                    let inside = &inside[wy][wx..wx + N];
                    let me_in_window = (2 - wy) * 3 + 2 - wx;
                    for jy in 0..3 {
                        for jx in 0..3 {
                            let k = (wy + jy) * 5 + wx + jx;
                            let delta = if jy * 3 + jx == me_in_window {
                                1.0
                            } else {
                                0.0
                            };
                            let q = &colour[wy + jy];
                            let (q0, q1, q2) = (
                                &q[0][wx + jx..wx + jx + N],
                                &q[1][wx + jx..wx + jx + N],
                                &q[2][wx + jx..wx + jx + N],
                            );
                            for j in 0..N {
                                let dot = ci[0][j] * (q0[j] - m0[j])
                                    + ci[1][j] * (q1[j] - m1[j])
                                    + ci[2][j] * (q2[j] - m2[j]);
                                acc[k][j] += inside[j] * (delta - (1.0 + dot) * (1.0 / 9.0));
                            }
                        }
                    }
                }
            }
            for (k, a) in acc.iter().enumerate() {
                out[k * len + start..][..count].copy_from_slice(&a[..count]);
            }
        }
    }

    /// Row `(x, y)` of the matting Laplacian (an unknown pixel's), as its 5×5 neighbourhood:
    /// Σ over the windows holding the pixel of δ − (1 + (Iᵢ − μ)ᵀ M (Iⱼ − μ)) / 9. The
    /// definition [`Windows::rows`] is tested against.
    #[cfg(test)]
    fn row(&self, rgb: &[f32], x: usize, y: usize) -> [f32; 25] {
        let (w, h) = (self.width, self.height);
        let pixel = |x: usize, y: usize| {
            let p = 3 * (y * w + x);
            [rgb[p], rgb[p + 1], rgb[p + 2]]
        };
        // The 5×5 neighbourhood's colours (where inside the picture), read once.
        let mut patch = [[0f32; 3]; 25];
        for (k, c) in patch.iter_mut().enumerate() {
            let (qx, qy) = (x + k % 5, y + k / 5);
            if qx >= 2 && qy >= 2 && qx < w + 2 && qy < h + 2 {
                *c = pixel(qx - 2, qy - 2);
            }
        }
        let me = patch[12];
        let mut acc = [0f32; 25];
        // The window centred at (x + wx − 1, y + wy − 1), where it lies inside the picture.
        for wy in 0..3 {
            if y + wy < 2 || y + wy >= h {
                continue;
            }
            let cy = y + wy - 1;
            for wx in 0..3 {
                if x + wx < 2 || x + wx >= w {
                    continue;
                }
                let cx = x + wx - 1;
                let [m0, m1, m2, a00, a01, a02, a11, a12, a22] =
                    self.data[self.slot[cy * w + cx] as usize];
                let d = [me[0] - m0, me[1] - m1, me[2] - m2];
                let ci = [
                    a00 * d[0] + a01 * d[1] + a02 * d[2],
                    a01 * d[0] + a11 * d[1] + a12 * d[2],
                    a02 * d[0] + a12 * d[1] + a22 * d[2],
                ];
                let me_in_window = (2 - wy) * 3 + 2 - wx;
                for jy in 0..3 {
                    for jx in 0..3 {
                        let k = (wy + jy) * 5 + wx + jx;
                        let q = patch[k];
                        // (I − μ) first: ci is large where the window is flat.
                        let dot = ci[0] * (q[0] - m0) + ci[1] * (q[1] - m1) + ci[2] * (q[2] - m2);
                        let delta = if jy * 3 + jx == me_in_window {
                            1.0
                        } else {
                            0.0
                        };
                        acc[k] += delta - (1.0 + dot) * (1.0 / 9.0);
                    }
                }
            }
        }
        acc
    }
}

/// `L_U` as a 5×5 stencil per unknown: run by run, the run's 25 rows of coefficients (entry
/// `k` of the run's `j`-th unknown at `coef[25·first + k·len + j]`; 0 where the neighbour is
/// known or outside the picture), so the product streams one block per run.
struct Stencil {
    band: Band,
    coef: Vec<f32>,
    pieces: Vec<Piece>,
}

impl Stencil {
    fn n(&self) -> usize {
        self.band.grid.len()
    }

    /// y = L_U x, with `grid` as scratch (zero outside the unknowns).
    fn mul(&self, x: &[f32], grid: &mut [f32], y: &mut [f32]) {
        for (&g, &v) in self.band.grid.iter().zip(x) {
            grid[g as usize] = v;
        }
        let offsets: [isize; 25] = std::array::from_fn(|k| self.band.offset(k));
        let grid = &*grid;
        for_each_piece(&self.pieces, [(y, 1)], |piece, [y]| {
            let runs = &self.band.runs[piece.runs.clone()];
            let base = piece.unknowns.start;
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has the features the function is compiled for.
                unsafe { mul_runs_avx2(runs, &self.coef, &offsets, grid, y, base) };
                return;
            }
            mul_runs(runs, &self.coef, &offsets, grid, y, base);
        });
    }

    /// 1 / the diagonal (Jacobi's preconditioner), 1 where a diagonal is not positive.
    fn inverse_diagonal(&self) -> Vec<f32> {
        let mut dinv = Vec::with_capacity(self.n());
        for &(_, first, len) in &self.band.runs {
            let (first, len) = (first as usize, len as usize);
            let diagonal = &self.coef[25 * first + 12 * len..25 * first + 13 * len];
            dinv.extend(diagonal.iter().map(|&d| {
                if d > 0.0 && d.is_finite() {
                    1.0 / d
                } else {
                    1.0
                }
            }));
        }
        dinv
    }
}

/// The product's loop over runs, written for the compiler to vectorise.
#[inline(always)]
fn mul_runs(
    runs: &[(u32, u32, u32)],
    coef: &[f32],
    offsets: &[isize; 25],
    grid: &[f32],
    y: &mut [f32],
    base: usize,
) {
    for &(g, i, len) in runs {
        let (g, i, len) = (g as usize, i as usize, len as usize);
        let out = &mut y[i - base..i - base + len];
        out.fill(0.0);
        let block = &coef[25 * i..25 * (i + len)];
        for (c, &off) in block.chunks_exact(len).zip(offsets) {
            let start = (g as isize + off) as usize;
            let xs = &grid[start..start + len];
            for ((o, &c), &x) in out.iter_mut().zip(c).zip(xs) {
                *o += c * x;
            }
        }
    }
}

/// [`mul_runs`] compiled for AVX2 and FMA: 8 lanes instead of SSE's 4 (the product is most of a
/// solve's time).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn mul_runs_avx2(
    runs: &[(u32, u32, u32)],
    coef: &[f32],
    offsets: &[isize; 25],
    grid: &[f32],
    y: &mut [f32],
    base: usize,
) {
    mul_runs(runs, coef, offsets, grid, y, base)
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    // Eight partial sums in f64: the f32 products are exact enough, their sum over a large
    // band is not.
    let mut acc = [0f64; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..8 {
            acc[k] += f64::from(x[k] * y[k]);
        }
    }
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f64::from(x * y))
        .sum();
    acc.iter().sum::<f64>() + tail
}

/// Conjugate gradients preconditioned by the diagonal, from `x`; returns the iterations and
/// the final relative residual.
fn pcg(a: &Stencil, b: &[f32], x: &mut [f32], max_iterations: usize) -> (usize, f64) {
    let n = a.n();
    let mut grid = vec![0f32; a.band.len];
    let norm_b = dot(b, b).sqrt();
    let mut r = vec![0f32; n];
    a.mul(x, &mut grid, &mut r);
    for (ri, bi) in r.iter_mut().zip(b) {
        *ri = bi - *ri;
    }
    let mut norm_r = dot(&r, &r).sqrt();
    if norm_b == 0.0 || norm_r <= TOLERANCE * norm_b {
        return (0, if norm_b == 0.0 { 0.0 } else { norm_r / norm_b });
    }
    let dinv = a.inverse_diagonal();
    let mut z: Vec<f32> = r.iter().zip(&dinv).map(|(r, d)| r * d).collect();
    let mut p = z.clone();
    let mut rz = dot(&r, &z);
    let mut ap = vec![0f32; n];
    for it in 1..=max_iterations {
        a.mul(&p, &mut grid, &mut ap);
        let step = (rz / dot(&p, &ap)) as f32;
        for ((xi, ri), (pi, api)) in x.iter_mut().zip(r.iter_mut()).zip(p.iter().zip(&ap)) {
            *xi += step * pi;
            *ri -= step * api;
        }
        norm_r = dot(&r, &r).sqrt();
        if norm_r <= TOLERANCE * norm_b || !norm_r.is_finite() {
            return (it, norm_r / norm_b);
        }
        for ((zi, ri), di) in z.iter_mut().zip(&r).zip(&dinv) {
            *zi = ri * di;
        }
        let rz_new = dot(&r, &z);
        let beta = (rz_new / rz) as f32;
        rz = rz_new;
        for (pi, zi) in p.iter_mut().zip(&z) {
            *pi = zi + beta * *pi;
        }
    }
    (max_iterations, norm_r / norm_b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A noisy two-colour picture with a sure subject, sure background and unknowns between,
    /// large enough for several pieces.
    fn scene(w: usize, h: usize) -> (Vec<f32>, Vec<u8>) {
        let mut seed = 0x2545_f491_u32;
        let mut noise = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed % 1000) as f32 / 1000.0
        };
        let mut rgb = Vec::with_capacity(w * h * 3);
        let mut trimap = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                let t = x as f32 / w as f32;
                rgb.extend([0.2 + 0.6 * t, 0.5 - 0.3 * t, 0.4].map(|c| c + 0.05 * noise()));
                trimap.push(match (x * 5 / w, y * 4 / h) {
                    (0, _) => 0,
                    (4, 1) => 255,
                    _ => 128,
                });
            }
        }
        (rgb, trimap)
    }

    /// The unknown pixels of a `scene`'s trimap, in raster order.
    fn unknowns(trimap: &[u8]) -> Vec<u32> {
        (0..trimap.len() as u32)
            .filter(|&p| trimap[p as usize] == 128)
            .collect()
    }

    /// Rows made many pixels at once equal rows made pixel by pixel, bit for bit, for runs of
    /// every length, at the picture's edges too.
    #[test]
    fn rows_at_once_are_rows_one_by_one() {
        let (w, h) = (53, 21);
        let (rgb, _) = scene(w, h);
        // Unknown everywhere but a sure column, so runs start at the left edge and end at the
        // right one, shorter and longer than ROWS_AT_ONCE.
        let trimap: Vec<u8> = (0..w * h)
            .map(|p| if p % w == 20 { 255 } else { 128 })
            .collect();
        let windows = Windows::new(&rgb, w, h, &trimap);
        for y in 0..h {
            for (x0, len) in [(0, 20), (21, 32), (3, 1), (5, 16), (2, 17)] {
                let mut out = vec![f32::NAN; 25 * len];
                windows.rows(&rgb, x0, y, len, &mut out);
                // The portable path (what `rows` runs without AVX2) gives the same.
                let mut portable = vec![f32::NAN; 25 * len];
                windows.rows_any(&rgb, x0, y, len, &mut portable);
                assert!(
                    out.iter()
                        .zip(&portable)
                        .all(|(a, b)| a.to_bits() == b.to_bits())
                );
                for j in 0..len {
                    let want = windows.row(&rgb, x0 + j, y);
                    for (k, &v) in want.iter().enumerate() {
                        assert_eq!(
                            out[k * len + j].to_bits(),
                            v.to_bits(),
                            "({}, {y}) entry {k}",
                            x0 + j
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn product_and_right_hand_side_are_the_matting_laplacians() {
        let (w, h) = (210, 150);
        let (rgb, trimap) = scene(w, h);
        let pixels = unknowns(&trimap);
        let n = pixels.len();
        let (a, rhs) = system(&rgb, w, h, &trimap, &pixels, None);
        assert!(a.pieces.len() >= 2, "the test covers several pieces");
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
            .collect();
        let mut grid = vec![0f32; a.band.len];
        let mut y = vec![0f32; n];
        a.mul(&x, &mut grid, &mut y);

        // The same, window by window in f64 (Levin et al.'s formula, as pymatting builds it).
        let mut full_x = vec![0f64; w * h];
        let mut index = vec![usize::MAX; w * h];
        for (i, &p) in pixels.iter().enumerate() {
            full_x[p as usize] = f64::from(x[i]);
            index[p as usize] = i;
        }
        let mut y_ref = vec![0f64; n];
        let mut rhs_ref = vec![0f64; n];
        for cy in 1..h - 1 {
            for cx in 1..w - 1 {
                let win: Vec<usize> = (0..9)
                    .map(|k| (cy + k / 3 - 1) * w + cx + k % 3 - 1)
                    .collect();
                let c: Vec<[f64; 3]> = win
                    .iter()
                    .map(|&p| std::array::from_fn(|ch| f64::from(rgb[3 * p + ch])))
                    .collect();
                let mean: [f64; 3] =
                    std::array::from_fn(|ch| c.iter().map(|v| v[ch]).sum::<f64>() / 9.0);
                let d: Vec<[f64; 3]> = c
                    .iter()
                    .map(|v| std::array::from_fn(|ch| v[ch] - mean[ch]))
                    .collect();
                let mut cov = [[0f64; 3]; 3];
                for (r, row) in cov.iter_mut().enumerate() {
                    for (s, v) in row.iter_mut().enumerate() {
                        *v = d.iter().map(|e| e[r] * e[s]).sum::<f64>() / 9.0
                            + if r == s { EPSILON / 9.0 } else { 0.0 };
                    }
                }
                let inv = invert(cov);
                for i in 0..9 {
                    let Some(&row) = Some(&index[win[i]]).filter(|&&r| r != usize::MAX) else {
                        continue;
                    };
                    for j in 0..9 {
                        let m: f64 = (0..3)
                            .map(|r| (0..3).map(|s| d[i][r] * inv[r][s] * d[j][s]).sum::<f64>())
                            .sum();
                        let v = f64::from(u8::from(i == j)) - (1.0 + m) / 9.0;
                        y_ref[row] += v * full_x[win[j]];
                        if trimap[win[j]] == 255 {
                            rhs_ref[row] -= v;
                        }
                    }
                }
            }
        }
        let worst = |ours: &[f32], theirs: &[f64]| {
            ours.iter()
                .zip(theirs)
                .map(|(&o, &t)| (f64::from(o) - t).abs())
                .fold(0.0, f64::max)
        };
        assert!(
            worst(&y, &y_ref) < 1e-3,
            "product off by {}",
            worst(&y, &y_ref)
        );
        assert!(
            worst(&rhs, &rhs_ref) < 1e-3,
            "rhs off by {}",
            worst(&rhs, &rhs_ref)
        );
        assert!(
            rhs_ref.iter().any(|&v| v.abs() > 0.1),
            "the subject reaches the band"
        );
    }

    fn invert(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
        let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
        std::array::from_fn(|r| {
            std::array::from_fn(|c| {
                let (r1, r2) = ((c + 1) % 3, (c + 2) % 3);
                let (c1, c2) = ((r + 1) % 3, (r + 2) % 3);
                (m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]) / det
            })
        })
    }

    #[test]
    fn the_prior_adds_its_confidence_to_the_diagonal_and_pulls_towards_the_mask() {
        let (w, h) = (120, 90);
        let (rgb, trimap) = scene(w, h);
        let pixels = unknowns(&trimap);
        let n = pixels.len();
        let mask: Vec<f32> = (0..w * h)
            .map(|p| ((p * 37) % 101) as f32 / 100.0)
            .collect();
        let prior = Prior {
            mask: &mask,
            weight: 0.25,
        };
        let (plain, rhs) = system(&rgb, w, h, &trimap, &pixels, None);
        let (pulled, rhs_pulled) = system(&rgb, w, h, &trimap, &pixels, Some(prior));
        // (A + D) x − A x = D x, for D the prior's diagonal.
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
            .collect();
        let (mut grid, mut y0, mut y1) = (vec![0f32; plain.band.len], vec![0f32; n], vec![0f32; n]);
        plain.mul(&x, &mut grid, &mut y0);
        pulled.mul(&x, &mut grid, &mut y1);
        for (i, &p) in pixels.iter().enumerate() {
            let m = mask[p as usize];
            let c = 0.25 * (2.0 * m - 1.0) * (2.0 * m - 1.0);
            assert!((y1[i] - y0[i] - c * x[i]).abs() < 1e-5, "diagonal at {p}");
            assert!((rhs_pulled[i] - rhs[i] - c * m).abs() < 1e-6, "pull at {p}");
        }
        // A strong prior holds alpha at a confident mask.
        let sure: Vec<f32> = (0..w * h)
            .map(|p| if p % w < w / 2 { 0.02 } else { 0.98 })
            .collect();
        let mut alpha = vec![0.5f32; w * h];
        let strong = Prior {
            mask: &sure,
            weight: 1e4,
        };
        solve_with(
            &rgb,
            w,
            h,
            &trimap,
            &mut alpha,
            Some(strong),
            MAX_ITERATIONS,
        );
        for &p in &pixels {
            let p = p as usize;
            assert!(
                (alpha[p] - sure[p]).abs() < 0.01,
                "pixel {p}: {} vs {}",
                alpha[p],
                sure[p]
            );
        }
    }

    #[test]
    fn solve_reaches_the_tolerance_and_keeps_known_pixels() {
        let (w, h) = (120, 90);
        let (rgb, trimap) = scene(w, h);
        let mut alpha = vec![0.5f32; w * h];
        let stats = solve(&rgb, w, h, &trimap, &mut alpha);
        assert!(stats.relative_residual <= TOLERANCE, "{stats:?}");
        assert!(stats.iterations < MAX_ITERATIONS);
        for (a, t) in alpha.iter().zip(&trimap) {
            match t {
                0 => assert_eq!(*a, 0.0),
                255 => assert_eq!(*a, 1.0),
                _ => assert!((0.0..=1.0).contains(a)),
            }
        }
    }
}
