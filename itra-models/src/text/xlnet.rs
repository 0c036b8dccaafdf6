//! XLNet's content stream (`transformers.models.xlnet.modeling_xlnet`) as
//! `XLNetForSequenceClassification` runs it: bidirectional relative positional attention with
//! `r_w_bias`, `r_r_bias`, segment attention with `r_s_bias` and `seg_embed`, no memory, no
//! permutation mask, no query stream. Its head reads the **last** token, so XLNet batches are
//! padded on the left (see [`super::PaddingSide`]).
//!
//! Computed batch-first (`transformers` is sequence-first); every einsum of the reference is a
//! reshape plus a matmul here, noted where it happens. `mask_emb` (query stream only) is not
//! kept and is ignored on load.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Embedding, Initializer, LayerNorm, Linear};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use super::config::{Activation, XlNetConfig};
use super::layers::{embedding, layer_norm, linear};
use super::{ClsPosition, TextFeatureModel, TextFeatures, TokenBatch};

/// `XLNetRelativeAttention`, with `transformers`' parameter layouts: `q`, `k`, `v`, `o`, `r`
/// are `[d_model, n_head, d_head]`, the biases `[n_head, d_head]`, `seg_embed`
/// `[2, n_head, d_head]`.
#[derive(Module, Debug)]
pub struct XlNetRelativeAttention {
    pub q: Param<Tensor<3>>,
    pub k: Param<Tensor<3>>,
    pub v: Param<Tensor<3>>,
    pub o: Param<Tensor<3>>,
    pub r: Param<Tensor<3>>,
    pub r_r_bias: Param<Tensor<2>>,
    pub r_s_bias: Param<Tensor<2>>,
    pub r_w_bias: Param<Tensor<2>>,
    pub seg_embed: Param<Tensor<3>>,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
}

/// `[batch, len, d_model] x [d_model, n_head, d_head] -> [batch, n_head, len, d_head]`, the
/// reference's `einsum("ibh,hnd->ibnd")` then heads first.
fn project_heads(x: Tensor<3>, weight: Tensor<3>) -> Tensor<4> {
    let [batch, len, d_model] = x.dims();
    let [_, heads, head_dim] = weight.dims();
    x.reshape([batch * len, d_model])
        .matmul(weight.reshape([d_model, heads * head_dim]))
        .reshape([batch, len, heads, head_dim])
        .swap_dims(1, 2)
}

/// `transformers`' `rel_shift_bnij`: `[b, n, i, 2i] -> [b, n, i, i]` with
/// `out[.., i, j] = x[.., i, len - i + j]`, the score of relative distance `i - j`.
fn rel_shift(x: Tensor<4>, len: usize) -> Tensor<4> {
    let [batch, heads, rows, cols] = x.dims();
    x.reshape([batch, heads, cols, rows])
        .narrow(2, 1, cols - 1)
        .reshape([batch, heads, rows, cols - 1])
        .narrow(3, 0, len)
}

impl XlNetRelativeAttention {
    /// `rel_attn_core` and `post_attention` for the content stream `h`.
    ///
    /// # Shapes
    /// - h: `[batch, len, d_model]`
    /// - pos_emb: `[2 len, d_model]`
    /// - segment_diff: `[batch, 1, len, len]`, 1 where tokens `i`, `j` are in different segments
    /// - mask: `[batch, 1, len, len]`, 1 where `i` may not attend to `j`
    pub fn forward(&self, h: Tensor<3>, pos_emb: Tensor<2>, segment_diff: Tensor<4>, mask: Tensor<4>) -> Tensor<3> {
        let [batch, len, d_model] = h.dims();
        let [heads, head_dim] = self.r_w_bias.val().dims();
        let bias = |p: &Param<Tensor<2>>| p.val().reshape([1, heads, 1, head_dim]);
        let q_head = project_heads(h.clone(), self.q.val());
        let k_head = project_heads(h.clone(), self.k.val());
        let v_head = project_heads(h.clone(), self.v.val());
        let k_head_r = project_heads(pos_emb.unsqueeze_dim::<3>(0), self.r.val());

        // ac = einsum("ibnd,jbnd->bnij", q_head + r_w_bias, k_head_h)
        let ac = (q_head.clone() + bias(&self.r_w_bias)).matmul(k_head.swap_dims(2, 3));
        // bd = rel_shift_bnij(einsum("ibnd,jbnd->bnij", q_head + r_r_bias, k_head_r))
        let bd = rel_shift((q_head.clone() + bias(&self.r_r_bias)).matmul(k_head_r.swap_dims(2, 3)), len);
        // ef = einsum("ijbs,ibns->bnij", seg_mat, einsum("ibnd,snd->ibns", q_head + r_s_bias, seg_embed)),
        // seg_mat being the one-hot of "different segment": pick column 0 or 1 per (i, j).
        let seg_embed = self.seg_embed.val().swap_dims(0, 1).swap_dims(1, 2).unsqueeze_dim::<4>(0);
        let ef_both = (q_head + bias(&self.r_s_bias)).matmul(seg_embed);
        let ef_same = ef_both.clone().narrow(3, 0, 1);
        let ef_diff = ef_both.narrow(3, 1, 1);
        let ef = ef_same * (segment_diff.clone().neg() + 1.0) + ef_diff * segment_diff;

        let scores = (ac + bd + ef) * (1.0 / (head_dim as f64).sqrt()) - mask * 1e30;
        let probs = self.dropout.forward(softmax(scores, 3));
        let attn_vec = probs.matmul(v_head).swap_dims(1, 2).reshape([batch * len, heads * head_dim]);
        // attn_out = einsum("ibnd,hnd->ibh", attn_vec, o)
        let attn_out = attn_vec.matmul(self.o.val().reshape([d_model, heads * head_dim]).transpose());
        let attn_out = self.dropout.forward(attn_out.reshape([batch, len, d_model]));
        self.layer_norm.forward(attn_out + h)
    }
}

