//! Center loss (Wen et al. 2016), with its centres as non-trained module state.

use std::fmt;
use std::str::FromStr;

use burn::config::Config;
use burn::module::{Module, RunningState};
use burn::tensor::{Bool, Device, FloatDType, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::LossError;
use crate::mmd::{check_finite, check_labels, host_labels};

/// How a class's centre starts (`CONVENTIONS.md`, "Center loss").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CenterInit {
    /// The first time a class appears in a training batch, its centre is set to the mean of that
    /// class's detached features in the batch, before the step's loss: the convention, and the
    /// default.
    #[default]
    ClassMean,
    /// Every centre starts at zero and counts as initialised: the old rule, kept for the ablation.
    /// Against post-ReLU features it pulls every feature towards the origin, which killed the
    /// feature units and collapsed the small CNN to 26% on Fashion-MNIST at the paper's lambda.
    Zero,
}

impl CenterInit {
    /// Every rule.
    pub const ALL: [CenterInit; 2] = [CenterInit::ClassMean, CenterInit::Zero];

    /// The name used on the command line and in result files.
    pub fn name(self) -> &'static str {
        match self {
            CenterInit::ClassMean => "class-mean",
            CenterInit::Zero => "zero",
        }
    }
}

impl fmt::Display for CenterInit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CenterInit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CenterInit::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown center init `{s}`; expected class-mean or zero"))
    }
}

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
    /// How the centres start. [`CenterInit::ClassMean`] (the default, `CONVENTIONS.md`): each class
    /// takes its batch mean on first appearance, see [`CenterLoss::init_classes`].
    /// [`CenterInit::Zero`]: all centres at zero, all initialised (the old rule).
    #[config(default = "CenterInit::ClassMean")]
    pub init: CenterInit,
    /// Whether the value carries the factor 1/2 of Wen et al.'s Eq. 2: `true` (the default,
    /// `CONVENTIONS.md`) gives `(1/(2m)) sum ||h_i - c_{y_i}||^2`; `false` gives the old
    /// `(1/m) sum ||h_i - c_{y_i}||^2`, which doubles the effective lambda and is kept only for the
    /// ablation.
    #[config(default = true)]
    pub halve: bool,
}

impl CenterLossConfig {
    /// Initialises the loss with all centres at zero; with [`CenterInit::ClassMean`] none of them
    /// is initialised yet, with [`CenterInit::Zero`] all are.
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
        let initialized = match self.init {
            CenterInit::ClassMean => Tensor::zeros([self.num_classes], device),
            CenterInit::Zero => Tensor::ones([self.num_classes], device),
        };
        Ok(CenterLoss {
            centers: RunningState::new(Tensor::zeros([self.num_classes, self.feat_dim], device)),
            initialized: RunningState::new(initialized),
            alpha: self.alpha,
            halve: self.halve,
        })
    }
}

/// Center loss `L_C = (1/(2m)) sum_i ||h_i - c_{y_i}||^2` (Wen et al.'s Eq. 2 averaged over the
/// batch, `CONVENTIONS.md`); `(1/m) sum_i ||h_i - c_{y_i}||^2` with
/// [`CenterLossConfig::halve`] off.
///
/// Its gradient with respect to `h_i` is `(1/m)(h_i - c_{y_i})` (`(2/m)(h_i - c_{y_i})` without the
/// 1/2); the centres receive none. They are state, saved with the module's record together with
/// the mask of initialised classes, and each step goes
/// [`CenterLoss::init_classes`] (first appearance of a class: its centre becomes the class's batch
/// mean), then [`CenterLoss::forward`], then [`CenterLoss::update_centers`] (Wen et al.'s rule).
/// Starting a centre at its class's mean makes the first pull compact the class; zero centres pull
/// post-ReLU features towards the origin, which killed the feature units (26% on Fashion-MNIST).
#[derive(Module, Debug)]
pub struct CenterLoss {
    /// The class centres, `[K, d]`.
    pub centers: RunningState<Tensor<2>>,
    /// `[K]`, 1 for a class whose centre is initialised, 0 otherwise.
    initialized: RunningState<Tensor<1>>,
    alpha: f64,
    halve: bool,
}

