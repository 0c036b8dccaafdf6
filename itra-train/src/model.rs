//! The burn-train wrapper: a classifier and its ITRA objective as one `TrainStep`.

use std::fmt;
use std::marker::PhantomData;

use burn::module::{Module, ModuleDisplay};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use burn_train::metric::{AccuracyInput, Adaptor, ItemLazy, LossInput};
use burn_train::{ClassificationOutput, InferenceStep, Interrupter, TrainOutput, TrainStep};
use itra_core::{FeatureClassifier, ItraObjective, LabelledBatch, PairBatch, StepInput};

use crate::metric::ItraPartsInput;

/// A classifier `model` trained with `objective`: `CE + lambda * term` for every method of
/// `itra-core` (baseline, label smoothing, Center loss, ITRA, ITRA-c), as burn-train's
/// `TrainStep` on [`PairBatch`]es (a [`crate::PairLoader`]) and `InferenceStep` on single
/// [`LabelledBatch`]es (Burn's own `DataLoaderBuilder` with [`crate::ImageBatcher`]).
///
/// `I` is what the model's forward takes ([`FeatureClassifier<I>`]): image batches
/// (`Tensor<4>`, the default) or any other [`StepInput`], such as `itra-models`' token batches
/// for the text encoders.
///
/// Both fields are modules: a checkpoint holds the network and Center loss's centres (with the
/// mask of classes already initialised), and burn-train's resume restores both. The centres
/// move by Wen et al.'s rule inside the step (through Burn's running state, as batch norm's
/// statistics do), not by the optimiser. [`itra_core::SecondBatchMode::Cached`]'s previous
/// features are not saved: a resumed cached-mode run matches nothing on its first step.
///
/// A step whose objective fails (a non-finite loss, labels out of range) stops training through
/// the interrupter given to [`Itra::new`], with the error as the reason
/// (`LearningResult::interrupted`), and applies no update.
#[derive(Module, Debug)]
pub struct Itra<M, I = Tensor<4>> {
    /// The network.
    pub model: M,
    /// The training objective and its state.
    pub objective: ItraObjective,
    #[module(skip)]
    stop: StopHandle,
    #[module(skip)]
    input: PhantomData<fn() -> I>,
}

/// The interrupter a failing step stops training with.
#[derive(Clone, Default)]
struct StopHandle(Interrupter);

impl fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StopHandle")
    }
}

impl<M, I> Itra<M, I> {
    /// Wraps `model` and `objective`; `interrupter` is the training's
    /// (`SupervisedTraining::interrupter()`), through which a failing step stops it.
    pub fn new(model: M, objective: ItraObjective, interrupter: Interrupter) -> Self {
        Itra { model, objective, stop: StopHandle(interrupter), input: PhantomData }
    }
}

/// What a training step reports: the loss and its parts, the logits and the targets.
pub struct ItraOutput {
    /// `CE + lambda * term`, `[1]`.
    pub loss: Tensor<1>,
    /// The parts, for [`crate::ItraMetric`].
    pub parts: ItraPartsInput,
    /// The logits on `S1`, `[m1, K]`.
    pub output: Tensor<2>,
    /// `S1`'s labels, `[m1]`.
    pub targets: Tensor<1, Int>,
}

impl ItemLazy for ItraOutput {
    fn sync(self) -> Result<Self, burn::tensor::ExecutionError> {
        self.loss.device().flush()?;
        Ok(ItraOutput {
            loss: self.loss.without_autodiff(),
            parts: self.parts.without_autodiff(),
            output: self.output.without_autodiff(),
            targets: self.targets.without_autodiff(),
        })
    }
}

impl Adaptor<AccuracyInput> for ItraOutput {
    fn adapt(&self) -> AccuracyInput {
        AccuracyInput::new(self.output.clone(), self.targets.clone())
    }
}

impl Adaptor<LossInput> for ItraOutput {
    fn adapt(&self) -> LossInput {
        LossInput::new(self.loss.clone())
    }
}

impl Adaptor<ItraPartsInput> for ItraOutput {
    fn adapt(&self) -> ItraPartsInput {
        self.parts.clone()
    }
}

fn label_tensor(labels: &[usize], device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = labels.iter().map(|&label| label as i64).collect();
    let len = labels.len();
    Tensor::from_data(TensorData::new(labels, [len]), device)
}

impl<M, I> TrainStep for Itra<M, I>
where
    M: FeatureClassifier<I> + Module + ModuleDisplay + 'static,
    I: StepInput + Clone + fmt::Debug + Send + 'static,
{
    type Input = PairBatch<I>;
    type Output = ItraOutput;

    fn step(&self, batch: PairBatch<I>) -> TrainOutput<ItraOutput> {
        let device = batch.first.inputs.device();
        let targets = label_tensor(&batch.first.labels, &device);
        let rows = batch.first.labels.len();
        match self.objective.forward_step(&self.model, batch) {
            Ok(out) => {
                let grads = out.parts.total.backward();
                let parts = ItraPartsInput::of(&out.parts, rows);
                TrainOutput::new(self, grads, ItraOutput { loss: out.parts.total, parts, output: out.logits, targets })
            }
            Err(err) => {
                self.stop.0.stop(Some(&format!("the ITRA objective failed: {err}")));
                let nan = Tensor::<1>::from_data(TensorData::new(vec![f32::NAN], [1]), &device);
                let output = Tensor::<2>::zeros([rows, self.objective.num_classes()], &device);
                let parts = ItraPartsInput::failed(nan.clone(), rows);
                TrainOutput { grads: GradientsParams::new(), item: ItraOutput { loss: nan, parts, output, targets } }
            }
        }
    }
}

impl<M, I> InferenceStep for Itra<M, I>
where
    M: FeatureClassifier<I> + Module + ModuleDisplay + 'static,
    I: StepInput + Clone + fmt::Debug + Send + 'static,
{
    type Input = LabelledBatch<I>;
    type Output = ClassificationOutput;

    /// The plain (unsmoothed) cross-entropy and the logits: what validation reports for every
    /// method.
    fn step(&self, batch: LabelledBatch<I>) -> ClassificationOutput {
        let device = batch.inputs.device();
        let logits = self.model.head(self.model.features(batch.inputs));
        let targets = label_tensor(&batch.labels, &device);
        let loss = CrossEntropyLossConfig::new().init(&device).forward(logits.clone(), targets.clone());
        ClassificationOutput::new(loss, logits, targets)
    }
}
