//! Winograd F(4×4, 3×3) for the large undilated 3×3 convolutions (Lavin & Gray, "Fast
//! Algorithms for Convolutional Neural Networks", 2015).
//!
//! Each 4×4 output tile needs 36 multiplies per (input, output) channel pair instead of 144:
//! `Y = Aᵀ [ Σ_ci (G g Gᵀ) ⊙ (Bᵀ d B) ] A`. The sum over input channels is 36 independent
//! matrix products `M[ξ] = U[ξ] · V[ξ]`, computed with the same register blocking as the direct
//! kernel (8 output channels × 32 tiles, broadcast weights). Tiles are processed in blocks of 32
//! per thread; the input and output transforms run on 16 tiles at once (gather/scatter). With
//! AVX2 and FMA only (no AVX-512), the same algorithm runs in 8-lane vectors: blocks of 16
//! tiles × 4 output channels (12 of the 16 registers accumulate), and tiles de-interleaved by a
//! 4×4 transpose within each 128-bit half, which puts them in lanes 0 2 4 6 1 3 5 7; the same
//! transpose on the way out puts the columns back in order. Elsewhere callers use
//! [`super::conv3x3`]'s direct kernel.
//!
//! Accuracy: F(4×4, 3×3) in f32 differs from direct convolution by ~1e-6 relative, well inside
//! the model's parity bound (the parity tests run through this path).

// The transforms are small matrix formulas; indices read closer to the maths than iterators.
#![allow(clippy::needless_range_loop)]

use std::sync::Arc;

use rayon::prelude::*;

use super::{
    Kernels, OutPtr,
    conv3x3::{Conv3x3, Input},
};

/// Segments (vectors of tiles) per block.
const NV: usize = 2;

/// The vector width a Winograd kernel runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// AVX-512F: 16 lanes, 8 output channels per register block.
    Avx512,
    /// AVX2 and FMA: 8 lanes, 4 output channels per register block.
    Avx2,
}

impl Width {
    /// The width [`Kernels::current`] runs, if it has a Winograd kernel.
    fn current() -> Option<Width> {
        match Kernels::current() {
            Kernels::Avx512 => Some(Width::Avx512),
            Kernels::Avx2 => Some(Width::Avx2),
            Kernels::Portable => None,
        }
    }
    /// Tiles per vector.
    const fn lanes(self) -> usize {
        match self {
            Width::Avx512 => 16,
            Width::Avx2 => 8,
        }
    }
    /// Output channels per register block.
    const fn cb(self) -> usize {
        match self {
            Width::Avx512 => 8,
            Width::Avx2 => 4,
        }
    }
    /// Tiles per block.
    const fn tb(self) -> usize {
        NV * self.lanes()
    }
}

/// Whether this path applies and pays off for a convolution.
pub fn suitable(p: &Conv3x3) -> bool {
    Width::current().is_some_and(|k| suitable_for(k, p))
}

fn suitable_for(k: Width, p: &Conv3x3) -> bool {
    p.dilation == 1 && p.height >= 8 && p.width >= 8 && p.cin >= 8 && p.cout.is_multiple_of(k.cb())
}