/// `XLNetFeedForward`.
#[derive(Module, Debug)]
pub struct XlNetFeedForward {
    pub layer_norm: LayerNorm,
    pub layer_1: Linear,
    pub layer_2: Linear,
    pub dropout: Dropout,
    #[module(skip)]
    pub activation: Activation,
}

impl XlNetFeedForward {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let inner = self.dropout.forward(self.activation.forward(self.layer_1.forward(x.clone())));
        self.layer_norm.forward(self.dropout.forward(self.layer_2.forward(inner)) + x)
    }
}

/// `XLNetLayer`.
#[derive(Module, Debug)]
pub struct XlNetLayer {
    pub rel_attn: XlNetRelativeAttention,
    pub ff: XlNetFeedForward,
}

/// `XLNetModel` without memories or the query stream.
#[derive(Module, Debug)]
pub struct XlNetModel {
    pub word_embedding: Embedding,
    pub layer: Vec<XlNetLayer>,
    pub dropout: Dropout,
    #[module(skip)]
    pub d_model: usize,
    #[module(skip)]
    pub clamp_len: i64,
}

impl XlNetModel {
    pub fn new(config: &XlNetConfig, device: &Device) -> Self {
        let std = config.initializer_range;
        let (d_model, heads, head_dim) = (config.d_model, config.n_head, config.d_head());
        let normal = Initializer::Normal { mean: 0.0, std };
        let dropout = || DropoutConfig::new(config.dropout).init();
        let layer = (0..config.n_layer)
            .map(|_| XlNetLayer {
                rel_attn: XlNetRelativeAttention {
                    q: normal.init([d_model, heads, head_dim], device),
                    k: normal.init([d_model, heads, head_dim], device),
                    v: normal.init([d_model, heads, head_dim], device),
                    o: normal.init([d_model, heads, head_dim], device),
                    r: normal.init([d_model, heads, head_dim], device),
                    r_r_bias: normal.init([heads, head_dim], device),
                    r_s_bias: normal.init([heads, head_dim], device),
                    r_w_bias: normal.init([heads, head_dim], device),
                    seg_embed: normal.init([2, heads, head_dim], device),
                    layer_norm: layer_norm(d_model, config.layer_norm_eps, device),
                    dropout: dropout(),
                },
                ff: XlNetFeedForward {
                    layer_norm: layer_norm(d_model, config.layer_norm_eps, device),
                    layer_1: linear(d_model, config.d_inner, std, device),
                    layer_2: linear(config.d_inner, d_model, std, device),
                    dropout: dropout(),
                    activation: config.ff_activation,
                },
            })
            .collect();
        XlNetModel {
            word_embedding: embedding(config.vocab_size, d_model, std, device),
            layer,
            dropout: dropout(),
            d_model,
            clamp_len: config.clamp_len,
        }
    }

    /// `relative_positional_encoding(len, len)` for `attn_type = "bi"`: sinusoids of the
    /// distances `len, len - 1, ..., -len + 1`, `[2 len, d_model]`, computed in `f32` as the
    /// reference does.
    fn positional_encoding(&self, len: usize, device: &Device) -> Tensor<2> {
        let half = self.d_model / 2;
        let inv_freq: Vec<f32> = (0..half).map(|i| 1.0 / 10000f32.powf((2 * i) as f32 / self.d_model as f32)).collect();
        let mut values = Vec::with_capacity(2 * len * self.d_model);
        for step in 0..2 * len {
            let mut position = len as f32 - step as f32;
            if self.clamp_len > 0 {
                position = position.clamp(-(self.clamp_len as f32), self.clamp_len as f32);
            }
            values.extend(inv_freq.iter().map(|f| (position * f).sin()));
            values.extend(inv_freq.iter().map(|f| (position * f).cos()));
        }
        Tensor::from_data(TensorData::new(values, [2 * len, self.d_model]), device)
    }

