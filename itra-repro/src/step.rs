//! The runner's optimisation step, written once: the learning rate and lambda of the step, the
//! shared forward ([`ItraObjective::forward_step`]), the finiteness check and the running sums,
//! Figure 1's distance probe as the [`StepPolicy`] says, the backward pass and the optimiser's
//! update. The vision loop, the text loop and `itra bench` call [`Trainer::step`]; what differs
//! between them is how they build batches, which is theirs. (burn-train's `Learner` owns the
//! backward and the update in `itra-train`, whose `TrainStep` calls the same forward.)

use anyhow::{Context, Result};
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::Device;
use itra_core::{
    DistanceStats, FeatureClassifier, ItraObjective, ItraObjectiveConfig, MmdLossConfig, PairBatch, StepOutput,
};

use crate::config::{
    DistanceProbe, ExperimentConfig, LossConfig, OptimizerConfig, Schedule, StepPolicy, WeightDecayMode,
};
use crate::metrics::{DISTANCE_EVERY, Sums};

/// The optimiser an [`OptimizerConfig`] describes (PyTorch semantics), Adam's weight decay
/// applied as `weight_decay` says (AdamW when decoupled).
pub fn optimizer(config: &OptimizerConfig, weight_decay: WeightDecayMode) -> ModuleOptimizer {
    match *config {
        OptimizerConfig::Adam { weight_decay: decay, .. } if weight_decay == WeightDecayMode::Decoupled => {
            AdamWConfig::new().with_weight_decay(decay as f32).init()
        }
        OptimizerConfig::Sgd { momentum, weight_decay, .. } => {
            let mut sgd = SgdConfig::new();
            if momentum > 0.0 {
                // PyTorch's SGD has no dampening; Burn's default is 0.1.
                sgd = sgd.with_momentum(Some(MomentumConfig::new().with_momentum(momentum).with_dampening(0.0)));
            }
            if weight_decay > 0.0 {
                sgd = sgd.with_weight_decay(Some(WeightDecayConfig::new(weight_decay as f32)));
            }
            sgd.init()
        }
        OptimizerConfig::Adam { weight_decay, .. } => {
            let mut adam = AdamConfig::new();
            if weight_decay > 0.0 {
                adam = adam.with_weight_decay(Some(WeightDecayConfig::new(weight_decay as f32)));
            }
            adam.init()
        }
    }
}

/// The training objective a [`LossConfig`] describes, for `num_classes` classes and features of
/// width `feat_dim`; Center loss's centres live on `device`.
pub fn objective(loss: &LossConfig, num_classes: usize, feat_dim: usize, device: &Device) -> Result<ItraObjective> {
    objective_with(loss, num_classes, feat_dim, MmdLossConfig::new(), device)
}

/// As [`objective`], starting from `mmd` for the matching loss's settings the config does not
/// hold (`itra bench` compares the fused and the tensor form).
pub fn objective_with(
    loss: &LossConfig,
    num_classes: usize,
    feat_dim: usize,
    mmd: MmdLossConfig,
    device: &Device,
) -> Result<ItraObjective> {
    Ok(ItraObjectiveConfig::new(loss.method, num_classes, feat_dim)
        .with_lambda(loss.lambda)
        .with_second_batch(loss.second_batch)
        .with_center_alpha(loss.center_alpha)
        .with_center_init(loss.center_init)
        .with_center_halve(loss.center_halve)
        .with_mmd(
            mmd.with_bandwidth(loss.bandwidth)
                .with_eps(loss.eps)
                .with_normalize(loss.normalize)
                .with_matching(loss.matching),
        )
        .init(device)?)
}

/// Everything that sets a step's learning rate and lambda, and what the step does besides.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    pub policy: StepPolicy,
    /// The base learning rate.
    pub lr: f64,
    pub schedule: Schedule,
    /// The objective's lambda and its warm-up.
    pub loss: LossConfig,
    pub steps_per_epoch: usize,
    pub epochs: usize,
}

impl StepPlan {
    /// The plan of `config`'s run, `steps_per_epoch` steps in each epoch.
    pub fn of(config: &ExperimentConfig, steps_per_epoch: usize) -> Self {
        StepPlan {
            policy: config.step_policy(),
            lr: config.optimizer.lr(),
            schedule: config.schedule,
            loss: config.loss.clone(),
            steps_per_epoch,
            epochs: config.epochs,
        }
    }

    /// Every step's steps.
    pub fn total_steps(&self) -> usize {
        self.steps_per_epoch * self.epochs
    }

    /// The learning rate of `global_step` (from 0): the schedule's, times the linear warm-up
    /// `min(1, (step + 1) / w)` over the first `w = ceil(lr_warmup * total_steps)` steps.
    pub fn lr_at(&self, global_step: usize) -> f64 {
        let total = self.total_steps();
        let warmup_steps = (self.policy.lr_warmup * total as f64).ceil() as usize;
        let warmup = if warmup_steps == 0 { 1.0 } else { ((global_step + 1) as f64 / warmup_steps as f64).min(1.0) };
        warmup * self.schedule.lr(self.lr, global_step, total)
    }

    /// Lambda at `global_step` (see [`LossConfig::lambda_at`]).
    pub fn lambda_at(&self, global_step: usize) -> f64 {
        self.loss.lambda_at(global_step, self.total_steps())
    }
}

/// Where a step sits: its epoch and its index in the epoch, from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepIndex {
    pub epoch: usize,
    pub step: usize,
}

/// The objective and the optimiser of a run, stepped by [`Trainer::step`].
pub struct Trainer {
    pub objective: ItraObjective,
    pub optim: ModuleOptimizer,
    pub plan: StepPlan,
}