/// `G g Gᵀ` for every (co, ci), laid out `[ξ][co / cb][ci][cb]` for the micro-kernel.
fn transform_weights(w: &[f32], cin: usize, cout: usize, cb: usize) -> Vec<f32> {
    const G: [[f32; 3]; 6] = [
        [1.0 / 4.0, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ];
    let blocks = cout / cb;
    let mut u = vec![0.0f32; 36 * cout * cin];
    for co in 0..cout {
        for ci in 0..cin {
            let g = &w[(co * cin + ci) * 9..][..9];
            // t = G g  (6×3)
            let mut t = [[0.0f32; 3]; 6];
            for (i, ti) in t.iter_mut().enumerate() {
                for (j, tij) in ti.iter_mut().enumerate() {
                    *tij = (0..3).map(|k| G[i][k] * g[k * 3 + j]).sum();
                }
            }
            // U = t Gᵀ (6×6)
            for i in 0..6 {
                for j in 0..6 {
                    let v: f32 = (0..3).map(|k| t[i][k] * G[j][k]).sum();
                    let xi = i * 6 + j;
                    u[((xi * blocks + co / cb) * cin + ci) * cb + co % cb] = v;
                }
            }
        }
    }
    u
}

/// Transformed weights are per model, not per call: [`transform_weights`] is ~4 flops and one
/// scattered store per output value over every 3×3 kernel of the network, redone every forward
/// pass before this cache. Entries are addressed by the weights' values (two independent 64-bit
/// hashes, the channel counts and the length), so identical weights share an entry, and weights
/// that change or a freed buffer reused for others can never be mistaken for cached ones (the
/// register block, which sets the layout, is part of the key). The cache is emptied when it
/// holds more than [`CACHE_ENTRIES`] (a process that loads many different models), bounding it
/// at that many convolutions' weights × 4.
type WeightKey = (u64, u64, usize, usize, usize, usize);
const CACHE_ENTRIES: usize = 256;
static WEIGHTS: std::sync::Mutex<Option<std::collections::HashMap<WeightKey, Arc<Vec<f32>>>>> =
    std::sync::Mutex::new(None);

/// Two independent 64-bit hashes of the values' bits, four lanes each so the multiplies
/// pipeline (~1 ms for U²-Netp's 1.1M weights, against the transform's ~10×).
fn fingerprint(w: &[f32]) -> (u64, u64) {
    const K1: u64 = 0x9E37_79B9_7F4A_7C15;
    const K2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    let (mut a, mut b) = ([1u64, 2, 3, 4], [5u64, 6, 7, 8]);
    let chunks = w.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..4 {
            let v = u64::from(c[l].to_bits());
            a[l] = (a[l] ^ v).wrapping_mul(K1).rotate_left(29);
            b[l] = (b[l].rotate_left(17) ^ v).wrapping_mul(K2);
        }
    }
    for (l, v) in tail.iter().enumerate() {
        let v = u64::from(v.to_bits());
        a[l] = (a[l] ^ v).wrapping_mul(K1).rotate_left(29);
        b[l] = (b[l].rotate_left(17) ^ v).wrapping_mul(K2);
    }
    let fold = |x: [u64; 4], k: u64| {
        x.iter()
            .fold(0u64, |h, v| (h ^ v).wrapping_mul(k).rotate_left(31))
    };
    (fold(a, K1), fold(b, K2))
}

