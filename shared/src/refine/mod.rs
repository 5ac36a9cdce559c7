//! Cut-out edges at the photo's full resolution: a trimap from the coarse mask
//! ([`trimap`]), alpha matting in its unknown band ([`closed_form`], solved at a working
//! scale and brought to full resolution edge-aware by [`guided`]), and the foreground colour
//! under every soft edge ([`foreground`]), so the old background does not bleed into the fur.
//!
//! `off` leaves the mask and the photo's colours as the model gave them (rembg's and
//! transparent-background's output); `foreground` keeps the mask and estimates colour;
//! `matting` does both.

use std::{fmt, str::FromStr};

use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

pub mod closed_form;
pub mod foreground;
pub mod guided;
pub mod morph;
pub mod plane;
pub mod trimap;

pub use foreground::Foreground;

/// How the model's mask is refined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(try_from = "String", into = "String")]
pub enum Refine {
    /// The model's mask and the photo's colours, untouched.
    Off,
    /// The model's mask, with the foreground colour estimated under soft edges.
    Foreground,
    /// Alpha matting in the band the mask is unsure of, then the foreground colour.
    #[default]
    Matting,
}

impl Refine {
    pub const ALL: [Refine; 3] = [Refine::Off, Refine::Foreground, Refine::Matting];

    pub fn name(self) -> &'static str {
        match self {
            Refine::Off => "off",
            Refine::Foreground => "foreground",
            Refine::Matting => "matting",
        }
    }

    /// The refinement as a result id spells it (`off` is not spelled: results made before
    /// refinement existed keep their ids).
    pub fn key(self) -> Option<String> {
        match self {
            Refine::Off => None,
            other => Some(format!("{}/{EDITION}", other.name())),
        }
    }
}

/// Which edition of the refinement made a result: part of a refined result's id, so that a
/// result made again after the method changed gets a new id instead of different pixels under
/// an id browsers and CDNs have cached as immutable. 2: [`HAZE`] and the colour of invisible
/// pixels touching the edge. 3: the foreground estimation keeps F and B in 16 bits (one pixel
/// in 2,000 moves by one level).
pub const EDITION: u32 = 3;

impl fmt::Display for Refine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Refine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Refine::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown refinement {s:?}: expected off, foreground or matting"))
    }
}

impl TryFrom<String> for Refine {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Refine> for String {
    fn from(r: Refine) -> String {
        r.to_string()
    }
}

/// The long side of the picture the matting is solved on; larger photos are solved on a
/// box-downscaled copy and brought back to full resolution by [`guided::upsample`].
pub const WORK_LONG_SIDE: u32 = 1280;

/// What the matting did, for benchmarks and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MattingStats {
    /// The working picture is the photo shrunk by this factor.
    pub factor: u32,
    pub solve: closed_form::SolveStats,
    /// Unknown pixels at full resolution.
    pub band_pixels: usize,
}

/// Alpha for `rgb` from its coarse `mask` and `trimap` (both at the photo's size).
pub fn matte(rgb: &RgbImage, mask: &GrayImage, trimap: &GrayImage) -> (GrayImage, MattingStats) {
    let long = rgb.width().max(rgb.height());
    let factor = long.div_ceil(WORK_LONG_SIDE).max(1) as usize;
    let band_pixels = trimap
        .as_raw()
        .iter()
        .filter(|&&t| t != trimap::FG && t != trimap::BG)
        .count();
    let mut stats = MattingStats {
        factor: factor as u32,
        band_pixels,
        ..MattingStats::default()
    };
    if band_pixels == 0 {
        return (trimap.clone(), stats);
    }
    let small = guided::Shrunk::new(rgb, mask, trimap, factor);
    let mut alpha = small.mask.clone();
    stats.solve = solve_cascade(
        rgb,
        mask,
        trimap,
        &small,
        &mut alpha,
        closed_form::MAX_ITERATIONS,
    );
    let mut out = if factor == 1 {
        let pixels = alpha.iter().map(|&a| (a * 255.0 + 0.5) as u8).collect();
        GrayImage::from_raw(rgb.width(), rgb.height(), pixels).expect("same size")
    } else {
        guided::upsample(rgb, trimap, &small, &alpha)
    };
    clear_haze(&mut out);
    (out, stats)
}

/// The faint α the solved band leaves where there is nothing: closed-form matting spreads a
/// few percent of α over background pixels whose colours are near the subject's (a busy room,
/// grass), and a few percent of transparency over fur near the background's colours: the
/// "veil" around a cut-out. Alpha is stretched so that `HAZE` and below is clear and `1 −
/// HAZE` and above is opaque (`(α − HAZE) / (1 − 2·HAZE)`, clamped), which leaves α = ½ where
/// it was and steepens the ramp by 6%. Chosen with `scripts/bench-matting --size 1000x750`
/// (AMD EPYC, means of the 4 scenes, alpha SAD/1000 and colour error, 320² / 1024² masks):
/// without it 3.70 / 4.72 and 2.08 / 5.84; 0.03: 2.90 / 4.45 and 1.82 / 5.77; 0.05: 2.68 /
/// 4.42 and 1.78 / 5.85 (pymatting's closed form: 4.33 / 4.65 and 2.14 / 5.85); SAD fell in
/// every scene at 0.03, most in the busy one (9.11 → 8.05 with 320² masks).
pub const HAZE: f32 = 0.03;

