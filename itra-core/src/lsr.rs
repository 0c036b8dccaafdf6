//! Cross-entropy with label smoothing (LSR, Szegedy et al. 2016).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::LossError;
use crate::mmd::host_labels;

/// Configuration of [`LabelSmoothingCrossEntropy`].
#[derive(Config, Debug)]
pub struct LabelSmoothingCrossEntropyConfig {
    /// Number of classes `K`. Must be positive.
    pub num_classes: usize,
    /// Smoothing `eps` in `[0, 1]`; 0 is the plain cross-entropy.
    #[config(default = 0.0)]
    pub smoothing: f64,
}

impl LabelSmoothingCrossEntropyConfig {
    /// Initialises the loss.
    ///
    /// # Panics
    ///
    /// Panics if `num_classes` is zero or `smoothing` is outside `[0, 1]`.
    pub fn init(&self) -> LabelSmoothingCrossEntropy {
        self.try_init().unwrap_or_else(|err| panic!("{err}"))
    }

    /// Initialises the loss, returning an error for an out-of-domain hyperparameter.
    pub fn try_init(&self) -> Result<LabelSmoothingCrossEntropy, LossError> {
        if self.num_classes == 0 {
            return Err(LossError::InvalidConfig("num_classes must be positive".into()));
        }
        if !(0.0..=1.0).contains(&self.smoothing) {
            return Err(LossError::InvalidConfig(format!("smoothing must be in [0, 1], got {}", self.smoothing)));
        }
        Ok(LabelSmoothingCrossEntropy { num_classes: self.num_classes, smoothing: self.smoothing })
    }
}

/// Cross-entropy against smoothed targets, averaged over the batch.
///
/// `L = -(1/m) sum_i sum_k q_ik log softmax(z_i)_k` with `q = (1 - eps) onehot(y) + eps / K`,
/// the semantics of PyTorch's `CrossEntropyLoss(label_smoothing = eps)`. Its gradient with
/// respect to the logits is `(softmax(z) - q) / m`.
#[derive(Module, Debug)]
pub struct LabelSmoothingCrossEntropy {
    num_classes: usize,
    smoothing: f64,
}

impl LabelSmoothingCrossEntropy {
    /// The mean smoothed cross-entropy.
    ///
    /// # Shapes
    ///
    /// - logits: `[m, K]`
    /// - targets: `[m]` labels in `0..K`
    /// - output: `[1]`
    ///
    /// # Panics
    ///
    /// Panics with the message of [`LabelSmoothingCrossEntropy::try_forward`]'s error.
    pub fn forward(&self, logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        self.try_forward(logits, targets).unwrap_or_else(|err| panic!("{err}"))
    }

    /// [`LabelSmoothingCrossEntropy::forward`], returning an error for an empty batch, a logit
    /// width other than `K`, a target count other than the batch size, or a target out of range.
    pub fn try_forward(&self, logits: Tensor<2>, targets: Tensor<1, Int>) -> Result<Tensor<1>, LossError> {
        let labels = host_labels(&targets, "targets", self.num_classes)?;
        self.try_forward_host(logits, &labels)
    }

    /// [`LabelSmoothingCrossEntropy::try_forward`] with the targets already on the host.
    pub fn try_forward_host(&self, logits: Tensor<2>, targets: &[usize]) -> Result<Tensor<1>, LossError> {
        let [rows, width] = logits.dims();
        if rows == 0 {
            return Err(LossError::EmptyBatch { name: "logits" });
        }
        if width != self.num_classes {
            return Err(LossError::WidthMismatch {
                left_name: "logits",
                left: width,
                right_name: "num_classes",
                right: self.num_classes,
            });
        }
        crate::mmd::check_labels(targets, rows, "logits", "targets", self.num_classes)?;
        let off = (self.smoothing / self.num_classes as f64) as f32;
        let on = (1.0 - self.smoothing) as f32 + off;
        let mut soft = vec![off; rows * width];
        for (row, &k) in targets.iter().enumerate() {
            soft[row * width + k] = on;
        }
        let device = logits.device();
        let soft = Tensor::<2>::from_data(TensorData::new(soft, [rows, width]), (&device, logits.dtype()));
        Ok((log_softmax(logits, 1) * soft).sum().neg() / rows as f64)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;

    #[test]
    fn uniform_logits_give_log_k_whatever_the_smoothing() {
        let device = Device::flex();
        for smoothing in [0.0, 0.1, 1.0] {
            let loss = LabelSmoothingCrossEntropyConfig::new(4).with_smoothing(smoothing).init();
            let value = loss.try_forward_host(Tensor::zeros([3, 4], &device), &[0, 1, 3]).unwrap();
            assert!((value.into_scalar::<f64>() - 4f64.ln()).abs() < 1e-6);
        }
    }

    #[test]
    fn gradient_is_softmax_minus_smoothed_target() {
        // One row, logits (0, ln 3): softmax (1/4, 3/4); target 0, eps 0.2, K 2: q = (0.9, 0.1).
        let device = Device::flex().autodiff();
        let logits = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 3f32.ln()], [1, 2]), &device).require_grad();
        let loss = LabelSmoothingCrossEntropyConfig::new(2).with_smoothing(0.2).init();
        let value = loss.try_forward_host(logits.clone(), &[0]).unwrap();
        let grad: Vec<f32> = logits.grad(&value.backward()).unwrap().into_data().iter::<f32>().collect();
        assert!((grad[0] - (0.25 - 0.9)).abs() < 1e-6 && (grad[1] - (0.75 - 0.1)).abs() < 1e-6, "{grad:?}");
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let device = Device::flex();
        let loss = LabelSmoothingCrossEntropyConfig::new(3).init();
        assert!(matches!(
            loss.try_forward_host(Tensor::zeros([1, 2], &device), &[0]),
            Err(LossError::WidthMismatch { .. })
        ));
        assert!(matches!(
            loss.try_forward_host(Tensor::zeros([0, 3], &device), &[]),
            Err(LossError::EmptyBatch { .. })
        ));
        assert!(matches!(
            loss.try_forward_host(Tensor::zeros([1, 3], &device), &[3]),
            Err(LossError::LabelOutOfRange { .. })
        ));
        assert!(LabelSmoothingCrossEntropyConfig::new(3).with_smoothing(1.5).try_init().is_err());
        assert!(format!("{loss}").starts_with("LabelSmoothingCrossEntropy"));
    }
}
