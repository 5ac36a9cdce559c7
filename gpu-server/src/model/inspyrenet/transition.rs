//! `Transition` of `modules/layers.py`: the uncertain band of a saliency map, where the dilation
//! and the erosion of `sigmoid(x)` by an elliptic structuring element differ by more than 0.5.
//!
//! The element is OpenCV's `getStructuringElement(MORPH_ELLIPSE, (k, k))`; the morphology is
//! kornia's with its default `geodesic` border (pixels outside the map take no part). Upstream
//! uses it only to blend a low- and a high-resolution pass (`forward_inference` with a
//! `threshold`): `transition2` (k = 5) on d3, `transition1` (k = 9) on d2, `transition0`
//! (k = 17) on d1. The product runs one pass (`threshold=None`), which never calls it.

use burn::tensor::{Tensor, activation::sigmoid, ops::PadMode};

/// OpenCV's elliptic structuring element of `k`×`k` cells, row-major (`true`: in the element).
pub fn ellipse(k: usize) -> Vec<bool> {
    // OpenCV: r = c = k / 2; for each row dy = i - r, half-width dx = round(c·√((r² − dy²) / r²)),
    // cells c − dx ..= c + dx (clipped).
    let r = (k / 2) as i64;
    let c = r;
    let inv_r2 = if r > 0 { 1.0 / (r * r) as f64 } else { 0.0 };
    let mut cells = vec![false; k * k];
    for i in 0..k {
        let dy = i as i64 - r;
        if dy.abs() > r {
            continue;
        }
        let dx = (c as f64 * (((r * r - dy * dy) as f64) * inv_r2).sqrt()).round_ties_even() as i64;
        let (j1, j2) = ((c - dx).max(0) as usize, ((c + dx + 1) as usize).min(k));
        cells[i * k..][j1..j2].fill(true);
    }
    cells
}

/// `Transition(k)`.
#[derive(Debug, Clone)]
pub struct Transition {
    k: usize,
    /// The element's cells as (row, column) offsets into the padded map.
    cells: Vec<(usize, usize)>,
}

impl Transition {
    pub fn new(k: usize) -> Self {
        let cells = ellipse(k)
            .iter()
            .enumerate()
            .filter(|&(_, &on)| on)
            .map(|(i, _)| (i / k, i % k))
            .collect();
        Transition { k, cells }
    }

    /// [B, C, H, W] logits -> [B, C, H, W] of 0.0 and 1.0.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = sigmoid(x);
        let [b, c, h, w] = x.dims();
        let p = self.k / 2;
        // Geodesic border: outside the map is the reduction's identity, so it never wins.
        let neighbours = |fill: f32| {
            let padded = x.clone().pad((p, p, p, p), PadMode::Constant(fill));
            self.cells
                .iter()
                .map(move |&(i, j)| padded.clone().slice([0..b, 0..c, i..i + h, j..j + w]))
        };
        // The element is symmetric, so dilation's reflection of it changes nothing.
        let dilated = neighbours(f32::NEG_INFINITY)
            .reduce(Tensor::max_pair)
            .expect("an element has its centre cell");
        let eroded = neighbours(f32::INFINITY)
            .reduce(Tensor::min_pair)
            .expect("an element has its centre cell");
        (dilated - eroded).greater_elem(0.5).float()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ellipses_are_opencvs() {
        // cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)).
        let five: Vec<bool> = [
            0, 0, 1, 0, 0, //
            1, 1, 1, 1, 1, //
            1, 1, 1, 1, 1, //
            1, 1, 1, 1, 1, //
            0, 0, 1, 0, 0,
        ]
        .iter()
        .map(|&v| v == 1)
        .collect();
        assert_eq!(ellipse(5), five);
        assert_eq!(ellipse(1), vec![true]);
        for k in [5, 9, 17] {
            let e = ellipse(k);
            // Symmetric both ways, as the dilation's reflection assumes.
            for i in 0..k {
                for j in 0..k {
                    assert_eq!(e[i * k + j], e[(k - 1 - i) * k + j]);
                    assert_eq!(e[i * k + j], e[i * k + (k - 1 - j)]);
                }
            }
        }
    }
}
