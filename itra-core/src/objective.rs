//! The training-step objective: `L = CE(C(H1), y1) + lambda * Match`, for every method the paper
//! compares.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::center::{CenterInit, CenterLoss, CenterLossConfig};
use crate::error::LossError;
use crate::lsr::{LabelSmoothingCrossEntropy, LabelSmoothingCrossEntropyConfig};
use crate::mmd::{MmdLoss, MmdLossConfig};

/// The training methods the paper compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Plain cross-entropy (the paper's SGD baseline).
    Baseline,
    /// Label smoothing; `lambda` is the smoothing `eps`.
    Lsr,
    /// Center loss with weight `lambda`.
    Center,
    /// ITRA: `lambda * MMD(H1, H2)`.
    Itra,
    /// ITRA-c: `lambda *` the class-conditional MMD.
    ItraC,
}

impl Method {
    /// Every method, in the paper's table order.
    pub const ALL: [Method; 5] = [Method::Baseline, Method::Lsr, Method::Center, Method::Itra, Method::ItraC];

    /// The name used on the command line and in result files.
    pub fn name(self) -> &'static str {
        match self {
            Method::Baseline => "baseline",
            Method::Lsr => "lsr",
            Method::Center => "center",
            Method::Itra => "itra",
            Method::ItraC => "itra-c",
        }
    }

    /// Whether the method matches two mini-batches.
    pub fn uses_second_batch(self) -> bool {
        matches!(self, Method::Itra | Method::ItraC)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown method `{s}`; expected one of baseline, lsr, center, itra, itra-c"))
    }
}

/// Where the second mini-batch's features come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SecondBatchMode {
    /// `S2` is forwarded with gradient: the paper's method, and the default.
    #[default]
    Full,
    /// `S2` is forwarded, its features detached: no gradient flows through `H2`.
    Detached,
    /// `S2`'s features are the previous step's `H1`, detached: no extra forward pass.
    Cached,
}

impl SecondBatchMode {
    /// Every mode.
    pub const ALL: [SecondBatchMode; 3] = [SecondBatchMode::Full, SecondBatchMode::Detached, SecondBatchMode::Cached];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SecondBatchMode::Full => "full",
            SecondBatchMode::Detached => "detached",
            SecondBatchMode::Cached => "cached",
        }
    }
}

impl fmt::Display for SecondBatchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SecondBatchMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SecondBatchMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown second-batch mode `{s}`; expected full, detached or cached"))
    }
}

/// Configuration of [`ItraObjective`].
#[derive(Config, Debug)]
pub struct ItraObjectiveConfig {
    /// The method.
    pub method: Method,
    /// Number of classes `K`.
    pub num_classes: usize,
    /// Feature width `d` (needed by Center loss).
    pub feat_dim: usize,
    /// Weight of the matching or Center term; LSR's smoothing `eps`. Ignored by the baseline.
    #[config(default = 0.0)]
    pub lambda: f64,
    /// Where `S2`'s features come from (ITRA and ITRA-c only).
    #[config(default = "SecondBatchMode::Full")]
    pub second_batch: SecondBatchMode,
    /// The kernel and floor of the matching loss.
    #[config(default = "MmdLossConfig::new()")]
    pub mmd: MmdLossConfig,
    /// Center loss's centre learning rate.
    #[config(default = 0.5)]
    pub center_alpha: f64,
    /// How Center loss's centres start ([`CenterInit`]); class means by default.
    #[config(default = "CenterInit::ClassMean")]
    pub center_init: CenterInit,
    /// Whether Center loss carries Wen et al.'s factor 1/2 (see [`CenterLossConfig::halve`]).
    #[config(default = true)]
    pub center_halve: bool,
}

