//! One training step's forward, written once: the features of `S1` (and of `S2` where the method
//! asks for them), the head, and the objective. The `itra` runner's vision and text loops, its
//! benchmark and the burn-train integration (`itra-train`) all call
//! [`ItraObjective::forward_step`]; what they do around it (batches, the optimiser, logging) is
//! theirs.

use burn::tensor::{Device, Tensor};

use crate::error::LossError;
use crate::objective::{ItraObjective, LossParts, SecondBatch, SecondForward};

/// A classifier split where ITRA regularises it: features `H = f(x)` and a head `C(H)` whose
/// input they are (for the paper's networks, the input of the final linear layer).
///
/// `I` is what one forward takes: an image batch `Tensor<4>` for the vision networks, a token
/// batch for the text encoders.
pub trait FeatureClassifier<I> {
    /// The features of a batch, `[batch, feat_dim]`.
    fn features(&self, input: I) -> Tensor<2>;

    /// The logits computed from features, `[batch, num_classes]`.
    fn head(&self, features: Tensor<2>) -> Tensor<2>;

    /// The width of [`FeatureClassifier::features`]' output.
    fn feat_dim(&self) -> usize;
}

/// A model input that names the device it lives on: what a training step built around
/// [`ItraObjective::forward_step`] needs to put the labels' tensor beside the logits
/// (`itra-train`'s `TrainStep`). Image batches (any float tensor) are inputs; so are
/// `itra-models`' token batches.
pub trait StepInput {
    /// The device of the input's tensors.
    fn device(&self) -> Device;
}

impl<const D: usize> StepInput for Tensor<D> {
    fn device(&self) -> Device {
        Tensor::device(self)
    }
}

/// A labelled mini-batch: the model's input and its labels on the host.
#[derive(Debug, Clone)]
pub struct LabelledBatch<I> {
    /// What the model's forward takes.
    pub inputs: I,
    /// One label per example, in `0..K`.
    pub labels: Vec<usize>,
}

/// The inputs of one step: `S1` and, for ITRA and ITRA-c, `S2`, drawn independently of `S1`.
#[derive(Debug, Clone)]
pub struct PairBatch<I> {
    /// `S1`: the cross-entropy's batch.
    pub first: LabelledBatch<I>,
    /// `S2`, where [`ItraObjective::second_forward`] asks for it; ignored otherwise.
    pub second: Option<LabelledBatch<I>>,
}

/// What one step's forward produced.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// The loss to differentiate and its parts.
    pub parts: LossParts,
    /// `H1`, the features of `S1`, `[m1, d]` (still tracked; detach before keeping them).
    pub features: Tensor<2>,
    /// The head's output on `H1`, `[m1, K]`.
    pub logits: Tensor<2>,
    /// `H2` and `S2`'s labels, where this step forwarded `S2` (detached in detached mode).
    pub second: Option<LabelledBatch<Tensor<2>>>,
}

impl ItraObjective {
    /// One training step's forward on `model`: `H1 = f(S1)`, the logits `C(H1)`, `H2 = f(S2)`
    /// with gradient or detached as [`ItraObjective::second_forward`] says (not computed where
    /// the method needs no second batch, or in cached mode), then
    /// [`ItraObjective::step_loss`]. Call it once per optimisation step; it advances the
    /// objective's state.
    ///
    /// Returns an error where the method needs `S2` and `batch.second` is `None`, and the
    /// errors of [`ItraObjective::step_loss`].
    pub fn forward_step<I, M: FeatureClassifier<I> + ?Sized>(
        &self,
        model: &M,
        batch: PairBatch<I>,
    ) -> Result<StepOutput, LossError> {
        let PairBatch { first, second } = batch;
        let h1 = model.features(first.inputs);
        let logits = model.head(h1.clone());
        let second = match (self.second_forward(), second) {
            (SecondForward::None, _) => None,
            (mode, Some(second)) => {
                let h2 = model.features(second.inputs);
                let h2 = if mode == SecondForward::Detached { h2.detach() } else { h2 };
                Some((h2, second.labels))
            }
            (_, None) => {
                return Err(LossError::InvalidConfig(format!(
                    "method `{}` matches a second batch, and the step was given none",
                    self.method()
                )));
            }
        };
        let matched = second.as_ref().map(|(features, labels)| SecondBatch { features: features.clone(), labels });
        let parts = self.step_loss(h1.clone(), logits.clone(), &first.labels, matched)?;
        let second = second.map(|(inputs, labels)| LabelledBatch { inputs, labels });
        Ok(StepOutput { parts, features: h1, logits, second })
    }
}

#[cfg(test)]
mod tests {
    use burn::module::{Module, Param};
    use burn::tensor::{Device, TensorData};

    use super::*;
    use crate::objective::{ItraObjectiveConfig, Method, SecondBatchMode};

    /// Features `x W`, logits `H V`: small enough to check by hand.
    #[derive(Module, Debug)]
    struct Linear2 {
        features: Param<Tensor<2>>,
        head: Param<Tensor<2>>,
    }

