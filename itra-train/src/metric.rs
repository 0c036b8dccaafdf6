//! burn-train metrics for the parts of ITRA's loss.

use std::sync::Arc;

use burn::tensor::{Tensor, TensorReadError};
use burn_train::metric::state::{FormatOptions, NumericMetricState};
use burn_train::metric::{
    Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes, NumericEntry, SerializedEntry,
};
use itra_core::LossParts;

/// A training step's loss parts, as [`ItraMetric`] reads them.
#[derive(Debug, Clone)]
pub struct ItraPartsInput {
    /// The (smoothed, for label smoothing) cross-entropy on `S1`, `[1]`.
    pub ce: Tensor<1>,
    /// The unweighted matching (or Center) term, `[1]`; `None` for the baseline and label
    /// smoothing, and on a cached-mode step with nothing cached yet.
    pub regularizer: Option<Tensor<1>>,
    /// The kernel bandwidth of the step's matching loss.
    pub sigma: Option<f64>,
    /// `S1`'s size, the weight of the step in an epoch's mean.
    pub batch_size: usize,
}

impl ItraPartsInput {
    pub(crate) fn of(parts: &LossParts, batch_size: usize) -> Self {
        ItraPartsInput {
            ce: parts.ce.clone().detach(),
            regularizer: parts.regularizer.clone().map(Tensor::detach),
            sigma: parts.sigma,
            batch_size,
        }
    }

    pub(crate) fn failed(nan: Tensor<1>, batch_size: usize) -> Self {
        ItraPartsInput { ce: nan.clone(), regularizer: Some(nan), sigma: None, batch_size }
    }

    pub(crate) fn without_autodiff(self) -> Self {
        ItraPartsInput {
            ce: self.ce.without_autodiff(),
            regularizer: self.regularizer.map(Tensor::without_autodiff),
            ..self
        }
    }
}

/// Which part of the loss an [`ItraMetric`] follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    CrossEntropy,
    Regularizer,
    Bandwidth,
}

/// The mean over an epoch's steps (weighted by batch size) of one part of ITRA's loss: the
/// cross-entropy, the unweighted regulariser (the MMD for ITRA and ITRA-c, Center loss's term)
/// or the kernel bandwidth. A step without the part (the baseline's regulariser) is reported
/// as not available and leaves the mean alone.
#[derive(Clone)]
pub struct ItraMetric {
    part: Part,
    name: MetricName,
    state: NumericMetricState,
}

impl ItraMetric {
    fn new(part: Part, name: &str) -> Self {
        ItraMetric { part, name: Arc::new(name.to_owned()), state: NumericMetricState::default() }
    }

    /// The cross-entropy on `S1` ("CE").
    pub fn cross_entropy() -> Self {
        Self::new(Part::CrossEntropy, "CE")
    }

    /// The unweighted regulariser ("Match": the MMD, or Center loss's term).
    pub fn regularizer() -> Self {
        Self::new(Part::Regularizer, "Match")
    }

    /// The Gaussian kernel's bandwidth ("Bandwidth").
    pub fn bandwidth() -> Self {
        Self::new(Part::Bandwidth, "Bandwidth")
    }

    fn format(&self) -> FormatOptions {
        FormatOptions::new(self.name.clone()).precision(4)
    }
}

impl Metric for ItraMetric {
    type Input = ItraPartsInput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(
        &mut self,
        item: &ItraPartsInput,
        _metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let value = match self.part {
            Part::CrossEntropy => Some(item.ce.clone().try_into_scalar::<f64>()?),
            Part::Regularizer => match &item.regularizer {
                Some(term) => Some(term.clone().try_into_scalar::<f64>()?),
                None => None,
            },
            Part::Bandwidth => item.sigma,
        };
        Ok(match value {
            Some(value) => {
                self.state.update(value, item.batch_size);
                self.state.compute_update(self.format())
            }
            None => SerializedEntry::not_available(None),
        })
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(self.state.compute_final(self.format()))
    }

    fn clear(&mut self) {
        self.state.reset();
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes { unit: None, higher_is_better: false }.into()
    }
}

impl Numeric for ItraMetric {
    fn value(&self) -> Option<NumericEntry> {
        Some(self.state.current_value())
    }

    fn running_value(&self) -> Option<NumericEntry> {
        Some(self.state.running_value())
    }

    fn final_value(&self) -> NumericEntry {
        self.state.final_value()
    }
}
