//! `itra train` and every run of `itra reproduce`: one [`ExperimentConfig`], validated once and
//! dispatched on its parsed [`ModelConfig`] to the vision loop ([`crate::vision_train`]) or the
//! text loop ([`crate::text_train`]). Both write the same run directory
//! ([`crate::run_files`]) and step through the same [`crate::step::Trainer`].

use anyhow::Result;

use crate::config::{ExperimentConfig, ModelConfig};
pub use crate::run_files::{RunOptions, RunSummary};

/// Trains `config` (resuming from its checkpoint if one exists), writing `config.json`,
/// `metrics.jsonl` and `metrics.parquet`, the final `model.bpk` and, last, `result.json` into
/// the run directory.
pub fn train(config: &ExperimentConfig, options: &RunOptions) -> Result<RunSummary> {
    config.validate().map_err(anyhow::Error::msg)?;
    match &config.model {
        ModelConfig::Vision { arch } => crate::vision_train::train_vision(config, *arch, options),
        ModelConfig::Text { encoder, max_len, text_features } => {
            crate::text_train::train_text(config, encoder, *max_len, *text_features, options)
        }
    }
}