impl ItraObjectiveConfig {
    /// Initialises the objective; Center loss's centres live on `device`.
    pub fn init(&self, device: &Device) -> Result<ItraObjective, LossError> {
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            return Err(LossError::InvalidConfig(format!("lambda must be finite and >= 0, got {}", self.lambda)));
        }
        let smoothing = if self.method == Method::Lsr { self.lambda } else { 0.0 };
        let classification =
            LabelSmoothingCrossEntropyConfig::new(self.num_classes).with_smoothing(smoothing).try_init()?;
        let center = match self.method {
            Method::Center => Some(
                CenterLossConfig::new(self.num_classes, self.feat_dim)
                    .with_alpha(self.center_alpha)
                    .with_init(self.center_init)
                    .with_halve(self.center_halve)
                    .try_init(device)?,
            ),
            _ => None,
        };
        Ok(ItraObjective {
            method: self.method,
            lambda: self.lambda,
            num_classes: self.num_classes,
            second_batch: self.second_batch,
            classification,
            matching: self.mmd.try_init()?,
            center,
            cache: PreviousFeatures::default(),
        })
    }
}

/// The second mini-batch's features and labels, as the training loop passes them in.
#[derive(Debug, Clone)]
pub struct SecondBatch<'a> {
    /// `H2`, `[m2, d]`.
    pub features: Tensor<2>,
    /// `y2`, `m2` labels.
    pub labels: &'a [usize],
}

/// A step's loss and its parts, for the optimiser and for logging.
#[derive(Debug, Clone)]
pub struct LossParts {
    /// `CE + lambda * term`, `[1]`: what to differentiate.
    pub total: Tensor<1>,
    /// The (smoothed, for LSR) cross-entropy on `S1`, `[1]`.
    pub ce: Tensor<1>,
    /// The unweighted regulariser (matching or Center), `[1]`, if the method has one.
    pub regularizer: Option<Tensor<1>>,
    /// The kernel bandwidth of this step's matching loss.
    pub sigma: Option<f64>,
    /// How many classes the class-conditional mean covered.
    pub classes_matched: Option<usize>,
}

/// The objective one optimisation step minimises, for any of the paper's methods.
///
/// Call [`ItraObjective::step_loss`] (or [`ItraObjective::forward_step`]) exactly once per
/// optimisation step: it also advances the objective's state, Center loss's centres and the
/// cached `H1` of [`SecondBatchMode::Cached`]. The state changes through `&self`, so the
/// objective can sit inside a module whose training step takes `&self` (burn-train's
/// `TrainStep`); the centres are Burn running state, saved and loaded with the module's record,
/// and clones share them. The cached features are not part of the record: a training loop that
/// resumes a cached-mode run restores them with [`ItraObjective::restore_cache`].
#[derive(Module, Debug)]
pub struct ItraObjective {
    #[module(skip)]
    method: Method,
    lambda: f64,
    num_classes: usize,
    #[module(skip)]
    second_batch: SecondBatchMode,
    classification: LabelSmoothingCrossEntropy,
    matching: MmdLoss,
    /// Center loss's state, for [`Method::Center`].
    center: Option<CenterLoss>,
    /// The previous step's detached `H1` and labels, for [`SecondBatchMode::Cached`].
    #[module(skip)]
    cache: PreviousFeatures,
}

/// The previous step's detached features and labels, shared by the objective's clones.
#[derive(Debug, Clone, Default)]
struct PreviousFeatures(Arc<Mutex<Option<(Tensor<2>, Vec<usize>)>>>);

impl PreviousFeatures {
    fn replace(&self, value: Option<(Tensor<2>, Vec<usize>)>) -> Option<(Tensor<2>, Vec<usize>)> {
        let mut slot = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::replace(&mut *slot, value)
    }

    fn get(&self) -> Option<(Tensor<2>, Vec<usize>)> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// How the training loop must produce the second mini-batch's features this step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondForward {
    /// No second batch is needed.
    None,
    /// Forward `S2` with gradient.
    WithGradient,
    /// Forward `S2` and detach its features.
    Detached,
}