impl CenterLoss {
    /// The centres as a tensor, `[K, d]`.
    pub fn centers(&self) -> Tensor<2> {
        self.centers.value_sync()
    }

    /// Which classes have an initialised centre, one entry per class.
    pub fn initialized(&self) -> Vec<bool> {
        self.initialized.value_sync().into_data().iter::<f32>().map(|flag| flag > 0.5).collect()
    }

    /// Sets the centres and the initialised mask from a checkpoint.
    ///
    /// Returns an error, and changes nothing, if `centers` is not `[K, d]`, `initialized` does not
    /// have `K` entries or `centers` holds a non-finite value.
    pub fn restore(&self, centers: Tensor<2>, initialized: Vec<bool>) -> Result<(), LossError> {
        let current = self.centers.value_sync();
        let [num_classes, width] = current.dims();
        let dims = centers.dims();
        if dims != [num_classes, width] {
            return Err(LossError::InvalidConfig(format!(
                "restored centers have shape {dims:?}, expected [{num_classes}, {width}]"
            )));
        }
        if initialized.len() != num_classes {
            return Err(LossError::InvalidConfig(format!(
                "restored initialized mask has {} entries, expected {num_classes}",
                initialized.len()
            )));
        }
        check_finite(&centers, "centers")?;
        let device = current.device();
        let centers = centers.detach().cast(FloatDType::F32).to_device(&device);
        set(&self.centers, centers);
        set(&self.initialized, mask_tensor(&initialized, &device));
        Ok(())
    }

    /// Sets the centre of every class present in the batch and not yet initialised to the mean of
    /// that class's detached features in this batch, and marks it initialised. Classes already
    /// initialised, and absent ones, are left alone; with nothing new this is a no-op.
    ///
    /// Call it before the step's [`CenterLoss::forward`], so a new class's first term is its
    /// within-class scatter rather than its distance to the origin.
    ///
    /// # Shapes
    ///
    /// - features: `[m, d]`
    /// - labels: `m` labels in `0..K`
    ///
    /// Returns the errors of [`CenterLoss::try_forward`].
    pub fn init_classes(&self, features: Tensor<2>, labels: &[usize]) -> Result<(), LossError> {
        let centers = self.checked_centers(&features, labels)?;
        let [num_classes, width] = centers.dims();
        let mut initialized = self.initialized();
        let mut fresh = vec![false; num_classes];
        for &k in labels {
            fresh[k] = !initialized[k];
        }
        if !fresh.contains(&true) {
            return Ok(());
        }
        let device = centers.device();
        let (one_hot, counts) = class_membership(labels, num_classes, &device);
        let features = features.detach().cast(FloatDType::F32).to_device(&device);
        // Absent classes divide 0 by 1 here; mask_where never reads their rows.
        let means = one_hot.transpose().matmul(features) / counts.clamp_min(1.0);
        let replace: Vec<bool> = fresh.iter().flat_map(|&f| std::iter::repeat_n(f, width)).collect();
        let replace = Tensor::<2, Bool>::from_data(TensorData::new(replace, [num_classes, width]), &device);
        set(&self.centers, centers.mask_where(replace, means));
        for (flag, new) in initialized.iter_mut().zip(&fresh) {
            *flag |= new;
        }
        set(&self.initialized, mask_tensor(&initialized, &device));
        Ok(())
    }

