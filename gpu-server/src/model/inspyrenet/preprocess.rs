//! `Remover`'s preprocessing and postprocessing, as `transparent-background` runs them on a
//! PIL image: resize (static or dynamic, PIL bilinear), `/255`, ImageNet mean/std, CHW; after
//! the network, bilinear with `align_corners=True` back to the photo's size and
//! `(pred * 255).astype(uint8)` for the alpha channel.

use image::{GrayImage, RgbImage};
use shared::resize::{self, Filter};

/// Which released checkpoint, and so which base size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// `ckpt_base.pth`, base size 1024×1024.
    Base,
    /// `ckpt_fast.pth`, base size 384×384.
    Fast,
}

impl Mode {
    pub fn base_size(self) -> usize {
        match self {
            Mode::Base => 1024,
            Mode::Fast => 384,
        }
    }

    pub fn checkpoint_name(self) -> &'static str {
        match self {
            Mode::Base => "ckpt_base.pth",
            Mode::Fast => "ckpt_fast.pth",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Base => "base",
            Mode::Fast => "fast",
        }
    }

    /// `INSPIRENET_MODE`'s values.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "base" => Some(Mode::Base),
            "fast" => Some(Mode::Fast),
            _ => None,
        }
    }
}

/// How a photo is sized for the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resize {
    /// Every photo to `side`×`side` (upstream: the base size; `TARGET_SIZE` may set it).
    Static { side: u32 },
    /// Short side at most 1280, both sides rounded to multiples of 32.
    Dynamic,
}

/// Upstream's `dynamic_resize(L=1280)` size rule for a `w`×`h` photo.
pub fn dynamic_size(w: u32, h: u32) -> (u32, u32) {
    const L: f64 = 1280.0;
    let (mut fw, mut fh) = (f64::from(w), f64::from(h));
    if fw >= fh && fh > L {
        fw /= fh / L;
        fh = L;
    } else if fh > fw && fw > L {
        fh /= fw / L;
        fw = L;
    }
    // Python's round() is round-half-to-even; int(round(x / 32)) * 32.
    let round32 = |v: f64| ((v / 32.0).round_ties_even() as u32 * 32).max(32);
    (round32(fw), round32(fh))
}

impl Resize {
    /// The network input size for a `w`×`h` photo.
    pub fn input_size(self, w: u32, h: u32) -> (u32, u32) {
        match self {
            Resize::Static { side } => (side, side),
            Resize::Dynamic => dynamic_size(w, h),
        }
    }
}

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// PIL bilinear resize to `(w, h)`, then `/255`, mean/std; CHW float32.
pub fn preprocess(rgb: &RgbImage, (w, h): (u32, u32)) -> Vec<f32> {
    let small = if rgb.dimensions() == (w, h) {
        rgb.clone()
    } else {
        resize::rgb(rgb, w, h, Filter::Bilinear)
    };
    let plane = (w * h) as usize;
    let mut chw = vec![0.0f32; 3 * plane];
    for (i, px) in small.pixels().enumerate() {
        for c in 0..3 {
            // numpy: img /= 255; img -= mean; img /= std (float32 throughout)
            chw[c * plane + i] = (f32::from(px.0[c]) / 255.0 - MEAN[c]) / STD[c];
        }
    }
    chw
}

/// `F.interpolate(pred, (height, width), mode='bilinear', align_corners=True)` of one map.
pub fn resize_map_align_corners(
    map: &[f32],
    (sw, sh): (usize, usize),
    (w, h): (usize, usize),
) -> Vec<f32> {
    assert_eq!(map.len(), sw * sh, "map is sw×sh");
    let scale = |src: usize, dst: usize| {
        if dst > 1 {
            (src - 1) as f32 / (dst - 1) as f32
        } else {
            0.0
        }
    };
    let (sx, sy) = (scale(sw, w), scale(sh, h));
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        let fy = y as f32 * sy;
        let y0 = (fy as usize).min(sh - 1);
        let y1 = (y0 + 1).min(sh - 1);
        let ly = fy - y0 as f32;
        for x in 0..w {
            let fx = x as f32 * sx;
            let x0 = (fx as usize).min(sw - 1);
            let x1 = (x0 + 1).min(sw - 1);
            let lx = fx - x0 as f32;
            let top = map[y0 * sw + x0] * (1.0 - lx) + map[y0 * sw + x1] * lx;
            let bottom = map[y1 * sw + x0] * (1.0 - lx) + map[y1 * sw + x1] * lx;
            out.push(top * (1.0 - ly) + bottom * ly);
        }
    }
    out
}

/// The network's [0, 1] map (`sw`×`sh`) as the photo's 8-bit alpha.
pub fn postprocess(map: &[f32], (sw, sh): (u32, u32), (w, h): (u32, u32)) -> GrayImage {
    let full = resize_map_align_corners(map, (sw as usize, sh as usize), (w as usize, h as usize));
    // (pred * 255).astype(np.uint8): truncation.
    let bytes = full
        .iter()
        .map(|&v| (v * 255.0).clamp(0.0, 255.0) as u8)
        .collect();
    GrayImage::from_raw(w, h, bytes).expect("w×h bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_size_follows_upstream() {
        // Values printed by transparent_background.utils.dynamic_resize (reference.json).
        for ((w, h), want) in [
            ((451, 300), (448, 288)),
            ((1500, 1400), (1376, 1280)),
            ((1400, 1500), (1280, 1376)),
            ((4000, 3000), (1696, 1280)),
            ((1281, 700), (1280, 704)),
        ] {
            assert_eq!(dynamic_size(w, h), want, "{w}x{h}");
        }
    }

    #[test]
    fn align_corners_keeps_the_corners() {
        let map = [0.0, 1.0, 2.0, 3.0];
        let out = resize_map_align_corners(&map, (2, 2), (3, 3));
        assert_eq!(out, vec![0.0, 0.5, 1.0, 1.0, 1.5, 2.0, 2.0, 2.5, 3.0]);
    }
}