/// [`transform_weights`], cached (see [`WEIGHTS`]).
fn cached_weights(w: &[f32], cin: usize, cout: usize, cb: usize) -> Arc<Vec<f32>> {
    let (h1, h2) = fingerprint(w);
    let key = (h1, h2, w.len(), cin, cout, cb);
    let lock = || {
        WEIGHTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some(hit) = lock().as_ref().and_then(|m| m.get(&key)) {
        return Arc::clone(hit);
    }
    let u = Arc::new(transform_weights(w, cin, cout, cb));
    let mut cache = lock();
    let map = cache.get_or_insert_with(Default::default);
    if map.len() >= CACHE_ENTRIES {
        map.clear();
    }
    map.insert(key, Arc::clone(&u));
    u
}

/// A thread's working buffers (see [`SCRATCH`]).
struct Scratch {
    v: Vec<f32>,
    m: Vec<f32>,
    patch: Vec<f32>,
}

thread_local! {
    /// Per-thread transformed inputs `V`, products `M` and input patch, reused across blocks
    /// and calls.
    static SCRATCH: std::cell::RefCell<Scratch> = const { std::cell::RefCell::new(Scratch { v: Vec::new(), m: Vec::new(), patch: Vec::new() }) };
}

/// Same contract as [`super::conv3x3::conv3x3`], for `dilation == 1` when [`suitable`].
pub fn conv3x3(
    inputs: &[Input<'_>],
    weight: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
    p: &Conv3x3,
) -> Vec<f32> {
    let width = Width::current().expect("winograd path used without its kernels");
    conv3x3_in(width, inputs, weight, bias, residual, p)
}

/// [`conv3x3`] in vectors of `width`, which the CPU must have.
fn conv3x3_in(
    width: Width,
    inputs: &[Input<'_>],
    weight: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
    p: &Conv3x3,
) -> Vec<f32> {
    assert!(
        suitable_for(width, p),
        "winograd path used outside its domain: {p:?}"
    );
    let (lanes, cb, tb) = (width.lanes(), width.cb(), width.tb());
    let (th, tw) = (p.height.div_ceil(4), p.width.div_ceil(4));
    // Tiles run in segments of one vector along a tile row; blocks hold up to NV segments.
    let segments = tw.div_ceil(lanes);
    let u = cached_weights(weight, p.cin, p.cout, cb);
    let plane = p.height * p.width;
    let len = p.batch * p.cout * plane;
    // Every element is stored by exactly one block (the tiles cover the image; stores are
    // masked to it), so the output is not zeroed first: at 320² that memset cost as much as a
    // small layer.
    let mut out = Vec::<f32>::with_capacity(len);
    let out_ptr = OutPtr(out.as_mut_ptr());
    let blocks: Vec<(usize, usize, usize)> = (0..th)
        .flat_map(|ty| {
            (0..segments)
                .step_by(NV)
                .map(move |s| (ty, s * lanes, (segments - s).min(NV)))
        })
        .collect();
    for b in 0..p.batch {
        let chans = super::conv3x3::channels(inputs, b, plane);
        let res = residual.map(|r| &r[b * p.cout * plane..][..p.cout * plane]);
        blocks.par_iter().for_each(|&(ty, tx0, nv)| {
            SCRATCH.with_borrow_mut(|Scratch { v, m, patch }| {
                // Every element read is written first, so the buffers need no clearing.
                v.resize(36 * p.cin * tb, 0.0);
                m.resize(36 * cb * tb, 0.0);
                patch.resize(6 * (4 * tb + 4), 0.0);
                let block = Block {
                    chans: &chans,
                    ty,
                    tx0,
                    u: &u,
                    bias,
                    residual: res,
                    out: out_ptr.get().wrapping_add(b * p.cout * plane),
                };
                // SAFETY: the CPU has `width`'s features (the caller's contract: `Width`s
                // come from `Kernels`, which detects them); loads stay inside the patch (its
                // rows cover whole segments plus the window overhang); stores are masked to the
                // image and each block writes only its own tiles.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    match (width, nv) {
                        (Width::Avx512, 2) => block.run::<2>(v, m, patch, p),
                        (Width::Avx512, _) => block.run::<1>(v, m, patch, p),
                        (Width::Avx2, 2) => block.run_avx2::<2>(v, m, patch, p),
                        (Width::Avx2, _) => block.run_avx2::<1>(v, m, patch, p),
                    }
                }
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (block, nv, v, m, patch);
            });
        });
    }
    // SAFETY: the blocks above stored all `len` elements (see the allocation).
    unsafe { out.set_len(len) };
    out
}

/// Step 2 of a block, the same loop in each vector width: `M[ξ][c][tile] = Σ_ci U[ξ][c][ci] ·
/// V[ξ][ci][tile]` for the register block `blk`, `CB` output channels × `N` vectors of tiles in
/// registers, one broadcast weight per channel and input channel.
macro_rules! products {
    ($blk_self:ident, $v:ident, $m:ident, $p:ident, $blocks:ident, $blk:ident, $n:ident, $cb:ident, $tb:ident, $lanes:ident,
     $vec:ty, $zero:ident, $load:ident, $set1:ident, $fma:ident, $store:ident) => {
        for xi in 0..36 {
            let mut acc = [[$zero(); $n]; $cb];
            let ub = unsafe {
                $blk_self
                    .u
                    .as_ptr()
                    .add((xi * $blocks + $blk) * $p.cin * $cb)
            };
            let vb = unsafe { $v.as_ptr().add(xi * $p.cin * $tb) };
            for ci in 0..$p.cin {
                let vv: [$vec; $n] =
                    std::array::from_fn(|j| unsafe { $load(vb.add(ci * $tb + j * $lanes)) });
                for (c, a) in acc.iter_mut().enumerate() {
                    let w = $set1(unsafe { *ub.add(ci * $cb + c) });
                    for j in 0..$n {
                        a[j] = $fma(w, vv[j], a[j]);
                    }
                }
            }
            for (c, a) in acc.iter().enumerate() {
                for (j, &aj) in a.iter().enumerate() {
                    unsafe { $store($m.as_mut_ptr().add((xi * $cb + c) * $tb + j * $lanes), aj) };
                }
            }
        }
    };
}

/// Step 3's first half, the same in each vector width: `Aᵀ` applied to each of the 6 columns
/// of `M` for output channel `c` and segment `j`, as 4 rows × 6 columns.
macro_rules! columns {
    ($m:ident, $c:ident, $j:ident, $cb:ident, $tb:ident, $lanes:ident,
     $vec:ty, $zero:ident, $load:ident, $at:ident) => {{
        let mut s = [[$zero(); 6]; 4];
        for col in 0..6 {
            let mc: [$vec; 6] = std::array::from_fn(|r| unsafe {
                $load(
                    $m.as_ptr()
                        .add(((r * 6 + col) * $cb + $c) * $tb + $j * $lanes),
                )
            });
            for (r, val) in $at(mc).into_iter().enumerate() {
                s[r][col] = val;
            }
        }
        s
    }};
}

/// Up to `NV` segments of 16 tiles on tile row `ty`, starting at tile column `tx0`.
struct Block<'a> {
    /// The input's channels (the concatenation of the inputs), one plane each.
    chans: &'a [&'a [f32]],
    ty: usize,
    tx0: usize,
    u: &'a [f32],
    bias: &'a [f32],
    residual: Option<&'a [f32]>,
    out: *mut f32,
}