    /// The loss value, with the current centres (a class not yet initialised counts from its zero
    /// or restored centre: call [`CenterLoss::init_classes`] first).
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
        let [num_classes, _] = self.centers.value_sync().dims();
        let labels = host_labels(&labels, "labels", num_classes)?;
        self.try_forward_host(features, &labels)
    }

    /// [`CenterLoss::try_forward`] with the labels already on the host.
    pub fn try_forward_host(&self, features: Tensor<2>, labels: &[usize]) -> Result<Tensor<1>, LossError> {
        let centers = self.checked_centers(&features, labels)?;
        let rows = labels.len();
        let index = label_tensor(labels, &features.device());
        let assigned = centers.select(0, index).cast(features.dtype());
        let denominator = if self.halve { 2.0 * rows as f64 } else { rows as f64 };
        Ok((features - assigned).square().sum() / denominator)
    }

    /// Wen et al.'s centre update, on detached features:
    /// `c_j <- c_j - alpha * sum_{i: y_i = j} (c_j - h_i) / (1 + n_j)` for every class `j`
    /// (classes absent from the batch stay where they are).
    pub fn update_centers(&self, features: Tensor<2>, labels: &[usize]) -> Result<(), LossError> {
        let centers = self.checked_centers(&features, labels)?;
        let [num_classes, _] = centers.dims();
        let device = centers.device();
        let (one_hot, counts) = class_membership(labels, num_classes, &device);
        let features = features.detach().cast(FloatDType::F32).to_device(&device);
        let class_sums = one_hot.transpose().matmul(features); // [K, d]
        let delta = (centers.clone() * counts.clone() - class_sums) / (counts + 1.0);
        set(&self.centers, centers - delta * self.alpha);
        Ok(())
    }

    fn checked_centers(&self, features: &Tensor<2>, labels: &[usize]) -> Result<Tensor<2>, LossError> {
        let centers = self.centers.value_sync().detach();
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

/// Makes `value` the state's value now, through `&self` (Burn's running-state update, as batch
/// norm's running statistics use it): clones of the module share the state, so a copy forked
/// to another device or thread (burn-train's multi-device strategy) moves the same centres.
/// Where several threads update before a read, the read averages their values (Burn's rule).
fn set<const D: usize>(state: &RunningState<Tensor<D>>, value: Tensor<D>) {
    state.update(value);
    state.value_sync();
}

/// The batch's one-hot labels `[m, K]` and per-class counts `[K, 1]`, in f32.
fn class_membership(labels: &[usize], num_classes: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let rows = labels.len();
    let mut one_hot = vec![0f32; rows * num_classes];
    let mut counts = vec![0f32; num_classes];
    for (row, &k) in labels.iter().enumerate() {
        one_hot[row * num_classes + k] = 1.0;
        counts[k] += 1.0;
    }
    let one_hot = Tensor::<2>::from_data(TensorData::new(one_hot, [rows, num_classes]), device);
    let counts = Tensor::<2>::from_data(TensorData::new(counts, [num_classes, 1]), device);
    (one_hot, counts)
}

fn mask_tensor(initialized: &[bool], device: &Device) -> Tensor<1> {
    let flags: Vec<f32> = initialized.iter().map(|&flag| if flag { 1.0 } else { 0.0 }).collect();
    Tensor::from_data(TensorData::new(flags, [initialized.len()]), device)
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

    fn matrix(values: &[f32], shape: [usize; 2], device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
    }

    fn host(tensor: Tensor<2>) -> Vec<f32> {
        tensor.into_data().iter::<f32>().collect()
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn value_carries_the_factor_one_half() {
        // h = [[1, 2], [3, 4]], both class 0, centres at zero (Zero init: no class-mean step).
        // sum ||h_i - c||^2 = 1 + 4 + 9 + 16 = 30; with the 1/2: 30 / (2 * 2) = 7.5.
        let device = Device::flex();
        let h = matrix(&[1.0, 2.0, 3.0, 4.0], [2, 2], &device);
        let loss = CenterLossConfig::new(2, 2).with_init(CenterInit::Zero).init(&device);
        assert_eq!(loss.try_forward_host(h.clone(), &[0, 0]).unwrap().into_scalar::<f64>(), 7.5);
        // The ablation without it: 30 / 2 = 15.
        let loss = CenterLossConfig::new(2, 2).with_init(CenterInit::Zero).with_halve(false).init(&device);
        assert_eq!(loss.try_forward_host(h, &[0, 0]).unwrap().into_scalar::<f64>(), 15.0);
    }

    #[test]
    fn gradient_is_one_over_m_times_the_residual() {
        // c_0 = (1, 1) restored; h = [[1, 2], [3, 4]] of class 0, m = 2.
        // dL/dh_i = (1/m)(h_i - c_0) = [[0, 1], [2, 3]] / 2; without the 1/2 it is twice that.
        let device = Device::flex().autodiff();
        for (halve, scale) in [(true, 0.5f32), (false, 1.0)] {
            let loss = CenterLossConfig::new(2, 2).with_halve(halve).init(&device);
            loss.restore(matrix(&[1.0, 1.0, 0.0, 0.0], [2, 2], &device), vec![true, true]).unwrap();
            let h = matrix(&[1.0, 2.0, 3.0, 4.0], [2, 2], &device).require_grad();
            let value = loss.try_forward_host(h.clone(), &[0, 0]).unwrap();
            let grad = host(h.grad(&value.backward()).unwrap());
            assert_close(&grad, &[0.0, scale, 2.0 * scale, 3.0 * scale]);
        }
    }

    #[test]
    fn update_follows_wen_et_al() {
        // Two features of class 0, centres at zero (Zero init), alpha = 0.5:
        // c_0 <- 0 - 0.5 * ((0 - h_1) + (0 - h_2)) / (1 + 2) = 0.5 * (4, 6) / 3; class 1 is absent and stays.
        let device = Device::flex();
        let loss = CenterLossConfig::new(2, 2).with_alpha(0.5).with_init(CenterInit::Zero).init(&device);
        loss.update_centers(matrix(&[1.0, 2.0, 3.0, 4.0], [2, 2], &device), &[0, 0]).unwrap();
        assert_close(&host(loss.centers()), &[2.0 / 3.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn a_class_takes_its_batch_mean_on_first_appearance() {
        let device = Device::flex();
        let loss = CenterLossConfig::new(3, 2).init(&device);
        assert_eq!(loss.initialized(), vec![false; 3]);

        // Batch 1: class 0 = {(1, 2), (3, 6)}, class 1 = {(10, 0)}; class 2 absent.
        // c_0 = (2, 4), c_1 = (10, 0), c_2 stays (0, 0) and uninitialised.
        let h = matrix(&[1.0, 2.0, 3.0, 6.0, 10.0, 0.0], [3, 2], &device);
        loss.init_classes(h.clone(), &[0, 0, 1]).unwrap();
        assert_eq!(loss.initialized(), vec![true, true, false]);
        assert_close(&host(loss.centers()), &[2.0, 4.0, 10.0, 0.0, 0.0, 0.0]);
        // The first term is the within-class scatter: (||(-1, -2)||^2 + ||(1, 2)||^2 + 0) / (2 * 3) = 10 / 6.
        let value: f64 = loss.try_forward_host(h, &[0, 0, 1]).unwrap().into_scalar();
        assert!((value - 10.0 / 6.0).abs() < 1e-6, "{value}");

        // Batch 2: class 0 = {(0, 0)} is already initialised and keeps (2, 4); class 2 = {(4, 8)} is new.
        // L = (||(0, 0) - (2, 4)||^2 + 0) / (2 * 2) = 20 / 4 = 5.
        let h = matrix(&[0.0, 0.0, 4.0, 8.0], [2, 2], &device);
        loss.init_classes(h.clone(), &[0, 2]).unwrap();
        assert_eq!(loss.initialized(), vec![true; 3]);
        assert_close(&host(loss.centers()), &[2.0, 4.0, 10.0, 0.0, 4.0, 8.0]);
        assert_eq!(loss.try_forward_host(h.clone(), &[0, 2]).unwrap().into_scalar::<f64>(), 5.0);

        // Everything present is initialised: a no-op.
        loss.init_classes(h, &[0, 2]).unwrap();
        assert_close(&host(loss.centers()), &[2.0, 4.0, 10.0, 0.0, 4.0, 8.0]);
    }

    #[test]
    fn zero_init_keeps_zero_centres() {
        // Every class counts as initialised from the start, so init_classes changes nothing.
        let device = Device::flex();
        let loss = CenterLossConfig::new(2, 2).with_init(CenterInit::Zero).init(&device);
        assert_eq!(loss.initialized(), vec![true, true]);
        loss.init_classes(matrix(&[1.0, 2.0, 3.0, 4.0], [2, 2], &device), &[0, 1]).unwrap();
        assert_eq!(host(loss.centers()), vec![0.0; 4]);
    }

    #[test]
    fn restore_round_trips_and_checks_its_inputs() {
        let device = Device::flex();
        let saved = CenterLossConfig::new(2, 2).init(&device);
        saved.init_classes(matrix(&[1.0, 2.0], [1, 2], &device), &[1]).unwrap();
        let loaded = CenterLossConfig::new(2, 2).init(&device);
        loaded.restore(saved.centers(), saved.initialized()).unwrap();
        assert_eq!(loaded.initialized(), vec![false, true]);
        assert_eq!(host(loaded.centers()), vec![0.0, 0.0, 1.0, 2.0]);
        // Class 1 is not reset by a later batch; class 0 still takes its batch mean (5, 5).
        loaded.init_classes(matrix(&[5.0, 5.0, 9.0, 9.0], [2, 2], &device), &[0, 1]).unwrap();
        assert_eq!(host(loaded.centers()), vec![5.0, 5.0, 1.0, 2.0]);

        let bad_shape = loaded.restore(Tensor::zeros([3, 2], &device), vec![true; 3]);
        assert!(matches!(bad_shape, Err(LossError::InvalidConfig(_))), "{bad_shape:?}");
        let bad_mask = loaded.restore(Tensor::zeros([2, 2], &device), vec![true; 3]);
        assert!(matches!(bad_mask, Err(LossError::InvalidConfig(_))), "{bad_mask:?}");
        let nan = loaded.restore(Tensor::<2>::zeros([2, 2], &device) / 0.0, vec![true; 2]);
        assert!(matches!(nan, Err(LossError::NonFinite { .. })), "{nan:?}");
        // A refused restore changes nothing.
        assert_eq!(host(loaded.centers()), vec![5.0, 5.0, 1.0, 2.0]);
        assert_eq!(loaded.initialized(), vec![true, true]);
    }

    #[test]
    fn center_init_names_round_trip() {
        for init in CenterInit::ALL {
            assert_eq!(init.to_string().parse::<CenterInit>(), Ok(init));
        }
        assert_eq!(CenterInit::default(), CenterInit::ClassMean);
        assert_eq!(CenterInit::ClassMean.name(), "class-mean");
        let err = "mean".parse::<CenterInit>().unwrap_err();
        assert!(err.contains("class-mean") && err.contains("zero"), "{err}");
    }

    #[test]
    fn a_clone_on_another_thread_moves_the_same_centres() {
        // burn-train forks the module to each device's thread: the centres are shared state, and a
        // step taken through `&self` on any copy is seen by all of them.
        let device = Device::flex();
        let loss = CenterLossConfig::new(2, 2).init(&device);
        let copy = loss.clone();
        std::thread::spawn(move || {
            copy.init_classes(matrix(&[1.0, 2.0, 3.0, 4.0], [2, 2], &Device::flex()), &[0, 1]).unwrap();
        })
        .join()
        .unwrap();
        assert_eq!(loss.initialized(), vec![true, true]);
        assert_eq!(host(loss.centers()), vec![1.0, 2.0, 3.0, 4.0]);
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
        assert!(matches!(loss.init_classes(h.clone(), &[2]), Err(LossError::LabelOutOfRange { .. })));
        assert!(matches!(loss.init_classes(Tensor::ones([1, 3], &device), &[0]), Err(LossError::WidthMismatch { .. })));
        assert!(matches!(loss.init_classes(h.clone() / 0.0, &[0]), Err(LossError::NonFinite { .. })));
        assert!(matches!(loss.init_classes(h, &[0, 1]), Err(LossError::LabelCountMismatch { .. })));
        assert_eq!(loss.initialized(), vec![false, false]);
        assert!(CenterLossConfig::new(2, 2).with_alpha(0.0).try_init(&device).is_err());
    }
}
