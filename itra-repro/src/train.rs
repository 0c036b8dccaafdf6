//! The training loop behind `itra train`: one run of an [`ExperimentConfig`] on an image dataset.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use itra_core::{DistanceStats, ItraObjectiveConfig, MmdLossConfig, SecondBatch, SecondForward};
use itra_data::{ImageDataset, Split};
use itra_models::{FeatureModel, VisionModel};
use serde::{Deserialize, Serialize};

use crate::config::{ExperimentConfig, OptimizerConfig};
use crate::pipeline::{Normalization, PairedSampler, Stream, init_seed, rng};
use crate::provenance::Provenance;

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
    /// Figure 1's `d_same / d_all`, averaged over the steps that had both batches' features.
    pub distance_ratio: Option<f64>,
    /// Test accuracy in percent.
    pub test_accuracy: f64,
    /// Mean test cross-entropy.
    pub test_ce: f64,
    /// Training images (`S1`) per second, evaluation excluded.
    pub images_per_second: f64,
    /// Seconds of training in this epoch, evaluation excluded.
    pub train_seconds: f64,
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub epochs: Vec<EpochMetrics>,
    /// Peak resident memory of the process, in MiB, where the OS reports it.
    pub peak_rss_mib: Option<f64>,
}

/// Options that do not change a run's numbers.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub data_dir: PathBuf,
    pub run_dir: PathBuf,
    pub progress: bool,
}

/// Loads the dataset named by the config (with its limits applied).
pub fn load_data(config: &ExperimentConfig, data_dir: &Path) -> Result<(ImageDataset, ImageDataset)> {
    let id = &config.data.dataset;
    let mut train = itra_data::load_image_dataset(id, data_dir, Split::Train)?;
    let mut test = itra_data::load_image_dataset(id, data_dir, Split::Test)?;
    if let Some(limit) = config.data.train_limit.filter(|&l| l < train.len()) {
        use rand::seq::SliceRandom;
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng(config.seed, Stream::Subset, 0));
        train = train.subset(&order[..limit]);
    }
    if let Some(limit) = config.data.test_limit.filter(|&l| l < test.len()) {
        test = test.subset(&(0..limit).collect::<Vec<_>>());
    }
    Ok((train, test))
}

