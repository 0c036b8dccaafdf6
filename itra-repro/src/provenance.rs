//! What every run records beside its numbers: the configuration, seed, revision and backend.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::ExperimentConfig;

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
        }
    }

    /// Writes `config.json` atomically.
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        write_atomic(&run_dir.join("config.json"), (serde_json::to_string_pretty(self)? + "\n").as_bytes())
    }
}

/// Writes `bytes` to `<path>.<pid>.<n>.partial`, then renames it to `path`, so that a reader never sees a
/// half-written file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    // Unique to this writer (process and call), so that no two writers share a temporary.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut temporary = path.as_os_str().to_owned();
    let call = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    temporary.push(format!(".{}.{call}.partial", std::process::id()));
    let temporary = std::path::PathBuf::from(temporary);
    fs::write(&temporary, bytes).with_context(|| format!("cannot write {}", temporary.display()))?;
    fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))
}
