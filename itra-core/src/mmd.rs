//! Gaussian-kernel MMD between two mini-batches of features: ITRA and its class-conditional
//! form ITRA-c.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{DType, FloatDType, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::LossError;
use crate::fused::{self, MmdPlan, NO_GROUP};
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

/// What the matching term is made of: the MMD itself (the paper's ITRA) or its square.
///
/// `Mmd` differentiates `sqrt(max(MMD^2, eps))`, whose gradient grows as `1 / (2 MMD)` when the
/// batches already match; `Mmd2` is the biased `MMD^2` itself (for ITRA-c the mean of the
/// per-class `MMD^2`), with no root, no floor and a gradient that vanishes as the batches match.
/// `Mmd2` is a deviation from the paper, kept for ablations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Matching {
    /// `MMD = sqrt(max(MMD^2, eps))` (the paper's, and the default).
    #[default]
    Mmd,
    /// `MMD^2`, unrooted and unfloored.
    Mmd2,
}

impl Matching {
    /// Both forms.
    pub const ALL: [Matching; 2] = [Matching::Mmd, Matching::Mmd2];

    /// The name on the command line and in `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            Matching::Mmd => "mmd",
            Matching::Mmd2 => "mmd2",
        }
    }
}

impl std::fmt::Display for Matching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Matching {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Matching::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown matching term `{s}`; expected mmd or mmd2"))
    }
}

/// The float type of the tensor form's pairwise work (the Gram matrix, the kernel, the weighted
/// sums).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Precision {
    /// `f64` where the device computes it correctly, `f32` where it does not (most wgpu
    /// devices: WGSL has no `f64`, and lavapipe's reported `f64` is wrong), asked of the device
    /// itself by [`compute_dtype`].
    #[default]
    Auto,
    /// Always `f64`.
    F64,
    /// Always `f32`, as on a device without `f64`.
    F32,
}

impl Precision {
    /// The float type this precision means on `device`.
    pub fn resolve(self, device: &burn::tensor::Device) -> FloatDType {
        match self {
            Precision::F64 => FloatDType::F64,
            Precision::F32 => FloatDType::F32,
            Precision::Auto => compute_dtype(device),
        }
    }
}

/// `f64` if `device` computes the tensor form's `f64` operations correctly, else `f32`.
///
/// A device's own report is not enough: Mesa's lavapipe (a Vulkan device) reports `f64`, and
/// Burn's wgpu backend then compiles `f64` shaders whose `exp` returns garbage (SPIR-V's
/// `GLSL.std.450` extended instructions are defined for 16- and 32-bit floats only). So a device
/// that reports `f64` is also asked to compute a few values with the operations the loss uses
/// (`exp`, `sqrt`, `powf`, a matrix product and a sum) and gets `f64` only if every one agrees
/// with the host to 1e-12. The answer is kept per device, so the probe runs once per device and
/// process.
pub fn compute_dtype(device: &burn::tensor::Device) -> FloatDType {
    use std::sync::Mutex;
    static ANSWERS: Mutex<Vec<(burn::tensor::Device, FloatDType)>> = Mutex::new(Vec::new());

    if !device.supports_dtype(FloatDType::F64) {
        return FloatDType::F32;
    }
    // A poisoned lock only means another probe panicked; its answers are still whole.
    let mut answers = ANSWERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, dtype)) = answers.iter().find(|(known, _)| known == device) {
        return *dtype;
    }
    let dtype = if float64_is_exact(device) { FloatDType::F64 } else { FloatDType::F32 };
    answers.push((device.clone(), dtype));
    dtype
}

/// Whether `device` computes `exp`, `sqrt`, `powf`, a matrix product and a sum in `f64` as the
/// host does, to 1e-12 relative (an `f32` result is off by ~1e-7, a broken one by far more).
fn float64_is_exact(device: &burn::tensor::Device) -> bool {
    const X: [f64; 4] = [0.3, 1.7, 4.2, 9.1];
    let device = device.clone().without_autodiff();
    let x = Tensor::<1>::from_data(TensorData::new(X.to_vec(), [4]), (&device, DType::F64));
    let column = x.clone().reshape([4, 1]);
    let outer = column.clone().matmul(column.transpose()).sum_dim(1).reshape([4]);
    let probes = [
        ((x.clone() * -1.0).exp(), X.map(|v| (-v).exp())),
        (x.clone().sqrt(), X.map(f64::sqrt)),
        (x.clone().powf_scalar(-0.5), X.map(|v| v.powf(-0.5))),
        (outer, X.map(|v| v * X.iter().sum::<f64>())),
    ];
    probes.into_iter().all(|(computed, expected)| {
        let computed = computed.into_data();
        let Ok(values) = computed.as_slice::<f64>() else { return false };
        values.len() == expected.len()
            && values.iter().zip(expected).all(|(got, want)| (got - want).abs() <= 1e-12 * want.abs())
    })
}