fn optimizer(config: &OptimizerConfig) -> ModuleOptimizer {
    match *config {
        OptimizerConfig::Sgd { momentum, weight_decay, .. } => {
            let mut sgd = SgdConfig::new();
            if momentum > 0.0 {
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

/// Test accuracy (percent) and mean cross-entropy of `model` on `dataset`.
pub fn evaluate(model: &VisionModel, dataset: &ImageDataset, norm: &Normalization, device: &Device) -> (f64, f64) {
    const EVAL_BATCH: usize = 500;
    let indices: Vec<usize> = (0..dataset.len()).collect();
    let (mut correct, mut ce_sum) = (0usize, 0f64);
    for chunk in indices.chunks(EVAL_BATCH) {
        let (images, labels) = norm.batch(dataset, chunk, device);
        let logits: Vec<f32> = model.forward(images).into_data().iter::<f32>().collect();
        let classes = logits.len() / chunk.len();
        for (row, &label) in logits.chunks_exact(classes).zip(&labels) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let log_sum = row.iter().map(|&z| f64::from(z - max).exp()).sum::<f64>().ln() + f64::from(max);
            ce_sum += log_sum - f64::from(row[label]);
            let predicted = row.iter().enumerate().fold(0, |best, (k, &z)| if z > row[best] { k } else { best });
            correct += usize::from(predicted == label);
        }
    }
    let n = dataset.len().max(1) as f64;
    (100.0 * correct as f64 / n, ce_sum / n)
}

/// Trains `config` from scratch, writing `config.json` and `metrics.jsonl` into the run directory.
pub fn train(config: &ExperimentConfig, options: &RunOptions) -> Result<RunSummary> {
    let device = config.device.autodiff_device()?;
    let eval_device = config.device.device()?;
    let (train_set, test_set) = load_data(config, &options.data_dir)?;
    if train_set.len() < config.batch_size {
        bail!("the training set has {} examples, fewer than one batch of {}", train_set.len(), config.batch_size);
    }
    device.seed(init_seed(config.seed));
    let shape = [train_set.channels, train_set.height, train_set.width];
    let crate::config::ModelConfig::Vision { arch } = config.model else {
        bail!("model `{}` is a text encoder; it trains on text datasets", config.model.name());
    };
    let mut model = itra_models::build(arch, train_set.num_classes, shape, &device)?;
    let mut optim = optimizer(&config.optimizer);
    let loss = &config.loss;
    let mut objective = ItraObjectiveConfig::new(loss.method, train_set.num_classes, model.feat_dim())
        .with_lambda(loss.lambda)
        .with_second_batch(loss.second_batch)
        .with_center_alpha(loss.center_alpha)
        .with_mmd(MmdLossConfig::new().with_bandwidth(loss.bandwidth).with_eps(loss.eps).with_normalize(loss.normalize))
        .init(&device)?;

    let norm = Normalization::of(&train_set);
    let sampler = PairedSampler::new(train_set.len(), config.batch_size, config.seed);
    let steps = sampler.steps_per_epoch();
    let total_steps = steps * config.epochs;

    fs::create_dir_all(&options.run_dir)
        .with_context(|| format!("cannot create run directory {}", options.run_dir.display()))?;
    Provenance::new(config).write(&options.run_dir)?;
    let metrics_path = options.run_dir.join("metrics.jsonl");
    let mut metrics_file = BufWriter::new(
        File::create(&metrics_path).with_context(|| format!("cannot create {}", metrics_path.display()))?,
    );

    let bar = if options.progress { ProgressBar::new(total_steps as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .expect("valid progress template"),
    );

    let mut history = Vec::with_capacity(config.epochs);
    for epoch in 0..config.epochs {
        let (first_order, second_order) = sampler.epoch_orders(epoch);
        let mut sums = Sums::default();
        let started = Instant::now();
        for step in 0..steps {
            let global_step = epoch * steps + step;
            let lr = config.schedule.lr(config.optimizer.lr(), global_step, total_steps);
            let (images, labels) = norm.batch(&train_set, sampler.batch(&first_order, step), &device);
            let h1 = model.forward_features(images);
            let logits = model.forward_head(h1.clone());
            let second_labels;
            let second = match objective.second_forward() {
                SecondForward::None => None,
                mode => {
                    let (images2, labels2) = norm.batch(&train_set, sampler.batch(&second_order, step), &device);
                    second_labels = labels2;
                    let mut h2 = model.forward_features(images2);
                    if mode == SecondForward::Detached {
                        h2 = h2.detach();
                    }
                    Some(SecondBatch { features: h2, labels: &second_labels })
                }
            };
            if let Some(second) = &second {
                let stats = DistanceStats::compute(h1.clone(), &labels, second.features.clone(), second.labels)?;
                if let Some(same) = stats.same_class {
                    sums.distance_ratio += same / stats.all_pairs;
                    sums.distance_steps += 1;
                }
            }
            let parts = objective.step_loss(h1, logits, &labels, second).context("training objective")?;
            let total: f64 = parts.total.clone().into_scalar();
            if !total.is_finite() {
                bail!("nan or infinity in the training loss at epoch {epoch}, step {step} (lr {lr})");
            }
            sums.loss += total;
            sums.ce += parts.ce.clone().detach().into_scalar::<f64>();
            if let Some(term) = parts.regularizer {
                sums.regularizer += term.detach().into_scalar::<f64>();
                sums.regularizer_steps += 1;
            }
            if let Some(sigma) = parts.sigma {
                sums.sigma += sigma;
                sums.sigma_steps += 1;
            }
            let grads = GradientsParams::from_grads(parts.total.backward(), &model);
            model = optim.step(lr, model, grads);
            sums.steps += 1;
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
        let (test_accuracy, test_ce) = evaluate(&model.valid(), &test_set, &norm, &eval_device);
        let metrics = sums.finish(epoch, train_seconds, config.batch_size, test_accuracy, test_ce);
        serde_json::to_writer(&mut metrics_file, &metrics)?;
        writeln!(metrics_file)?;
        metrics_file.flush()?;
        let line = format!(
            "epoch {:>3}: train loss {:.4}  test accuracy {:.2}%  test CE {:.4}  {:.0} img/s",
            epoch + 1,
            metrics.train_loss,
            metrics.test_accuracy,
            metrics.test_ce,
            metrics.images_per_second
        );
        if bar.is_hidden() {
            println!("{line}");
        } else {
            bar.println(line);
        }
        history.push(metrics);
    }
    bar.finish_and_clear();
    Ok(RunSummary { run_dir: options.run_dir.clone(), epochs: history, peak_rss_mib: peak_rss_mib() })
}

#[derive(Default)]
struct Sums {
    steps: usize,
    loss: f64,
    ce: f64,
    regularizer: f64,
    regularizer_steps: usize,
    sigma: f64,
    sigma_steps: usize,
    distance_ratio: f64,
    distance_steps: usize,
}

impl Sums {
    fn finish(
        &self,
        epoch: usize,
        train_seconds: f64,
        batch_size: usize,
        test_accuracy: f64,
        test_ce: f64,
    ) -> EpochMetrics {
        let mean = |sum: f64, count: usize| (count > 0).then(|| sum / count as f64);
        let steps = self.steps.max(1) as f64;
        EpochMetrics {
            epoch: epoch + 1,
            train_loss: self.loss / steps,
            train_ce: self.ce / steps,
            train_regularizer: mean(self.regularizer, self.regularizer_steps),
            sigma: mean(self.sigma, self.sigma_steps),
            distance_ratio: mean(self.distance_ratio, self.distance_steps),
            test_accuracy,
            test_ce,
            images_per_second: (self.steps * batch_size) as f64 / train_seconds.max(1e-9),
            train_seconds,
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
