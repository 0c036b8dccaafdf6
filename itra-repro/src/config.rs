//! `ExperimentConfig`: everything that determines a run's numbers, serialisable and hashable.

use std::path::PathBuf;

use itra_core::{Bandwidth, Method, Normalize, SecondBatchMode};
use itra_models::Arch;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::device::DeviceSpec;

/// One training run, fully described. Two runs with equal configurations on the same machine and
/// thread count give identical numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentConfig {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub loss: LossConfig,
    pub optimizer: OptimizerConfig,
    pub schedule: Schedule,
    /// Passes over the training set.
    pub epochs: usize,
    /// Size of `S1` (and of `S2`) in images.
    pub batch_size: usize,
    /// The root of every random stream (initialisation, `S1` and `S2` order, augmentation).
    pub seed: u64,
    /// Where the run executes. Not part of [`ExperimentConfig::hash`].
    pub device: DeviceSpec,
}

/// Which data a run trains and evaluates on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    /// Dataset id (`fmnist`, `cifar10`, ...).
    pub dataset: String,
    /// Train on only the first `n` examples of a seeded permutation of the training split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_limit: Option<usize>,
    /// Evaluate on only the first `n` test examples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_limit: Option<usize>,
    /// Hold out this many training examples (a seeded draw) as a validation split, used to pick
    /// lambda. 0 trains on the whole training set.
    #[serde(default)]
    pub validation: usize,
}

/// The network: a registered vision architecture or a pretrained text encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ModelConfig {
    /// An architecture of `itra-models`' vision registry, trained from scratch.
    Vision { arch: Arch },
    /// A pretrained Hugging Face encoder (`minilm`, `bert-base`, `distilbert`, `xlnet`, or a
    /// checkpoint directory), fine-tuned with its sequence-classification head.
    Text {
        encoder: String,
        /// Sequences are truncated to this many tokens; batches are padded to their longest.
        max_len: usize,
    },
}

impl ModelConfig {
    /// The name used in run directories and tables.
    pub fn name(&self) -> String {
        match self {
            ModelConfig::Vision { arch } => arch.name().to_owned(),
            ModelConfig::Text { encoder, .. } => {
                let base = std::path::Path::new(encoder)
                    .file_name()
                    .map_or(encoder.as_str(), |n| n.to_str().unwrap_or(encoder));
                base.to_owned()
            }
        }
    }
}

/// The training objective (see `itra_core::ItraObjectiveConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    pub method: Method,
    /// Weight of the regulariser; LSR's smoothing.
    pub lambda: f64,
    pub second_batch: SecondBatchMode,
    pub bandwidth: Bandwidth,
    pub eps: f64,
    pub normalize: Normalize,
    pub center_alpha: f64,
}

impl LossConfig {
    /// The plain cross-entropy objective.
    pub fn baseline() -> Self {
        LossConfig {
            method: Method::Baseline,
            lambda: 0.0,
            second_batch: SecondBatchMode::Full,
            bandwidth: Bandwidth::Median,
            eps: 1e-8,
            normalize: Normalize::Present,
            center_alpha: 0.5,
        }
    }
}

/// The optimiser, with its hyperparameters in their usual units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum OptimizerConfig {
    /// SGD with (heavy-ball) momentum and L2 weight decay added to the gradient.
    Sgd { lr: f64, momentum: f64, weight_decay: f64 },
    /// Adam (L2 weight decay added to the gradient, as `torch.optim.Adam`).
    Adam { lr: f64, weight_decay: f64 },
}

impl OptimizerConfig {
    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match *self {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::Adam { lr, .. } => lr,
        }
    }
}

/// The learning-rate schedule, evaluated per step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    Constant,
    /// Cosine annealing from the base rate to 0 over the whole run.
    Cosine,
}

impl Schedule {
    /// The learning rate at `step` of `total_steps`.
    pub fn lr(self, base: f64, step: usize, total_steps: usize) -> f64 {
        match self {
            Schedule::Constant => base,
            Schedule::Cosine => {
                let progress = step as f64 / total_steps.max(1) as f64;
                0.5 * base * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

impl ExperimentConfig {
    /// A stable hash of everything that determines the numbers (the device excluded), used to
    /// recognise a finished run.
    pub fn hash(&self) -> String {
        let mut numbers = self.clone();
        numbers.device = DeviceSpec::Cpu;
        let json = serde_json::to_vec(&numbers).expect("an experiment config always serialises");
        let digest = Sha256::digest(&json);
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// A short human-readable name: `fmnist-small-cnn-itra-c-l0.6-s1`.
    pub fn slug(&self) -> String {
        let lambda =
            if self.loss.method == Method::Baseline { String::new() } else { format!("-l{}", self.loss.lambda) };
        format!(
            "{}-{}-{}{}-s{}",
            self.data.dataset.replace([':', '/'], "_"),
            self.model.name(),
            self.loss.method,
            lambda,
            self.seed
        )
    }
}

/// Where a run's files go: `<runs>/<slug>-<hash>/`.
pub fn run_dir(runs_root: &std::path::Path, config: &ExperimentConfig) -> PathBuf {
    runs_root.join(format!("{}-{}", config.slug(), config.hash()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ExperimentConfig {
        ExperimentConfig {
            data: DataConfig { dataset: "fmnist".into(), train_limit: None, test_limit: None, validation: 0 },
            model: ModelConfig::Vision { arch: Arch::SmallCnn },
            loss: LossConfig::baseline(),
            optimizer: OptimizerConfig::Adam { lr: 1e-3, weight_decay: 0.0 },
            schedule: Schedule::Constant,
            epochs: 1,
            batch_size: 128,
            seed: 1,
            device: DeviceSpec::Cpu,
        }
    }

    #[test]
    fn hash_ignores_the_device_but_not_the_numbers() {
        let a = config();
        let mut b = config();
        b.device = DeviceSpec::Cuda(0);
        assert_eq!(a.hash(), b.hash());
        b.seed = 2;
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn config_round_trips_through_json() {
        let a = config();
        let json = serde_json::to_string(&a).unwrap();
        let b: ExperimentConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn cosine_schedule_ends_at_zero() {
        assert_eq!(Schedule::Cosine.lr(0.1, 0, 10), 0.1);
        assert!(Schedule::Cosine.lr(0.1, 10, 10).abs() < 1e-12);
        assert_eq!(Schedule::Constant.lr(0.1, 5, 10), 0.1);
    }
}