impl Block<'_> {
    /// Copies the 6 rows × `pw` columns that the block's tiles read of channel `ci`, with the
    /// convolution's zero padding, into `patch`, and asks the cache for the same window of the
    /// next channel.
    ///
    /// Why a patch per block and channel instead of one padded copy of the whole input: at 320²
    /// with 128 channels that copy was 53 MB zeroed and written by one thread before any work
    /// could start (10% of the forward pass); the patch stays in L1 and the prefetch hides the
    /// latency of the reads, which the transform otherwise waited on.
    fn fill_patch(&self, ci: usize, patch: &mut [f32], pw: usize, p: &Conv3x3) {
        let x0 = 4 * self.tx0;
        // Patch column k is image column x0 + k − 1.
        let lo = usize::from(x0 == 0);
        let hi = pw.min(p.width + 1 - x0);
        let first = x0 + lo - 1;
        let src = self.chans[ci];
        for r in 0..6 {
            let row = &mut patch[r * pw..][..pw];
            let Some(y) = (4 * self.ty + r).checked_sub(1).filter(|&y| y < p.height) else {
                row.fill(0.0);
                continue;
            };
            row[..lo].fill(0.0);
            row[lo..hi].copy_from_slice(&src[y * p.width + first..][..hi - lo]);
            row[hi..].fill(0.0);
            #[cfg(target_arch = "x86_64")]
            if let Some(next) = self.chans.get(ci + 2) {
                let line = next[y * p.width + first..][..hi - lo].as_ptr();
                for k in (0..hi - lo).step_by(16) {
                    // SAFETY: a prefetch never faults; the address is inside `next` anyway.
                    unsafe {
                        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                            line.add(k).cast(),
                        )
                    };
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl Block<'_> {
    #[target_feature(enable = "avx512f")]
    unsafe fn run<const N: usize>(
        &self,
        v: &mut [f32],
        m: &mut [f32],
        patch: &mut [f32],
        p: &Conv3x3,
    ) {
        use std::arch::x86_64::*;
        const LANES: usize = Width::Avx512.lanes();
        const TB: usize = Width::Avx512.tb();
        const CB: usize = Width::Avx512.cb();
        // Lane l of a de-interleaved vector k holds column 4·l + k of a 64-column span.
        let pick: [__m512i; 4] = std::array::from_fn(|k| {
            let idx: [i32; 16] = std::array::from_fn(|l| ((4 * l + k) % 32) as i32);
            unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) }
        });
        // 1. V[ξ][ci][tile] = Bᵀ d B, for every input channel and segment.
        let pw = 4 * LANES * N + 4;
        for ci in 0..p.cin {
            self.fill_patch(ci, patch, pw, p);
            for j in 0..N {
                let mut d = [[_mm512_setzero_ps(); 6]; 6];
                for (r, dr) in d.iter_mut().enumerate() {
                    let row = unsafe { patch.as_ptr().add(r * pw + 4 * j * LANES) };
                    let load = |off: usize| -> [__m512; 4] {
                        std::array::from_fn(|q| unsafe { _mm512_loadu_ps(row.add(off + 16 * q)) })
                    };
                    let (a, b) = (load(0), load(4));
                    let split = |x: &[__m512; 4], k: usize| {
                        let lo = _mm512_permutex2var_ps(x[0], pick[k], x[1]);
                        let hi = _mm512_permutex2var_ps(x[2], pick[k], x[3]);
                        _mm512_shuffle_f32x4::<0x44>(lo, hi)
                    };
                    *dr = [
                        split(&a, 0),
                        split(&a, 1),
                        split(&a, 2),
                        split(&a, 3),
                        split(&b, 0),
                        split(&b, 1),
                    ];
                }
                // Columns then rows: t = Bᵀ d, V = t B.
                let mut t = [[_mm512_setzero_ps(); 6]; 6];
                for c in 0..6 {
                    let col = bt([d[0][c], d[1][c], d[2][c], d[3][c], d[4][c], d[5][c]]);
                    for r in 0..6 {
                        t[r][c] = col[r];
                    }
                }
                for (r, tr) in t.iter().enumerate() {
                    for (c, &val) in bt(*tr).iter().enumerate() {
                        let at = ((r * 6 + c) * p.cin + ci) * TB + j * LANES;
                        unsafe { _mm512_storeu_ps(v.as_mut_ptr().add(at), val) };
                    }
                }
            }
        }
        // Output stores: lanes interleave back to columns 4·l + j.
        let zip: [__m512i; 4] = std::array::from_fn(|h| {
            let idx: [i32; 16] = std::array::from_fn(|i| {
                let (l, jj) = (i / 4 + 4 * (h % 2), i % 4);
                // First pair vector holds (y0, y1) interleaved, second (y2, y3).
                let pair_lane = 2 * (l % 8) + (jj % 2);
                (if jj < 2 { pair_lane } else { 16 + pair_lane }) as i32
            });
            unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) }
        });
        let pair: [__m512i; 2] = std::array::from_fn(|h| {
            let idx: [i32; 16] =
                std::array::from_fn(|i| (8 * h + i / 2 + if i % 2 == 1 { 16 } else { 0 }) as i32);
            unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) }
        });
        let blocks = p.cout / CB;
        let plane = p.height * p.width;
        for blk in 0..blocks {
            // 2. M[ξ][c][tile] = Σ_ci U[ξ][blk·8 + c][ci] · V[ξ][ci][tile]
            products!(
                self,
                v,
                m,
                p,
                blocks,
                blk,
                N,
                CB,
                TB,
                LANES,
                __m512,
                _mm512_setzero_ps,
                _mm512_loadu_ps,
                _mm512_set1_ps,
                _mm512_fmadd_ps,
                _mm512_storeu_ps
            );
            // 3. Y = Aᵀ M A, then bias, activation, residual, stored row by row.
            for c in 0..CB {
                let co = blk * CB + c;
                let bias = _mm512_set1_ps(self.bias[co]);
                for j in 0..N {
                    let s = columns!(
                        m,
                        c,
                        j,
                        CB,
                        TB,
                        LANES,
                        __m512,
                        _mm512_setzero_ps,
                        _mm512_loadu_ps,
                        at
                    );
                    let x0 = 4 * (self.tx0 + j * LANES);
                    for (i, si) in s.iter().enumerate() {
                        let y = 4 * self.ty + i;
                        if y >= p.height {
                            break;
                        }
                        let yv = at(*si);
                        let p01 = [
                            _mm512_permutex2var_ps(yv[0], pair[0], yv[1]),
                            _mm512_permutex2var_ps(yv[0], pair[1], yv[1]),
                        ];
                        let p23 = [
                            _mm512_permutex2var_ps(yv[2], pair[0], yv[3]),
                            _mm512_permutex2var_ps(yv[2], pair[1], yv[3]),
                        ];
                        for q in 0..4 {
                            let x = x0 + 16 * q;
                            if x >= p.width {
                                break;
                            }
                            let left = p.width - x;
                            let mask: __mmask16 = if left >= 16 { !0 } else { (1u16 << left) - 1 };
                            let mut val = _mm512_add_ps(
                                _mm512_permutex2var_ps(p01[q / 2], zip[q], p23[q / 2]),
                                bias,
                            );
                            if p.relu {
                                val = _mm512_max_ps(val, _mm512_setzero_ps());
                            }
                            let at = co * plane + y * p.width + x;
                            if let Some(r) = self.residual {
                                val = _mm512_add_ps(val, unsafe {
                                    _mm512_maskz_loadu_ps(mask, r.as_ptr().add(at))
                                });
                            }
                            unsafe { _mm512_mask_storeu_ps(self.out.add(at), mask, val) };
                        }
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl Block<'_> {
    /// [`Block::run`] in 8-lane AVX2 vectors: lane j of a segment is tile `[0, 2, 4, 6, 1, 3,
    /// 5, 7][j]` of its 8 (see [`transpose4`]).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2<const N: usize>(
        &self,
        v: &mut [f32],
        m: &mut [f32],
        patch: &mut [f32],
        p: &Conv3x3,
    ) {
        use std::arch::x86_64::*;
        const LANES: usize = Width::Avx2.lanes();
        const TB: usize = Width::Avx2.tb();
        const CB: usize = Width::Avx2.cb();
        // 1. V[ξ][ci][tile] = Bᵀ d B, for every input channel and segment.
        let pw = 4 * LANES * N + 4;
        for ci in 0..p.cin {
            self.fill_patch(ci, patch, pw, p);
            for j in 0..N {
                let mut d = [[_mm256_setzero_ps(); 6]; 6];
                for (r, dr) in d.iter_mut().enumerate() {
                    let row = unsafe { patch.as_ptr().add(r * pw + 4 * j * LANES) };
                    // Columns 4·t + k (k < 4) of the 8 tiles t, then 4·t + 4 + k.
                    let load = |off: usize| -> [__m256; 4] {
                        transpose4(std::array::from_fn(|q| unsafe {
                            _mm256_loadu_ps(row.add(off + 8 * q))
                        }))
                    };
                    let (a, b) = (load(0), load(4));
                    *dr = [a[0], a[1], a[2], a[3], b[0], b[1]];
                }
                let mut t = [[_mm256_setzero_ps(); 6]; 6];
                for c in 0..6 {
                    let col = bt8([d[0][c], d[1][c], d[2][c], d[3][c], d[4][c], d[5][c]]);
                    for r in 0..6 {
                        t[r][c] = col[r];
                    }
                }
                for (r, tr) in t.iter().enumerate() {
                    for (c, &val) in bt8(*tr).iter().enumerate() {
                        let at = ((r * 6 + c) * p.cin + ci) * TB + j * LANES;
                        unsafe { _mm256_storeu_ps(v.as_mut_ptr().add(at), val) };
                    }
                }
            }
        }
        let blocks = p.cout / CB;
        let plane = p.height * p.width;
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        for blk in 0..blocks {
            // 2. M[ξ][c][tile] = Σ_ci U[ξ][blk·4 + c][ci] · V[ξ][ci][tile]
            products!(
                self,
                v,
                m,
                p,
                blocks,
                blk,
                N,
                CB,
                TB,
                LANES,
                __m256,
                _mm256_setzero_ps,
                _mm256_loadu_ps,
                _mm256_set1_ps,
                _mm256_fmadd_ps,
                _mm256_storeu_ps
            );
            // 3. Y = Aᵀ M A, then bias, activation, residual, stored row by row.
            for c in 0..CB {
                let co = blk * CB + c;
                let bias = _mm256_set1_ps(self.bias[co]);
                for j in 0..N {
                    let s = columns!(
                        m,
                        c,
                        j,
                        CB,
                        TB,
                        LANES,
                        __m256,
                        _mm256_setzero_ps,
                        _mm256_loadu_ps,
                        at8
                    );
                    let x0 = 4 * (self.tx0 + j * LANES);
                    for (i, si) in s.iter().enumerate() {
                        let y = 4 * self.ty + i;
                        if y >= p.height {
                            break;
                        }
                        // Vector q of the transpose is columns 8q..8q+8 of the segment.
                        let cols = transpose4(at8(*si));
                        for (q, &col) in cols.iter().enumerate() {
                            let x = x0 + 8 * q;
                            if x >= p.width {
                                break;
                            }
                            let left = (p.width - x).min(8) as i32;
                            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), lane);
                            let mut val = _mm256_add_ps(col, bias);
                            if p.relu {
                                val = _mm256_max_ps(val, _mm256_setzero_ps());
                            }
                            let at = co * plane + y * p.width + x;
                            if let Some(r) = self.residual {
                                val = _mm256_add_ps(val, unsafe {
                                    _mm256_maskload_ps(r.as_ptr().add(at), mask)
                                });
                            }
                            unsafe { _mm256_maskstore_ps(self.out.add(at), mask, val) };
                        }
                    }
                }
            }
        }
    }
}

