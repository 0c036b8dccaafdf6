//! The training loop behind `itra train` and `itra reproduce`: one run of an
//! [`ExperimentConfig`] on an image dataset, checkpointed after every epoch so that a killed run
//! resumes and ends with exactly the numbers of an uninterrupted one.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::{Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use itra_core::{
    DistanceStats, ItraObjective, ItraObjectiveConfig, MmdLossConfig, PairBatch, SecondForward, StepOutput,
};
use itra_data::{Loader, LoaderOptions};
use itra_models::{FeatureModel, VisionModel};
use serde::{Deserialize, Serialize};

use crate::config::{ExperimentConfig, LossConfig, ModelConfig, OptimizerConfig};
use crate::pipeline::{PairedSampler, Stream, init_seed, labelled, next_step, to_tensor};
use crate::provenance::{Provenance, write_atomic};
use crate::run_lock::RunLock;

/// One epoch's numbers, one JSON line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    /// Mean training objective over the epoch's steps.
    pub train_loss: f64,
    /// Mean (smoothed, for LSR) cross-entropy on `S1`.
    pub train_ce: f64,
    /// Mean unweighted regulariser (matching loss or Center loss), if any.
    pub train_regularizer: Option<f64>,
    /// Mean kernel bandwidth, for ITRA and ITRA-c.
    pub sigma: Option<f64>,
    /// Figure 1's `d_same / d_all` (see [`DISTANCE_EVERY`]), averaged over the epoch.
    pub distance_ratio: Option<f64>,
    /// The measurements behind `distance_ratio`: `(global step, d_same / d_all)`.
    #[serde(default)]
    pub distance_trace: Vec<(usize, f64)>,
    /// Validation accuracy in percent, when the run holds out a validation split.
    pub val_accuracy: Option<f64>,
    /// Mean validation cross-entropy.
    pub val_ce: Option<f64>,
    /// Test accuracy in percent.
    pub test_accuracy: f64,
    /// Mean test cross-entropy.
    pub test_ce: f64,
    /// Training images (`S1`) per second, evaluation excluded.
    pub images_per_second: f64,
    /// Seconds of training in this epoch, evaluation excluded.
    pub train_seconds: f64,
    /// Share of the feature units (columns of `H1`) that were zero on every `S1` example of
    /// the epoch: dead units, the mark of a collapse.
    #[serde(default)]
    pub dead_unit_fraction: Option<f64>,
    /// Share of all feature activations of the epoch's `S1` batches that were exactly zero.
    #[serde(default)]
    pub zero_activation_fraction: Option<f64>,
    /// Mean Euclidean norm of an `S1` feature vector over the epoch.
    #[serde(default)]
    pub feature_norm: Option<f64>,
}

/// Figure 1's distance is measured every this many steps, for every method alike: `S1` and
/// `S2` of that step go through the inference copy of the model (batch norm in evaluation
/// mode, no gradient, no effect on training), and `d_same / d_all` is taken between their
/// features (`CONVENTIONS.md`). Measuring through the training forward instead would need an
/// `S2` forward the baseline does not make, and would move its batch-norm statistics.
pub const DISTANCE_EVERY: usize = 10;

/// What a finished run reports; written as `result.json`, whose presence marks the run done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub config_hash: String,
    pub run_dir: PathBuf,
    pub epochs: Vec<EpochMetrics>,
    /// Peak resident memory of the process, in MiB, where the OS reports it.
    pub peak_rss_mib: Option<f64>,
    /// The epoch this invocation resumed from (0 for a fresh start).
    pub resumed_from_epoch: usize,
}

/// Options that do not change a run's numbers.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub data_dir: PathBuf,
    pub run_dir: PathBuf,
    pub progress: bool,
}

/// The optimiser an [`OptimizerConfig`] describes (PyTorch semantics).
pub fn optimizer(config: &OptimizerConfig) -> ModuleOptimizer {
    optimizer_with(config, false)
}

