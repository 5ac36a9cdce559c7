//! Fast CPU kernels for the segmentation models, plugged into Burn through its backend extension
//! point: `Tensor::try_into_primitive::<Flex>()` hands over the CPU tensor, and
//! `Tensor::from_primitive` wraps the result back.
//!
//! Each function here takes and returns Burn tensors. On the Flex (CPU) backend it runs the
//! kernel in this module; on any other backend (wgpu, CUDA) or for shapes the kernels do not
//! cover, it runs Burn's own operations, so model code is written once.
//!
//! - [`conv2d`]: 3×3 stride-1 "same" convolutions (dilated or not) with the channel
//!   concatenation of the inputs, bias, ReLU and a residual add fused into one pass
//!   ([`conv3x3`], or Winograd F(4×4, 3×3) for the large undilated ones: [`winograd`]).
//!   Flex's generic path converts layouts on every call and runs `cat`, bias,
//!   activation and add as separate passes over memory.
//! - [`max_pool2x`]: 2×2/2 max pooling with `ceil_mode` ([`pool`]).
//! - [`upsample_bilinear`]: half-pixel bilinear resize ([`upsample`]).

pub mod conv3x3;
pub mod pool;
pub mod profile;
pub mod upsample;
pub mod winograd;

use std::borrow::Cow;

use burn::{
    backend::Flex,
    nn::{PaddingConfig2d, conv::Conv2d},
    tensor::{
        DType, Tensor,
        activation::relu,
        module::{interpolate, max_pool2d},
        ops::{InterpolateMode, InterpolateOptions, MaxPoolOptions},
    },
};
use burn_flex::{FlexTensor, Layout};

/// What follows the convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
}

/// `act(conv(cat(inputs, dim=1))) + residual`.
pub fn conv2d(
    inputs: Vec<Tensor<4>>,
    conv: &Conv2d,
    act: Activation,
    residual: Option<Tensor<4>>,
) -> Tensor<4> {
    let [batch, _, height, width] = inputs[0].dims();
    let name = || {
        let [cout, cin, kh, kw] = conv.weight.dims();
        let dilation = conv.dilation[0];
        let path = if [kh, kw] != [3, 3] || conv.stride != [1, 1] {
            "burn"
        } else if winograd::suitable(&conv3x3::Conv3x3 {
            batch,
            cin,
            cout,
            height,
            width,
            dilation,
            relu: act == Activation::Relu,
        }) {
            "winograd"
        } else {
            Kernels::current().name()
        };
        format!("conv {kh}×{kw} d{dilation} {cin}→{cout} at {height}×{width} ({path})")
    };
    profile::timed(name, || conv2d_any(inputs, conv, act, residual))
}

fn conv2d_any(
    inputs: Vec<Tensor<4>>,
    conv: &Conv2d,
    act: Activation,
    residual: Option<Tensor<4>>,
) -> Tensor<4> {
    if let Some(y) = conv2d_flex(&inputs, conv, act, residual.as_ref()) {
        return y;
    }
    let x = if inputs.len() == 1 {
        inputs.into_iter().next().expect("one input")
    } else {
        Tensor::cat(inputs, 1)
    };
    let y = conv.forward(x);
    let y = match act {
        Activation::Relu => relu(y),
        Activation::None => y,
    };
    match residual {
        Some(r) => y + r,
        None => y,
    }
}

/// `nn.MaxPool2d(2, stride=2, ceil_mode=True)`: odd sizes round up, e.g. 5 -> 3.
pub fn max_pool2x(x: Tensor<4>) -> Tensor<4> {
    let [_, c, h, w] = x.dims();
    profile::timed(
        || format!("max pool 2×2 {c} at {h}×{w}"),
        || max_pool2x_any(x),
    )
}

fn max_pool2x_any(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    if let Some(p) = flex(&x) {
        let data = f32_slice(&p).map(|s| pool::max_pool2x(&s, b * c, h, w));
        if let Some(data) = data {
            return wrap(data, [b, c, h.div_ceil(2), w.div_ceil(2)]);
        }
    }
    max_pool2d(x, MaxPoolOptions::new([2, 2]).with_ceil_mode(true))
}

/// Bilinear resize to `[h, w]` with `align_corners=False`.
pub fn upsample_bilinear(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    let [_, c, h, w] = x.dims();
    let name = || format!("upsample {c} {h}×{w} → {}×{}", size[0], size[1]);
    profile::timed(name, || upsample_any(x, size))
}

fn upsample_any(x: Tensor<4>, [oh, ow]: [usize; 2]) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    if let Some(p) = flex(&x) {
        let data = f32_slice(&p).map(|s| upsample::bilinear(&s, b * c, (h, w), (oh, ow)));
        if let Some(data) = data {
            return wrap(data, [b, c, oh, ow]);
        }
    }
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_output_size([oh, ow])
            .with_align_corners(false),
    )
}