impl ItraObjective {
    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The weight of the regulariser this step (LSR's smoothing for [`Method::Lsr`]).
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// The number of classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Center loss's state ([`Method::Center`] only).
    pub fn center(&self) -> Option<&CenterLoss> {
        self.center.as_ref()
    }

    /// The previous step's detached `H1` and labels ([`SecondBatchMode::Cached`] after a step;
    /// `None` otherwise), for a checkpoint.
    pub fn cached_features(&self) -> Option<(Tensor<2>, Vec<usize>)> {
        self.cache.get()
    }

    /// Puts a checkpoint's cached features back (see [`ItraObjective::cached_features`]).
    pub fn restore_cache(&self, cache: Option<(Tensor<2>, Vec<usize>)>) {
        self.cache.replace(cache.map(|(features, labels)| (features.detach(), labels)));
    }

    /// Sets the weight of the regulariser from the next step on (a warm-up changes it per
    /// step). Must be finite and `>= 0`, as in [`ItraObjectiveConfig::init`]; LSR's smoothing is
    /// fixed at initialisation and does not follow it.
    pub fn set_lambda(&mut self, lambda: f64) {
        assert!(lambda.is_finite() && lambda >= 0.0, "lambda must be finite and >= 0, got {lambda}");
        self.lambda = lambda;
    }

    /// What the loop must do with `S2` this step.
    pub fn second_forward(&self) -> SecondForward {
        if !self.method.uses_second_batch() {
            return SecondForward::None;
        }
        match self.second_batch {
            SecondBatchMode::Full => SecondForward::WithGradient,
            SecondBatchMode::Detached => SecondForward::Detached,
            SecondBatchMode::Cached => SecondForward::None,
        }
    }

    /// The step's loss `CE(logits, y1) + lambda * term`, and its parts.
    ///
    /// `h1` are the features of `S1` and `logits` the head's output on them. `second` holds
    /// `S2`'s features when [`ItraObjective::second_forward`] asked for them; in cached mode the
    /// objective supplies the previous step's `H1` itself (no matching on the first step).
    ///
    /// # Shapes
    ///
    /// - h1: `[m1, d]`, logits: `[m1, K]`, y1: `m1` labels
    /// - second.features: `[m2, d]`, second.labels: `m2` labels
    pub fn step_loss(
        &self,
        h1: Tensor<2>,
        logits: Tensor<2>,
        y1: &[usize],
        second: Option<SecondBatch<'_>>,
    ) -> Result<LossParts, LossError> {
        let ce = self.classification.try_forward_host(logits, y1)?;
        let mut parts = LossParts { total: ce.clone(), ce, regularizer: None, sigma: None, classes_matched: None };
        match self.method {
            Method::Baseline | Method::Lsr => {}
            Method::Center => {
                let center = self.center.as_ref().expect("center state exists for Method::Center");
                // A class seen for the first time takes its batch mean before the loss (CONVENTIONS.md).
                center.init_classes(h1.clone().detach(), y1)?;
                let term = center.try_forward_host(h1.clone(), y1)?;
                center.update_centers(h1, y1)?;
                parts.total = parts.total + term.clone() * self.lambda;
                parts.regularizer = Some(term);
            }
            Method::Itra | Method::ItraC => {
                let cached;
                let second = match (self.second_batch, second) {
                    (SecondBatchMode::Cached, _) => {
                        cached = self.cache.replace(Some((h1.clone().detach(), y1.to_vec())));
                        cached.as_ref().map(|(features, labels)| SecondBatch { features: features.clone(), labels })
                    }
                    (SecondBatchMode::Detached, Some(second)) => {
                        Some(SecondBatch { features: second.features.detach(), labels: second.labels })
                    }
                    (SecondBatchMode::Full, Some(second)) => Some(second),
                    (mode, None) => {
                        return Err(LossError::InvalidConfig(format!(
                            "second-batch mode `{mode}` needs the second batch's features"
                        )));
                    }
                };
                if let Some(second) = second {
                    let output = if self.method == Method::Itra {
                        self.matching.try_forward(h1, second.features)?
                    } else {
                        self.matching.try_forward_class_conditional_host(
                            h1,
                            y1,
                            second.features,
                            second.labels,
                            self.num_classes,
                        )?
                    };
                    parts.total = parts.total + output.value.clone() * self.lambda;
                    parts.regularizer = Some(output.value);
                    parts.sigma = Some(output.sigma);
                    parts.classes_matched = Some(output.classes_matched);
                }
            }
        }
        Ok(parts)
    }
}

/// The Figure 1 distance of one step (see `CONVENTIONS.md`): mean distance between
/// cross-batch pairs of the same class, and over all cross-batch pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistanceStats {
    /// Mean `||h1_i - h2_j||` over pairs with `y1_i == y2_j`; `None` if there is no such pair.
    pub same_class: Option<f64>,
    /// Mean `||h1_i - h2_j||` over all pairs.
    pub all_pairs: f64,
}