/// Apply [`HAZE`] to a matte (sure pixels, 0 and 255, stay as they are).
pub fn clear_haze(alpha: &mut GrayImage) {
    let lut: [u8; 256] = std::array::from_fn(|v| {
        let a = (v as f32 / 255.0 - HAZE) / (1.0 - 2.0 * HAZE);
        (a.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
    });
    for a in alpha.iter_mut() {
        *a = lut[usize::from(*a)];
    }
}

/// Unknown pixels below which a level is solved directly rather than started from the
/// solution of a twice coarser one.
pub const DIRECT_UNKNOWNS: usize = 16_000;

/// Work (unknowns × iterations) a level started from the coarser level's solution may take:
/// the coarse solution already carries much of the slow, far-reaching part of α, and this
/// bounds the time whatever the band's size. Chosen with `scripts/bench-matting --size
/// 1000x750` (alpha SAD and colour error against the known answers, AMD EPYC): from 8M to 4M
/// work, 40 to 20 least iterations and 400 to 150 at the coarsest level, SAD moved from 4.27
/// to 4.29 (320² masks) and stayed 2.14 (1024² masks), colour error within 0.01 level, for
/// half the time; at 2M and 10 SAD rose to 4.42 (pymatting's closed form: 4.33).
pub const CASCADE_WORK: usize = 4_000_000;
/// Iterations a level started from the coarser one takes at least and at most.
pub const CASCADE_ITERATIONS: (usize, usize) = (20, 300);
/// Iterations of a cascade's coarsest level, whose answer is only the next level's start.
pub const CASCADE_COARSEST_ITERATIONS: usize = 150;

/// How strongly alpha keeps to the model's mask where the model was sure (see
/// [`closed_form::Prior`]; 0 is plain closed-form matting, pymatting's `estimate_alpha_cf`).
/// Where the background has the subject's colours and textures (a busy room, autumn leaves)
/// the colour-line model behind closed-form matting fails and the mask knows better; where
/// the model was unsure, the colours decide. Chosen with pymatting's own Laplacian and the
/// trimaps of `scripts/bench-matting --size 1000x750` (alpha SAD/1000 over the band, means of
/// the 4 scenes, 320² / 1024² masks): weight 0 4.33 / 2.14, 0.005 3.71 / 2.10, 0.01 3.67 /
/// 2.08, 0.02 3.72 / 2.06, 0.1 4.25 / 2.05; a weight without the confidence factor was worse
/// at every value for 320² masks.
pub const PRIOR_WEIGHT: f32 = 0.01;

fn prior(small: &guided::Shrunk) -> closed_form::Prior<'_> {
    closed_form::Prior {
        mask: &small.mask,
        weight: PRIOR_WEIGHT,
    }
}

/// Solve `small` (the photo shrunk by its factor), starting from the solution of the photo
/// shrunk twice as much where the band is large (a cascade: each level's start is the coarser
/// one's α brought up edge-aware). `direct_iterations` bounds a level solved directly.
fn solve_cascade(
    rgb: &RgbImage,
    mask: &GrayImage,
    trimap: &GrayImage,
    small: &guided::Shrunk,
    alpha: &mut [f32],
    direct_iterations: usize,
) -> closed_form::SolveStats {
    let unknowns = small
        .trimap
        .iter()
        .filter(|&&t| t == trimap::UNKNOWN)
        .count();
    let iterations = if unknowns <= DIRECT_UNKNOWNS || small.w.min(small.h) < 64 {
        direct_iterations
    } else {
        let coarse = guided::Shrunk::new(rgb, mask, trimap, small.factor * 2);
        let mut coarse_alpha = coarse.mask.clone();
        solve_cascade(
            rgb,
            mask,
            trimap,
            &coarse,
            &mut coarse_alpha,
            CASCADE_COARSEST_ITERATIONS,
        );
        let coef = guided::Coefficients::new(&coarse, &coarse_alpha);
        guided::upsample_shrunk(&coef, small, 2.0, alpha);
        (CASCADE_WORK / unknowns).clamp(CASCADE_ITERATIONS.0, CASCADE_ITERATIONS.1)
    };
    closed_form::solve_with(
        &small.rgb,
        small.w,
        small.h,
        &small.trimap,
        alpha,
        Some(prior(small)),
        iterations,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haze_is_cleared_and_the_ramp_kept() {
        let mut a = GrayImage::from_fn(256, 1, |x, _| image::Luma([x as u8]));
        clear_haze(&mut a);
        let v = |x: usize| a.as_raw()[x];
        assert_eq!((v(0), v(255)), (0, 255), "sure pixels stay");
        let faint = (HAZE * 255.0) as usize;
        assert!((1..=faint).all(|x| v(x) == 0), "faint α is cleared");
        assert!(
            (255 - faint..255).all(|x| v(x) == 255),
            "near-opaque α is opaque"
        );
        assert!(
            (127..=128).contains(&v(128)),
            "the middle stays: {}",
            v(128)
        );
        assert!(a.as_raw().windows(2).all(|w| w[0] <= w[1]), "still a ramp");
        assert!(v(64) < 64 && v(192) > 192, "steeper: {} {}", v(64), v(192));
    }
}
