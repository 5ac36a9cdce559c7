//! Closed-form alpha matting (Levin, Lischinski and Weiss 2008) over a trimap's unknown band.
//!
//! The matting Laplacian of 3×3 windows (ε = 1e-7, as pymatting's `cf_laplacian`) is built only
//! for the rows of unknown pixels, only from windows that hold one; known pixels are Dirichlet
//! conditions (sure foreground 1, sure background 0), as in pymatting's `estimate_alpha_cf`. The
//! system `L_U α_U = −R α_K` is solved by conjugate gradients preconditioned with an incomplete
//! Cholesky factor of `L_U`'s own pattern (IC(0); pymatting uses a thresholded IC with fill-in),
//! started from the coarse mask, so cost follows the band, not the photo.

/// Regularisation of each window's colour covariance (pymatting's default).
pub const EPSILON: f64 = 1e-7;

/// Relative residual at which the solve stops.
pub const TOLERANCE: f64 = 1e-6;

/// Most iterations of a direct solve.
pub const MAX_ITERATIONS: usize = 400;

/// What one solve did, for benchmarks and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SolveStats {
    pub unknowns: usize,
    pub iterations: usize,
    pub relative_residual: f64,
}

/// A symmetric matrix as compressed rows (columns ascending in each row).
struct Csr {
    ptr: Vec<u32>,
    col: Vec<u32>,
    val: Vec<f64>,
}

impl Csr {
    fn n(&self) -> usize {
        self.ptr.len() - 1
    }

    fn mul(&self, x: &[f64], y: &mut [f64]) {
        for (i, yi) in y.iter_mut().enumerate() {
            let (a, b) = (self.ptr[i] as usize, self.ptr[i + 1] as usize);
            *yi = self.col[a..b]
                .iter()
                .zip(&self.val[a..b])
                .map(|(&c, &v)| v * x[c as usize])
                .sum();
        }
    }
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
    solve_with(rgb, width, height, trimap, alpha, MAX_ITERATIONS)
}

