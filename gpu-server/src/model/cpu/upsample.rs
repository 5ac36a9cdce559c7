//! Bilinear resize with half-pixel centres (`align_corners=False`), as upstream's
//! `F.upsample(..., mode='bilinear')` and the ONNX export's `Resize(linear,
//! pytorch_half_pixel)` compute it: `src = (dst + 0.5) · in/out − 0.5`, clamped at 0 (a
//! length-1 output samples index 0), neighbours clamped at the last pixel.

/// Source index and weight pairs for each output position along one axis.
fn axis(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|o| {
            let src = if output == 1 {
                0.0
            } else {
                ((o as f32 + 0.5) * scale - 0.5).max(0.0)
            };
            let i0 = (src as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

/// `[planes, h, w]` -> `[planes, oh, ow]`.
pub fn bilinear(
    x: &[f32],
    planes: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
) -> Vec<f32> {
    assert_eq!(x.len(), planes * h * w, "input size");
    let ys = axis(h, oh);
    let xs = axis(w, ow);
    // SAFETY: every output row of every plane is written.
    unsafe {
        super::par_filled(planes * oh * ow, oh * ow, |plane, o| {
            let src = &x[plane * h * w..][..h * w];
            // Horizontal pass into two reusable rows, then blend them vertically.
            let mut cached = (usize::MAX, vec![0.0f32; ow]);
            let mut next = (usize::MAX, vec![0.0f32; ow]);
            let hrow = |y: usize, dst: &mut Vec<f32>| {
                let row = &src[y * w..][..w];
                for (d, &(x0, x1, lx)) in dst.iter_mut().zip(&xs) {
                    *d = row[x0] + lx * (row[x1] - row[x0]);
                }
            };
            for (yo, &(y0, y1, ly)) in ys.iter().enumerate() {
                if cached.0 != y0 {
                    if next.0 == y0 {
                        std::mem::swap(&mut cached, &mut next);
                    } else {
                        hrow(y0, &mut cached.1);
                        cached.0 = y0;
                    }
                }
                if next.0 != y1 {
                    hrow(y1, &mut next.1);
                    next.0 = y1;
                }
                let orow = &mut o[yo * ow..][..ow];
                for ((d, &a), &b) in orow.iter_mut().zip(&cached.1).zip(&next.1) {
                    d.write(a + ly * (b - a));
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_like_pytorch() {
        // torch.nn.functional.interpolate(torch.tensor([[[[0., 1.], [2., 3.]]]]), size=(4, 4),
        //   mode='bilinear', align_corners=False)
        let out = bilinear(&[0., 1., 2., 3.], 1, (2, 2), (4, 4));
        let want = [
            0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0,
        ];
        for (a, b) in out.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn odd_sizes_and_one_pixel() {
        let x: Vec<f32> = (0..15).map(|v| v as f32).collect();
        let out = bilinear(&x, 1, (3, 5), (5, 10));
        assert_eq!(out.len(), 50);
        assert!(out.iter().all(|v| (0.0..=14.0).contains(v)));
        assert_eq!(bilinear(&[4.0], 1, (1, 1), (3, 2)), vec![4.0; 6]);
    }
}
