//! Gaussian-kernel MMD between two mini-batches of features: ITRA and its class-conditional
//! form ITRA-c.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{DType, FloatDType, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::LossError;
use crate::kernel::{Bandwidth, pairwise_squared_distances, resolve_sigma};

/// What ITRA-c divides the sum of per-class MMDs by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// `|P|`, the number of classes present in both batches (the project's default).
    #[default]
    Present,
    /// `K`, the number of classes: the paper's literal `1/K`.
    AllClasses,
}

/// Configuration of [`MmdLoss`].
#[derive(Config, Debug)]
pub struct MmdLossConfig {
    /// How the kernel bandwidth `sigma` is chosen.
    #[config(default = "Bandwidth::Median")]
    pub bandwidth: Bandwidth,
    /// Floor under `MMD^2` before the square root. Must be finite and positive.
    #[config(default = 1e-8)]
    pub eps: f64,
    /// Divisor of the class-conditional sum.
    #[config(default = "Normalize::Present")]
    pub normalize: Normalize,
    /// Whether to check the features for NaN and infinity (one scalar read-back per call).
    #[config(default = true)]
    pub check_finite: bool,
}

impl MmdLossConfig {
    /// Initialises the loss.
    ///
    /// # Panics
    ///
    /// Panics if `eps` is not finite and positive or a fixed bandwidth is not finite and
    /// positive, as Burn's own configs do for out-of-domain hyperparameters.
    pub fn init(&self) -> MmdLoss {
        self.try_init().unwrap_or_else(|err| panic!("{err}"))
    }

    /// Initialises the loss, returning an error for an out-of-domain hyperparameter.
    pub fn try_init(&self) -> Result<MmdLoss, LossError> {
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(LossError::InvalidConfig(format!(
                "eps must be finite and positive, got {}",
                self.eps
            )));
        }
        self.bandwidth.validate().map_err(LossError::InvalidConfig)?;
        Ok(MmdLoss {
            bandwidth: self.bandwidth,
            eps: self.eps,
            normalize: self.normalize,
            check_finite: self.check_finite,
        })
    }
}

/// The biased (V-statistic) Gaussian-kernel maximum mean discrepancy.
///
/// `MMD^2(X, Y) = mean_ij k(x_i, x_j) + mean_ij k(y_i, y_j) - 2 mean_ij k(x_i, y_j)` with
/// `k(a, b) = exp(-||a - b||^2 / sigma)`, and `MMD = sqrt(max(MMD^2, eps))`, whose gradient is
/// zero (never NaN) below the floor. Gradients flow into both batches; none flows through `sigma`.
///
/// All pairwise work is one `[m, m]` Gram matrix of the pooled batch (`m = m1 + m2`) computed in
/// `f64`, whatever the features' dtype, so that identical batches land exactly on the floor; the
/// value is returned in the features' dtype.
#[derive(Module, Debug)]
pub struct MmdLoss {
    #[module(skip)]
    bandwidth: Bandwidth,
    eps: f64,
    #[module(skip)]
    normalize: Normalize,
    check_finite: bool,
}

/// The matching loss of one step, with what a training loop logs about it.
#[derive(Debug, Clone)]
pub struct MatchOutput {
    /// The matching loss, shape `[1]`.
    pub value: Tensor<1>,
    /// The kernel bandwidth used for this step.
    pub sigma: f64,
    /// How many classes entered the class-conditional mean (1 for the unconditional MMD).
    pub classes_matched: usize,
}

impl MmdLoss {
    /// ITRA's matching loss `MMD(H1, H2)`.
    ///
    /// # Shapes
    ///
    /// - h1: `[m1, d]`, the features of the first mini-batch
    /// - h2: `[m2, d]`, the features of the second mini-batch
    /// - output value: `[1]`
    ///
    /// # Panics
    ///
    /// Panics with the message of [`MmdLoss::try_forward`]'s error on invalid input.
    pub fn forward(&self, h1: Tensor<2>, h2: Tensor<2>) -> MatchOutput {
        self.try_forward(h1, h2).unwrap_or_else(|err| panic!("{err}"))
    }

