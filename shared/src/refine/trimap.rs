//! The trimap: where the coarse mask is sure of the subject, sure of the background, and the
//! band between them where the matting decides.
//!
//! The band is wide where the mask is unsure (its soft ramp, between [`SURE_BG`] and
//! [`SURE_FG`]) and, beyond that, by a margin that follows how coarse the mask was: a mask
//! made on a 320² grid and stretched to a 4000 px photo can misplace an edge by a cell, 12.5
//! photo pixels, so the sure regions are eroded by [`MARGIN_CELLS`] cells of the mask's grid (at
//! least [`MIN_MARGIN`] px, for anti-aliased edges of masks made at the photo's own size).

use image::GrayImage;

use super::morph;

/// Trimap value of sure background.
pub const BG: u8 = 0;
/// Trimap value of the band the matting solves.
pub const UNKNOWN: u8 = 128;
/// Trimap value of sure foreground.
pub const FG: u8 = 255;

/// Mask values at or below this are background candidates (rembg's `bg_threshold` is 10).
pub const SURE_BG: u8 = 15;
/// Mask values at or above this are foreground candidates (rembg's `fg_threshold` is 240).
pub const SURE_FG: u8 = 240;
/// How many cells of the mask's grid each sure region is eroded by.
pub const MARGIN_CELLS: f32 = 1.5;
/// The least erosion, in photo pixels.
pub const MIN_MARGIN: usize = 2;

/// The erosion radius in photo pixels for a photo whose long side is `long_side`, from a mask
/// made on a grid whose long side is `grid`.
pub fn margin(long_side: u32, grid: u32) -> usize {
    let cell = long_side as f32 / grid.max(1) as f32;
    ((MARGIN_CELLS * cell).ceil() as usize).max(MIN_MARGIN)
}

/// The trimap of `mask` (at the photo's size), made on a grid of long side `grid`.
pub fn trimap(mask: &GrayImage, grid: u32) -> GrayImage {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let r = margin(mask.width().max(mask.height()), grid);
    let fg: Vec<bool> = mask.as_raw().iter().map(|&m| m >= SURE_FG).collect();
    let bg: Vec<bool> = mask.as_raw().iter().map(|&m| m <= SURE_BG).collect();
    let fg = morph::erode(&fg, w, h, r);
    let bg = morph::erode(&bg, w, h, r);
    let pixels = fg
        .iter()
        .zip(&bg)
        .map(|(&f, &b)| match (f, b) {
            (true, _) => FG,
            (_, true) => BG,
            _ => UNKNOWN,
        })
        .collect();
    GrayImage::from_raw(mask.width(), mask.height(), pixels).expect("same size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_follows_the_grid() {
        assert_eq!(margin(4000, 320), 19);
        assert_eq!(margin(4000, 1024), 6);
        assert_eq!(margin(300, 300), MIN_MARGIN);
    }

    #[test]
    fn band_covers_the_ramp_and_the_margin() {
        // A vertical edge: background left of x = 40, a soft ramp 40..50, subject from 50.
        let mask = GrayImage::from_fn(100, 20, |x, _| {
            image::Luma([match x {
                0..40 => 0,
                40..50 => ((x - 39) * 25) as u8,
                _ => 255,
            }])
        });
        let t = trimap(&mask, 25); // cells of 4 px: a margin of 6 px
        let row: Vec<u8> = (0..100).map(|x| t.get_pixel(x, 10)[0]).collect();
        let first_unknown = row.iter().position(|&v| v == UNKNOWN).unwrap();
        let first_fg = row.iter().position(|&v| v == FG).unwrap();
        // bg candidates end at x = 39 (value 0) and x = 40 (25 > 15? no: 25) -> last bg cand 39.
        assert_eq!(first_unknown, 40 - 6);
        // fg candidates start where the ramp reaches 240 (x = 49: 250), eroded by 6.
        assert_eq!(first_fg, 49 + 6);
        assert!(row[..first_unknown].iter().all(|&v| v == BG));
        assert!(row[first_fg..].iter().all(|&v| v == FG));
    }
}