    /// The last hidden state, `[batch, seq, d_model]`.
    pub fn last_hidden_state(&self, batch: &TokenBatch) -> Tensor<3> {
        let [size, len] = batch.input_ids.dims();
        let device = batch.input_ids.device();
        // non_tgt_mask: ((1 - attention_mask)[j] - eye[i, j]) > 0; a padding token still sees itself.
        let padding = (batch.attention_mask.clone().float().neg() + 1.0).reshape([size, 1, 1, len]);
        let eye = Tensor::<2>::eye(len, &device).reshape([1, 1, len, len]);
        let mask = (padding - eye).greater_elem(0.0).float();
        // seg_mat: token_type_ids[i] != token_type_ids[j], one-hot over {same, different}.
        let types = batch.token_type_ids.clone();
        let segment_diff = types
            .clone()
            .reshape([size, 1, len, 1])
            .expand([size, 1, len, len])
            .not_equal(types.reshape([size, 1, 1, len]).expand([size, 1, len, len]))
            .float();
        let pos_emb = self.dropout.forward(self.positional_encoding(len, &device));
        let mut h = self.dropout.forward(self.word_embedding.forward(batch.input_ids.clone()));
        for layer in &self.layer {
            h = layer.rel_attn.forward(h, pos_emb.clone(), segment_diff.clone(), mask.clone());
            h = layer.ff.forward(h);
        }
        self.dropout.forward(h)
    }
}

/// `SequenceSummary` with `summary_type = "last"`: last token, projection, tanh, dropout.
#[derive(Module, Debug)]
pub struct XlNetSequenceSummary {
    pub summary: Linear,
    pub first_dropout: Dropout,
    pub last_dropout: Dropout,
    /// `summary_activation = "tanh"` (else the identity).
    #[module(skip)]
    pub tanh: bool,
}

/// `XLNetForSequenceClassification`; with [`TextFeatures::Cls`] or [`TextFeatures::Mean`] that
/// representation (after the summary's last dropout) takes the summary's place.
#[derive(Module, Debug)]
pub struct XlNetClassifier {
    pub transformer: XlNetModel,
    pub sequence_summary: XlNetSequenceSummary,
    pub logits_proj: Linear,
    /// What `logits_proj` reads.
    #[module(skip)]
    pub features: TextFeatures,
}

impl XlNetClassifier {
    /// `config.summary_use_proj = false` or `summary_proj_to_labels = true` are not supported
    /// (`XLNetForSequenceClassification` needs a `d_model`-wide summary for `logits_proj`).
    pub fn new(config: &XlNetConfig, num_classes: usize, device: &Device) -> Self {
        let std = config.initializer_range;
        let d_model = config.d_model;
        XlNetClassifier {
            transformer: XlNetModel::new(config, device),
            sequence_summary: XlNetSequenceSummary {
                summary: linear(d_model, d_model, std, device),
                first_dropout: DropoutConfig::new(config.summary_first_dropout).init(),
                last_dropout: DropoutConfig::new(config.summary_last_dropout).init(),
                tanh: config.summary_activation.as_deref() == Some("tanh"),
            },
            logits_proj: linear(d_model, num_classes, std, device),
            features: TextFeatures::Pooler,
        }
    }
}

impl TextFeatureModel for XlNetClassifier {
    fn forward_features(&self, batch: &TokenBatch) -> Tensor<2> {
        let hidden = self.transformer.last_hidden_state(batch);
        let summary = &self.sequence_summary;
        if let Some(features) = self.features.from_hidden(hidden.clone(), &batch.attention_mask, ClsPosition::Last) {
            return summary.last_dropout.forward(features);
        }
        let [size, len, width] = hidden.dims();
        let last = hidden.narrow(1, len - 1, 1).reshape([size, width]);
        let projected = summary.summary.forward(summary.first_dropout.forward(last));
        summary.last_dropout.forward(if summary.tanh { projected.tanh() } else { projected })
    }

    fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        self.logits_proj.forward(features)
    }

    fn feat_dim(&self) -> usize {
        self.logits_proj.weight.lazy_shape()[0]
    }

    fn last_hidden_state(&self, batch: &TokenBatch) -> Tensor<3> {
        self.transformer.last_hidden_state(batch)
    }
}
