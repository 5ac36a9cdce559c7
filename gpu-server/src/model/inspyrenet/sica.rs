//! `SICA` of `modules/attention_module.py`: scale-invariant context attention. It refines a
//! feature map with context vectors pooled over the foreground, background and uncertain
//! regions of the coarser saliency map (and of the Laplacian map, when given).
//!
//! Quirk kept from upstream: the feature map, resized to the fixed stage size, is *viewed* as
//! `(B, h·w, C)` straight from its NCHW memory (no permute) before pooling.

use burn::{
    module::{Module, Param},
    tensor::{
        Device, Tensor,
        activation::{sigmoid, softmax},
    },
};

use super::{
    bilinear,
    conv::{ConvBn, ConvBnConfig},
};

#[derive(Module, Debug)]
pub struct Sica {
    pub conv_query: Vec<ConvBn>,
    pub conv_key: Vec<ConvBn>,
    pub conv_value: Vec<ConvBn>,
    pub conv_out1: ConvBn,
    pub conv_out2: ConvBn,
    pub conv_out3: ConvBn,
    pub conv_out4: ConvBn,
    /// `[1]`: where the saliency map splits foreground from background.
    pub threshold: Param<Tensor<1>>,
    /// `[1]`: the same for the Laplacian map (stages that take one).
    pub lthreshold: Option<Param<Tensor<1>>>,
    pub depth: usize,
    /// The fixed `[h, w]` the context is pooled at: `base_size / 2^stage`.
    pub stage_size: [usize; 2],
}

impl Sica {
    pub fn new(
        in_channels: usize,
        depth: usize,
        stage_size: [usize; 2],
        lmap_in: bool,
        device: &Device,
    ) -> Self {
        let pair = |k| {
            vec![
                ConvBnConfig::square(in_channels, depth, k)
                    .with_relu(true)
                    .init(device),
                ConvBnConfig::square(depth, depth, k)
                    .with_relu(true)
                    .init(device),
            ]
        };
        let half = || Param::from_tensor(Tensor::full([1], 0.5, device));
        Sica {
            conv_query: pair(3),
            conv_key: pair(1),
            conv_value: pair(1),
            conv_out1: ConvBnConfig::square(depth, depth, 3)
                .with_relu(true)
                .init(device),
            conv_out2: ConvBnConfig::square(in_channels + depth, depth, 3)
                .with_relu(true)
                .init(device),
            conv_out3: ConvBnConfig::square(depth, depth, 3)
                .with_relu(true)
                .init(device),
            conv_out4: ConvBnConfig::square(depth, 1, 1).init(device),
            threshold: half(),
            lthreshold: lmap_in.then(half),
            depth,
            stage_size,
        }
    }

    /// `x` [B, C, H, W], `smap` and `lmap` [B, 1, h, w] (any size) ->
    /// (features [B, depth, H, W], Laplacian map [B, 1, H, W]).
    pub fn forward(
        &self,
        x: Tensor<4>,
        smap: Tensor<4>,
        lmap: Option<Tensor<4>>,
    ) -> (Tensor<4>, Tensor<4>) {
        assert_eq!(
            self.lthreshold.is_some(),
            lmap.is_some(),
            "this SICA stage {} a Laplacian map",
            if self.lthreshold.is_some() {
                "needs"
            } else {
                "takes no"
            }
        );
        let [b, c, h, w] = x.dims();
        let threshold = self.threshold.val().reshape([1, 1, 1, 1]);

        // Class probabilities from the coarser maps.
        let p = sigmoid(bilinear(smap, [h, w], false)) - threshold.clone();
        let mut prob = vec![
            p.clone().clamp(0.0, 1.0),       // foreground
            p.clone().neg().clamp(0.0, 1.0), // background
            threshold - p.abs(),             // confusion
        ];
        if let (Some(lmap), Some(lt)) = (lmap, &self.lthreshold) {
            let lp = sigmoid(bilinear(lmap, [h, w], false)) - lt.val().reshape([1, 1, 1, 1]);
            prob.push(lp.clone().clamp(0.0, 1.0));
            prob.push(lp.neg().clamp(0.0, 1.0));
        }
        let ctx = prob.len();
        let prob = Tensor::cat(prob, 1); // [B, ctx, H, W]

        // Context vectors pooled at the stage size.
        // Computed in the key projection's dtype: f32 also in half precision, where a sum over
        // the whole stage (up to 1024² positions) would leave f16's range.
        let wide = self.conv_key[0].conv.weight.val().dtype();
        let [sh, sw] = self.stage_size;
        let f = bilinear(x.clone(), [sh, sw], false)
            .reshape([b, sh * sw, c])
            .cast(wide);
        let prob = bilinear(prob, [sh, sw], false)
            .reshape([b, ctx, sh * sw])
            .cast(wide);
        // [B, ctx, C] -> [B, C, ctx, 1]
        let context = prob.matmul(f).swap_dims(1, 2).unsqueeze_dim::<4>(3);

        let seq = |convs: &[ConvBn], t: Tensor<4>| convs.iter().fold(t, |t, conv| conv.forward(t));
        let d = self.depth;
        // [B, HW, depth]
        let query = seq(&self.conv_query, x.clone())
            .reshape([b, d, h * w])
            .swap_dims(1, 2);
        // [B, depth, ctx]
        let key = seq(&self.conv_key, context.clone())
            .reshape([b, d, ctx])
            .cast(x.dtype());
        // [B, ctx, depth]
        let value = seq(&self.conv_value, context)
            .reshape([b, d, ctx])
            .swap_dims(1, 2)
            .cast(x.dtype());

        // [B, HW, ctx]
        let sim = softmax(query.matmul(key) * (d as f64).powf(-0.5), 2);
        // [B, HW, depth] -> [B, depth, H, W]
        let context = sim.matmul(value).swap_dims(1, 2).reshape([b, d, h, w]);
        let context = self.conv_out1.forward(context);

        let x = self.conv_out2.forward(Tensor::cat(vec![x, context], 1));
        let x = self.conv_out3.forward(x);
        let out = self.conv_out4.forward(x.clone());
        (x, out)
    }
}
