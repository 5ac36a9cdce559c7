//! From a matte solved on a shrunk photo back to the photo's full resolution, edge-aware.
//!
//! Closed-form matting assumes α is locally an affine function of colour, `α ≈ a·I + b` in
//! every small window. The solved low-resolution α gives those coefficients (a guided filter,
//! He, Sun and Tang 2013, with the shrunk photo as guide); they vary slowly, so they are
//! interpolated bilinearly to full resolution and applied to the full-resolution colours
//! there (the "fast guided filter", He and Sun 2015). A hair thinner than one low-resolution
//! pixel comes back wherever its colour differs from the background's.

use image::{GrayImage, RgbImage};

use super::trimap;

/// Regularisation of the coefficients (colours in 0..1): above the variance of a phone's
/// sensor noise once box-averaged, so noise is not amplified into α.
pub const EPSILON: f32 = 1e-4;

/// The photo, its coarse mask and its trimap, box-averaged by `factor`.
#[derive(Debug, Clone)]
pub struct Shrunk {
    pub w: usize,
    pub h: usize,
    pub factor: usize,
    /// Interleaved RGB in 0..1.
    pub rgb: Vec<f32>,
    /// The coarse mask in 0..1, the solve's starting guess.
    pub mask: Vec<f32>,
    /// Foreground where the whole block is, background likewise, unknown otherwise.
    pub trimap: Vec<u8>,
}

impl Shrunk {
    pub fn new(rgb: &RgbImage, mask: &GrayImage, tri: &GrayImage, factor: usize) -> Shrunk {
        let (fw, fh) = (rgb.width() as usize, rgb.height() as usize);
        let (w, h) = (fw.div_ceil(factor), fh.div_ceil(factor));
        let mut out = Shrunk {
            w,
            h,
            factor,
            rgb: vec![0.0; w * h * 3],
            mask: vec![0.0; w * h],
            trimap: vec![0; w * h],
        };
        let (src, m, t) = (rgb.as_raw(), mask.as_raw(), tri.as_raw());
        let mut sums = vec![[0u32; 4]; w];
        let mut flags = vec![[false; 2]; w]; // [has non-fg, has non-bg]
        for by in 0..h {
            sums.fill([0; 4]);
            flags.fill([false; 2]);
            let rows = by * factor..((by + 1) * factor).min(fh);
            let count_y = rows.len();
            for y in rows {
                for x in 0..fw {
                    let i = y * fw + x;
                    let s = &mut sums[x / factor];
                    s[0] += u32::from(src[3 * i]);
                    s[1] += u32::from(src[3 * i + 1]);
                    s[2] += u32::from(src[3 * i + 2]);
                    s[3] += u32::from(m[i]);
                    let f = &mut flags[x / factor];
                    f[0] |= t[i] != trimap::FG;
                    f[1] |= t[i] != trimap::BG;
                }
            }
            for bx in 0..w {
                let count_x = ((bx + 1) * factor).min(fw) - bx * factor;
                let n = (count_x * count_y) as f32 * 255.0;
                let o = by * w + bx;
                for c in 0..3 {
                    out.rgb[3 * o + c] = sums[bx][c] as f32 / n;
                }
                out.mask[o] = sums[bx][3] as f32 / n;
                out.trimap[o] = match flags[bx] {
                    [false, _] => trimap::FG,
                    [_, false] => trimap::BG,
                    _ => trimap::UNKNOWN,
                };
            }
        }
        out
    }
}

/// The guided filter's coefficients, averaged over the windows that hold each pixel, where
/// sampling near the unknown band reaches.
pub struct Coefficients {
    w: usize,
    h: usize,
    mean: Vec<[f32; 4]>,
}

impl Coefficients {
    /// From `alpha` solved on `small`.
    pub fn new(small: &Shrunk, alpha: &[f32]) -> Coefficients {
        let (w, h) = (small.w, small.h);
        let unknown: Vec<bool> = small.trimap.iter().map(|&t| t == trimap::UNKNOWN).collect();
        // Needed where bilinear sampling of unknown pixels reaches (one pixel around), and
        // each is a mean over windows (one more).
        let need = super::morph::dilate(&unknown, w, h, 1);
        let windows = super::morph::dilate(&need, w, h, 1);
        let mut coef = vec![[0f32; 4]; w * h];
        for (i, c) in coef.iter_mut().enumerate() {
            if windows[i] {
                *c = coefficients(small, alpha, i % w, i / w);
            }
        }
        let mut mean = vec![[0f32; 4]; w * h];
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                if !need[i] {
                    continue;
                }
                let mut s = [0f32; 4];
                let mut n = 0.0;
                for yy in y.saturating_sub(1)..(y + 2).min(h) {
                    for xx in x.saturating_sub(1)..(x + 2).min(w) {
                        let c = coef[yy * w + xx];
                        for k in 0..4 {
                            s[k] += c[k];
                        }
                        n += 1.0;
                    }
                }
                mean[i] = s.map(|v| v / n);
            }
        }
        Coefficients { w, h, mean }
    }

    /// The coefficients at pixel (x, y) of a picture `ratio` times larger (pixel centres
    /// aligned), interpolated bilinearly.
    #[inline]
    pub fn at(&self, x: usize, y: usize, ratio: f32) -> [f32; 4] {
        let (w, h) = (self.w, self.h);
        let sy = ((y as f32 + 0.5) / ratio - 0.5).clamp(0.0, (h - 1) as f32);
        let sx = ((x as f32 + 0.5) / ratio - 0.5).clamp(0.0, (w - 1) as f32);
        let (y0, ty) = (sy as usize, sy.fract());
        let (x0, tx) = (sx as usize, sx.fract());
        let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
        let (c00, c01, c10, c11) = (
            self.mean[y0 * w + x0],
            self.mean[y0 * w + x1],
            self.mean[y1 * w + x0],
            self.mean[y1 * w + x1],
        );
        [0, 1, 2, 3].map(|k| {
            let top = c00[k] + (c01[k] - c00[k]) * tx;
            let bottom = c10[k] + (c11[k] - c10[k]) * tx;
            top + (bottom - top) * ty
        })
    }
}

