//! 2×2 max pooling, stride 2, `ceil_mode=True` (upstream `nn.MaxPool2d(2, stride=2,
//! ceil_mode=True)`): odd sizes round up and the last window holds only the pixels that exist.

/// `[planes, h, w]` -> `[planes, ceil(h/2), ceil(w/2)]`.
pub fn max_pool2x(x: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    assert_eq!(x.len(), planes * h * w, "input size");
    let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
    // SAFETY: every plane's rows and columns are all written.
    unsafe {
        super::par_filled(planes * oh * ow, oh * ow, |plane, o| {
            let src = &x[plane * h * w..][..h * w];
            for y in 0..oh {
                let r0 = &src[2 * y * w..][..w];
                let r1 = if 2 * y + 1 < h {
                    &src[(2 * y + 1) * w..][..w]
                } else {
                    r0
                };
                let orow = &mut o[y * ow..][..ow];
                for (xo, v) in orow.iter_mut().enumerate() {
                    let x0 = 2 * xo;
                    let x1 = (x0 + 1).min(w - 1);
                    v.write(r0[x0].max(r0[x1]).max(r1[x0]).max(r1[x1]));
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_mode_keeps_the_partial_last_window() {
        // 3×3 -> 2×2; the last row and column windows are 1 wide.
        let x = [1., 5., 2., 3., 4., 9., -1., -2., -3.];
        assert_eq!(max_pool2x(&x, 1, 3, 3), vec![5., 9., -1., -3.]);
        assert_eq!(max_pool2x(&[7.], 1, 1, 1), vec![7.]);
    }
}
