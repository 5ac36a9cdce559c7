//! `WindowAttention` of `backbones/SwinTransformer.py`: multi-head self-attention inside one
//! window, with a learned relative position bias and, for shifted windows, the region mask.

use burn::{
    module::{Module, Param},
    nn::{Linear, LinearConfig},
    tensor::{Device, Int, Tensor, TensorData},
};

use crate::model::softmax;

/// Upstream's `relative_position_index` buffer, `[ws², ws²]` flattened: for tokens `i` and `j`
/// of a window, the row of the bias table for their offset.
pub fn relative_position_index(ws: usize) -> Vec<i64> {
    let n = ws * ws;
    let span = 2 * ws as i64 - 1;
    let mut out = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            let dh = (i / ws) as i64 - (j / ws) as i64 + ws as i64 - 1;
            let dw = (i % ws) as i64 - (j % ws) as i64 + ws as i64 - 1;
            out.push(dh * span + dw);
        }
    }
    out
}

#[derive(Module, Debug)]
pub struct WindowAttention {
    /// `[(2·ws − 1)², heads]`.
    pub relative_position_bias_table: Param<Tensor<2>>,
    /// `dim -> 3·dim` (query, key, value), with bias.
    pub qkv: Linear,
    pub proj: Linear,
    pub window_size: usize,
    pub num_heads: usize,
}

impl WindowAttention {
    pub fn new(dim: usize, window_size: usize, num_heads: usize, device: &Device) -> Self {
        let rows = (2 * window_size - 1).pow(2);
        WindowAttention {
            relative_position_bias_table: Param::from_tensor(Tensor::zeros(
                [rows, num_heads],
                device,
            )),
            qkv: LinearConfig::new(dim, 3 * dim).init(device),
            proj: LinearConfig::new(dim, dim).init(device),
            window_size,
            num_heads,
        }
    }

    /// `[heads, N, N]` with N = ws².
    fn position_bias(&self) -> Tensor<3> {
        let n = self.window_size * self.window_size;
        let table = self.relative_position_bias_table.val();
        let index = Tensor::<1, Int>::from_data(
            TensorData::new(relative_position_index(self.window_size), [n * n]),
            &table.device(),
        );
        table
            .select(0, index)
            .reshape([n, n, self.num_heads])
            .permute([2, 0, 1])
    }

    /// `x` [windows·B, N, C]; `mask` [windows, N, N] of 0 / −100 for shifted windows.
    pub fn forward(&self, x: Tensor<3>, mask: Option<&Tensor<3>>) -> Tensor<3> {
        let [bw, n, c] = x.dims();
        let heads = self.num_heads;
        let head_dim = c / heads;
        let scale = (head_dim as f64).powf(-0.5);
        // [B_, N, 3C] -> [3, B_, heads, N, head_dim]
        let qkv = self
            .qkv
            .forward(x)
            .reshape([bw, n, 3, heads, head_dim])
            .permute([2, 0, 3, 1, 4]);
        let mut parts = qkv.chunk(3, 0).into_iter().map(|t| t.squeeze_dim::<4>(0));
        let (q, k, v) = (
            parts.next().expect("q"),
            parts.next().expect("k"),
            parts.next().expect("v"),
        );
        // [B_, heads, N, N]
        let attn = (q * scale).matmul(k.swap_dims(2, 3)) + self.position_bias().unsqueeze::<4>();
        let attn = match mask {
            Some(mask) => {
                let windows = mask.dims()[0];
                let attn = attn.reshape([bw / windows, windows, heads, n, n])
                    + mask.clone().reshape([1, windows, 1, n, n]);
                attn.reshape([bw, heads, n, n])
            }
            None => attn,
        };
        let attn = softmax(attn, 3);
        // [B_, heads, N, head_dim] -> [B_, N, C]
        let x = attn.matmul(v).swap_dims(1, 2).reshape([bw, n, c]);
        self.proj.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::relative_position_index;

    #[test]
    fn index_matches_upstream_for_window_two() {
        // torch: coords of a 2x2 window, relative offsets shifted and flattened.
        assert_eq!(
            relative_position_index(2),
            vec![4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4]
        );
    }
}
