//! Direct 3×3 convolution (stride 1, "same" padding = dilation) on NCHW `f32` slices, with the
//! channel concatenation of its inputs, the bias, the ReLU and a residual addition fused in.
//!
//! The output is computed in register tiles of `CB` output channels × `NV` vectors of 16
//! pixels along a row: for every input channel and tap, `NV` input vectors are loaded once and
//! multiplied by `CB` broadcast weights, so each load feeds `CB` FMAs. The inputs are copied
//! once into one zero-padded buffer (which is where the concatenation happens, for free) so the
//! inner loops have no bounds checks. Rows run in parallel.

use rayon::prelude::*;

use super::{Kernels, OutPtr};

/// Shape and options of one convolution.
#[derive(Debug, Clone, Copy)]
pub struct Conv3x3 {
    pub batch: usize,
    pub cin: usize,
    pub cout: usize,
    pub height: usize,
    pub width: usize,
    pub dilation: usize,
    pub relu: bool,
}

const LANES: usize = 16;

/// Input channels zero-padded by `dilation` on every side, rows `stride` floats long, with slack
/// on the right so a full tile of vector loads never leaves the buffer.
struct Padded {
    data: Vec<f32>,
    stride: usize,
    rows: usize,
}

/// One input tensor of a (possibly concatenated) convolution input: `[batch, channels, H, W]`.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub data: &'a [f32],
    pub channels: usize,
}

fn pad(inputs: &[Input<'_>], p: &Conv3x3, b: usize, tile: usize) -> Padded {
    let d = p.dilation;
    let stride = p.width.div_ceil(tile) * tile + 2 * d;
    let rows = p.height + 2 * d;
    Padded {
        data: pad_to(inputs, p, b, rows, stride),
        stride,
        rows,
    }
}

/// Batch item `b` of the concatenated inputs as `[cin][rows][stride]`, zero everywhere except
/// the image, which sits `dilation` rows and columns in from the top left.
pub(super) fn pad_to(
    inputs: &[Input<'_>],
    p: &Conv3x3,
    b: usize,
    rows: usize,
    stride: usize,
) -> Vec<f32> {
    let d = p.dilation;
    let plane = p.height * p.width;
    let chans = channels(inputs, b, plane);
    // SAFETY: each channel's rows are written whole: padding, image, padding.
    unsafe {
        super::par_filled(p.cin * rows * stride, rows * stride, |ci, dst| {
            let src = chans[ci];
            for (r, row) in dst.chunks_exact_mut(stride).enumerate() {
                let Some(y) = r.checked_sub(d).filter(|&y| y < p.height) else {
                    zero(row);
                    continue;
                };
                zero(&mut row[..d]);
                row[d..d + p.width].write_copy_of_slice(&src[y * p.width..][..p.width]);
                zero(&mut row[d + p.width..]);
            }
        })
    }
}

/// Batch item `b` of the concatenated inputs, one `plane`-sized slice per channel.
pub(super) fn channels<'a>(inputs: &[Input<'a>], b: usize, plane: usize) -> Vec<&'a [f32]> {
    inputs
        .iter()
        .flat_map(|i| i.data[b * i.channels * plane..][..i.channels * plane].chunks_exact(plane))
        .collect()
}

fn zero(xs: &mut [std::mem::MaybeUninit<f32>]) {
    for x in xs {
        x.write(0.0);
    }
}

/// Weights regrouped per block of `cb` output channels as `[ci][ky][kx][cb]`, so the `cb`
/// weights a tap needs are adjacent.
fn pack_weights(w: &[f32], cin: usize, co0: usize, cb: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; cin * 9 * cb];
    for c in 0..cb {
        for ci in 0..cin {
            for k in 0..9 {
                out[(ci * 9 + k) * cb + c] = w[((co0 + c) * cin + ci) * 9 + k];
            }
        }
    }
    out
}