impl Trainer {
    pub fn new(objective: ItraObjective, optim: ModuleOptimizer, plan: StepPlan) -> Self {
        Trainer { objective, optim, plan }
    }

    /// Whether the step at `index` measures Figure 1's distance.
    pub fn probes(&self, index: StepIndex) -> bool {
        self.plan.policy.distance_probe != DistanceProbe::Off && index.step % DISTANCE_EVERY == 0
    }

    /// One optimisation step on `batch`: lambda and the learning rate of the step, the forward
    /// ([`ItraObjective::forward_step`]), the loss parts and the `S1` features added to `sums`
    /// (a non-finite loss is an error, and no update is applied), the distance probe where
    /// [`Trainer::probes`] says so, then the backward pass and the update. Returns the updated
    /// model.
    ///
    /// `inference_probe` makes [`DistanceProbe::Inference`]'s measurement: the loop forwards
    /// this step's `S1` and `S2` through the inference copy of `model` (before the update) and
    /// returns their [`DistanceStats`]. It is called only on probed steps under that policy.
    pub fn step<I, M>(
        &mut self,
        model: M,
        batch: PairBatch<I>,
        index: StepIndex,
        sums: &mut Sums,
        inference_probe: impl FnOnce(&M) -> Result<DistanceStats>,
    ) -> Result<M>
    where
        M: Module + FeatureClassifier<I>,
    {
        let global_step = index.epoch * self.plan.steps_per_epoch + index.step;
        let lr = self.plan.lr_at(global_step);
        self.objective.set_lambda(self.plan.lambda_at(global_step));
        // `S1`'s labels outlive the forward only where the training-forward probe needs them.
        let probe = self.probes(index).then_some(self.plan.policy.distance_probe);
        let first_labels = (probe == Some(DistanceProbe::Training)).then(|| batch.first.labels.clone());
        let StepOutput { parts, features, second, .. } =
            self.objective.forward_step(&model, batch).context("training objective")?;
        sums.add(&parts, index.epoch, index.step, lr)?;
        sums.features.add(&features);
        if let Some(probe) = probe {
            let stats = match (probe, first_labels, second) {
                (DistanceProbe::Inference, ..) => Some(inference_probe(&model)?),
                (DistanceProbe::Training, Some(labels), Some(second)) => {
                    Some(DistanceStats::compute(features, &labels, second.inputs, &second.labels)?)
                }
                _ => None,
            };
            // Collapsed features (all distances 0) give no ratio rather than a NaN.
            if let Some(stats) = stats
                && let Some(same) = stats.same_class.filter(|_| stats.all_pairs > 0.0)
            {
                sums.distance_trace.push((global_step, same / stats.all_pairs));
            }
        }
        let grads = GradientsParams::from_grads(parts.total.backward(), &model);
        Ok(self.optim.step(lr, model, grads))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(policy: StepPolicy, schedule: Schedule, steps_per_epoch: usize, epochs: usize) -> StepPlan {
        StepPlan { policy, lr: 0.5, schedule, loss: LossConfig::baseline(), steps_per_epoch, epochs }
    }

    #[test]
    fn the_learning_rate_warms_up_linearly_then_follows_the_schedule() {
        // 100 steps, warm-up over 6 % of them: steps 0..6 at (s + 1) / 6 of the rate.
        let warm = plan(StepPolicy::TEXT, Schedule::Constant, 25, 4);
        assert_eq!(warm.total_steps(), 100);
        assert_eq!(warm.lr_at(0), 0.5 / 6.0);
        assert_eq!(warm.lr_at(2), 0.5 * 3.0 / 6.0);
        assert_eq!(warm.lr_at(5), 0.5);
        assert_eq!(warm.lr_at(99), 0.5);
        // No warm-up: the schedule alone (cosine: half the rate at mid-run).
        let cold = plan(StepPolicy::VISION, Schedule::Cosine, 25, 4);
        assert_eq!(cold.lr_at(0), 0.5);
        assert!((cold.lr_at(50) - 0.25).abs() < 1e-15);
        // Both: the warm-up scales the schedule's rate.
        let both = plan(StepPolicy::TEXT, Schedule::Cosine, 25, 4);
        assert!((both.lr_at(3) - Schedule::Cosine.lr(0.5, 3, 100) * 4.0 / 6.0).abs() < 1e-15);
    }

    #[test]
    fn adam_decays_decoupled_only_when_asked() {
        // AdamW moves a zero-gradient weight by lr * decay * w; Adam with L2 decay moves it by
        // about lr (the normalised step of the decay's own gradient). One step on w = 1 tells
        // them apart.
        use burn::module::{Module, Param};
        use burn::tensor::{Tensor, TensorData};

        #[derive(Module, Debug)]
        struct One {
            w: Param<Tensor<1>>,
        }
        let device = Device::flex().autodiff();
        let adam = OptimizerConfig::Adam { lr: 0.1, weight_decay: 0.01 };
        let moved = |mode: WeightDecayMode| -> f32 {
            let module = One { w: Param::from_tensor(Tensor::from_data(TensorData::new(vec![1.0f32], [1]), &device)) };
            let loss = module.w.val().mul_scalar(0.0).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &module);
            let mut optim = optimizer(&adam, mode);
            let module = optim.step(0.1, module, grads);
            1.0 - module.w.val().into_scalar::<f32>()
        };
        let decoupled = moved(WeightDecayMode::Decoupled);
        let coupled = moved(WeightDecayMode::Coupled);
        assert!((decoupled - 0.1 * 0.01).abs() < 1e-6, "AdamW moved {decoupled}");
        assert!((coupled - 0.1).abs() < 1e-3, "Adam with L2 decay moved {coupled}");
    }
}
