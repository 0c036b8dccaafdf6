//! Pieces shared by the text families: `transformers`-style initialisation and the scaled
//! dot-product attention of BERT and DistilBERT.

use burn::nn::{Dropout, Embedding, Initializer, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor};

/// A linear layer initialised as `transformers`' `_init_weights`: weight `N(0, std)`, bias 0.
pub(crate) fn linear(d_input: usize, d_output: usize, std: f64, device: &Device) -> Linear {
    let weight = Initializer::Normal { mean: 0.0, std }.init([d_input, d_output], device);
    let bias = Initializer::Zeros.init([d_output], device);
    Linear { weight, bias: Some(bias) }
}

/// An embedding table `N(0, std)`, as `_init_weights` (the padding row is overwritten by any
/// checkpoint, so it is not zeroed here).
pub(crate) fn embedding(n_embedding: usize, d_model: usize, std: f64, device: &Device) -> Embedding {
    Embedding { weight: Initializer::Normal { mean: 0.0, std }.init([n_embedding, d_model], device) }
}

pub(crate) fn layer_norm(d_model: usize, epsilon: f64, device: &Device) -> LayerNorm {
    LayerNormConfig::new(d_model).with_epsilon(epsilon).init(device)
}

/// `[batch, seq, heads * head_dim] -> [batch, heads, seq, head_dim]`.
pub(crate) fn split_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    let [batch, seq, width] = x.dims();
    x.reshape([batch, seq, heads, width / heads]).swap_dims(1, 2)
}

/// `[batch, heads, seq, head_dim] -> [batch, seq, heads * head_dim]`.
pub(crate) fn merge_heads(x: Tensor<4>) -> Tensor<3> {
    let [batch, heads, seq, head_dim] = x.dims();
    x.swap_dims(1, 2).reshape([batch, seq, heads * head_dim])
}

/// The additive key mask of `transformers`' encoders, `[batch, 1, 1, seq]`: 0 for real tokens
/// and the most negative `f32` for padding (`(1 - mask) * finfo(float32).min`).
pub(crate) fn key_padding_bias(attention_mask: &Tensor<2, Int>) -> Tensor<4> {
    let [batch, seq] = attention_mask.dims();
    let mask = attention_mask.clone().float();
    ((mask.neg() + 1.0) * f32::MIN).reshape([batch, 1, 1, seq])
}

/// `softmax(q k^T / sqrt(head_dim) + bias) v`, with dropout on the probabilities.
///
/// # Shapes
/// - q, k, v: `[batch, heads, seq, head_dim]`
/// - bias: `[batch, 1, 1, seq]`
/// - output: `[batch, heads, seq, head_dim]`
pub(crate) fn scaled_dot_product(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    bias: Tensor<4>,
    dropout: &Dropout,
) -> Tensor<4> {
    let [_, _, _, head_dim] = q.dims();
    let scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (head_dim as f64).sqrt()) + bias;
    dropout.forward(softmax(scores, 3)).matmul(v)
}
