//! The losses of *In-Training Representation Alignment* (ITRA, AAAI 2023) for Burn.
//!
//! `itra-core` is the piece a Burn user drops into their own training loop: the Gaussian-kernel
//! MMD and its class-conditional form ([`MmdLoss`]), Center loss ([`CenterLoss`]), label-smoothed
//! cross-entropy ([`LabelSmoothingCrossEntropy`]) and the training-step objective that combines
//! them with the cross-entropy ([`ItraObjective`]), and one training step's forward on any
//! [`FeatureClassifier`] ([`ItraObjective::forward_step`]). Every loss follows the project's numerical
//! conventions (`CONVENTIONS.md` in the paper folder, summarised in `ARCHITECTURE.md`).
//!
//! This crate does no I/O: no files, no network, no printing. It only sees tensors.

pub mod backend;
mod center;
mod error;
mod fused;
mod kernel;
mod lsr;
mod mmd;
mod objective;
mod step;

pub use center::{CenterInit, CenterLoss, CenterLossConfig};
pub use error::{LossError, NonFiniteKind};
pub use kernel::{Bandwidth, median_of_pairwise};
pub use lsr::{LabelSmoothingCrossEntropy, LabelSmoothingCrossEntropyConfig};
pub use mmd::{MatchOutput, Matching, MmdLoss, MmdLossConfig, Normalize, Precision, compute_dtype};
pub use objective::{
    DistanceStats, ItraObjective, ItraObjectiveConfig, LossParts, Method, SecondBatch, SecondBatchMode, SecondForward,
};
pub use step::{FeatureClassifier, LabelledBatch, PairBatch, StepInput, StepOutput};