    /// [`MmdLoss::forward`], returning an error for an empty batch, mismatched widths or
    /// non-finite features.
    pub fn try_forward(&self, h1: Tensor<2>, h2: Tensor<2>) -> Result<MatchOutput, LossError> {
        let [m1, m2] = check_pair(&h1, &h2)?;
        let mut weights = vec![0.0; m1 + m2];
        weights[..m1].fill(1.0 / m1 as f64);
        weights[m1..].fill(-1.0 / m2 as f64);
        self.weighted(h1, h2, weights, 1, 1.0)
    }

    /// ITRA-c's class-conditional matching loss.
    ///
    /// `Match_c = (1/|P|) sum_{k in P} MMD(H1[y1 == k], H2[y2 == k])`, with `P` the classes present
    /// in both batches (or `1/K` with [`Normalize::AllClasses`]). One pooled `sigma` serves every
    /// class. With `P` empty the value is 0 and carries no gradient.
    ///
    /// The per-class MMDs are not a loop: with `W` the `[m, |P|]` matrix whose column `k` holds
    /// `1/n1_k` on the rows of `H1` of class `k` and `-1/n2_k` on those of `H2`,
    /// `MMD^2_k = (W^T K W)_kk`, so the cost is one Gram matrix plus an `[m, m] x [m, |P|]` product.
    ///
    /// # Shapes
    ///
    /// - h1: `[m1, d]`, y1: `[m1]` labels in `0..num_classes`
    /// - h2: `[m2, d]`, y2: `[m2]` labels in `0..num_classes`
    /// - output value: `[1]`
    ///
    /// # Panics
    ///
    /// Panics with the message of the error [`MmdLoss::try_forward_class_conditional`] returns.
    pub fn forward_class_conditional(
        &self,
        h1: Tensor<2>,
        y1: Tensor<1, Int>,
        h2: Tensor<2>,
        y2: Tensor<1, Int>,
        num_classes: usize,
    ) -> MatchOutput {
        self.try_forward_class_conditional(h1, y1, h2, y2, num_classes)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// [`MmdLoss::forward_class_conditional`], returning an error for empty batches, mismatched
    /// widths or label counts, labels out of range or non-finite features.
    pub fn try_forward_class_conditional(
        &self,
        h1: Tensor<2>,
        y1: Tensor<1, Int>,
        h2: Tensor<2>,
        y2: Tensor<1, Int>,
        num_classes: usize,
    ) -> Result<MatchOutput, LossError> {
        let labels1 = host_labels(&y1, "y1", num_classes)?;
        let labels2 = host_labels(&y2, "y2", num_classes)?;
        self.try_forward_class_conditional_host(h1, &labels1, h2, &labels2, num_classes)
    }

    /// [`MmdLoss::try_forward_class_conditional`] with labels already on the host, as a training
    /// loop that batches on the host has them. Labels must be in `0..num_classes`.
    pub fn try_forward_class_conditional_host(
        &self,
        h1: Tensor<2>,
        y1: &[usize],
        h2: Tensor<2>,
        y2: &[usize],
        num_classes: usize,
    ) -> Result<MatchOutput, LossError> {
        let [m1, m2] = check_pair(&h1, &h2)?;
        check_labels(y1, m1, "h1", "y1", num_classes)?;
        check_labels(y2, m2, "h2", "y2", num_classes)?;

        let mut count1 = vec![0usize; num_classes];
        let mut count2 = vec![0usize; num_classes];
        y1.iter().for_each(|&k| count1[k] += 1);
        y2.iter().for_each(|&k| count2[k] += 1);
        // Column of each class present in both batches.
        let mut column = vec![usize::MAX; num_classes];
        let mut present = 0;
        for k in 0..num_classes {
            if count1[k] > 0 && count2[k] > 0 {
                column[k] = present;
                present += 1;
            }
        }
        // With no class in both batches every column is zero and the scale 0 makes the value an
        // exact 0 whose gradient is zero (it stays on the graph, so `backward` still works).
        let scale = match (present, self.normalize) {
            (0, _) => 0.0,
            (_, Normalize::Present) => 1.0 / present as f64,
            (_, Normalize::AllClasses) => 1.0 / num_classes as f64,
        };
        let columns = present.max(1);
        let mut weights = vec![0.0; (m1 + m2) * columns];
        for (row, &k) in y1.iter().enumerate() {
            if column[k] != usize::MAX {
                weights[row * columns + column[k]] = 1.0 / count1[k] as f64;
            }
        }
        for (row, &k) in y2.iter().enumerate() {
            if column[k] != usize::MAX {
                weights[(m1 + row) * columns + column[k]] = -1.0 / count2[k] as f64;
            }
        }
        let mut output = self.weighted(h1, h2, weights, columns, scale)?;
        output.classes_matched = present;
        Ok(output)
    }

    /// `scale * sum_g sqrt(max((W^T K W)_gg, eps))` over the `groups` columns of `weights`.
    fn weighted(
        &self,
        h1: Tensor<2>,
        h2: Tensor<2>,
        weights: Vec<f64>,
        groups: usize,
        scale: f64,
    ) -> Result<MatchOutput, LossError> {
        let device = h1.device();
        let out_dtype = h1.dtype();
        let rows = h1.dims()[0] + h2.dims()[0];
        if self.check_finite {
            check_finite(&h1, "h1")?;
            check_finite(&h2, "h2")?;
        }
        let pooled = Tensor::cat(vec![h1, h2], 0).cast(FloatDType::F64);
        let squared_distances = pairwise_squared_distances(pooled);
        let sigma = match self.bandwidth {
            Bandwidth::Fixed(sigma) => sigma,
            Bandwidth::Median => {
                let host: Vec<f64> = squared_distances.clone().detach().into_data().iter::<f64>().collect();
                resolve_sigma(self.bandwidth, &host, rows)
            }
        };
        let kernel = (squared_distances * (-1.0 / sigma)).exp();
        let weights = Tensor::<2>::from_data(TensorData::new(weights, [rows, groups]), (&device, DType::F64));
        let mmd_squared = (kernel.matmul(weights.clone()) * weights).sum_dim(0); // [1, groups]
        let mmd = mmd_squared.clamp_min(self.eps).sqrt();
        let value = (mmd.sum() * scale).cast(out_dtype);
        Ok(MatchOutput { value, sigma, classes_matched: 1 })
    }
}

fn check_pair(h1: &Tensor<2>, h2: &Tensor<2>) -> Result<[usize; 2], LossError> {
    let [m1, d1] = h1.dims();
    let [m2, d2] = h2.dims();
    if m1 == 0 {
        return Err(LossError::EmptyBatch { name: "h1" });
    }
    if m2 == 0 {
        return Err(LossError::EmptyBatch { name: "h2" });
    }
    if d1 != d2 {
        return Err(LossError::WidthMismatch { left_name: "h1", left: d1, right_name: "h2", right: d2 });
    }
    Ok([m1, m2])
}

/// One scalar read-back: a NaN or infinity anywhere makes the sum non-finite.
pub(crate) fn check_finite(features: &Tensor<2>, name: &'static str) -> Result<(), LossError> {
    let total: f64 = features.clone().detach().cast(FloatDType::F64).sum().into_scalar();
    if total.is_finite() {
        return Ok(());
    }
    // Name the first offending value: a sum of finite values can only overflow past 1e308.
    let first_bad = features
        .to_data()
        .iter::<f64>()
        .find(|v| !v.is_finite())
        .unwrap_or(total);
    Err(LossError::non_finite(name, first_bad))
}

pub(crate) fn check_labels(
    labels: &[usize],
    rows: usize,
    features_name: &'static str,
    name: &'static str,
    num_classes: usize,
) -> Result<(), LossError> {
    if labels.len() != rows {
        return Err(LossError::LabelCountMismatch { name: features_name, rows, labels: labels.len() });
    }
    match labels.iter().position(|&k| k >= num_classes) {
        Some(index) => Err(LossError::LabelOutOfRange { name, index, label: labels[index] as i64, num_classes }),
        None => Ok(()),
    }
}

/// Reads integer labels back to the host, rejecting negative or out-of-range values.
pub(crate) fn host_labels(labels: &Tensor<1, Int>, name: &'static str, num_classes: usize) -> Result<Vec<usize>, LossError> {
    labels
        .to_data()
        .iter::<i64>()
        .enumerate()
        .map(|(index, label)| {
            if label < 0 || label as usize >= num_classes {
                Err(LossError::LabelOutOfRange { name, index, label, num_classes })
            } else {
                Ok(label as usize)
            }
        })
        .collect()
}
