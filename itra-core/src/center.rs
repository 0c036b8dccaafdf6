//! Center loss (Wen et al. 2016), with its centres as non-trained module state.

use burn::config::Config;
use burn::module::{Module, RunningState};
use burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};

use crate::error::LossError;
use crate::mmd::{check_finite, check_labels, host_labels};

/// Configuration of [`CenterLoss`].
#[derive(Config, Debug)]
pub struct CenterLossConfig {
    /// Number of classes `K`. Must be positive.
    pub num_classes: usize,
    /// Feature width `d`. Must be positive.
    pub feat_dim: usize,
    /// Centre learning rate `alpha` of Wen et al.'s update, in `(0, 1]`.
    #[config(default = 0.5)]
    pub alpha: f64,
}

impl CenterLossConfig {
    /// Initialises the loss with all centres at zero.
    ///
    /// # Panics
    ///
    /// Panics if `num_classes` or `feat_dim` is zero or `alpha` is outside `(0, 1]`.
    pub fn init(&self, device: &Device) -> CenterLoss {
        self.try_init(device).unwrap_or_else(|err| panic!("{err}"))
    }

    /// Initialises the loss, returning an error for an out-of-domain hyperparameter.
    pub fn try_init(&self, device: &Device) -> Result<CenterLoss, LossError> {
        if self.num_classes == 0 || self.feat_dim == 0 {
            return Err(LossError::InvalidConfig(format!(
                "num_classes and feat_dim must be positive, got {} and {}",
                self.num_classes, self.feat_dim
            )));
        }
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return Err(LossError::InvalidConfig(format!("alpha must be in (0, 1], got {}", self.alpha)));
        }
        Ok(CenterLoss {
            centers: RunningState::new(Tensor::zeros([self.num_classes, self.feat_dim], device)),
            alpha: self.alpha,
        })
    }
}

/// Center loss `L_C = (1/m) sum_i ||h_i - c_{y_i}||^2`.
///
/// Its gradient with respect to `h_i` is `(2/m)(h_i - c_{y_i})`; the centres receive none. They
/// are state, saved with the module's record, and move after each step by
/// [`CenterLoss::update_centers`].
#[derive(Module, Debug)]
pub struct CenterLoss {
    /// The class centres, `[K, d]`.
    pub centers: RunningState<Tensor<2>>,
    alpha: f64,
}

impl CenterLoss {
    /// The centres as a tensor, `[K, d]`.
    pub fn centers(&self) -> Tensor<2> {
        self.centers.value()
    }

    /// The loss value.
    ///
    /// # Shapes
    ///
    /// - features: `[m, d]`
    /// - labels: `[m]` in `0..K`
    /// - output: `[1]`
    ///
    /// # Panics
    ///
    /// Panics with the message of [`CenterLoss::try_forward`]'s error.
    pub fn forward(&self, features: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        self.try_forward(features, labels).unwrap_or_else(|err| panic!("{err}"))
    }

    /// [`CenterLoss::forward`], returning an error for an empty batch, a width other than `d`,
    /// mismatched label count, labels out of range or non-finite features.
    pub fn try_forward(&self, features: Tensor<2>, labels: Tensor<1, Int>) -> Result<Tensor<1>, LossError> {
        let [num_classes, _] = self.centers.value().dims();
        let labels = host_labels(&labels, "labels", num_classes)?;
        self.try_forward_host(features, &labels)
    }

    /// [`CenterLoss::try_forward`] with the labels already on the host.
    pub fn try_forward_host(&self, features: Tensor<2>, labels: &[usize]) -> Result<Tensor<1>, LossError> {
        let centers = self.checked_centers(&features, labels)?;
        let rows = labels.len();
        let index = label_tensor(labels, &features.device());
        let assigned = centers.select(0, index).cast(features.dtype());
        Ok((features - assigned).square().sum() / rows as f64)
    }