/// As [`optimizer`], but with `decoupled_weight_decay` Adam becomes AdamW (`torch.optim.AdamW`,
/// the fine-tuning recipe of `transformers`).
pub fn optimizer_with(config: &OptimizerConfig, decoupled_weight_decay: bool) -> ModuleOptimizer {
    match *config {
        OptimizerConfig::Adam { weight_decay, .. } if decoupled_weight_decay => {
            AdamWConfig::new().with_weight_decay(weight_decay as f32).init()
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

/// Accuracy and cross-entropy accumulated over batches of logits.
#[derive(Debug, Default)]
pub(crate) struct Score {
    correct: usize,
    ce_sum: f64,
    count: usize,
}

impl Score {
    /// Adds a batch: `logits` row-major `[labels.len(), classes]`.
    pub fn add(&mut self, logits: &[f32], labels: &[usize]) {
        let classes = logits.len() / labels.len().max(1);
        for (row, &label) in logits.chunks_exact(classes.max(1)).zip(labels) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let log_sum = row.iter().map(|&z| f64::from(z - max).exp()).sum::<f64>().ln() + f64::from(max);
            self.ce_sum += log_sum - f64::from(row[label]);
            let predicted = row.iter().enumerate().fold(0, |best, (k, &z)| if z > row[best] { k } else { best });
            self.correct += usize::from(predicted == label);
            self.count += 1;
        }
    }

    /// Accuracy in percent and mean cross-entropy.
    pub fn finish(&self) -> (f64, f64) {
        let n = self.count.max(1) as f64;
        (100.0 * self.correct as f64 / n, self.ce_sum / n)
    }
}

/// The training progress bar (hidden unless `show`), positioned at `start` of `total` steps.
pub(crate) fn progress_bar(show: bool, total: usize, start: usize) -> ProgressBar {
    let bar = if show { ProgressBar::new(total as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .expect("valid progress template"),
    );
    bar.set_position(start as u64);
    bar
}

/// Prints an epoch's summary line above the progress bar, or plainly when it is hidden.
pub(crate) fn announce(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

/// The files of a run directory.
pub mod files {
    pub const CONFIG: &str = "config.json";
    pub const METRICS: &str = "metrics.jsonl";
    pub const METRICS_TABLE: &str = crate::metrics_table::FILE;
    pub const RESULT: &str = "result.json";
    pub const MODEL: &str = "model.bpk";
    pub const CHECKPOINT: &str = "checkpoint";
}

/// Everything besides model and optimiser that a resumed run needs.
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointState {
    pub config_hash: String,
    pub epochs_done: usize,
    pub history: Vec<EpochMetrics>,
    /// Center loss's centres, `[K, d]` row-major.
    pub centers: Option<(Vec<f32>, [usize; 2])>,
    /// Which of Center loss's classes have had their centre initialised (absent in checkpoints
    /// written before class-mean initialisation, whose centres all counted as initialised).
    #[serde(default)]
    pub center_initialized: Option<Vec<bool>>,
    /// The cached-mode `H1` and its labels.
    pub cache: Option<(Vec<f32>, [usize; 2], Vec<usize>)>,
}

impl CheckpointState {
    /// The state after `history.len()` epochs, with the objective's centres and cache.
    pub fn capture(config_hash: &str, history: &[EpochMetrics], objective: &ItraObjective) -> Self {
        CheckpointState {
            config_hash: config_hash.to_owned(),
            epochs_done: history.len(),
            history: history.to_vec(),
            centers: objective.center().map(|c| tensor_to_host(&c.centers())),
            center_initialized: objective.center().map(|c| c.initialized()),
            cache: objective.cached_features().map(|(h, labels)| {
                let (values, shape) = tensor_to_host(&h);
                (values, shape, labels)
            }),
        }
    }
}

fn tensor_to_host(tensor: &Tensor<2>) -> (Vec<f32>, [usize; 2]) {
    (tensor.to_data().iter::<f32>().collect(), tensor.dims())
}

fn host_to_tensor((values, shape): (Vec<f32>, [usize; 2]), device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Writes the checkpoint for `epochs_done` into `<run>/checkpoint/`, replacing the previous one
/// only once the new one is complete.
fn save_checkpoint<M: Module>(
    run_dir: &Path,
    state: &CheckpointState,
    model: &M,
    optim: &ModuleOptimizer,
) -> Result<()> {
    // Names unique to this writer: the run lock keeps others out, and these keep even a writer
    // that lost it from touching another's files.
    let partial = run_dir.join(format!("{}.partial.{}", files::CHECKPOINT, std::process::id()));
    let done = run_dir.join(files::CHECKPOINT);
    let old = run_dir.join(format!("{}.old.{}", files::CHECKPOINT, std::process::id()));
    for dir in [&partial, &old] {
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
    }
    fs::create_dir_all(&partial)?;
    model
        .save_into(&mut BurnpackStore::from_file(partial.join("model.bpk")).overwrite(true))
        .map_err(|err| anyhow::anyhow!("cannot save the model checkpoint: {err}"))?;
    optim.save(partial.join("optimizer.bpk")).map_err(|err| anyhow::anyhow!("cannot save the optimiser: {err:?}"))?;
    let mut state_bytes = Vec::new();
    ciborium::into_writer(state, &mut state_bytes).context("cannot encode the checkpoint state")?;
    fs::write(partial.join(STATE), state_bytes)?;
    if done.exists() {
        fs::rename(&done, &old)?;
    }
    fs::rename(&partial, &done)?;
    if old.exists() {
        fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// The checkpoint's state file: CBOR, whose floats round-trip bit for bit (so the history a
/// resumed run rewrites is the one it wrote). Checkpoints of earlier versions hold
/// [`LEGACY_STATE`] (JSON) instead.
const STATE: &str = "state.cbor";
const LEGACY_STATE: &str = "state.json";

/// Tidies what a writer killed inside [`save_checkpoint`] left: a half-written
/// `checkpoint.partial.<pid>` is removed, and a `checkpoint.old.<pid>` whose replacement never
/// landed becomes the checkpoint again. Runs under the run lock.
fn recover_checkpoint_dirs(run_dir: &Path) -> Result<()> {
    let done = run_dir.join(files::CHECKPOINT);
    let entries = fs::read_dir(run_dir).with_context(|| format!("cannot list {}", run_dir.display()))?;
    let mut olds = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if name.starts_with(&format!("{}.partial", files::CHECKPOINT)) {
            fs::remove_dir_all(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        } else if name.starts_with(&format!("{}.old", files::CHECKPOINT)) {
            olds.push(path);
        }
    }
    for old in olds {
        if done.exists() {
            fs::remove_dir_all(&old).with_context(|| format!("cannot remove {}", old.display()))?;
        } else {
            fs::rename(&old, &done).with_context(|| format!("cannot restore {}", old.display()))?;
        }
    }
    Ok(())
}

/// Loads a checkpoint of this very configuration, if one exists.
fn load_checkpoint<M: Module>(
    run_dir: &Path,
    config_hash: &str,
    model: &mut M,
    optim: ModuleOptimizer,
) -> Result<(Option<CheckpointState>, ModuleOptimizer)> {
    let dir = run_dir.join(files::CHECKPOINT);
    let state_path = dir.join(STATE);
    let legacy_path = dir.join(LEGACY_STATE);
    let state: CheckpointState = if state_path.exists() {
        ciborium::from_reader(fs::read(&state_path)?.as_slice())
            .with_context(|| format!("corrupt checkpoint {}; remove it to start over", state_path.display()))?
    } else if legacy_path.exists() {
        serde_json::from_slice(&fs::read(&legacy_path)?)
            .with_context(|| format!("corrupt checkpoint {}; remove it to start over", legacy_path.display()))?
    } else {
        return Ok((None, optim));
    };
    if state.config_hash != config_hash {
        bail!(
            "checkpoint {} belongs to configuration {}, not {config_hash}; remove it to start over",
            dir.display(),
            state.config_hash
        );
    }
    model
        .load_from(&mut BurnpackStore::from_file(dir.join("model.bpk")))
        .map_err(|err| anyhow::anyhow!("cannot load the model checkpoint in {}: {err}", dir.display()))?;
    let optim = optim
        .load(dir.join("optimizer.bpk"))
        .map_err(|err| anyhow::anyhow!("cannot load the optimiser checkpoint in {}: {err:?}", dir.display()))?;
    Ok((Some(state), optim))
}

fn restore_objective(objective: &ItraObjective, state: &mut CheckpointState, device: &Device) -> Result<()> {
    if let (Some(center), Some(centers)) = (objective.center(), state.centers.take()) {
        let classes = centers.1[0];
        let initialized = state.center_initialized.take().unwrap_or_else(|| vec![true; classes]);
        center.restore(host_to_tensor(centers, device), initialized).context("restoring the Center-loss centres")?;
    }
    objective.restore_cache(
        state.cache.take().map(|(values, shape, labels)| (host_to_tensor((values, shape), device), labels)),
    );
    Ok(())
}

/// A run directory being written: provenance, the per-epoch metrics (`metrics.jsonl` and
/// `metrics.parquet`), checkpoints, and at the end the final model and `result.json`. Shared by
/// the vision and the text loop.
pub(crate) struct RunFiles {
    /// The run directory's lock, held for as long as the run is being written.
    lock: RunLock,
    run_dir: PathBuf,
    config_hash: String,
    metrics_file: BufWriter<File>,
    history: Vec<EpochMetrics>,
    checkpoint: Option<CheckpointState>,
    /// The epoch training starts from: 0, or the number of epochs in the checkpoint.
    pub start_epoch: usize,
}

impl RunFiles {
    /// Creates the run directory, loads this configuration's checkpoint into `model` and
    /// `optim` if there is one, writes `config.json` and rewrites `metrics.jsonl` from the
    /// checkpoint's history (so an epoch cut short leaves no line behind).
    pub fn open<M: Module>(
        config: &ExperimentConfig,
        options: &RunOptions,
        model: &mut M,
        optim: ModuleOptimizer,
    ) -> Result<(Self, ModuleOptimizer)> {
        let run_dir = options.run_dir.clone();
        fs::create_dir_all(&run_dir).with_context(|| format!("cannot create run directory {}", run_dir.display()))?;
        let lock = RunLock::acquire(&run_dir)?;
        for note in &lock.notes {
            eprintln!("note: {note}");
        }
        recover_checkpoint_dirs(&run_dir)?;
        let config_hash = config.hash();
        let (checkpoint, optim) = load_checkpoint(&run_dir, &config_hash, model, optim)?;
        let history = checkpoint.as_ref().map(|state| state.history.clone()).unwrap_or_default();
        Provenance::new(config).write(&run_dir)?;
        let metrics_path = run_dir.join(files::METRICS);
        let mut metrics_file = BufWriter::new(
            File::create(&metrics_path).with_context(|| format!("cannot create {}", metrics_path.display()))?,
        );
        for metrics in &history {
            serde_json::to_writer(&mut metrics_file, metrics)?;
            writeln!(metrics_file)?;
        }
        metrics_file.flush()?;
        let start_epoch = history.len();
        Ok((RunFiles { lock, run_dir, config_hash, metrics_file, history, checkpoint, start_epoch }, optim))
    }

    /// Puts the checkpoint's Center-loss centres and cached features back into `objective`.
    pub fn restore(&mut self, objective: &ItraObjective, device: &Device) -> Result<()> {
        match self.checkpoint.take() {
            Some(mut state) => restore_objective(objective, &mut state, device),
            None => Ok(()),
        }
    }

    /// Appends an epoch's metrics and checkpoints the state after it.
    pub fn record<M: Module>(
        &mut self,
        metrics: EpochMetrics,
        objective: &ItraObjective,
        model: &M,
        optim: &ModuleOptimizer,
    ) -> Result<()> {
        self.lock.check()?;
        serde_json::to_writer(&mut self.metrics_file, &metrics)?;
        writeln!(self.metrics_file)?;
        self.metrics_file.flush()?;
        self.history.push(metrics);
        crate::metrics_table::write(&self.run_dir, &self.history)?;
        let state = CheckpointState::capture(&self.config_hash, &self.history, objective);
        save_checkpoint(&self.run_dir, &state, model, optim)
    }

    /// Saves the final (inference) model, writes `result.json` last and drops the checkpoint.
    pub fn finish<M: Module>(self, model: &M) -> Result<RunSummary> {
        self.lock.check()?;
        model
            .save_into(&mut BurnpackStore::from_file(self.run_dir.join(files::MODEL)).overwrite(true))
            .map_err(|err| anyhow::anyhow!("cannot save the final model: {err}"))?;
        let summary = RunSummary {
            config_hash: self.config_hash,
            run_dir: self.run_dir.clone(),
            epochs: self.history,
            peak_rss_mib: peak_rss_mib(),
            resumed_from_epoch: self.start_epoch,
        };
        write_atomic(&self.run_dir.join(files::RESULT), &serde_json::to_vec_pretty(&summary)?)?;
        fs::remove_dir_all(self.run_dir.join(files::CHECKPOINT)).ok();
        Ok(summary)
    }
}

/// The training objective a [`LossConfig`] describes, for `num_classes` classes and features of
/// width `feat_dim`; Center loss's centres live on `device`. Both training loops build theirs here.
pub fn objective(loss: &LossConfig, num_classes: usize, feat_dim: usize, device: &Device) -> Result<ItraObjective> {
    Ok(ItraObjectiveConfig::new(loss.method, num_classes, feat_dim)
        .with_lambda(loss.lambda)
        .with_second_batch(loss.second_batch)
        .with_center_alpha(loss.center_alpha)
        .with_center_init(loss.center_init)
        .with_center_halve(loss.center_halve)
        .with_mmd(
            MmdLossConfig::new()
                .with_bandwidth(loss.bandwidth)
                .with_eps(loss.eps)
                .with_normalize(loss.normalize)
                .with_matching(loss.matching),
        )
        .init(device)?)
}

/// Trains `config` (resuming from its checkpoint if one exists), writing `config.json`,
/// `metrics.jsonl` and `metrics.parquet`, the final `model.bpk` and, last, `result.json` into
/// the run directory.
/// Text encoders go to [`crate::text_train::train_text`].
pub fn train(config: &ExperimentConfig, options: &RunOptions) -> Result<RunSummary> {
    config.validate().map_err(anyhow::Error::msg)?;
    let ModelConfig::Vision { arch } = config.model else {
        return crate::text_train::train_text(config, options);
    };
    let device = config.device.autodiff_device()?;
    let eval_device = config.device.device()?;
    let data = crate::vision_data::load(config, &options.data_dir)?;
    if config.batch_size == 0 {
        bail!("the batch size must be positive");
    }
    if data.train.len() < config.batch_size {
        bail!("the training set has {} examples, fewer than one batch of {}", data.train.len(), config.batch_size);
    }
    device.seed(init_seed(config.seed));
    let mut model = itra_models::build(arch, data.num_classes(), data.input_shape, &device)?;
    let loss = &config.loss;
    let mut objective = objective(loss, data.num_classes(), model.feat_dim(), &device)?;

    let (mut files, mut optim) = RunFiles::open(config, options, &mut model, optimizer(&config.optimizer))?;
    files.restore(&objective, &device)?;
    let start_epoch = files.start_epoch;

    let sampler = PairedSampler::new(data.train.len(), config.batch_size, config.seed);
    // Batches are made (decoded, augmented, normalised) on the loader's worker threads ahead of
    // the step, evaluation's too; the distance probe makes its two in place.
    let pipeline = data.train_pipeline(config.seed);
    let validation_pipeline = data.validation.as_ref().map(|v| data.eval_pipeline(v));
    let test_pipeline = data.eval_pipeline(&data.test);
    let with_second = objective.second_forward() != SecondForward::None;
    let steps = sampler.steps_per_epoch();
    let total_steps = steps * config.epochs;
    let bar = progress_bar(options.progress, total_steps, start_epoch * steps);

    for epoch in start_epoch..config.epochs {
        // Burn's own generator (dropout, if any) restarts from a per-epoch seed, so a resumed
        // epoch draws what the uninterrupted one drew.
        device.seed(init_seed(config.seed.wrapping_add(1 + epoch as u64)));
        let (first_order, second_order) = sampler.epoch_orders(epoch);
        let mut loader =
            Loader::new(pipeline.clone(), sampler.epoch_requests(epoch, with_second), epoch, LoaderOptions::default());
        let mut sums = Sums::default();
        let started = Instant::now();
        for step in 0..steps {
            let global_step = epoch * steps + step;
            let lr = config.schedule.lr(config.optimizer.lr(), global_step, total_steps);
            objective.set_lambda(config.loss.lambda_at(global_step, total_steps));
            let (first_batch, second_batch) =
                next_step(&mut loader, with_second).context("loading a training batch")?;
            let batch = PairBatch {
                first: labelled(first_batch, &device),
                second: second_batch.map(|second_batch| labelled(second_batch, &device)),
            };
            let StepOutput { parts, features, .. } =
                objective.forward_step(&model, batch).context("training objective")?;
            sums.features.add(&features);
            if step % DISTANCE_EVERY == 0 {
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
                )?;
                // Collapsed features (all distances 0) give no ratio rather than a NaN.
                if let Some(same) = stats.same_class.filter(|_| stats.all_pairs > 0.0) {
                    sums.distance_trace.push((global_step, same / stats.all_pairs));
                }
            }
            sums.add(&parts, epoch, step, lr)?;
            let grads = GradientsParams::from_grads(parts.total.backward(), &model);
            model = optim.step(lr, model, grads);
            let seconds = started.elapsed().as_secs_f64();
            bar.set_message(format!(
                "epoch {} loss {:.4} {:.0} img/s",
                epoch + 1,
                sums.loss / sums.steps as f64,
                (sums.steps * config.batch_size) as f64 / seconds.max(1e-9)
            ));
            bar.inc(1);
        }
        let train_seconds = started.elapsed().as_secs_f64();
        let inference = model.valid();
        let validation = validation_pipeline
            .as_ref()
            .map(|v| crate::vision_data::evaluate(&inference, v, &eval_device))
            .transpose()?;
        let (test_accuracy, test_ce) = crate::vision_data::evaluate(&inference, &test_pipeline, &eval_device)?;
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
        files.record(metrics, &objective, &model, &optim)?;
    }
    bar.finish_and_clear();

    files.finish(&model.valid())
}

/// Rebuilds a finished run's model from its `model.bpk`, on `device`.
pub fn load_trained_model(
    config: &ExperimentConfig,
    run_dir: &Path,
    shape: [usize; 3],
    num_classes: usize,
    device: &Device,
) -> Result<VisionModel> {
    let ModelConfig::Vision { arch } = config.model else {
        bail!("model `{}` is not a vision model", config.model.name());
    };
    let mut model = itra_models::build(arch, num_classes, shape, device)?;
    let path = run_dir.join(files::MODEL);
    model
        .load_from(&mut BurnpackStore::from_file(&path))
        .map_err(|err| anyhow::anyhow!("cannot load {}: {err}", path.display()))?;
    Ok(model.valid())
}

/// Running sums of one epoch's training numbers.
#[derive(Default)]
pub(crate) struct Sums {
    pub steps: usize,
    pub loss: f64,
    pub ce: f64,
    pub regularizer: f64,
    pub regularizer_steps: usize,
    pub sigma: f64,
    pub sigma_steps: usize,
    pub distance_trace: Vec<(usize, f64)>,
    pub features: FeatureStats,
}

/// Collapse diagnostics over an epoch's `S1` features: which units were ever non-zero, how many
/// activations were zero, and the feature norms.
#[derive(Debug, Default)]
pub(crate) struct FeatureStats {
    active: Vec<bool>,
    zeros: usize,
    entries: usize,
    norm_sum: f64,
    rows: usize,
}

impl FeatureStats {
    /// Adds one batch of features `[m, d]` (read on the host; no gradient is involved).
    pub fn add(&mut self, features: &Tensor<2>) {
        let [rows, width] = features.dims();
        if rows == 0 || width == 0 {
            return;
        }
        let values: Vec<f32> = features.clone().detach().into_data().iter::<f32>().collect();
        if self.active.len() != width {
            self.active = vec![false; width];
        }
        for row in values.chunks_exact(width) {
            let mut squares = 0f64;
            for (unit, &v) in row.iter().enumerate() {
                if v == 0.0 {
                    self.zeros += 1;
                } else {
                    self.active[unit] = true;
                }
                squares += f64::from(v) * f64::from(v);
            }
            self.norm_sum += squares.sqrt();
        }
        self.entries += rows * width;
        self.rows += rows;
    }

    /// `(dead_unit_fraction, zero_activation_fraction, feature_norm)`, if any batch was added.
    pub fn finish(&self) -> Option<(f64, f64, f64)> {
        (self.rows > 0).then(|| {
            let dead = self.active.iter().filter(|&&a| !a).count();
            (
                dead as f64 / self.active.len() as f64,
                self.zeros as f64 / self.entries as f64,
                self.norm_sum / self.rows as f64,
            )
        })
    }
}

impl Sums {
    /// Adds one step's loss parts; fails on a non-finite total.
    pub fn add(&mut self, parts: &itra_core::LossParts, epoch: usize, step: usize, lr: f64) -> Result<()> {
        let total: f64 = parts.total.clone().into_scalar();
        if !total.is_finite() {
            bail!("nan or infinity in the training loss at epoch {}, step {step} (lr {lr})", epoch + 1);
        }
        self.loss += total;
        self.ce += parts.ce.clone().detach().into_scalar::<f64>();
        if let Some(term) = &parts.regularizer {
            self.regularizer += term.clone().detach().into_scalar::<f64>();
            self.regularizer_steps += 1;
        }
        if let Some(sigma) = parts.sigma {
            self.sigma += sigma;
            self.sigma_steps += 1;
        }
        self.steps += 1;
        Ok(())
    }

    pub fn finish(
        &self,
        epoch: usize,
        train_seconds: f64,
        batch_size: usize,
        validation: Option<(f64, f64)>,
        test_accuracy: f64,
        test_ce: f64,
    ) -> EpochMetrics {
        let mean = |sum: f64, count: usize| (count > 0).then(|| sum / count as f64);
        let steps = self.steps.max(1) as f64;
        let features = self.features.finish();
        EpochMetrics {
            epoch: epoch + 1,
            train_loss: self.loss / steps,
            train_ce: self.ce / steps,
            train_regularizer: mean(self.regularizer, self.regularizer_steps),
            sigma: mean(self.sigma, self.sigma_steps),
            distance_ratio: mean(self.distance_trace.iter().map(|t| t.1).sum(), self.distance_trace.len()),
            distance_trace: self.distance_trace.clone(),
            val_accuracy: validation.map(|v| v.0),
            val_ce: validation.map(|v| v.1),
            test_accuracy,
            test_ce,
            images_per_second: (self.steps * batch_size) as f64 / train_seconds.max(1e-9),
            train_seconds,
            dead_unit_fraction: features.map(|f| f.0),
            zero_activation_fraction: features.map(|f| f.1),
            feature_norm: features.map(|f| f.2),
        }
    }
}

/// Peak resident set size of this process (Linux `VmHWM`), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_stats_find_dead_units_zeros_and_norms() {
        // Two batches of 2 x 3 features; unit 2 is zero everywhere (dead), units 0 and 1 are
        // non-zero somewhere. Zeros: 4 + 3 of 12 entries. Norms: |(3,4,0)| = 5, |(0,0,0)| = 0,
        // |(1,0,0)| = 1, |(2,2,0)| = sqrt(8).
        let device = Device::flex();
        let batch = |values: Vec<f32>| Tensor::<2>::from_data(TensorData::new(values, [2, 3]), &device);
        let mut stats = FeatureStats::default();
        assert_eq!(stats.finish(), None);
        stats.add(&batch(vec![3.0, 4.0, 0.0, 0.0, 0.0, 0.0]));
        stats.add(&batch(vec![1.0, 0.0, 0.0, 2.0, 2.0, 0.0]));
        let (dead, zeros, norm) = stats.finish().unwrap();
        assert_eq!(dead, 1.0 / 3.0);
        assert_eq!(zeros, 7.0 / 12.0);
        assert!((norm - (5.0 + 0.0 + 1.0 + 8f64.sqrt()) / 4.0).abs() < 1e-12);
    }
}