/// A 4×4 transpose within each 128-bit half: element k of half h of result r is element r of
/// half h of input k. Loaded from 32 consecutive columns, the four results hold columns
/// 4·t + r of the 8 tiles t, in lanes ordered 0 2 4 6 1 3 5 7; applied to such four vectors,
/// it gives back the 32 columns in order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn transpose4(x: [std::arch::x86_64::__m256; 4]) -> [std::arch::x86_64::__m256; 4] {
    use std::arch::x86_64::*;
    let t0 = _mm256_unpacklo_ps(x[0], x[1]);
    let t1 = _mm256_unpackhi_ps(x[0], x[1]);
    let t2 = _mm256_unpacklo_ps(x[2], x[3]);
    let t3 = _mm256_unpackhi_ps(x[2], x[3]);
    [
        _mm256_shuffle_ps::<0x44>(t0, t2),
        _mm256_shuffle_ps::<0xEE>(t0, t2),
        _mm256_shuffle_ps::<0x44>(t1, t3),
        _mm256_shuffle_ps::<0xEE>(t1, t3),
    ]
}

/// `Bᵀ x` and `Aᵀ m` of F(4×4, 3×3) for one vector type: the same formulas in AVX-512 and AVX2.
macro_rules! transforms {
    ($bt:ident, $at:ident, $v:ty, $feature:literal, $set1:ident, $add:ident, $sub:ident, $mul:ident, $fma:ident, $zero:ident) => {
        /// `Bᵀ x` for F(4×4, 3×3).
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        fn $bt(d: [$v; 6]) -> [$v; 6] {
            use std::arch::x86_64::*;
            let s = $set1;
            let (add, sub, fma) = ($add, $sub, $fma);
            // 4 d0 - 5 d2 + d4
            let o0 = fma(s(4.0), d[0], fma(s(-5.0), d[2], d[4]));
            // ±4 d1 - 4 d2 ∓ d3 + d4 -> a = d4 - 4 d2, b = 4 d1 - d3
            let a = fma(s(-4.0), d[2], d[4]);
            let b = fma(s(4.0), d[1], sub($zero(), d[3]));
            let o1 = sub(a, b);
            let o2 = add(a, b);
            // ∓2 d1 - d2 ± 2 d3 + d4 -> c = d4 - d2, e = 2 (d3 - d1)
            let c = sub(d[4], d[2]);
            let e = $mul(s(2.0), sub(d[3], d[1]));
            let o3 = add(c, e);
            let o4 = sub(c, e);
            // 4 d1 - 5 d3 + d5
            let o5 = fma(s(4.0), d[1], fma(s(-5.0), d[3], d[5]));
            [o0, o1, o2, o3, o4, o5]
        }

        /// `Aᵀ m` for F(4×4, 3×3).
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        fn $at(m: [$v; 6]) -> [$v; 4] {
            use std::arch::x86_64::*;
            let s = $set1;
            let (add, sub, fma) = ($add, $sub, $fma);
            let p12 = add(m[1], m[2]);
            let m12 = sub(m[1], m[2]);
            let p34 = add(m[3], m[4]);
            let m34 = sub(m[3], m[4]);
            let o0 = add(add(m[0], p12), p34);
            let o1 = fma(s(2.0), m34, m12);
            let o2 = fma(s(4.0), p34, p12);
            let o3 = add(fma(s(8.0), m34, m12), m[5]);
            [o0, o1, o2, o3]
        }
    };
}