impl DistanceStats {
    /// Computes the statistics from detached features.
    pub fn compute(h1: Tensor<2>, y1: &[usize], h2: Tensor<2>, y2: &[usize]) -> Result<Self, LossError> {
        let [m1, d1] = h1.dims();
        let [m2, d2] = h2.dims();
        if d1 != d2 {
            return Err(LossError::WidthMismatch { left_name: "h1", left: d1, right_name: "h2", right: d2 });
        }
        if m1 == 0 || m2 == 0 {
            return Err(LossError::EmptyBatch { name: if m1 == 0 { "h1" } else { "h2" } });
        }
        // f64 where the device has it (a diagnostic: f32 elsewhere is precise enough).
        let dtype = crate::mmd::compute_dtype(&h1.device());
        let h1 = h1.detach().cast(dtype);
        let h2 = h2.detach().cast(dtype);
        let n1 = h1.clone().square().sum_dim(1);
        let n2 = h2.clone().square().sum_dim(1);
        let cross = h1.matmul(h2.transpose());
        let distances: Vec<f64> = (n1 + n2.transpose() - cross * 2.0)
            .clamp_min(0.0)
            .sqrt()
            .into_data()
            .convert::<f64>()
            .iter::<f64>()
            .collect();
        let (mut same_sum, mut same_count) = (0.0, 0usize);
        for (i, &a) in y1.iter().enumerate() {
            for (j, &b) in y2.iter().enumerate() {
                if a == b {
                    same_sum += distances[i * m2 + j];
                    same_count += 1;
                }
            }
        }
        let all_pairs = distances.iter().sum::<f64>() / distances.len() as f64;
        let same_class = (same_count > 0).then(|| same_sum / same_count as f64);
        Ok(DistanceStats { same_class, all_pairs })
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;

    #[test]
    fn center_step_initialises_new_classes_before_the_loss() {
        // h1 = {(1, 2), (3, 6)}, both class 0: init sets c_0 = (2, 4) before the loss, so the term is
        // the within-class scatter (||(-1, -2)||^2 + ||(1, 2)||^2) / (2 * 2) = 2.5, not
        // (5 + 45) / 4 from zero. Wen's update then moves c_0 by sum (c_0 - h_i) / 3 = 0.
        let device = Device::flex();
        let objective = ItraObjectiveConfig::new(Method::Center, 2, 2).with_lambda(1.0).init(&device).unwrap();
        let h1 = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 6.0], [2, 2]), &device);
        let parts = objective.step_loss(h1, Tensor::zeros([2, 2], &device), &[0, 0], None).unwrap();
        let term: f64 = parts.regularizer.unwrap().into_scalar();
        assert!((term - 2.5).abs() < 1e-6, "{term}");
        let center = objective.center().unwrap();
        assert_eq!(center.initialized(), vec![true, false]);
        let centers: Vec<f32> = center.centers().into_data().iter::<f32>().collect();
        assert_eq!(centers, vec![2.0, 4.0, 0.0, 0.0]);
    }
}