/// Configuration of [`MmdLoss`].
#[derive(Config, Debug)]
pub struct MmdLossConfig {
    /// How the kernel bandwidth `sigma` is chosen.
    #[config(default = "Bandwidth::Median")]
    pub bandwidth: Bandwidth,
    /// Floor under `MMD^2` before the square root. Must be finite and positive (validated even
    /// for [`Matching::Mmd2`], which does not use it).
    #[config(default = 1e-8)]
    pub eps: f64,
    /// Whether each group contributes its MMD or its `MMD^2`.
    #[config(default = "Matching::Mmd")]
    pub matching: Matching,
    /// Divisor of the class-conditional sum.
    #[config(default = "Normalize::Present")]
    pub normalize: Normalize,
    /// Whether to check the features for NaN and infinity (the tensor form pays one scalar
    /// read-back per call; the fused form scans the features it reads anyway).
    #[config(default = true)]
    pub check_finite: bool,
    /// Whether, on burn-flex, the loss runs as one fused CPU operation (forward and gradient in
    /// one host pass, same float64 numerics) instead of its tensor form. Other backends always
    /// run the tensor form.
    #[config(default = true)]
    pub fused: bool,
    /// The float type of the tensor form (the fused form is always `f64`, on the CPU).
    #[config(default = "Precision::Auto")]
    pub precision: Precision,
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
            return Err(LossError::InvalidConfig(format!("eps must be finite and positive, got {}", self.eps)));
        }
        self.bandwidth.validate().map_err(LossError::InvalidConfig)?;
        Ok(MmdLoss {
            bandwidth: self.bandwidth,
            eps: self.eps,
            matching: self.matching,
            normalize: self.normalize,
            check_finite: self.check_finite,
            fused: self.fused,
            precision: self.precision,
        })
    }
}