transforms!(
    bt,
    at,
    std::arch::x86_64::__m512,
    "avx512f",
    _mm512_set1_ps,
    _mm512_add_ps,
    _mm512_sub_ps,
    _mm512_mul_ps,
    _mm512_fmadd_ps,
    _mm512_setzero_ps
);
transforms!(
    bt8,
    at8,
    std::arch::x86_64::__m256,
    "avx2,fma",
    _mm256_set1_ps,
    _mm256_add_ps,
    _mm256_sub_ps,
    _mm256_mul_ps,
    _mm256_fmadd_ps,
    _mm256_setzero_ps
);

#[cfg(test)]
mod tests {
    use super::super::{
        conv3x3::{Conv3x3, Input, naive},
        test_data,
    };
    use super::*;

    /// The cache answers by value: the same weights anywhere share one entry; weights changed in
    /// place (the same address) are transformed again.
    #[test]
    fn cached_weights_follow_the_values() {
        let (cin, cout) = (16, 8);
        let mut w = test_data(cout * cin * 9, 7);
        let first = cached_weights(&w, cin, cout, 8);
        assert_eq!(*first, transform_weights(&w, cin, cout, 8));
        let copy = w.clone();
        assert!(Arc::ptr_eq(&first, &cached_weights(&copy, cin, cout, 8)));
        w[5] += 1.0;
        let changed = cached_weights(&w, cin, cout, 8);
        assert!(!Arc::ptr_eq(&first, &changed));
        assert_eq!(*changed, transform_weights(&w, cin, cout, 8));
        // The same values read as other channel counts are other weights.
        let other = cached_weights(&w, cin * 2, cout / 2, 8);
        assert_eq!(*other, transform_weights(&w, cin * 2, cout / 2, 8));
        // And in another register block's layout.
        let narrow = cached_weights(&w, cin, cout, 4);
        assert!(!Arc::ptr_eq(&changed, &narrow));
        assert_eq!(*narrow, transform_weights(&w, cin, cout, 4));
    }

