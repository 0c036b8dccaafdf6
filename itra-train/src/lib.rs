//! ITRA as a drop-in regulariser for Burn's own training stack (burn-train 0.22).
//!
//! Three pieces turn a Burn classifier into an ITRA run of `SupervisedTraining`:
//!
//! - [`Itra`] wraps any classifier that splits into features and a head
//!   ([`itra_core::FeatureClassifier`] of image batches, or of any other
//!   [`itra_core::StepInput`]: every vision network of `itra-models` is one, and so is every text
//!   encoder, on its token batches; `tests/text.rs` fine-tunes one) together with an
//!   [`itra_core::ItraObjective`], and implements burn-train's `TrainStep` (the step is
//!   [`itra_core::ItraObjective::forward_step`], the same one the `itra` runner calls) and
//!   `InferenceStep`. The objective's state, Center loss's centres, is module state: it is saved
//!   in burn-train's checkpoints with the model and comes back on resume.
//! - [`PairLoader`] is a burn `DataLoader` of [`itra_core::PairBatch`]es over any burn
//!   `Dataset`: `S1` and `S2` are batches of two independent seeded permutations of the whole
//!   dataset per epoch ([`itra_data::PairedSampler`], the runner's sampler), and under
//!   multi-device training each device's `S2` still comes from the whole dataset.
//! - [`ItraMetric`]s log the step's cross-entropy, its matching (or Center) term and the
//!   kernel bandwidth beside Burn's own accuracy and loss.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
//! # use burn::tensor::Tensor;
//! # use itra_core::PairBatch;
//! # use burn::optim::AdamConfig;
//! # use burn::tensor::Device;
//! # use burn_train::metric::{AccuracyMetric, LossMetric};
//! # use burn_train::{Learner, SupervisedTraining};
//! # use itra_core::{ItraObjectiveConfig, Method};
//! # use itra_train::{ImageBatcher, Itra, ItraMetric, PairLoader};
//! # fn run(train: itra_data::PipelineView, test: itra_data::PipelineView, network: itra_models::SmallCnn) {
//! let device = Device::flex().autodiff();
//! let train_loader: Arc<dyn DataLoader<PairBatch<Tensor<4>>>> =
//!     PairLoader::new(train, ImageBatcher, 64, 0, true, &device);
//! let valid_loader = DataLoaderBuilder::new(ImageBatcher).batch_size(256).build(test);
//! let training = SupervisedTraining::new("runs/itra-c", train_loader, valid_loader)
//!     .metrics((AccuracyMetric::new(), LossMetric::new()))
//!     .metric_train_numeric(ItraMetric::cross_entropy())
//!     .metric_train_numeric(ItraMetric::regularizer())
//!     .with_default_checkpointers()
//!     .num_epochs(10);
//! let objective = ItraObjectiveConfig::new(Method::ItraC, 10, 128).with_lambda(0.6).init(&device).unwrap();
//! let model = Itra::new(network, objective, training.interrupter());
//! let result = training.launch(Learner::new(model, AdamConfig::new().init(), 1e-3));
//! # }
//! ```

mod batcher;
mod loader;
mod metric;
mod model;

pub use batcher::ImageBatcher;
pub use itra_core::{FeatureClassifier, LabelledBatch, PairBatch, StepInput};
pub use loader::PairLoader;
pub use metric::{ItraMetric, ItraPartsInput};
pub use model::{Itra, ItraOutput};
