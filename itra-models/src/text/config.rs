//! `config.json` of a Hugging Face checkpoint, as `transformers`' `BertConfig`,
//! `DistilBertConfig` and `XLNetConfig` read it (same field names and defaults).

use std::path::Path;

use serde::Deserialize;

use super::TextError;

/// The families this crate implements, `config.json`'s `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    Bert,
    DistilBert,
    XlNet,
}

impl ModelType {
    pub fn name(self) -> &'static str {
        match self {
            ModelType::Bert => "bert",
            ModelType::DistilBert => "distilbert",
            ModelType::XlNet => "xlnet",
        }
    }
}

/// A hidden activation, `transformers`' `ACT2FN` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Activation {
    /// Exact GELU, `x * Phi(x)` with `erf`.
    #[serde(rename = "gelu")]
    Gelu,
    /// GELU's tanh approximation.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
    #[serde(rename = "relu")]
    Relu,
    #[serde(rename = "silu", alias = "swish")]
    Silu,
}

impl Activation {
    pub fn forward<const D: usize>(self, x: burn::tensor::Tensor<D>) -> burn::tensor::Tensor<D> {
        use burn::tensor::activation;
        match self {
            Activation::Gelu => activation::gelu(x),
            Activation::GeluTanh => activation::gelu_approximate(x),
            Activation::Relu => activation::relu(x),
            Activation::Silu => activation::silu(x),
        }
    }
}

fn default_init_range() -> f64 {
    0.02
}
fn default_ln_eps() -> f64 {
    1e-12
}
fn default_dropout() -> f64 {
    0.1
}
fn default_gelu() -> Activation {
    Activation::Gelu
}

/// `transformers.BertConfig` (also all-MiniLM-L6-v2 and other BERT-architecture checkpoints).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_gelu")]
    pub hidden_act: Activation,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    #[serde(default = "default_ln_eps")]
    pub layer_norm_eps: f64,
    /// Dropout before the classifier; `hidden_dropout_prob` when absent or null.
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    /// Only `absolute` is implemented.
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
}

fn two() -> usize {
    2
}
fn absolute() -> String {
    "absolute".to_owned()
}

/// `transformers.DistilBertConfig`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DistilBertConfig {
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    /// Position embeddings fixed to sinusoids; they are still stored in the checkpoint.
    #[serde(default)]
    pub sinusoidal_pos_embds: bool,
    pub n_layers: usize,
    pub n_heads: usize,
    pub dim: usize,
    pub hidden_dim: usize,
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    #[serde(default = "default_dropout")]
    pub attention_dropout: f64,
    #[serde(default = "default_gelu")]
    pub activation: Activation,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    #[serde(default = "seq_classif_dropout")]
    pub seq_classif_dropout: f64,
}

fn seq_classif_dropout() -> f64 {
    0.2
}

/// `transformers.XLNetConfig`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct XlNetConfig {
    pub vocab_size: usize,
    pub d_model: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub d_inner: usize,
    #[serde(default = "default_gelu")]
    pub ff_activation: Activation,
    /// `bi` (bidirectional, the only one sequence classification uses) or `uni`.
    #[serde(default = "bi")]
    pub attn_type: String,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    #[serde(default = "default_ln_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    #[serde(default)]
    pub bi_data: bool,
    /// Relative distances are clamped to this; `-1` (or any value <= 0) means no clamping.
    #[serde(default = "minus_one")]
    pub clamp_len: i64,
    #[serde(default = "last")]
    pub summary_type: String,
    #[serde(default = "yes")]
    pub summary_use_proj: bool,
    #[serde(default = "tanh")]
    pub summary_activation: Option<String>,
    #[serde(default)]
    pub summary_proj_to_labels: bool,
    #[serde(default)]
    pub summary_first_dropout: f64,
    #[serde(default = "default_dropout")]
    pub summary_last_dropout: f64,
}