/// `y[b, co, h, w] = act(bias[co] + Σ w[co, ci, ky, kx] · x[b, ci, h + (ky-1)d, w + (kx-1)d])
/// + residual[b, co, h, w]`, where `x` is the channel concatenation of `inputs`.
pub fn conv3x3(
    inputs: &[Input<'_>],
    weight: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
    p: &Conv3x3,
) -> Vec<f32> {
    conv3x3_on(inputs, weight, bias, residual, p, Kernels::current())
}

fn conv3x3_on(
    inputs: &[Input<'_>],
    weight: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
    p: &Conv3x3,
    kernels: Kernels,
) -> Vec<f32> {
    let plane = p.height * p.width;
    for input in inputs {
        assert_eq!(
            input.data.len(),
            p.batch * input.channels * plane,
            "input size"
        );
    }
    assert_eq!(
        inputs.iter().map(|i| i.channels).sum::<usize>(),
        p.cin,
        "input channels"
    );
    if let Some(r) = residual {
        assert_eq!(r.len(), p.batch * p.cout * plane, "residual size");
    }
    assert_eq!(weight.len(), p.cout * p.cin * 9, "weight size");
    assert_eq!(bias.len(), p.cout, "bias size");
    let nv = if p.width >= 2 * LANES { 2 } else { 1 };
    let tile = nv * LANES;
    // Output-channel blocks: 8 wide, then 4, then 1 for the remainder.
    let mut blocks = Vec::new();
    let mut co = 0;
    for cb in [8usize, 4, 1] {
        while p.cout - co >= cb {
            blocks.push((co, cb, pack_weights(weight, p.cin, co, cb)));
            co += cb;
        }
    }
    let mut out = vec![0.0f32; p.batch * p.cout * p.height * p.width];
    let out_ptr = OutPtr(out.as_mut_ptr());
    for b in 0..p.batch {
        let padded = pad(inputs, p, b, tile);
        (0..p.height).into_par_iter().for_each(|y| {
            for (co0, cb, packed) in &blocks {
                let row = Row {
                    padded: &padded,
                    weights: packed,
                    bias: &bias[*co0..*co0 + *cb],
                    residual,
                    y,
                    out: out_ptr.get(),
                    out_offset: ((b * p.cout + co0) * p.height + y) * p.width,
                    out_plane: p.height * p.width,
                };
                row.run(p, *cb, nv, kernels);
            }
        });
    }
    out
}

/// One output row for one block of output channels.
struct Row<'a> {
    padded: &'a Padded,
    weights: &'a [f32],
    bias: &'a [f32],
    residual: Option<&'a [f32]>,
    y: usize,
    out: *mut f32,
    out_offset: usize,
    out_plane: usize,
}

impl Row<'_> {
    fn run(&self, p: &Conv3x3, cb: usize, nv: usize, kernels: Kernels) {
        #[cfg(target_arch = "x86_64")]
        if kernels == Kernels::Avx512 {
            // SAFETY: AVX-512F is present (checked at run time); `Row` indices stay inside the
            // padded input (slack on the right covers full tiles) and inside this row's output.
            unsafe {
                match (cb, nv) {
                    (8, 2) => return self.avx512::<8, 2>(p),
                    (8, _) => return self.avx512::<8, 1>(p),
                    (4, 2) => return self.avx512::<4, 2>(p),
                    (4, _) => return self.avx512::<4, 1>(p),
                    (_, 2) => return self.avx512::<1, 2>(p),
                    _ => return self.avx512::<1, 1>(p),
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        if kernels == Kernels::Avx2 {
            // SAFETY: AVX2 and FMA are present (checked at run time); indices as above, in
            // steps of 8 columns that never pass the tile the padding covers.
            unsafe {
                match cb {
                    8 => return self.avx2::<8, 1>(p),
                    4 => return self.avx2::<4, 2>(p),
                    _ => return self.avx2::<1, 2>(p),
                }
            }
        }
        let _ = (nv, kernels);
        self.portable(p, cb);
    }

    /// Reference-speed path for CPUs without AVX-512 (and the definition the fast path follows).
    fn portable(&self, p: &Conv3x3, cb: usize) {
        let d = p.dilation;
        let stride = self.padded.stride;
        let rows = self.padded.rows;
        for c in 0..cb {
            for x in 0..p.width {
                let mut acc = self.bias[c];
                for ci in 0..p.cin {
                    for ky in 0..3 {
                        let row = (ci * rows + self.y + ky * d) * stride + x;
                        for kx in 0..3 {
                            acc += self.weights[(ci * 9 + ky * 3 + kx) * cb + c]
                                * self.padded.data[row + kx * d];
                        }
                    }
                }
                if p.relu {
                    acc = acc.max(0.0);
                }
                let at = self.out_offset + c * self.out_plane + x;
                if let Some(r) = self.residual {
                    acc += r[at];
                }
                // SAFETY: (c, y, x) lies inside this block's output rows.
                unsafe { *self.out.add(at) = acc };
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512<const CB: usize, const NV: usize>(&self, p: &Conv3x3) {
        use std::arch::x86_64::*;
        let d = p.dilation;
        let stride = self.padded.stride;
        let rows = self.padded.rows;
        let input = self.padded.data.as_ptr();
        let w = self.weights.as_ptr();
        let zero = _mm512_setzero_ps();
        let mut x0 = 0;
        while x0 < p.width {
            let mut acc = [[zero; NV]; CB];
            for (c, a) in acc.iter_mut().enumerate() {
                let b = _mm512_set1_ps(self.bias[c]);
                *a = [b; NV];
            }
            for ci in 0..p.cin {
                for ky in 0..3 {
                    // SAFETY (all pointer arithmetic below): row index < rows, column index <
                    // stride because stride covers whole tiles plus 2·dilation.
                    let row = unsafe { input.add((ci * rows + self.y + ky * d) * stride + x0) };
                    for kx in 0..3 {
                        let mut v = [zero; NV];
                        for (j, vj) in v.iter_mut().enumerate() {
                            *vj = unsafe { _mm512_loadu_ps(row.add(kx * d + j * LANES)) };
                        }
                        let wk = unsafe { w.add((ci * 9 + ky * 3 + kx) * CB) };
                        for (c, a) in acc.iter_mut().enumerate() {
                            let wc = _mm512_set1_ps(unsafe { *wk.add(c) });
                            for j in 0..NV {
                                a[j] = _mm512_fmadd_ps(wc, v[j], a[j]);
                            }
                        }
                    }
                }
            }
            for (c, a) in acc.iter().enumerate() {
                let at = self.out_offset + c * self.out_plane + x0;
                let dst = unsafe { self.out.add(at) };
                for (j, &aj) in a.iter().enumerate() {
                    let start = x0 + j * LANES;
                    if start >= p.width {
                        break;
                    }
                    let left = p.width - start;
                    let mask: __mmask16 = if left >= LANES {
                        !0
                    } else {
                        (1u16 << left) - 1
                    };
                    let mut r = if p.relu { _mm512_max_ps(aj, zero) } else { aj };
                    if let Some(res) = self.residual {
                        // SAFETY: same in-row positions as the store below.
                        let rv = unsafe {
                            _mm512_maskz_loadu_ps(mask, res.as_ptr().add(at + j * LANES))
                        };
                        r = _mm512_add_ps(r, rv);
                    }
                    unsafe { _mm512_mask_storeu_ps(dst.add(j * LANES), mask, r) };
                }
            }
            x0 += NV * LANES;
        }
    }

    /// [`Row::avx512`] in 8-lane vectors: `CB` output channels × `NV` vectors of 8 pixels
    /// (8 × 1 or 4 × 2 accumulators, so inputs, weights and sums fit AVX2's 16 registers).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2<const CB: usize, const NV: usize>(&self, p: &Conv3x3) {
        use std::arch::x86_64::*;
        const L: usize = 8;
        let d = p.dilation;
        let stride = self.padded.stride;
        let rows = self.padded.rows;
        let input = self.padded.data.as_ptr();
        let w = self.weights.as_ptr();
        let zero = _mm256_setzero_ps();
        let mut x0 = 0;
        while x0 < p.width {
            let mut acc = [[zero; NV]; CB];
            for (c, a) in acc.iter_mut().enumerate() {
                *a = [_mm256_set1_ps(self.bias[c]); NV];
            }
            for ci in 0..p.cin {
                for ky in 0..3 {
                    // SAFETY (all pointer arithmetic below): row index < rows; columns up to
                    // x0 + NV·8 + 2·dilation, inside the whole 16-wide tiles the stride covers.
                    let row = unsafe { input.add((ci * rows + self.y + ky * d) * stride + x0) };
                    for kx in 0..3 {
                        let mut v = [zero; NV];
                        for (j, vj) in v.iter_mut().enumerate() {
                            *vj = unsafe { _mm256_loadu_ps(row.add(kx * d + j * L)) };
                        }
                        let wk = unsafe { w.add((ci * 9 + ky * 3 + kx) * CB) };
                        for (c, a) in acc.iter_mut().enumerate() {
                            let wc = _mm256_set1_ps(unsafe { *wk.add(c) });
                            for j in 0..NV {
                                a[j] = _mm256_fmadd_ps(wc, v[j], a[j]);
                            }
                        }
                    }
                }
            }
            for (c, a) in acc.iter().enumerate() {
                let at = self.out_offset + c * self.out_plane + x0;
                for (j, &aj) in a.iter().enumerate() {
                    let start = x0 + j * L;
                    if start >= p.width {
                        break;
                    }
                    let r = if p.relu { _mm256_max_ps(aj, zero) } else { aj };
                    let mut lanes = [0f32; L];
                    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), r) };
                    let n = (p.width - start).min(L);
                    for (k, &v) in lanes[..n].iter().enumerate() {
                        let o = at + j * L + k;
                        let v = v + self.residual.map_or(0.0, |res| res[o]);
                        // SAFETY: (c, y, start + k) lies inside this block's output row.
                        unsafe { *self.out.add(o) = v };
                    }
                }
            }
            x0 += NV * L;
        }
    }
}

/// The textbook definition, for tests.
#[cfg(test)]
pub fn naive(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
    p: &Conv3x3,
) -> Vec<f32> {
    let (h, w, d) = (p.height as isize, p.width as isize, p.dilation as isize);
    let mut out = vec![0.0; p.batch * p.cout * p.height * p.width];
    for b in 0..p.batch {
        for co in 0..p.cout {
            for y in 0..h {
                for xx in 0..w {
                    let mut acc = bias[co];
                    for ci in 0..p.cin {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let iy = y + (ky - 1) * d;
                                let ix = xx + (kx - 1) * d;
                                if iy >= 0 && iy < h && ix >= 0 && ix < w {
                                    acc += weight
                                        [((co * p.cin + ci) * 3 + ky as usize) * 3 + kx as usize]
                                        * x[((b * p.cin + ci) * p.height + iy as usize) * p.width
                                            + ix as usize];
                                }
                            }
                        }
                    }
                    if p.relu {
                        acc = acc.max(0.0);
                    }
                    let at = ((b * p.cout + co) * p.height + y as usize) * p.width + xx as usize;
                    out[at] = acc + residual.map_or(0.0, |r| r[at]);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_data;
    use super::*;

    /// Split `x` into two concatenated inputs (when it has two channels or more) and compare.
    fn check(p: Conv3x3, with_residual: bool) {
        let plane = p.height * p.width;
        let x = test_data(p.batch * p.cin * plane, 1);
        let w = test_data(p.cout * p.cin * 9, 2);
        let b = test_data(p.cout, 3);
        let res = test_data(p.batch * p.cout * plane, 4);
        let residual = with_residual.then_some(res.as_slice());
        // The first input takes the first `c1` channels of every batch item.
        let c1 = p.cin / 2;
        let split = |from: usize, n: usize| -> Vec<f32> {
            (0..p.batch)
                .flat_map(|bi| {
                    x[(bi * p.cin + from) * plane..(bi * p.cin + from + n) * plane].to_vec()
                })
                .collect()
        };
        let (a, bb) = (split(0, c1), split(c1, p.cin - c1));
        let mut inputs = vec![];
        if c1 > 0 {
            inputs.push(Input {
                data: &a,
                channels: c1,
            });
        }
        inputs.push(Input {
            data: &bb,
            channels: p.cin - c1,
        });
        let want = naive(&x, &w, &b, residual, &p);
        // Every path this CPU can run, whatever the machine would pick.
        for kernels in [Kernels::Portable, Kernels::Avx2, Kernels::Avx512] {
            if kernels > Kernels::detected() {
                continue;
            }
            let got = conv3x3_on(&inputs, &w, &b, residual, &p, kernels);
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-4, "{kernels:?} {p:?}: max abs {err}");
        }
    }

    #[test]
    fn matches_the_definition_across_shapes() {
        for (cin, cout, h, w, d) in [
            (3, 64, 9, 37, 1),   // odd sizes, tail tiles, 8-blocks
            (16, 13, 5, 70, 2),  // 8 + 4 + 1 blocks, dilation 2, two vectors per tile
            (5, 1, 4, 16, 4),    // a single output channel, dilation larger than the image
            (32, 16, 20, 20, 8), // RSU4F's widest dilation
            (7, 4, 1, 1, 1),     // 1×1 image
        ] {
            for (relu, residual) in [(false, false), (true, false), (true, true)] {
                check(
                    Conv3x3 {
                        batch: 2,
                        cin,
                        cout,
                        height: h,
                        width: w,
                        dilation: d,
                        relu,
                    },
                    residual,
                );
            }
        }
    }
}