    /// The widths this CPU can run.
    fn widths() -> Vec<Width> {
        let mut out = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                out.push(Width::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                out.push(Width::Avx2);
            }
        }
        out
    }

    #[test]
    fn matches_the_definition() {
        let widths = widths();
        if widths.is_empty() {
            eprintln!("no AVX2 or AVX-512F on this CPU: the Winograd path is never used here");
            return;
        }
        for width in widths {
            matches_the_definition_in(width);
        }
    }

    fn matches_the_definition_in(width: Width) {
        for (cin, cout, h, w) in [
            (16, 8, 8, 8),
            (32, 16, 13, 37),
            (64, 64, 20, 20),
            (9, 24, 33, 9),
            (16, 8, 10, 150),
            (8, 12, 11, 70),
        ] {
            for (relu, with_res) in [(false, false), (true, true)] {
                let p = Conv3x3 {
                    batch: 2,
                    cin,
                    cout,
                    height: h,
                    width: w,
                    dilation: 1,
                    relu,
                };
                if !suitable_for(width, &p) {
                    continue;
                }
                let x = test_data(p.batch * cin * h * w, 1);
                let wt = test_data(cout * cin * 9, 2);
                let b = test_data(cout, 3);
                let res = test_data(p.batch * cout * h * w, 4);
                let r = with_res.then_some(res.as_slice());
                // With the residual, the input also comes as two tensors to concatenate.
                let k = if with_res { cin / 3 + 1 } else { cin };
                let plane = h * w;
                let part = |from: usize, to: usize| -> Vec<f32> {
                    (0..p.batch)
                        .flat_map(|bi| {
                            x[(bi * cin + from) * plane..(bi * cin + to) * plane].to_vec()
                        })
                        .collect()
                };
                let (first, second) = (part(0, k), part(k, cin));
                let mut parts = vec![Input {
                    data: &first,
                    channels: k,
                }];
                if k < cin {
                    parts.push(Input {
                        data: &second,
                        channels: cin - k,
                    });
                }
                let got = conv3x3_in(width, &parts, &wt, &b, r, &p);
                let want = naive(&x, &wt, &b, r, &p);
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(err < 1e-3, "{width:?} {p:?}: max abs {err}");
            }
        }
    }
}
