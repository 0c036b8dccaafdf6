//! The vision training loop: one run of an [`ExperimentConfig`] on an image dataset,
//! checkpointed after every epoch so that a killed run resumes and ends with exactly the numbers
//! of an uninterrupted one. Batches come from the prefetching loader; the step is
//! [`Trainer::step`].

use std::cell::Cell;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::Device;
use itra_core::{DistanceStats, PairBatch, SecondForward};
use itra_data::{Loader, LoaderOptions};
use itra_models::{Arch, FeatureModel, VisionModel};

use crate::config::ExperimentConfig;
use crate::metrics::{EpochTiming, Sums};
use crate::pipeline::{PairedSampler, Stream, init_seed, labelled, next_step, to_tensor};
use crate::run_files::{RunFiles, RunOptions, RunSummary, announce, files, progress_bar, step_progress};
use crate::step::{StepIndex, StepPlan, Trainer, objective, optimizer};

/// Trains `config`, whose model is `arch`, resuming from its checkpoint if one exists; writes
/// `config.json`, `metrics.jsonl` and `metrics.parquet`, the final `model.bpk` and, last,
/// `result.json` into the run directory. Call it through [`crate::train::train`], which
/// validates the configuration.
pub(crate) fn train_vision(config: &ExperimentConfig, arch: Arch, options: &RunOptions) -> Result<RunSummary> {
    let device = config.device.autodiff_device()?;
    let eval_device = config.device.device()?;
    let data = crate::vision_data::load(config, &options.data_dir)?;
    if data.train.len() < config.batch_size {
        bail!("the training set has {} examples, fewer than one batch of {}", data.train.len(), config.batch_size);
    }
    device.seed(init_seed(config.seed));
    let mut model = itra_models::build(arch, data.num_classes(), data.input_shape, &device)?;
    let policy = config.step_policy();
    let mut objective = objective(&config.loss, data.num_classes(), model.feat_dim(), &device)?;
    let (mut files, optim) =
        RunFiles::open(config, options, &mut model, optimizer(&config.optimizer, policy.weight_decay))?;
    files.restore(&mut objective, &device)?;
    let start_epoch = files.start_epoch;

    let sampler = PairedSampler::new(data.train.len(), config.batch_size, config.seed);
    let steps = sampler.steps_per_epoch();
    let mut trainer = Trainer::new(objective, optim, StepPlan::of(config, steps));
    // Batches are made (decoded, augmented, normalised) on the loader's worker threads ahead of
    // the step, evaluation's too; the distance probe makes its two in place.
    let pipeline = data.train_pipeline(config.seed);
    let validation_pipeline = data.validation.as_ref().map(|v| data.eval_pipeline(v));
    let test_pipeline = data.eval_pipeline(&data.test);
    let with_second = trainer.objective.second_forward() != SecondForward::None;
    let bar = progress_bar(options.progress, steps * config.epochs, start_epoch * steps);
    let mut timings = Vec::new();

    for epoch in start_epoch..config.epochs {
        // Burn's own generator (dropout, if any) restarts from a per-epoch seed, so a resumed
        // epoch draws what the uninterrupted one drew.
        device.seed(init_seed(config.seed.wrapping_add(1 + epoch as u64)));
        let (first_order, second_order) = sampler.epoch_orders(epoch);
        let mut loader =
            Loader::new(pipeline.clone(), sampler.epoch_requests(epoch, with_second), epoch, LoaderOptions::default());
        let mut sums = Sums::default();
        let mut timing = EpochTiming::default();
        let started = Instant::now();
        for step in 0..steps {
            let loading = Instant::now();
            let (first_batch, second_batch) =
                next_step(&mut loader, with_second).context("loading a training batch")?;
            let batch = PairBatch {
                first: labelled(first_batch, &device),
                second: second_batch.map(|second_batch| labelled(second_batch, &device)),
            };
            timing.load_seconds += loading.elapsed().as_secs_f64();
            let probe_seconds = Cell::new(0.0);
            // Figure 1's inference probe: this step's S1 and S2 (S2 drawn for every method)
            // through the inference copy of the model.
            let inference_probe = |model: &VisionModel| -> Result<DistanceStats> {
                let probing = Instant::now();
                let inference = model.valid();
                let probe = |indices: &[usize], stream: Stream| {
                    pipeline.batch(indices, stream, epoch).map(|batch| to_tensor(batch, &eval_device))
                };
                let (images1, labels1) = probe(sampler.batch(&first_order, step), Stream::AugmentFirst)?;
                let (images2, labels2) = probe(sampler.second_batch(&second_order, step), Stream::AugmentSecond)?;
                let stats = DistanceStats::compute(
                    inference.forward_features(images1),
                    &labels1,
                    inference.forward_features(images2),
                    &labels2,
                );
                probe_seconds.set(probing.elapsed().as_secs_f64());
                Ok(stats?)
            };
            let stepping = Instant::now();
            model = trainer.step(model, batch, StepIndex { epoch, step }, &mut sums, inference_probe)?;
            timing.step_seconds += stepping.elapsed().as_secs_f64() - probe_seconds.get();
            timing.probe_seconds += probe_seconds.get();
            step_progress(&bar, epoch, &sums, config.batch_size, started, "img");
        }
        let train_seconds = started.elapsed().as_secs_f64();
        let evaluating = Instant::now();
        let inference = model.valid();
        let validation = validation_pipeline
            .as_ref()
            .map(|v| crate::vision_data::evaluate(&inference, v, &eval_device))
            .transpose()?;
        let (test_accuracy, test_ce) = crate::vision_data::evaluate(&inference, &test_pipeline, &eval_device)?;
        timing.eval_seconds = evaluating.elapsed().as_secs_f64();
        let metrics = sums.finish(epoch, train_seconds, config.batch_size, validation, test_accuracy, test_ce);
        let line = format!(
            "epoch {:>3}: train loss {:.4}  test accuracy {:.2}%  test CE {:.4}  dead units {:.1}%  {:.0} img/s",
            epoch + 1,
            metrics.train_loss,
            metrics.test_accuracy,
            metrics.test_ce,
            100.0 * metrics.dead_unit_fraction.unwrap_or(0.0),
            metrics.images_per_second
        );
        announce(&bar, line);
        let recording = Instant::now();
        files.record(metrics, &trainer.objective, &model, &trainer.optim)?;
        timing.checkpoint_seconds = recording.elapsed().as_secs_f64();
        timing.wall_seconds = started.elapsed().as_secs_f64();
        timings.push(timing);
    }
    bar.finish_and_clear();

    let mut summary = files.finish(&model.valid())?;
    summary.timing = timings;
    summary.input_shape = Some(data.input_shape);
    Ok(summary)
}

/// Rebuilds a finished run's model from its `model.bpk`, on `device`.
pub fn load_trained_model(
    config: &ExperimentConfig,
    run_dir: &Path,
    shape: [usize; 3],
    num_classes: usize,
    device: &Device,
) -> Result<VisionModel> {
    let crate::config::ModelConfig::Vision { arch } = config.model else {
        bail!("model `{}` is not a vision model", config.model.name());
    };
    let mut model = itra_models::build(arch, num_classes, shape, device)?;
    let path = run_dir.join(files::MODEL);
    model
        .load_from(&mut BurnpackStore::from_file(&path))
        .map_err(|err| anyhow::anyhow!("cannot load {}: {err}", path.display()))?;
    Ok(model.valid())
}
