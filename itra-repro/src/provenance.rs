//! What every run records beside its numbers: the configuration, seed, revision and backend.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::config::{ExperimentConfig, StepPolicy};

/// The git revision this binary was built from (`unknown` outside a git checkout).
pub const GIT_REVISION: &str = env!("ITRA_GIT_REVISION");

/// The contents of a run's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub config: ExperimentConfig,
    pub config_hash: String,
    pub seed: u64,
    pub git_revision: String,
    pub backend: String,
    pub device: String,
    pub threads: usize,
    pub itra_version: String,
    /// The step policy the run used ([`ExperimentConfig::step_policy`]), resolved from the
    /// model's default; absent in `config.json`s written before the policies were recorded.
    #[serde(default)]
    pub step_policy: Option<StepPolicy>,
}

impl Provenance {
    pub fn new(config: &ExperimentConfig) -> Self {
        Provenance {
            config: config.clone(),
            config_hash: config.hash(),
            seed: config.seed,
            git_revision: GIT_REVISION.to_owned(),
            backend: config.device.backend().to_owned(),
            device: config.device.to_string(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            itra_version: env!("CARGO_PKG_VERSION").to_owned(),
            step_policy: Some(config.step_policy()),
        }
    }

    /// Writes `config.json` atomically.
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        write_atomic(&run_dir.join("config.json"), (serde_json::to_string_pretty(self)? + "\n").as_bytes())
    }
}