/// [`solve`] with at most `max_iterations`.
pub fn solve_with(
    rgb: &[f32],
    width: usize,
    height: usize,
    trimap: &[u8],
    alpha: &mut [f32],
    max_iterations: usize,
) -> SolveStats {
    let n_px = width * height;
    assert_eq!(rgb.len(), n_px * 3, "picture size");
    assert_eq!(trimap.len(), n_px, "trimap size");
    assert_eq!(alpha.len(), n_px, "alpha size");
    const NONE: u32 = u32::MAX;
    let known = |t: u8| t == 0 || t == 255;
    for (a, &t) in alpha.iter_mut().zip(trimap) {
        match t {
            0 => *a = 0.0,
            255 => *a = 1.0,
            _ => *a = a.clamp(0.0, 1.0),
        }
    }
    // Unknown pixels, numbered in raster order.
    let mut index = vec![NONE; n_px];
    let mut pixels = Vec::new();
    for (p, &t) in trimap.iter().enumerate() {
        if !known(t) {
            index[p] = pixels.len() as u32;
            pixels.push(p as u32);
        }
    }
    let n = pixels.len();
    let mut stats = SolveStats {
        unknowns: n,
        ..SolveStats::default()
    };
    if n == 0 || width < 3 || height < 3 {
        return stats;
    }

    // Each unknown row's 5×5 neighbourhood of Laplacian entries, accumulated window by window.
    let mut rows = vec![[0f64; 25]; n];
    let px = |p: usize| -> [f64; 3] {
        [
            f64::from(rgb[3 * p]),
            f64::from(rgb[3 * p + 1]),
            f64::from(rgb[3 * p + 2]),
        ]
    };
    let unknown: Vec<bool> = trimap.iter().map(|&t| !known(t)).collect();
    let centres = super::morph::dilate(&unknown, width, height, 1);
    for y in 1..height - 1 {
        for x in 1..width - 1 {
            if !centres[y * width + x] {
                continue;
            }
            let mut win = [0usize; 9];
            let mut c = [[0f64; 3]; 9];
            let mut mean = [0f64; 3];
            for (k, w) in win.iter_mut().enumerate() {
                *w = (y + k / 3 - 1) * width + x + k % 3 - 1;
                let v = px(*w);
                c[k] = v;
                for ch in 0..3 {
                    mean[ch] += v[ch];
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
            let m00 = (a11 * a22 - a12 * a12) * inv;
            let m01 = (a02 * a12 - a01 * a22) * inv;
            let m02 = (a01 * a12 - a02 * a11) * inv;
            let m11 = (a00 * a22 - a02 * a02) * inv;
            let m12 = (a01 * a02 - a00 * a12) * inv;
            let m22 = (a00 * a11 - a01 * a01) * inv;
            for i in 0..9 {
                let row = index[win[i]];
                if row == NONE {
                    continue;
                }
                let [s, t, u] = c[i];
                let ci = [
                    m00 * s + m01 * t + m02 * u,
                    m01 * s + m11 * t + m12 * u,
                    m02 * s + m12 * t + m22 * u,
                ];
                let entries = &mut rows[row as usize];
                for (j, cj) in c.iter().enumerate() {
                    let v = f64::from(u8::from(i == j))
                        - (1.0 + ci[0] * cj[0] + ci[1] * cj[1] + ci[2] * cj[2]) / 9.0;
                    let (dy, dx) = (j / 3 + 2 - i / 3, j % 3 + 2 - i % 3);
                    entries[dy * 5 + dx] += v;
                }
            }
        }
    }

    // Split into L_U (unknown columns) and the right-hand side −R·α_K.
    let mut a = Csr {
        ptr: Vec::with_capacity(n + 1),
        col: Vec::with_capacity(n * 25),
        val: Vec::with_capacity(n * 25),
    };
    a.ptr.push(0);
    let mut rhs = vec![0f64; n];
    for (i, (&p, entries)) in pixels.iter().zip(&rows).enumerate() {
        let (x, y) = ((p as usize % width) as isize, (p as usize / width) as isize);
        for (k, &v) in entries.iter().enumerate() {
            if v == 0.0 {
                continue;
            }
            let (xx, yy) = (x + (k % 5) as isize - 2, y + (k / 5) as isize - 2);
            if xx < 0 || yy < 0 || xx >= width as isize || yy >= height as isize {
                continue;
            }
            let q = yy as usize * width + xx as usize;
            match index[q] {
                NONE => {
                    if trimap[q] == 255 {
                        rhs[i] -= v;
                    }
                }
                j => {
                    a.col.push(j);
                    a.val.push(v);
                }
            }
        }
        a.ptr.push(a.col.len() as u32);
    }
    drop(rows);

    let mut x: Vec<f64> = pixels
        .iter()
        .map(|&p| f64::from(alpha[p as usize]))
        .collect();
    let (iterations, residual) = pcg(&a, &rhs, &mut x, max_iterations);
    stats.iterations = iterations;
    stats.relative_residual = residual;
    for (&p, &v) in pixels.iter().zip(&x) {
        alpha[p as usize] = v.clamp(0.0, 1.0) as f32;
    }
    stats
}

/// An IC(0) factor: the lower triangle of `a`'s pattern, row by row, diagonal last in each row.
struct Ichol {
    ptr: Vec<u32>,
    col: Vec<u32>,
    val: Vec<f64>,
}

impl Ichol {
    /// Factor `a + shift·diag(a)`; `None` if a pivot is not positive.
    fn new(a: &Csr, shift: f64) -> Option<Ichol> {
        let n = a.n();
        let mut f = Ichol {
            ptr: Vec::with_capacity(n + 1),
            col: Vec::new(),
            val: Vec::new(),
        };
        f.ptr.push(0);
        // Dense scratch row for the current row's lower entries.
        let mut work = vec![0f64; n];
        let mut diag = vec![0f64; n];
        for i in 0..n {
            let (s, e) = (a.ptr[i] as usize, a.ptr[i + 1] as usize);
            let start = f.col.len();
            let mut d = 0.0;
            for (&c, &v) in a.col[s..e].iter().zip(&a.val[s..e]) {
                let c = c as usize;
                if c < i {
                    f.col.push(c as u32);
                    f.val.push(0.0);
                    work[c] = v;
                } else if c == i {
                    d = v * (1.0 + shift);
                }
            }
            // L[i][k] = (A[i][k] − Σ_{m<k} L[i][m]·L[k][m]) / L[k][k], over the pattern.
            let lower = start..f.col.len();
            for idx in lower.clone() {
                let k = f.col[idx] as usize;
                let (ks, ke) = (f.ptr[k] as usize, f.ptr[k + 1] as usize - 1);
                let mut sum = work[k];
                // Row k's off-diagonal columns are all below k, where `work` holds L[i][m]
                // (computed) or 0 (outside row i's pattern).
                for (&m, &lkm) in f.col[ks..ke].iter().zip(&f.val[ks..ke]) {
                    sum -= work[m as usize] * lkm;
                }
                let lik = sum / diag[k];
                work[k] = lik;
                f.val[idx] = lik;
                d -= lik * lik;
            }
            if d <= 0.0 || !d.is_finite() {
                return None;
            }
            let d = d.sqrt();
            diag[i] = d;
            for idx in lower {
                work[f.col[idx] as usize] = 0.0;
            }
            f.col.push(i as u32);
            f.val.push(d);
            f.ptr.push(f.col.len() as u32);
        }
        Some(f)
    }

    /// z = (L Lᵀ)⁻¹ r.
    fn apply(&self, r: &[f64], z: &mut [f64]) {
        let n = self.ptr.len() - 1;
        z.copy_from_slice(r);
        for i in 0..n {
            let (s, e) = (self.ptr[i] as usize, self.ptr[i + 1] as usize - 1);
            let mut v = z[i];
            for (&c, &l) in self.col[s..e].iter().zip(&self.val[s..e]) {
                v -= l * z[c as usize];
            }
            z[i] = v / self.val[e];
        }
        for i in (0..n).rev() {
            let (s, e) = (self.ptr[i] as usize, self.ptr[i + 1] as usize - 1);
            let v = z[i] / self.val[e];
            z[i] = v;
            for (&c, &l) in self.col[s..e].iter().zip(&self.val[s..e]) {
                z[c as usize] -= l * v;
            }
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Preconditioned conjugate gradients from `x`; returns the iterations and the final relative
/// residual.
fn pcg(a: &Csr, b: &[f64], x: &mut [f64], max_iterations: usize) -> (usize, f64) {
    let n = a.n();
    let norm_b = dot(b, b).sqrt();
    let mut r = vec![0f64; n];
    a.mul(x, &mut r);
    for (ri, bi) in r.iter_mut().zip(b) {
        *ri = bi - *ri;
    }
    let mut norm_r = dot(&r, &r).sqrt();
    if norm_b == 0.0 || norm_r <= TOLERANCE * norm_b {
        return (0, if norm_b == 0.0 { 0.0 } else { norm_r / norm_b });
    }
    let pre = [0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
        .into_iter()
        .find_map(|shift| Ichol::new(a, shift));
    let precondition = |r: &[f64], z: &mut [f64]| match &pre {
        Some(f) => f.apply(r, z),
        None => z.copy_from_slice(r),
    };
    let mut z = vec![0f64; n];
    precondition(&r, &mut z);
    let mut p = z.clone();
    let mut rz = dot(&r, &z);
    let mut ap = vec![0f64; n];
    for it in 1..=max_iterations {
        a.mul(&p, &mut ap);
        let step = rz / dot(&p, &ap);
        for ((xi, ri), (pi, api)) in x.iter_mut().zip(r.iter_mut()).zip(p.iter().zip(&ap)) {
            *xi += step * pi;
            *ri -= step * api;
        }
        norm_r = dot(&r, &r).sqrt();
        if norm_r <= TOLERANCE * norm_b || !norm_r.is_finite() {
            return (it, norm_r / norm_b);
        }
        precondition(&r, &mut z);
        let rz_new = dot(&r, &z);
        let beta = rz_new / rz;
        rz = rz_new;
        for (pi, zi) in p.iter_mut().zip(&z) {
            *pi = zi + beta * *pi;
        }
    }
    (max_iterations, norm_r / norm_b)
}
