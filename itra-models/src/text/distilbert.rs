//! DistilBERT (`transformers.models.distilbert.modeling_distilbert`): BERT without token types
//! or pooler, with its own parameter names, and `DistilBertForSequenceClassification`'s head.
//!
//! Field names are `transformers`' (the embeddings' `LayerNorm` is `layer_norm`; renamed on
//! load by [`super::weights`]).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm, Linear};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor};

use super::config::{Activation, DistilBertConfig};
use super::layers::{embedding, key_padding_bias, layer_norm, linear, merge_heads, scaled_dot_product, split_heads};
use super::{ClsPosition, TextFeatureModel, TextFeatures, TokenBatch};

/// DistilBERT's fixed LayerNorm epsilon (not in its config).
const LAYER_NORM_EPS: f64 = 1e-12;

/// `Embeddings`: word + position, LayerNorm, dropout.
#[derive(Module, Debug)]
pub struct DistilBertEmbeddings {
    pub word_embeddings: Embedding,
    /// Learned, or sinusoids frozen at initialisation (`sinusoidal_pos_embds`); either way the
    /// checkpoint stores them.
    pub position_embeddings: Embedding,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
}

impl DistilBertEmbeddings {
    pub fn forward(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        let [batch, seq] = input_ids.dims();
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &input_ids.device()).reshape([1, seq]);
        let positions = self.position_embeddings.forward(positions).repeat_dim(0, batch);
        self.dropout.forward(self.layer_norm.forward(self.word_embeddings.forward(input_ids) + positions))
    }
}

/// `MultiHeadSelfAttention`.
#[derive(Module, Debug)]
pub struct DistilBertAttention {
    pub q_lin: Linear,
    pub k_lin: Linear,
    pub v_lin: Linear,
    pub out_lin: Linear,
    pub dropout: Dropout,
    #[module(skip)]
    pub heads: usize,
}

/// `FFN`: `lin2(act(lin1(x)))` then dropout.
#[derive(Module, Debug)]
pub struct DistilBertFfn {
    pub lin1: Linear,
    pub lin2: Linear,
    pub dropout: Dropout,
    #[module(skip)]
    pub activation: Activation,
}

/// `TransformerBlock` (post-LN).
#[derive(Module, Debug)]
pub struct DistilBertBlock {
    pub attention: DistilBertAttention,
    pub sa_layer_norm: LayerNorm,
    pub ffn: DistilBertFfn,
    pub output_layer_norm: LayerNorm,
}

impl DistilBertBlock {
    pub fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let attn = &self.attention;
        let q = split_heads(attn.q_lin.forward(x.clone()), attn.heads);
        let k = split_heads(attn.k_lin.forward(x.clone()), attn.heads);
        let v = split_heads(attn.v_lin.forward(x.clone()), attn.heads);
        let context = attn.out_lin.forward(merge_heads(scaled_dot_product(q, k, v, bias, &attn.dropout)));
        let sa = self.sa_layer_norm.forward(context + x);
        let ffn = &self.ffn;
        let out = ffn.dropout.forward(ffn.lin2.forward(ffn.activation.forward(ffn.lin1.forward(sa.clone()))));
        self.output_layer_norm.forward(out + sa)
    }
}

/// `Transformer`.
#[derive(Module, Debug)]
pub struct DistilBertTransformer {
    pub layer: Vec<DistilBertBlock>,
}

/// `DistilBertModel`.
#[derive(Module, Debug)]
pub struct DistilBertModel {
    pub embeddings: DistilBertEmbeddings,
    pub transformer: DistilBertTransformer,
}

impl DistilBertModel {
    pub fn new(config: &DistilBertConfig, device: &Device) -> Self {
        let std = config.initializer_range;
        let dim = config.dim;
        let dropout = || DropoutConfig::new(config.dropout).init();
        let layer = (0..config.n_layers)
            .map(|_| DistilBertBlock {
                attention: DistilBertAttention {
                    q_lin: linear(dim, dim, std, device),
                    k_lin: linear(dim, dim, std, device),
                    v_lin: linear(dim, dim, std, device),
                    out_lin: linear(dim, dim, std, device),
                    dropout: DropoutConfig::new(config.attention_dropout).init(),
                    heads: config.n_heads,
                },
                sa_layer_norm: layer_norm(dim, LAYER_NORM_EPS, device),
                ffn: DistilBertFfn {
                    lin1: linear(dim, config.hidden_dim, std, device),
                    lin2: linear(config.hidden_dim, dim, std, device),
                    dropout: dropout(),
                    activation: config.activation,
                },
                output_layer_norm: layer_norm(dim, LAYER_NORM_EPS, device),
            })
            .collect();
        DistilBertModel {
            embeddings: DistilBertEmbeddings {
                word_embeddings: embedding(config.vocab_size, dim, std, device),
                position_embeddings: embedding(config.max_position_embeddings, dim, std, device),
                layer_norm: layer_norm(dim, LAYER_NORM_EPS, device),
                dropout: dropout(),
            },
            transformer: DistilBertTransformer { layer },
        }
    }

    /// The last hidden state, `[batch, seq, dim]`. Token types are ignored.
    pub fn last_hidden_state(&self, batch: &TokenBatch) -> Tensor<3> {
        let bias = key_padding_bias(&batch.attention_mask);
        let mut hidden = self.embeddings.forward(batch.input_ids.clone());
        for layer in &self.transformer.layer {
            hidden = layer.forward(hidden, bias.clone());
        }
        hidden
    }
}

/// `DistilBertForSequenceClassification`: first token, `pre_classifier`, ReLU, dropout,
/// `classifier`; with [`TextFeatures::Cls`] or [`TextFeatures::Mean`] that representation
/// takes the place of `relu(pre_classifier(..))`.
#[derive(Module, Debug)]
pub struct DistilBertClassifier {
    pub distilbert: DistilBertModel,
    pub pre_classifier: Linear,
    pub dropout: Dropout,
    pub classifier: Linear,
    /// What `classifier` reads.
    #[module(skip)]
    pub features: TextFeatures,
}

impl DistilBertClassifier {
    pub fn new(config: &DistilBertConfig, num_classes: usize, device: &Device) -> Self {
        let std = config.initializer_range;
        DistilBertClassifier {
            distilbert: DistilBertModel::new(config, device),
            pre_classifier: linear(config.dim, config.dim, std, device),
            dropout: DropoutConfig::new(config.seq_classif_dropout).init(),
            classifier: linear(config.dim, num_classes, std, device),
            features: TextFeatures::Pooler,
        }
    }
}

impl TextFeatureModel for DistilBertClassifier {
    fn forward_features(&self, batch: &TokenBatch) -> Tensor<2> {
        let hidden = self.distilbert.last_hidden_state(batch);
        if let Some(features) = self.features.from_hidden(hidden.clone(), &batch.attention_mask, ClsPosition::First) {
            return self.dropout.forward(features);
        }
        let [size, _, width] = hidden.dims();
        let first = hidden.narrow(1, 0, 1).reshape([size, width]);
        self.dropout.forward(relu(self.pre_classifier.forward(first)))
    }

    fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        self.classifier.forward(features)
    }

    fn feat_dim(&self) -> usize {
        self.classifier.weight.lazy_shape()[0]
    }

    fn last_hidden_state(&self, batch: &TokenBatch) -> Tensor<3> {
        self.distilbert.last_hidden_state(batch)
    }
}