    impl FeatureClassifier<Tensor<2>> for Linear2 {
        fn features(&self, input: Tensor<2>) -> Tensor<2> {
            input.matmul(self.features.val())
        }
        fn head(&self, features: Tensor<2>) -> Tensor<2> {
            features.matmul(self.head.val())
        }
        fn feat_dim(&self) -> usize {
            self.features.val().dims()[1]
        }
    }

    fn model(device: &Device) -> Linear2 {
        let w = TensorData::new(vec![1.0f32, 0.5, -0.5, 1.0, 0.25, 0.75], [3, 2]);
        let v = TensorData::new(vec![1.0f32, -1.0, 0.5, 2.0], [2, 2]);
        Linear2 {
            features: Param::from_tensor(Tensor::from_data(w, device)),
            head: Param::from_tensor(Tensor::from_data(v, device)),
        }
    }

    fn batch(values: &[f32], labels: &[usize], device: &Device) -> LabelledBatch<Tensor<2>> {
        let rows = labels.len();
        LabelledBatch {
            inputs: Tensor::from_data(TensorData::new(values.to_vec(), [rows, 3]), device),
            labels: labels.to_vec(),
        }
    }

    fn scalar(tensor: Tensor<1>) -> f64 {
        tensor.into_scalar()
    }

    #[test]
    fn the_step_is_the_objective_on_the_models_features() {
        let device = Device::flex().autodiff();
        let model = model(&device);
        let s1 = batch(&[1.0, 0.0, 2.0, 0.5, 1.0, -1.0, 0.0, 1.0, 1.0, 2.0, 2.0, 0.0], &[0, 1, 0, 1], &device);
        let s2 = batch(&[0.0, 1.0, 0.0, 1.0, 1.0, 1.0, -1.0, 0.5, 0.5, 1.0, 0.0, 2.0], &[1, 0, 0, 1], &device);
        for method in [Method::Baseline, Method::Lsr, Method::Center, Method::Itra, Method::ItraC] {
            let config = ItraObjectiveConfig::new(method, 2, 2).with_lambda(0.3);
            let stepped = config.init(&device).unwrap();
            let by_hand = config.init(&device).unwrap();
            let out = stepped.forward_step(&model, PairBatch { first: s1.clone(), second: Some(s2.clone()) }).unwrap();
            let h1 = model.features(s1.inputs.clone());
            let h2 = model.features(s2.inputs.clone());
            let second = SecondBatch { features: h2, labels: &s2.labels };
            let want = by_hand.step_loss(h1.clone(), model.head(h1), &s1.labels, Some(second)).unwrap();
            assert_eq!(scalar(out.parts.total.clone()), scalar(want.total.clone()), "{method}");
            assert_eq!(scalar(out.parts.ce), scalar(want.ce), "{method}");
            assert_eq!(out.parts.regularizer.map(scalar), want.regularizer.map(scalar), "{method}");
            assert_eq!(out.logits.dims(), [4, 2]);
            // The gradient reaches the feature weights through both batches.
            let grads = out.parts.total.backward();
            assert!(model.features.val().grad(&grads).is_some(), "{method}");
        }
    }

    #[test]
    fn detached_mode_stops_the_gradient_through_the_second_batch() {
        // With lambda large, a tracked H2 adds its own gradient; detached, the total's gradient
        // w.r.t. the feature weights is the one through H1 alone.
        let device = Device::flex().autodiff();
        let model = model(&device);
        let s1 = batch(&[1.0, 0.0, 2.0, 0.5, 1.0, -1.0], &[0, 1], &device);
        let s2 = batch(&[0.0, 1.0, 0.0, 1.0, 1.0, 1.0], &[1, 0], &device);
        let grad_of = |mode: SecondBatchMode| -> Vec<f32> {
            let objective = ItraObjectiveConfig::new(Method::Itra, 2, 2)
                .with_lambda(5.0)
                .with_second_batch(mode)
                .init(&device)
                .unwrap();
            let out =
                objective.forward_step(&model, PairBatch { first: s1.clone(), second: Some(s2.clone()) }).unwrap();
            let grads = out.parts.total.backward();
            model.features.val().grad(&grads).unwrap().into_data().iter::<f32>().collect()
        };
        let full = grad_of(SecondBatchMode::Full);
        let detached = grad_of(SecondBatchMode::Detached);
        assert!(full.iter().zip(&detached).any(|(a, b)| (a - b).abs() > 1e-4), "{full:?} {detached:?}");
    }

    #[test]
    fn a_method_that_matches_needs_the_second_batch() {
        let device = Device::flex().autodiff();
        let model = model(&device);
        let s1 = batch(&[1.0, 0.0, 2.0, 0.5, 1.0, -1.0], &[0, 1], &device);
        let itra = ItraObjectiveConfig::new(Method::ItraC, 2, 2).with_lambda(0.3).init(&device).unwrap();
        let err = itra.forward_step(&model, PairBatch { first: s1.clone(), second: None }).unwrap_err();
        assert!(err.to_string().contains("second batch"), "{err}");
        // The baseline ignores one it is given, and needs none.
        let baseline = ItraObjectiveConfig::new(Method::Baseline, 2, 2).init(&device).unwrap();
        assert!(
            baseline.forward_step(&model, PairBatch { first: s1, second: None }).unwrap().parts.regularizer.is_none()
        );
    }
}
