//! Loading `transformers` checkpoints (`model.safetensors`, unchanged) into the text models.
//!
//! The modules carry `transformers`' names, so four mechanical differences remain:
//! - names Rust cannot or should not spell: `attention.self` is `attention.self_attn`,
//!   `LayerNorm` is `layer_norm` (old checkpoints' `LayerNorm.gamma`/`beta` too);
//! - the base-model prefix (`bert.`, `distilbert.`, `transformer.`) is absent from checkpoints
//!   saved from a bare `BertModel` (all-MiniLM-L6-v2) or `DistilBertModel`, and is added;
//! - Burn stores linear weights `[in, out]` and layer-norm parameters as `gamma`/`beta`
//!   (`PyTorchToBurnAdapter` transposes and renames);
//! - Burn puts the [`TextModel`](super::TextModel) variant in paths (skipped).
//!
//! Tensors of the checkpoint the model has no use for (pre-training heads, `position_ids`,
//! XLNet's `mask_emb`) are ignored, as `transformers` does. A tensor the encoder needs that is
//! missing or mis-shaped is an error naming the key; the classification head (and BERT's
//! pooler) may be missing and then keeps its fresh initialisation.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use burn::store::{ApplyError, KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};

use super::TextError;
use super::config::ModelType;

/// `(pattern, replacement)` pairs applied in order to every checkpoint key.
fn remappings(model_type: ModelType) -> &'static [(&'static str, &'static str)] {
    match model_type {
        ModelType::Bert => &[
            (r"^(embeddings|encoder|pooler)\.", "bert.${1}."),
            (r"\.attention\.self\.", ".attention.self_attn."),
            (r"\.LayerNorm\.gamma$", ".layer_norm.weight"),
            (r"\.LayerNorm\.beta$", ".layer_norm.bias"),
            (r"\.LayerNorm\.", ".layer_norm."),
        ],
        ModelType::DistilBert => {
            &[(r"^(embeddings|transformer)\.", "distilbert.${1}."), (r"\.LayerNorm\.", ".layer_norm.")]
        }
        ModelType::XlNet => &[(r"^(word_embedding|layer|mask_emb)([.]|$)", "transformer.${1}${2}")],
    }
}

/// Module paths (after remapping) that may be absent: the classification head, initialised
/// fresh as `transformers` does for a new head.
fn optional_prefixes(model_type: ModelType) -> &'static [&'static str] {
    match model_type {
        ModelType::Bert => &["bert.pooler.", "classifier."],
        ModelType::DistilBert => &["pre_classifier.", "classifier."],
        ModelType::XlNet => &["sequence_summary.", "logits_proj."],
    }
}

/// A tensor's entry in a safetensors header.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct HeaderEntry {
    pub dtype: String,
    pub shape: Vec<usize>,
}

/// The tensor names and shapes of a safetensors file, read from its header only.
pub fn read_header(path: &Path) -> Result<HashMap<String, HeaderEntry>, TextError> {
    let io = |source| TextError::Io { path: path.to_owned(), source };
    let header_error = |message: String| TextError::Header { path: path.to_owned(), message };
    let mut file = File::open(path).map_err(io)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(io)?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        return Err(header_error(format!("header length {len} is implausible")));
    }
    let mut json = vec![0u8; len as usize];
    file.read_exact(&mut json).map_err(io)?;
    let mut entries: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&json).map_err(|e| header_error(e.to_string()))?;
    entries.remove("__metadata__");
    entries
        .into_iter()
        .map(|(name, value)| {
            let entry = serde_json::from_value(value).map_err(|e| header_error(format!("tensor `{name}`: {e}")))?;
            Ok((name, entry))
        })
        .collect()
}

/// Loads `path` into `model` (any module of the `model_type` family laid out as
/// [`TextModel`](super::TextModel) or a bare classifier).
pub fn load_checkpoint<M: ModuleSnapshot>(model: &mut M, model_type: ModelType, path: &Path) -> Result<(), TextError> {
    let header = read_header(path)?;
    let remapper = KeyRemapper::from_patterns(remappings(model_type).to_vec()).expect("valid remapping patterns");
    // Module path -> checkpoint key, to name the file's own keys in errors.
    let pairs = remapper.to_regex_pairs();
    let original: HashMap<String, String> = header
        .keys()
        .map(|key| {
            let mut mapped = key.clone();
            for (pattern, replacement) in &pairs {
                mapped = pattern.replace_all(&mapped, replacement.as_str()).into_owned();
            }
            (mapped, key.clone())
        })
        .collect();

    let mut store = SafetensorsStore::from_file(path)
        .remap(remapper)
        .with_from_adapter(PyTorchToBurnAdapter)
        .skip_enum_variants(true)
        .allow_partial(true)
        .validate(false);
    let result = model.load_from(&mut store).map_err(|source| TextError::Store { path: path.to_owned(), source })?;

    let key_of = |param: &str| original.get(param).cloned().unwrap_or_else(|| param.to_owned());
    if let Some(error) = result.errors.first() {
        return Err(match error {
            ApplyError::ShapeMismatch { path: param, expected, found } => {
                let key = key_of(param);
                let file_shape = header.get(&key).map(|e| e.shape.clone()).unwrap_or_else(|| found.to_vec());
                let mut expected = expected.to_vec();
                // The adapter transposed a linear weight: state the model's shape in the file's layout.
                if file_shape.len() == 2 && found.to_vec() != file_shape {
                    expected.reverse();
                }
                TextError::ShapeMismatch { path: path.to_owned(), key, expected, found: file_shape }
            }
            ApplyError::DTypeMismatch { path: param, expected, found } => TextError::Tensor {
                path: path.to_owned(),
                key: key_of(param),
                message: format!("dtype {found:?}, expected {expected:?}"),
            },
            ApplyError::AdapterError { path: param, message } | ApplyError::LoadError { path: param, message } => {
                TextError::Tensor { path: path.to_owned(), key: key_of(param), message: message.clone() }
            }
        });
    }
    let optional = optional_prefixes(model_type);
    if let Some((param, _)) = result.missing.iter().find(|(param, _)| {
        let param = strip_variant(param);
        !optional.iter().any(|prefix| param.starts_with(prefix))
    }) {
        let param = strip_variant(param).to_owned();
        return Err(TextError::MissingTensor { path: path.to_owned(), key: checkpoint_key(model_type, &param), param });
    }
    Ok(())
}

/// Drops a leading [`TextModel`](super::TextModel) variant (`Bert.`, `DistilBert.`, `XlNet.`).
fn strip_variant(param: &str) -> &str {
    for variant in ["Bert.", "DistilBert.", "XlNet."] {
        if let Some(rest) = param.strip_prefix(variant) {
            return rest;
        }
    }
    param
}

/// The name `transformers` gives module parameter `param` (with the base-model prefix).
fn checkpoint_key(model_type: ModelType, param: &str) -> String {
    let mut key = param.replace(".self_attn.", ".self.");
    if matches!(model_type, ModelType::Bert | ModelType::DistilBert) {
        key = key.replace("embeddings.layer_norm.", "embeddings.LayerNorm.");
    }
    if model_type == ModelType::Bert {
        key = key.replace(".layer_norm.", ".LayerNorm.");
    }
    for (burn, torch) in [(".gamma", ".weight"), (".beta", ".bias")] {
        if let Some(stem) = key.strip_suffix(burn) {
            key = format!("{stem}{torch}");
        }
    }
    key
}