    /// Wen et al.'s centre update, on detached features:
    /// `c_j <- c_j - alpha * sum_{i: y_i = j} (c_j - h_i) / (1 + n_j)` for every class `j`
    /// (classes absent from the batch stay where they are).
    pub fn update_centers(&mut self, features: Tensor<2>, labels: &[usize]) -> Result<(), LossError> {
        let centers = self.checked_centers(&features, labels)?;
        let [num_classes, _] = centers.dims();
        let device = centers.device();
        let rows = labels.len();
        let mut one_hot = vec![0f32; rows * num_classes];
        let mut counts = vec![0f32; num_classes];
        for (row, &k) in labels.iter().enumerate() {
            one_hot[row * num_classes + k] = 1.0;
            counts[k] += 1.0;
        }
        let one_hot = Tensor::<2>::from_data(TensorData::new(one_hot, [rows, num_classes]), &device);
        let counts = Tensor::<2>::from_data(TensorData::new(counts, [num_classes, 1]), &device);
        let features = features.detach().cast(FloatDType::F32).to_device(&device);
        let class_sums = one_hot.transpose().matmul(features); // [K, d]
        let delta = (centers.clone() * counts.clone() - class_sums) / (counts + 1.0);
        self.centers = RunningState::new(centers - delta * self.alpha);
        Ok(())
    }

    fn checked_centers(&self, features: &Tensor<2>, labels: &[usize]) -> Result<Tensor<2>, LossError> {
        let centers = self.centers.value().detach();
        let [num_classes, width] = centers.dims();
        let [rows, feat_width] = features.dims();
        if rows == 0 {
            return Err(LossError::EmptyBatch { name: "features" });
        }
        if feat_width != width {
            return Err(LossError::WidthMismatch {
                left_name: "features",
                left: feat_width,
                right_name: "centers",
                right: width,
            });
        }
        check_labels(labels, rows, "features", "labels", num_classes)?;
        check_finite(features, "features")?;
        Ok(centers)
    }
}

pub(crate) fn label_tensor(labels: &[usize], device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = labels.iter().map(|&k| k as i64).collect();
    let rows = labels.len();
    Tensor::<1, Int>::from_data(TensorData::new(labels, [rows]), device)
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;

    #[test]
    fn value_gradient_and_update_follow_wen_et_al() {
        // Two features of class 0, centres at zero: L = (1 + 4 + 9 + 16) / 2 = 15.
        let device = Device::flex().autodiff();
        let mut loss = CenterLossConfig::new(2, 2).with_alpha(0.5).init(&device);
        let h = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]), &device).require_grad();
        let value = loss.try_forward_host(h.clone(), &[0, 0]).unwrap();
        assert_eq!(value.clone().into_scalar::<f64>(), 15.0);
        // dL/dh = (2/m)(h - c) = h.
        let grad: Vec<f32> = h.grad(&value.backward()).unwrap().into_data().iter::<f32>().collect();
        assert_eq!(grad, vec![1.0, 2.0, 3.0, 4.0]);
        // c_0 <- 0 - 0.5 * ((0 - h_1) + (0 - h_2)) / 3 = 0.5 * (4, 6) / 3; class 1 is absent and stays.
        loss.update_centers(h, &[0, 0]).unwrap();
        let centers: Vec<f32> = loss.centers().into_data().iter::<f32>().collect();
        let want = [2.0 / 3.0, 1.0, 0.0, 0.0];
        for (got, want) in centers.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{centers:?}");
        }
    }

    #[test]
    fn centers_are_state_not_parameters() {
        let loss = CenterLossConfig::new(3, 4).init(&Device::flex().autodiff());
        // Running state is recorded with the module but never tracked for gradients.
        assert!(!loss.centers().is_require_grad());
        assert!(format!("{loss}").starts_with("CenterLoss"));
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let device = Device::flex();
        let loss = CenterLossConfig::new(2, 2).init(&device);
        let h = Tensor::<2>::ones([1, 2], &device);
        assert!(matches!(loss.try_forward_host(h.clone(), &[2]), Err(LossError::LabelOutOfRange { .. })));
        assert!(matches!(
            loss.try_forward_host(Tensor::ones([1, 3], &device), &[0]),
            Err(LossError::WidthMismatch { .. })
        ));
        assert!(matches!(loss.try_forward_host(h.clone() / 0.0 * 0.0, &[0]), Err(LossError::NonFinite { .. })));
        assert!(CenterLossConfig::new(2, 2).with_alpha(0.0).try_init(&device).is_err());
    }
}
