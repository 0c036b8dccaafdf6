//! BERT (`transformers.models.bert.modeling_bert`): post-LN encoder, absolute position and
//! token-type embeddings, pooler, and `BertForSequenceClassification`'s head.
//!
//! Field names are `transformers`' (`attention.self` is `attention.self_attn`, `LayerNorm` is
//! `layer_norm`; [`super::weights`] renames them on load).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm, Linear};
use burn::tensor::{Device, Int, Tensor};

use super::config::{Activation, BertConfig};
use super::layers::{embedding, key_padding_bias, layer_norm, linear, merge_heads, scaled_dot_product, split_heads};
use super::{ClsPosition, TextFeatureModel, TextFeatures, TokenBatch};

/// `BertEmbeddings`: word + absolute position + token type, LayerNorm, dropout.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
}

impl BertEmbeddings {
    /// # Shapes
    /// `[batch, seq] -> [batch, seq, hidden]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, token_type_ids: Tensor<2, Int>) -> Tensor<3> {
        let [batch, seq] = input_ids.dims();
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &input_ids.device()).reshape([1, seq]);
        let positions = self.position_embeddings.forward(positions).repeat_dim(0, batch);
        let x =
            self.word_embeddings.forward(input_ids) + self.token_type_embeddings.forward(token_type_ids) + positions;
        self.dropout.forward(self.layer_norm.forward(x))
    }
}

/// `BertSelfAttention`.
#[derive(Module, Debug)]
pub struct BertSelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub dropout: Dropout,
    #[module(skip)]
    pub heads: usize,
}

/// `BertSelfOutput` and `BertOutput`: dense, dropout, residual, LayerNorm.
#[derive(Module, Debug)]
pub struct BertResidualOutput {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
}

impl BertResidualOutput {
    pub fn forward(&self, hidden: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        self.layer_norm.forward(self.dropout.forward(self.dense.forward(hidden)) + residual)
    }
}

/// `BertAttention`: self-attention and its output block.
#[derive(Module, Debug)]
pub struct BertAttention {
    pub self_attn: BertSelfAttention,
    pub output: BertResidualOutput,
}

/// `BertIntermediate`: dense and the hidden activation.
#[derive(Module, Debug)]
pub struct BertIntermediate {
    pub dense: Linear,
    #[module(skip)]
    pub activation: Activation,
}

/// `BertLayer`.
#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: BertAttention,
    pub intermediate: BertIntermediate,
    pub output: BertResidualOutput,
}

impl BertLayer {
    /// # Shapes
    /// - hidden: `[batch, seq, hidden]`
    /// - bias: `[batch, 1, 1, seq]`, see `key_padding_bias`
    pub fn forward(&self, hidden: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let attn = &self.attention.self_attn;
        let q = split_heads(attn.query.forward(hidden.clone()), attn.heads);
        let k = split_heads(attn.key.forward(hidden.clone()), attn.heads);
        let v = split_heads(attn.value.forward(hidden.clone()), attn.heads);
        let context = merge_heads(scaled_dot_product(q, k, v, bias, &attn.dropout));
        let attended = self.attention.output.forward(context, hidden);
        let inner = self.intermediate.activation.forward(self.intermediate.dense.forward(attended.clone()));
        self.output.forward(inner, attended)
    }
}

/// `BertEncoder`.
#[derive(Module, Debug)]
pub struct BertEncoder {
    pub layer: Vec<BertLayer>,
}

/// `BertPooler`: dense + tanh on the first token.
#[derive(Module, Debug)]
pub struct BertPooler {
    pub dense: Linear,
}

/// `BertModel` with its pooler.
#[derive(Module, Debug)]
pub struct BertModel {
    pub embeddings: BertEmbeddings,
    pub encoder: BertEncoder,
    pub pooler: BertPooler,
}

impl BertModel {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        let std = config.initializer_range;
        let hidden = config.hidden_size;
        let eps = config.layer_norm_eps;
        let dropout = || DropoutConfig::new(config.hidden_dropout_prob).init();
        let residual = |d_input| BertResidualOutput {
            dense: linear(d_input, hidden, std, device),
            layer_norm: layer_norm(hidden, eps, device),
            dropout: dropout(),
        };
        let layer = (0..config.num_hidden_layers)
            .map(|_| BertLayer {
                attention: BertAttention {
                    self_attn: BertSelfAttention {
                        query: linear(hidden, hidden, std, device),
                        key: linear(hidden, hidden, std, device),
                        value: linear(hidden, hidden, std, device),
                        dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
                        heads: config.num_attention_heads,
                    },
                    output: residual(hidden),
                },
                intermediate: BertIntermediate {
                    dense: linear(hidden, config.intermediate_size, std, device),
                    activation: config.hidden_act,
                },
                output: residual(config.intermediate_size),
            })
            .collect();
        BertModel {
            embeddings: BertEmbeddings {
                word_embeddings: embedding(config.vocab_size, hidden, std, device),
                position_embeddings: embedding(config.max_position_embeddings, hidden, std, device),
                token_type_embeddings: embedding(config.type_vocab_size, hidden, std, device),
                layer_norm: layer_norm(hidden, eps, device),
                dropout: dropout(),
            },
            encoder: BertEncoder { layer },
            pooler: BertPooler { dense: linear(hidden, hidden, std, device) },
        }
    }

    /// The last hidden state, `[batch, seq, hidden]`.
    pub fn last_hidden_state(&self, batch: &TokenBatch) -> Tensor<3> {
        let bias = key_padding_bias(&batch.attention_mask);
        let mut hidden = self.embeddings.forward(batch.input_ids.clone(), batch.token_type_ids.clone());
        for layer in &self.encoder.layer {
            hidden = layer.forward(hidden, bias.clone());
        }
        hidden
    }

    /// The pooled output, `tanh(dense(hidden[:, 0]))`, `[batch, hidden]`.
    pub fn pool(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [batch, _, width] = hidden.dims();
        let first = hidden.narrow(1, 0, 1).reshape([batch, width]);
        self.pooler.dense.forward(first).tanh()
    }
}

/// `BertForSequenceClassification`: pooler, dropout, `classifier`; with [`TextFeatures::Cls`]
/// or [`TextFeatures::Mean`] that representation takes the pooler's place.
#[derive(Module, Debug)]
pub struct BertClassifier {
    pub bert: BertModel,
    pub dropout: Dropout,
    pub classifier: Linear,
    /// What `classifier` reads.
    #[module(skip)]
    pub features: TextFeatures,
}

impl BertClassifier {
    pub fn new(config: &BertConfig, num_classes: usize, device: &Device) -> Self {
        BertClassifier {
            bert: BertModel::new(config, device),
            dropout: DropoutConfig::new(config.classifier_dropout.unwrap_or(config.hidden_dropout_prob)).init(),
            classifier: linear(config.hidden_size, num_classes, config.initializer_range, device),
            features: TextFeatures::Pooler,
        }
    }
}

impl TextFeatureModel for BertClassifier {
    fn forward_features(&self, batch: &TokenBatch) -> Tensor<2> {
        let hidden = self.bert.last_hidden_state(batch);
        let features = match self.features.from_hidden(hidden.clone(), &batch.attention_mask, ClsPosition::First) {
            Some(features) => features,
            None => self.bert.pool(hidden),
        };
        self.dropout.forward(features)
    }

    fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        self.classifier.forward(features)
    }

    fn feat_dim(&self) -> usize {
        self.classifier.weight.lazy_shape()[0]
    }

    fn last_hidden_state(&self, batch: &TokenBatch) -> Tensor<3> {
        self.bert.last_hidden_state(batch)
    }
}