fn bi() -> String {
    "bi".to_owned()
}
fn last() -> String {
    "last".to_owned()
}
fn minus_one() -> i64 {
    -1
}
fn yes() -> bool {
    true
}
fn tanh() -> Option<String> {
    Some("tanh".to_owned())
}

impl XlNetConfig {
    /// Width of one attention head, `d_model / n_head` (XLNet's `d_head`).
    pub fn d_head(&self) -> usize {
        self.d_model / self.n_head
    }
}

/// A parsed `config.json` of one of the supported families.
#[derive(Debug, Clone, PartialEq)]
pub enum TextConfig {
    Bert(BertConfig),
    DistilBert(DistilBertConfig),
    XlNet(XlNetConfig),
}

#[derive(Deserialize)]
struct ModelTypeOnly {
    model_type: Option<String>,
}

impl TextConfig {
    /// Parses `config.json` text; `path` only names the source in errors.
    pub fn parse(json: &str, path: &Path) -> Result<Self, TextError> {
        let invalid = |e: serde_json::Error| TextError::Config { path: path.to_owned(), message: e.to_string() };
        let header: ModelTypeOnly = serde_json::from_str(json).map_err(invalid)?;
        let model_type = header
            .model_type
            .ok_or_else(|| TextError::Config { path: path.to_owned(), message: "no `model_type` field".to_owned() })?;
        let unsupported = |message: String| TextError::Unsupported { path: path.to_owned(), message };
        let config = match model_type.as_str() {
            "bert" => {
                let c: BertConfig = serde_json::from_str(json).map_err(invalid)?;
                if c.position_embedding_type != "absolute" {
                    return Err(unsupported(format!(
                        "position_embedding_type `{}` (only `absolute` is implemented)",
                        c.position_embedding_type
                    )));
                }
                TextConfig::Bert(c)
            }
            "distilbert" => TextConfig::DistilBert(serde_json::from_str(json).map_err(invalid)?),
            "xlnet" => {
                let c: XlNetConfig = serde_json::from_str(json).map_err(invalid)?;
                if c.attn_type != "bi" || c.bi_data {
                    return Err(unsupported(format!(
                        "attn_type `{}` with bi_data {} (only `bi` without bi_data is implemented)",
                        c.attn_type, c.bi_data
                    )));
                }
                if c.summary_type != "last" {
                    return Err(unsupported(format!("summary_type `{}` (only `last` is implemented)", c.summary_type)));
                }
                if !c.summary_use_proj || c.summary_proj_to_labels {
                    return Err(unsupported(
                        "sequence summary without a d_model-wide projection (summary_use_proj false or \
                         summary_proj_to_labels true)"
                            .to_owned(),
                    ));
                }
                if !matches!(c.summary_activation.as_deref(), None | Some("tanh")) {
                    return Err(unsupported(format!("summary_activation {:?}", c.summary_activation)));
                }
                if !c.d_model.is_multiple_of(c.n_head) {
                    return Err(unsupported(format!("d_model {} not divisible by n_head {}", c.d_model, c.n_head)));
                }
                TextConfig::XlNet(c)
            }
            other => {
                return Err(TextError::UnsupportedModelType { path: path.to_owned(), model_type: other.to_owned() });
            }
        };
        Ok(config)
    }

    /// Reads and parses a `config.json` file.
    pub fn load(path: &Path) -> Result<Self, TextError> {
        let json = std::fs::read_to_string(path).map_err(|source| TextError::Io { path: path.to_owned(), source })?;
        TextConfig::parse(&json, path)
    }

    pub fn model_type(&self) -> ModelType {
        match self {
            TextConfig::Bert(_) => ModelType::Bert,
            TextConfig::DistilBert(_) => ModelType::DistilBert,
            TextConfig::XlNet(_) => ModelType::XlNet,
        }
    }

    /// Width of the last hidden state.
    pub fn hidden_size(&self) -> usize {
        match self {
            TextConfig::Bert(c) => c.hidden_size,
            TextConfig::DistilBert(c) => c.dim,
            TextConfig::XlNet(c) => c.d_model,
        }
    }
}
