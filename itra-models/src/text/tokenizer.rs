//! A checkpoint's `tokenizer.json`, run by the `tokenizers` crate, with truncation and padding
//! chosen by the caller rather than the file (which often fixes them, e.g. all-MiniLM-L6-v2's
//! pads every batch to 128 tokens).
//!
//! Batches are padded dynamically to their longest sequence. BERT and DistilBERT pad on the
//! right with token type 0; XLNet pads on the **left** with token type 3 (`XLNetTokenizer`'s
//! `padding_side` and `pad_token_type_id`), so its last position is always the real `<cls>`
//! token its classifier reads.

use std::path::{Path, PathBuf};

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::config::ModelType;
use super::{TextError, TokenIds};

/// Where padding goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaddingSide {
    Left,
    Right,
}

impl PaddingSide {
    /// `transformers`' choice for the family.
    pub fn of(model_type: ModelType) -> Self {
        match model_type {
            ModelType::XlNet => PaddingSide::Left,
            ModelType::Bert | ModelType::DistilBert => PaddingSide::Right,
        }
    }
}

/// A Hugging Face fast tokenizer with the family's padding conventions.
pub struct TextTokenizer {
    tokenizer: Tokenizer,
    path: PathBuf,
    pad_id: u32,
    pad_type_id: u32,
    side: PaddingSide,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer").field("path", &self.path).field("side", &self.side).finish_non_exhaustive()
    }
}

impl TextTokenizer {
    /// Reads `tokenizer.json` for a model of `model_type`.
    pub fn from_file(path: &Path, model_type: ModelType) -> Result<Self, TextError> {
        let error = |message: String| TextError::Tokenizer { path: path.to_owned(), message };
        if !path.is_file() {
            return Err(error("file not found".to_owned()));
        }
        let tokenizer = Tokenizer::from_file(path).map_err(|e| error(e.to_string()))?;
        let (default_token, pad_type_id) = match model_type {
            ModelType::XlNet => ("<pad>", 3),
            ModelType::Bert | ModelType::DistilBert => ("[PAD]", 0),
        };
        // The file's own padding settings name the pad token when present.
        let pad_token = tokenizer.get_padding().map_or(default_token.to_owned(), |p| p.pad_token.clone());
        let pad_id = tokenizer
            .token_to_id(&pad_token)
            .ok_or_else(|| error(format!("the vocabulary has no padding token `{pad_token}`")))?;
        Ok(TextTokenizer { tokenizer, path: path.to_owned(), pad_id, pad_type_id, side: PaddingSide::of(model_type) })
    }

    /// `dir/tokenizer.json`.
    pub fn from_dir(dir: &Path, model_type: ModelType) -> Result<Self, TextError> {
        TextTokenizer::from_file(&dir.join("tokenizer.json"), model_type)
    }

    pub fn padding_side(&self) -> PaddingSide {
        self.side
    }

    /// Tokenises `texts` with special tokens, truncating each to `max_len` tokens and padding
    /// to the longest of the batch (`tokenizer(texts, truncation=True, max_length=max_len,
    /// padding=True)`).
    pub fn encode(&self, texts: &[&str], max_len: usize) -> Result<TokenIds, TextError> {
        let sequences = self.tokenize(texts, max_len)?;
        Ok(self.pad(&sequences.iter().collect::<Vec<_>>()))
    }

    /// Tokenises `texts` with special tokens, each truncated to `max_len` tokens, unpadded
    /// (to tokenise a dataset once and [`pad`](TextTokenizer::pad) each batch).
    pub fn tokenize(&self, texts: &[&str], max_len: usize) -> Result<Vec<TokenSequence>, TextError> {
        let error = |message: String| TextError::Tokenizer { path: self.path.clone(), message };
        let mut tokenizer = self.tokenizer.clone();
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| error(e.to_string()))?;
        tokenizer.with_padding(None);
        let encodings = tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| error(e.to_string()))?;
        Ok(encodings
            .iter()
            .map(|e| TokenSequence { ids: e.get_ids().to_vec(), type_ids: e.get_type_ids().to_vec() })
            .collect())
    }

    /// Pads `sequences` to the longest one, on the family's side, with its padding token and
    /// token type.
    pub fn pad(&self, sequences: &[&TokenSequence]) -> TokenIds {
        let seq_len = sequences.iter().map(|s| s.ids.len()).max().unwrap_or(0);
        let mut ids = TokenIds {
            batch: sequences.len(),
            seq_len,
            input_ids: Vec::with_capacity(sequences.len() * seq_len),
            attention_mask: Vec::with_capacity(sequences.len() * seq_len),
            token_type_ids: Vec::with_capacity(sequences.len() * seq_len),
        };
        for sequence in sequences {
            let padding = seq_len - sequence.ids.len();
            let pad = |ids: &mut TokenIds| {
                ids.input_ids.extend(std::iter::repeat_n(i64::from(self.pad_id), padding));
                ids.attention_mask.extend(std::iter::repeat_n(0, padding));
                ids.token_type_ids.extend(std::iter::repeat_n(i64::from(self.pad_type_id), padding));
            };
            if self.side == PaddingSide::Left {
                pad(&mut ids);
            }
            ids.input_ids.extend(sequence.ids.iter().map(|&t| i64::from(t)));
            ids.attention_mask.extend(std::iter::repeat_n(1, sequence.ids.len()));
            ids.token_type_ids.extend(sequence.type_ids.iter().map(|&t| i64::from(t)));
            if self.side == PaddingSide::Right {
                pad(&mut ids);
            }
        }
        ids
    }
}

/// One tokenised text, special tokens included, unpadded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSequence {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}