fn conv2d_flex(
    inputs: &[Tensor<4>],
    conv: &Conv2d,
    act: Activation,
    residual: Option<&Tensor<4>>,
) -> Option<Tensor<4>> {
    let d = conv.dilation[0];
    let same_padding =
        matches!(conv.padding, PaddingConfig2d::Explicit(t, l, b, r) if [t, l, b, r] == [d; 4]);
    if conv.kernel_size != [3, 3]
        || conv.stride != [1, 1]
        || conv.groups != 1
        || conv.dilation != [d, d]
        || !same_padding
    {
        return None;
    }
    let [batch, _, height, width] = inputs.first()?.dims();
    if inputs.iter().any(|t| {
        let [b, _, h, w] = t.dims();
        (b, h, w) != (batch, height, width)
    }) {
        return None;
    }
    let primitives: Vec<FlexTensor> = inputs.iter().map(flex).collect::<Option<_>>()?;
    let slices: Vec<Cow<'_, [f32]>> = primitives.iter().map(f32_slice).collect::<Option<_>>()?;
    let parts: Vec<conv3x3::Input<'_>> = slices
        .iter()
        .zip(inputs)
        .map(|(s, t)| conv3x3::Input {
            data: s,
            channels: t.dims()[1],
        })
        .collect();
    let weight = flex(&conv.weight.val())?;
    let bias = flex(&conv.bias.as_ref()?.val())?;
    // A residual on another backend means the whole call takes Burn's path.
    let residual = match residual {
        Some(r) => Some(flex(r)?),
        None => None,
    };
    let residual_slice = match &residual {
        Some(r) => Some(f32_slice(r)?),
        None => None,
    };
    let [cout, cin, _, _] = conv.weight.dims();
    let params = conv3x3::Conv3x3 {
        batch,
        cin,
        cout,
        height,
        width,
        dilation: d,
        relu: act == Activation::Relu,
    };
    let kernel = if winograd::suitable(&params) {
        winograd::conv3x3
    } else {
        conv3x3::conv3x3
    };
    let out = kernel(
        &parts,
        &f32_slice(&weight)?,
        &f32_slice(&bias)?,
        residual_slice.as_deref(),
        &params,
    );
    Some(wrap(out, [batch, cout, height, width]))
}

/// The tensor's CPU primitive, or `None` when it lives on another backend.
fn flex<const D: usize>(t: &Tensor<D>) -> Option<FlexTensor> {
    t.clone().try_into_primitive::<Flex>().ok()
}

/// A tensor's values as a dense `f32` slice, copying only if its layout is strided.
fn f32_slice(t: &FlexTensor) -> Option<Cow<'_, [f32]>> {
    if t.dtype() != DType::F32 {
        return None;
    }
    match t.as_slice::<f32>() {
        Some(s) => Some(Cow::Borrowed(s)),
        None => t
            .to_contiguous()
            .as_slice::<f32>()
            .map(|s| Cow::Owned(s.to_vec())),
    }
}

/// The CPU kernels a machine runs: the widest its CPU has, unless `GPU_SERVER_CPU_KERNELS`
/// (`avx512`, `avx2` or `portable`) asks for narrower ones, which is how CI tests the paths of
/// machines it is not (a request wider than the CPU has is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kernels {
    /// Plain Rust, any CPU.
    Portable,
    /// AVX2 and FMA: the direct convolution and Winograd in 8-lane vectors (most laptops and
    /// desktops).
    Avx2,
    /// AVX-512F: the direct convolution in 16 lanes, and Winograd for the large layers.
    Avx512,
}

impl Kernels {
    /// The widest kernels this CPU has (std caches the detection).
    pub fn detected() -> Kernels {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Kernels::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Kernels::Avx2;
            }
        }
        Kernels::Portable
    }

    /// The kernels in use: [`Kernels::detected`], narrowed by `GPU_SERVER_CPU_KERNELS`.
    pub fn current() -> Kernels {
        static CURRENT: std::sync::OnceLock<Kernels> = std::sync::OnceLock::new();
        *CURRENT.get_or_init(|| {
            let asked = std::env::var("GPU_SERVER_CPU_KERNELS").ok();
            let asked = match asked.as_deref().map(str::trim) {
                Some("portable") => Kernels::Portable,
                Some("avx2") => Kernels::Avx2,
                _ => Kernels::Avx512,
            };
            asked.min(Kernels::detected())
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernels::Portable => "portable",
            Kernels::Avx2 => "avx2",
            Kernels::Avx512 => "avx512",
        }
    }
}

/// An output buffer's base pointer, shared by parallel tasks that each write a disjoint part.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the kernels hand each task its own rows or tiles; no two tasks write the same element.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Taking the pointer through a method makes closures capture the whole (Sync) wrapper.
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// `len` floats made in parallel by `fill`, which gets the chunks of `chunk` elements (the last
/// may be shorter) with their indices.
///
/// Why not `vec![0.0; len]` and `par_chunks_mut`: a fresh output is zeroed by one thread before
/// the parallel work starts, and for the 26 MB planes at 320² that memset cost as much as the
/// layer's own work.
///
/// # Safety
/// `fill` must write every element of every chunk it is given.
unsafe fn par_filled<F>(len: usize, chunk: usize, fill: F) -> Vec<f32>
where
    F: Fn(usize, &mut [std::mem::MaybeUninit<f32>]) + Sync,
{
    use rayon::prelude::*;
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, c)| fill(i, c));
    // SAFETY: the caller's contract: `fill` wrote all `len` elements.
    unsafe { out.set_len(len) };
    out
}

/// Deterministic values in [-1, 1] for kernel tests.
#[cfg(test)]
fn test_data(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn wrap(data: Vec<f32>, shape: [usize; 4]) -> Tensor<4> {
    let tensor = FlexTensor::new(
        burn::tensor::Bytes::from_elems(data),
        Layout::contiguous(shape.into()),
        DType::F32,
    );
    Tensor::from_primitive::<Flex>(tensor)
}