/// α on `fine` (a picture `ratio` times larger than the one `coef` was made on) at its
/// unknown pixels, `a·I + b`, into `alpha` (0..1); known pixels are left as they are.
pub fn upsample_shrunk(coef: &Coefficients, fine: &Shrunk, ratio: f32, alpha: &mut [f32]) {
    for (i, a) in alpha.iter_mut().enumerate() {
        if fine.trimap[i] != trimap::UNKNOWN {
            continue;
        }
        let c = coef.at(i % fine.w, i / fine.w, ratio);
        let p = &fine.rgb[3 * i..3 * i + 3];
        *a = (c[0] * p[0] + c[1] * p[1] + c[2] * p[2] + c[3]).clamp(0.0, 1.0);
    }
}

/// Full-resolution α: the trimap's known pixels as they are, the unknown ones `a·I + b` with
/// the coefficients of `alpha` (solved on `small`) interpolated to each pixel.
pub fn upsample(rgb: &RgbImage, tri: &GrayImage, small: &Shrunk, alpha: &[f32]) -> GrayImage {
    let coef = Coefficients::new(small, alpha);
    let fw = rgb.width() as usize;
    let ratio = small.factor as f32;
    let src = rgb.as_raw();
    let mut out = tri.clone();
    for (y, row) in out.as_mut().chunks_exact_mut(fw).enumerate() {
        for (x, t) in row.iter_mut().enumerate() {
            if *t != trimap::UNKNOWN {
                continue;
            }
            let c = coef.at(x, y, ratio);
            let p = 3 * (y * fw + x);
            let a = c[0] * f32::from(src[p])
                + c[1] * f32::from(src[p + 1])
                + c[2] * f32::from(src[p + 2]);
            let v = a / 255.0 + c[3];
            *t = (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
        }
    }
    out
}

/// The guided filter's `(a, b)` of the 3×3 window centred at (x, y) (clipped at the border).
fn coefficients(small: &Shrunk, alpha: &[f32], x: usize, y: usize) -> [f32; 4] {
    let (w, h) = (small.w, small.h);
    let mut n = 0.0f32;
    let (mut mi, mut mp) = ([0f32; 3], 0f32);
    let mut cov = [0f32; 6]; // rr rg rb gg gb bb
    let mut cip = [0f32; 3];
    for yy in y.saturating_sub(1)..(y + 2).min(h) {
        for xx in x.saturating_sub(1)..(x + 2).min(w) {
            let j = yy * w + xx;
            let c = &small.rgb[3 * j..3 * j + 3];
            let p = alpha[j];
            n += 1.0;
            mp += p;
            for k in 0..3 {
                mi[k] += c[k];
                cip[k] += c[k] * p;
            }
            cov[0] += c[0] * c[0];
            cov[1] += c[0] * c[1];
            cov[2] += c[0] * c[2];
            cov[3] += c[1] * c[1];
            cov[4] += c[1] * c[2];
            cov[5] += c[2] * c[2];
        }
    }
    let mi = mi.map(|v| v / n);
    let mp = mp / n;
    let s00 = cov[0] / n - mi[0] * mi[0] + EPSILON;
    let s01 = cov[1] / n - mi[0] * mi[1];
    let s02 = cov[2] / n - mi[0] * mi[2];
    let s11 = cov[3] / n - mi[1] * mi[1] + EPSILON;
    let s12 = cov[4] / n - mi[1] * mi[2];
    let s22 = cov[5] / n - mi[2] * mi[2] + EPSILON;
    let q = [0, 1, 2].map(|k| cip[k] / n - mi[k] * mp);
    // Solve the symmetric 3×3 system by its adjugate.
    let i00 = s11 * s22 - s12 * s12;
    let i01 = s02 * s12 - s01 * s22;
    let i02 = s01 * s12 - s02 * s11;
    let i11 = s00 * s22 - s02 * s02;
    let i12 = s01 * s02 - s00 * s12;
    let i22 = s00 * s11 - s01 * s01;
    let det = s00 * i00 + s01 * i01 + s02 * i02;
    let a = [
        (i00 * q[0] + i01 * q[1] + i02 * q[2]) / det,
        (i01 * q[0] + i11 * q[1] + i12 * q[2]) / det,
        (i02 * q[0] + i12 * q[1] + i22 * q[2]) / det,
    ];
    let b = mp - a[0] * mi[0] - a[1] * mi[1] - a[2] * mi[2];
    [a[0], a[1], a[2], b]
}