/// The biased (V-statistic) Gaussian-kernel maximum mean discrepancy.
///
/// `MMD^2(X, Y) = mean_ij k(x_i, x_j) + mean_ij k(y_i, y_j) - 2 mean_ij k(x_i, y_j)` with
/// `k(a, b) = exp(-||a - b||^2 / sigma)`, and `MMD = sqrt(max(MMD^2, eps))`, whose gradient is
/// zero (never NaN) below the floor. Gradients flow into both batches; none flows through `sigma`.
/// With [`Matching::Mmd2`] the value is `MMD^2` itself (ITRA-c: the mean of the per-class
/// `MMD^2`), without root or floor.
///
/// All pairwise work is one `[m, m]` Gram matrix of the pooled batch (`m = m1 + m2`) computed in
/// `f64`, whatever the features' dtype, so that identical batches land exactly on the floor; the
/// value is returned in the features' dtype.
///
/// On burn-flex (the CPU backend) the whole loss, forward and gradient, runs as one fused
/// operation with the same formulas and precision (see [`MmdLossConfig::fused`]); on every other
/// backend it is a composition of Burn tensor operations differentiated by Burn's autodiff.
#[derive(Module, Debug)]
pub struct MmdLoss {
    #[module(skip)]
    bandwidth: Bandwidth,
    eps: f64,
    #[module(skip)]
    matching: Matching,
    #[module(skip)]
    normalize: Normalize,
    check_finite: bool,
    fused: bool,
    #[module(skip)]
    precision: Precision,
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
        let mut weight = vec![1.0 / m1 as f64; m1 + m2];
        weight[m1..].fill(-1.0 / m2 as f64);
        self.weighted(h1, h2, vec![0; m1 + m2], weight, 1, 1.0)
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
        self.try_forward_class_conditional(h1, y1, h2, y2, num_classes).unwrap_or_else(|err| panic!("{err}"))
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
        let mut column = vec![NO_GROUP; num_classes];
        let mut present = 0;
        for k in 0..num_classes {
            if count1[k] > 0 && count2[k] > 0 {
                column[k] = present as u32;
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
        let group: Vec<u32> = y1.iter().chain(y2).map(|&k| column[k]).collect();
        let weight: Vec<f64> = y1
            .iter()
            .map(|&k| 1.0 / count1[k] as f64)
            .chain(y2.iter().map(|&k| -1.0 / count2[k] as f64))
            .zip(&group)
            .map(|(w, &g)| if g == NO_GROUP { 0.0 } else { w })
            .collect();
        let mut output = self.weighted(h1, h2, group, weight, present, scale)?;
        output.classes_matched = present;
        Ok(output)
    }

    /// `scale * sum_g sqrt(max((W^T K W)_gg, eps))` (with [`Matching::Mmd2`]:
    /// `scale * sum_g (W^T K W)_gg`) over the `groups` groups: row `r` of the pooled batch has
    /// weight `weight[r]` in group `group[r]` (none for [`NO_GROUP`]).
    fn weighted(
        &self,
        h1: Tensor<2>,
        h2: Tensor<2>,
        group: Vec<u32>,
        weight: Vec<f64>,
        groups: usize,
        scale: f64,
    ) -> Result<MatchOutput, LossError> {
        let plan = MmdPlan::new(group, weight, groups, scale, self.eps, self.bandwidth).with_matching(self.matching);
        if self.fused && self.precision != Precision::F32 && fused::applies(&h1) {
            let (value, facts) = fused::weighted_mmd(h1, h2, plan);
            if let (true, Some((input, bad))) = (self.check_finite, facts.first_non_finite) {
                return Err(LossError::non_finite(["h1", "h2"][input], bad));
            }
            return Ok(MatchOutput { value, sigma: facts.sigma, classes_matched: 1 });
        }
        let device = h1.device();
        let out_dtype = h1.dtype();
        let rows = h1.dims()[0] + h2.dims()[0];
        if self.check_finite {
            check_finite(&h1, "h1")?;
            check_finite(&h2, "h2")?;
        }
        let dtype = self.precision.resolve(&device);
        let pooled = Tensor::cat(vec![h1, h2], 0).cast(dtype);
        let squared_distances = pairwise_squared_distances(pooled);
        let sigma = match self.bandwidth {
            Bandwidth::Fixed(sigma) => sigma,
            Bandwidth::Median => {
                let host: Vec<f64> =
                    squared_distances.clone().detach().into_data().convert::<f64>().iter::<f64>().collect();
                resolve_sigma(self.bandwidth, &host, rows)
            }
        };
        let kernel = (squared_distances * (-1.0 / sigma)).exp();
        let columns = groups.max(1);
        let weights = TensorData::new(plan.dense_weights(), [rows, columns]);
        let weights = match dtype {
            FloatDType::F64 => Tensor::<2>::from_data(weights, (&device, DType::F64)),
            _ => Tensor::<2>::from_data(weights.convert::<f32>(), (&device, DType::F32)).cast(dtype),
        };
        let mmd_squared = (kernel.matmul(weights.clone()) * weights).sum_dim(0); // [1, groups]
        let term = match self.matching {
            Matching::Mmd => mmd_squared.clamp_min(self.eps).sqrt(),
            Matching::Mmd2 => mmd_squared,
        };
        let value = (term.sum() * scale).cast(out_dtype);
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
    let total: f64 = features.clone().detach().cast(compute_dtype(&features.device())).sum().into_scalar();
    if total.is_finite() {
        return Ok(());
    }
    // Name the first offending value. A sum of finite values can overflow (past 3.4e38 in
    // `f32`), so a non-finite sum with no non-finite value is no error.
    match features.to_data().convert::<f64>().iter::<f64>().find(|v| !v.is_finite()) {
        Some(bad) => Err(LossError::non_finite(name, bad)),
        None => Ok(()),
    }
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
pub(crate) fn host_labels(
    labels: &Tensor<1, Int>,
    name: &'static str,
    num_classes: usize,
) -> Result<Vec<usize>, LossError> {
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

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Int, Tensor, TensorData};
    use proptest::prelude::*;

    use super::*;

    fn device() -> Device {
        Device::flex().autodiff()
    }

    fn matrix(rows: &[Vec<f32>], device: &Device) -> Tensor<2> {
        let width = rows.first().map_or(0, Vec::len);
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), width]), device).require_grad()
    }

    fn labels(values: &[i64], device: &Device) -> Tensor<1, Int> {
        Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
    }

    fn scalar(t: Tensor<1>) -> f64 {
        t.into_scalar()
    }

    fn all_finite(t: Tensor<2>) -> bool {
        t.into_data().iter::<f64>().all(f64::is_finite)
    }

    /// Value and both gradients are finite.
    fn assert_finite_everywhere(loss: &MmdLoss, h1: Tensor<2>, h2: Tensor<2>, y: Option<(&[i64], &[i64], usize)>) {
        let device = h1.device();
        let output = match y {
            None => loss.forward(h1.clone(), h2.clone()),
            Some((y1, y2, k)) => {
                loss.forward_class_conditional(h1.clone(), labels(y1, &device), h2.clone(), labels(y2, &device), k)
            }
        };
        assert!(scalar(output.value.clone()).is_finite());
        assert!(output.sigma.is_finite() && output.sigma > 0.0);
        let grads = output.value.backward();
        for h in [h1, h2] {
            if let Some(g) = h.grad(&grads) {
                assert!(all_finite(g), "gradient is finite");
            }
        }
    }

    #[test]
    fn flex_computes_float64_exactly_and_the_answer_is_kept() {
        let device = Device::flex();
        assert!(float64_is_exact(&device));
        assert_eq!(compute_dtype(&device), FloatDType::F64);
        // The autodiff device is the same hardware: the kept answer serves it.
        assert_eq!(compute_dtype(&device.autodiff()), FloatDType::F64);
        assert_eq!(Precision::Auto.resolve(&Device::flex()), FloatDType::F64);
        assert_eq!(Precision::F32.resolve(&Device::flex()), FloatDType::F32);
    }

    #[test]
    fn display_names_the_module() {
        let loss = MmdLossConfig::new().init();
        assert!(format!("{loss}").starts_with("MmdLoss"), "{loss}");
    }

    #[test]
    fn value_matches_a_hand_computed_case() {
        // x = {0}, y = {1} in 1-D, sigma fixed at 1: MMD^2 = 1 + 1 - 2 exp(-1).
        let device = device();
        let loss = MmdLossConfig::new().with_bandwidth(Bandwidth::Fixed(1.0)).init();
        let out = loss.forward(matrix(&[vec![0.0]], &device), matrix(&[vec![1.0]], &device));
        let want = (2.0 - 2.0 * (-1.0f64).exp()).sqrt();
        assert!((scalar(out.value) - want).abs() < 1e-6);
        // Median over the single pair (distance 1) is 1.
        let out = MmdLossConfig::new().init().forward(matrix(&[vec![0.0]], &device), matrix(&[vec![1.0]], &device));
        assert_eq!(out.sigma, 1.0);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // A central difference in f64 of the value, with sigma fixed (no gradient flows through it).
        let device = device();
        let h1 = vec![vec![0.3f32, -1.2], vec![1.1, 0.4], vec![-0.7, 0.9]];
        let h2 = vec![vec![0.5f32, 0.1], vec![-1.0, -0.3]];
        let loss = MmdLossConfig::new().with_bandwidth(Bandwidth::Fixed(1.7)).init();
        let x = matrix(&h1, &device);
        let out = loss.forward(x.clone(), matrix(&h2, &device));
        let grad: Vec<f64> = x.grad(&out.value.backward()).unwrap().into_data().iter::<f64>().collect();
        let step = 1e-3f32;
        for (index, &analytic) in grad.iter().enumerate() {
            let value_at = |delta: f32| {
                let mut shifted = h1.clone();
                shifted[index / 2][index % 2] += delta;
                scalar(loss.forward(matrix(&shifted, &device), matrix(&h2, &device)).value)
            };
            let numeric = (value_at(step) - value_at(-step)) / (2.0 * f64::from(step));
            assert!((numeric - analytic).abs() < 2e-3, "entry {index}: {numeric} vs {analytic}");
        }
    }

    #[test]
    fn mmd2_value_matches_a_hand_computed_case() {
        // x = {0}, y = {1} in 1-D, sigma fixed at 1: MMD^2 = 2 - 2 exp(-1), no root.
        let device = device();
        let loss = MmdLossConfig::new().with_bandwidth(Bandwidth::Fixed(1.0)).with_matching(Matching::Mmd2).init();
        let out = loss.forward(matrix(&[vec![0.0]], &device), matrix(&[vec![1.0]], &device));
        assert!((scalar(out.value) - (2.0 - 2.0 * (-1.0f64).exp())).abs() < 1e-6);
    }

    #[test]
    fn mmd2_gradient_matches_finite_differences() {
        // numpy: sum_k mean_k of (Kxx.mean() + Kyy.mean() - 2 Kxy.mean()), central difference
        // in x, sigma fixed; both forms, ITRA and ITRA-c.
        let device = device();
        let h1 = vec![vec![0.3f32, -1.2], vec![1.1, 0.4], vec![-0.7, 0.9], vec![0.2, 0.2]];
        let h2 = vec![vec![0.5f32, 0.1], vec![-1.0, -0.3], vec![0.8, -0.6]];
        let (y1, y2) = ([0i64, 1, 0, 1], [1i64, 0, 0]);
        for fused in [true, false] {
            for conditional in [false, true] {
                let loss = MmdLossConfig::new()
                    .with_bandwidth(Bandwidth::Fixed(1.7))
                    .with_matching(Matching::Mmd2)
                    .with_fused(fused)
                    .init();
                let value = |x: Tensor<2>| {
                    let y = matrix(&h2, &device);
                    if conditional {
                        loss.forward_class_conditional(x, labels(&y1, &device), y, labels(&y2, &device), 2).value
                    } else {
                        loss.forward(x, y).value
                    }
                };
                let x = matrix(&h1, &device);
                let grad: Vec<f64> = x.grad(&value(x.clone()).backward()).unwrap().into_data().iter::<f64>().collect();
                let step = 1e-3f32;
                for (index, &analytic) in grad.iter().enumerate() {
                    let value_at = |delta: f32| {
                        let mut shifted = h1.clone();
                        shifted[index / 2][index % 2] += delta;
                        scalar(value(matrix(&shifted, &device)))
                    };
                    let numeric = (value_at(step) - value_at(-step)) / (2.0 * f64::from(step));
                    assert!(
                        (numeric - analytic).abs() < 2e-3,
                        "fused={fused} conditional={conditional} entry {index}: {numeric} vs {analytic}"
                    );
                }
            }
        }
    }

    #[test]
    fn matching_names_round_trip() {
        for matching in Matching::ALL {
            assert_eq!(matching.to_string().parse::<Matching>(), Ok(matching));
            let json = serde_json::to_string(&matching).unwrap();
            assert_eq!(json, format!("\"{matching}\""));
        }
        assert_eq!(Matching::default(), Matching::Mmd);
        assert!("mmd3".parse::<Matching>().is_err());
    }

    #[test]
    fn degenerate_inputs_stay_finite() {
        let device = device();
        let loss = MmdLossConfig::new().init();
        let a = vec![vec![1.0f32, 2.0, 3.0], vec![-1.0, 0.5, 2.0], vec![0.0, 0.0, 1.0]];
        // Identical batches.
        assert_finite_everywhere(&loss, matrix(&a, &device), matrix(&a, &device), None);
        // Constant features.
        let constant = vec![vec![2.0f32; 3]; 4];
        assert_finite_everywhere(&loss, matrix(&constant, &device), matrix(&constant, &device), None);
        // Magnitude 1e3.
        let large: Vec<Vec<f32>> = a.iter().map(|r| r.iter().map(|v| v * 1e3 + 5e2).collect()).collect();
        assert_finite_everywhere(&loss, matrix(&large, &device), matrix(&a, &device), None);
        // Singleton classes, a class missing from one batch, and no common class.
        let y1 = [0, 1, 2];
        assert_finite_everywhere(&loss, matrix(&a, &device), matrix(&a[..2], &device), Some((&y1, &[0, 3], 4)));
        assert_finite_everywhere(&loss, matrix(&a, &device), matrix(&a[..1], &device), Some((&y1, &[3], 4)));
    }

    #[test]
    fn identical_batches_sit_on_the_floor() {
        let device = device();
        let a = vec![vec![1.0f32, 2.0], vec![-1.0, 0.5], vec![0.25, -3.0]];
        let out = MmdLossConfig::new().init().forward(matrix(&a, &device), matrix(&a, &device));
        assert!((scalar(out.value) - 1e-4).abs() < 1e-9);
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let device = device();
        let loss = MmdLossConfig::new().init();
        let a = matrix(&[vec![1.0, 2.0]], &device);
        let wide = matrix(&[vec![1.0, 2.0, 3.0]], &device);
        let empty = Tensor::<2>::zeros([0, 2], &device);
        assert!(matches!(loss.try_forward(a.clone(), wide), Err(LossError::WidthMismatch { .. })));
        assert!(matches!(loss.try_forward(empty, a.clone()), Err(LossError::EmptyBatch { name: "h1" })));
        let err = loss
            .try_forward_class_conditional(a.clone(), labels(&[5], &device), a.clone(), labels(&[0], &device), 3)
            .unwrap_err();
        assert_eq!(err.to_string(), "label 5 at index 0 of y1 is out of range for 3 classes");
        let err = loss
            .try_forward_class_conditional(a.clone(), labels(&[0, 1], &device), a.clone(), labels(&[0], &device), 3)
            .unwrap_err();
        assert!(matches!(err, LossError::LabelCountMismatch { name: "h1", rows: 1, labels: 2 }));
        let nan = matrix(&[vec![f32::NAN, 0.0]], &device);
        let err = loss.try_forward(a, nan).unwrap_err();
        assert_eq!(err.to_string(), "h2 contains a non-finite value (nan)");
        assert!(MmdLossConfig::new().with_eps(0.0).try_init().is_err());
        assert!(MmdLossConfig::new().with_bandwidth(Bandwidth::Fixed(-1.0)).try_init().is_err());
    }

    fn batch_strategy(rows: std::ops::Range<usize>, width: usize) -> impl Strategy<Value = Vec<Vec<f32>>> {
        prop::collection::vec(prop::collection::vec(-3.0f32..3.0, width), rows)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn mmd_of_a_batch_with_itself_is_at_its_floor(x in batch_strategy(1..8, 3)) {
            let device = device();
            let out = MmdLossConfig::new().init().forward(matrix(&x, &device), matrix(&x, &device));
            prop_assert!((scalar(out.value) - 1e-4).abs() < 1e-7);
        }

        #[test]
        fn mmd_is_symmetric_and_non_negative(x in batch_strategy(1..8, 3), y in batch_strategy(1..8, 3)) {
            let device = device();
            let loss = MmdLossConfig::new().init();
            let xy = scalar(loss.forward(matrix(&x, &device), matrix(&y, &device)).value);
            let yx = scalar(loss.forward(matrix(&y, &device), matrix(&x, &device)).value);
            prop_assert!(xy >= 0.0);
            prop_assert!((xy - yx).abs() <= 1e-6 * (1.0 + xy));
        }

        #[test]
        fn mmd_ignores_row_order(x in batch_strategy(2..8, 3), y in batch_strategy(2..8, 3), shift in 1usize..7) {
            let device = device();
            let loss = MmdLossConfig::new().init();
            let mut x_rotated = x.clone();
            x_rotated.rotate_left(shift % x.len());
            let mut y_reversed = y.clone();
            y_reversed.reverse();
            let a = scalar(loss.forward(matrix(&x, &device), matrix(&y, &device)).value);
            let b = scalar(loss.forward(matrix(&x_rotated, &device), matrix(&y_reversed, &device)).value);
            prop_assert!((a - b).abs() <= 1e-6 * (1.0 + a));
        }

        #[test]
        fn itra_c_is_the_mean_of_per_class_mmds(
            x in batch_strategy(2..10, 2),
            y in batch_strategy(2..10, 2),
            seed in 0u64..1000,
        ) {
            let device = device();
            let classes = 3usize;
            let label = |i: usize, salt: u64| ((seed.wrapping_mul(31) + salt + i as u64 * 7) % classes as u64) as i64;
            let y1: Vec<i64> = (0..x.len()).map(|i| label(i, 1)).collect();
            let y2: Vec<i64> = (0..y.len()).map(|i| label(i, 2)).collect();
            let loss = MmdLossConfig::new().init();
            let joint = loss.forward_class_conditional(
                matrix(&x, &device), labels(&y1, &device), matrix(&y, &device), labels(&y2, &device), classes);
            // Separately, with the pooled sigma the joint call used.
            let per_class = MmdLossConfig::new().with_bandwidth(Bandwidth::Fixed(joint.sigma)).init();
            let mut values = Vec::new();
            for k in 0..classes as i64 {
                let xs: Vec<Vec<f32>> = x.iter().zip(&y1).filter(|(_, l)| **l == k).map(|(r, _)| r.clone()).collect();
                let ys: Vec<Vec<f32>> = y.iter().zip(&y2).filter(|(_, l)| **l == k).map(|(r, _)| r.clone()).collect();
                if !xs.is_empty() && !ys.is_empty() {
                    values.push(scalar(per_class.forward(matrix(&xs, &device), matrix(&ys, &device)).value));
                }
            }
            let want = if values.is_empty() { 0.0 } else { values.iter().sum::<f64>() / values.len() as f64 };
            prop_assert_eq!(joint.classes_matched, values.len());
            prop_assert!((scalar(joint.value) - want).abs() <= 1e-6 * (1.0 + want));
        }
    }
}
