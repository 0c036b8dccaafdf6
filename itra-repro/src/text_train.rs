//! Fine-tuning a pretrained text encoder with its classification head: the text branch of
//! `itra train` (the paper's Table 4), the same loop as [`crate::train`] on token batches.
//!
//! The step is the vision loop's ([`crate::step::Trainer`]); its policies default to the
//! fine-tuning recipe of `transformers` ([`crate::config::StepPolicy::TEXT`]: AdamW, the
//! learning rate warmed up over 6 % of the steps, Figure 1's distance probe on the training
//! forward's features, so only for methods that forward `S2`), and `itra train
//! --lr-warmup/--weight-decay-mode/--distance-probe` change them. What is the text loop's own:
//! - batches are padded to their longest sequence (dynamic padding), after truncation to
//!   `max_len` tokens; the dataset is tokenised once before training;
//! - each epoch appends to `text_diagnostics.jsonl` in the run directory what the held-out
//!   features look like ([`HeldOutDiagnostics`]: their spread, how much of it separates the
//!   classes, the share of the most predicted class), the signs of a collapse;
//! - checkpoints, resume and run files are those of the vision loop (per epoch; the final
//!   `model.bpk` holds the fine-tuned encoder and head).
//!
//! As in the vision loop, lambda ramps up over `LossConfig::lambda_warmup` of the steps, and
//! `config.data.validation > 0` holds out that many training examples (a draw stratified by
//! class, seeded by the run's seed; `train_limit` then draws from the rest), evaluated after
//! every epoch into `val_accuracy` and `val_ce`, by which the experiment runner picks lambda.
//!
//! # The `ag_news-test-split` dataset
//! The CPU reproduction trains on AG News' 7,600-example **test** CSV alone, split once with a
//! fixed seed ([`SPLIT_SEED`], independent of the run's seed, so every run evaluates on the same
//! examples) and stratified by class into 80% training and 20% held-out evaluation. The file is
//! `$ITRA_AG_NEWS_TEST` if set, else `<data_dir>/ag_news/ag_news_csv/test.csv` (where
//! `itra data fetch ag_news` extracts it).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::Device;
use itra_core::{DistanceStats, LabelledBatch, PairBatch, SecondForward};
use itra_data::sampler::{init_seed, rng};
use itra_data::{PairedSampler, Split, Stream, TextDataset};

use crate::dataset::DatasetId;
use itra_models::text::{TextFeatureModel, TextModel, TextTokenizer, TokenSequence};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::{ExperimentConfig, TextFeatures};
use crate::encode::{Encoder, resolve_encoder};
use crate::metrics::{Score, Sums};
use crate::run_files::{RunFiles, RunOptions, RunSummary, announce, progress_bar, step_progress};
use crate::step::{StepIndex, StepPlan, Trainer, objective, optimizer};

pub use crate::dataset::AG_NEWS_TEST_SPLIT;
/// The environment variable naming AG News' `test.csv` for [`AG_NEWS_TEST_SPLIT`].
pub const AG_NEWS_TEST_ENV: &str = "ITRA_AG_NEWS_TEST";
/// Seed of the [`AG_NEWS_TEST_SPLIT`] split.
pub const SPLIT_SEED: u64 = 0;
/// Share of [`AG_NEWS_TEST_SPLIT`] used for training.
pub const TRAIN_FRACTION: f64 = 0.8;
/// Sequences per evaluation batch.
const EVAL_BATCH: usize = 64;

/// AG News' test CSV for [`AG_NEWS_TEST_SPLIT`] (see the module docs for the search order).
pub fn ag_news_test_csv(data_dir: &Path) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(AG_NEWS_TEST_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{AG_NEWS_TEST_ENV} names {}, which is not a file", path.display());
        }
        return Ok(path);
    }
    let path = data_dir.join("ag_news/ag_news_csv/test.csv");
    if !path.is_file() {
        bail!(
            "AG News test.csv not found at {}; set {AG_NEWS_TEST_ENV} to its path or run `itra data fetch ag_news`",
            path.display()
        );
    }
    Ok(path)
}

/// Indices of a stratified split: per class, a [`SPLIT_SEED`] shuffle whose first
/// `round(fraction * n_class)` go to the first part. Both parts are in ascending order.
pub fn stratified_split(labels: &[u32], num_classes: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for class in 0..num_classes as u32 {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        members.shuffle(&mut rng);
        let cut = (fraction * members.len() as f64).round() as usize;
        first.extend_from_slice(&members[..cut]);
        second.extend_from_slice(&members[cut..]);
    }
    first.sort_unstable();
    second.sort_unstable();
    (first, second)
}

/// The splits of a text run.
#[derive(Debug, Clone)]
pub struct TextSplits {
    pub train: TextDataset,
    /// The held-out part of the training rows, when `config.data.validation > 0`.
    pub validation: Option<TextDataset>,
    pub test: TextDataset,
}

/// The training, validation and evaluation sets of `config`.
///
/// With `validation > 0`, the validation rows are a draw stratified by class (seeded by the
/// run's seed) and `train_limit` draws from the other rows, as in the vision loop. Without a
/// validation split, `train_limit` takes the first rows of a seeded permutation (the rule
/// before validation splits, kept so that earlier runs keep their training subsets).
/// `test_limit` is a class-stratified draw with the fixed seed of
/// [`crate::vision_data::TEST_SUBSET_SEED`], so every run is scored on the same rows.
pub fn load_text_data(config: &ExperimentConfig, data_dir: &Path) -> Result<TextSplits> {
    let dataset = config.data.id()?;
    let id = config.data.dataset.as_str();
    let (mut train, mut test) = if let DatasetId::SyntheticText(id) = &dataset {
        (crate::synthetic::load_text(id, Split::Train)?, crate::synthetic::load_text(id, Split::Test)?)
    } else if let DatasetId::AgNewsTestSplit = dataset {
        let path = ag_news_test_csv(data_dir)?;
        let spec = itra_data::registry::spec("ag_news")?;
        let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let all = itra_data::text::parse(std::io::BufReader::new(file), &path, 2, spec.class_names)?;
        let (train, held_out) = stratified_split(&all.labels, all.num_classes, TRAIN_FRACTION, SPLIT_SEED);
        (all.subset(&train), all.subset(&held_out))
    } else {
        let hint = || {
            if id == "ag_news" && ag_news_test_csv(data_dir).is_ok() {
                format!("to fine-tune on AG News' test split alone (80/20), use --dataset {AG_NEWS_TEST_SPLIT}")
            } else {
                format!("dataset `{id}`")
            }
        };
        (
            itra_data::load_text_dataset(id, data_dir, Split::Train).with_context(hint)?,
            itra_data::load_text_dataset(id, data_dir, Split::Test).with_context(hint)?,
        )
    };
    let validation_len = config.data.validation;
    let mut validation = None;
    if validation_len > 0 {
        if validation_len >= train.len() {
            bail!("a validation split of {validation_len} leaves nothing of the {} training examples", train.len());
        }
        let labels: Vec<usize> = train.labels.iter().map(|&l| l as usize).collect();
        let (drawn, rest) = itra_data::holdout_split(&labels, validation_len, config.data.train_limit, config.seed);
        validation = Some(train.subset(&drawn));
        train = train.subset(&rest);
    } else if let Some(limit) = config.data.train_limit.filter(|&l| l < train.len()) {
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng(config.seed, Stream::Subset, 0));
        train = train.subset(&order[..limit]);
    }
    if let Some(limit) = config.data.test_limit.filter(|&l| l < test.len()) {
        let labels: Vec<usize> = test.labels.iter().map(|&l| l as usize).collect();
        test = test.subset(&crate::vision_data::test_subset(&labels, limit));
    }
    Ok(TextSplits { train, validation, test })
}

/// Tokenised examples with their labels.
struct TokenizedSet {
    sequences: Vec<TokenSequence>,
    labels: Vec<usize>,
}

impl TokenizedSet {
    fn new(tokenizer: &TextTokenizer, data: &TextDataset, max_len: usize) -> Result<Self> {
        let texts: Vec<&str> = data.texts.iter().map(String::as_str).collect();
        let sequences = tokenizer.tokenize(&texts, max_len)?;
        Ok(TokenizedSet { sequences, labels: data.labels.iter().map(|&l| l as usize).collect() })
    }

    fn batch(
        &self,
        tokenizer: &TextTokenizer,
        indices: &[usize],
        device: &Device,
    ) -> (itra_models::TokenBatch, Vec<usize>) {
        let rows: Vec<&TokenSequence> = indices.iter().map(|&i| &self.sequences[i]).collect();
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        (tokenizer.pad(&rows).to_batch(device), labels)
    }
}

/// What the features of an evaluation set look like: the marks of a collapse.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeldOutDiagnostics {
    pub epoch: usize,
    /// Mean squared distance of a feature vector to the set's mean feature (the trace of the
    /// features' covariance): near 0 when every example maps to nearly the same point.
    pub feature_spread: f64,
    /// Mean Euclidean norm of a feature vector.
    pub feature_norm: f64,
    /// Share of the spread between the class means (between-class over total variance, by
    /// the true labels): near 1 for well-separated classes, near 0 when the classes overlap.
    pub between_class_share: f64,
    /// Share of the examples predicted as the most predicted class (`1/K` for balanced
    /// predictions, 1 when the model predicts one class).
    pub majority_prediction_share: f64,
}

impl HeldOutDiagnostics {
    fn compute(features: &[f32], width: usize, labels: &[usize], predictions: &[usize], classes: usize) -> Self {
        let rows = labels.len().max(1);
        let mut mean = vec![0f64; width];
        let mut class_sum = vec![vec![0f64; width]; classes];
        let mut class_count = vec![0usize; classes];
        let mut norm = 0f64;
        for (row, &label) in features.chunks_exact(width).zip(labels) {
            class_count[label] += 1;
            let mut squares = 0f64;
            for ((m, c), &v) in mean.iter_mut().zip(&mut class_sum[label]).zip(row) {
                *m += f64::from(v);
                *c += f64::from(v);
                squares += f64::from(v) * f64::from(v);
            }
            norm += squares.sqrt();
        }
        mean.iter_mut().for_each(|m| *m /= rows as f64);
        let spread = features
            .chunks_exact(width)
            .map(|row| row.iter().zip(&mean).map(|(&v, m)| (f64::from(v) - m).powi(2)).sum::<f64>())
            .sum::<f64>()
            / rows as f64;
        let between = class_sum
            .iter()
            .zip(&class_count)
            .filter(|(_, n)| **n > 0)
            .map(|(sum, &n)| n as f64 * sum.iter().zip(&mean).map(|(s, m)| (s / n as f64 - m).powi(2)).sum::<f64>())
            .sum::<f64>()
            / rows as f64;
        let mut predicted = vec![0usize; classes];
        predictions.iter().for_each(|&p| predicted[p] += 1);
        HeldOutDiagnostics {
            epoch: 0,
            feature_spread: spread,
            feature_norm: norm / rows as f64,
            between_class_share: if spread > 0.0 { between / spread } else { 0.0 },
            majority_prediction_share: predicted.iter().copied().max().unwrap_or(0) as f64 / rows as f64,
        }
    }
}

/// Accuracy (percent) and mean cross-entropy of `model` on `set`, in batches sorted by length
/// (padding changes nothing but speed), with what its features look like.
fn evaluate(
    model: &TextModel,
    tokenizer: &TextTokenizer,
    set: &TokenizedSet,
    num_classes: usize,
    device: &Device,
) -> ((f64, f64), HeldOutDiagnostics) {
    let mut order: Vec<usize> = (0..set.labels.len()).collect();
    order.sort_by_key(|&i| set.sequences[i].ids.len());
    let mut score = Score::default();
    let (mut features, mut all_labels, mut predictions) = (Vec::new(), Vec::new(), Vec::new());
    for chunk in order.chunks(EVAL_BATCH) {
        let (batch, labels) = set.batch(tokenizer, chunk, device);
        let h = model.forward_features(&batch);
        let logits: Vec<f32> = model.forward_head(h.clone()).into_data().iter::<f32>().collect();
        features.extend(h.into_data().iter::<f32>());
        for row in logits.chunks_exact(num_classes) {
            let best = row.iter().enumerate().fold(0, |best, (k, &v)| if v > row[best] { k } else { best });
            predictions.push(best);
        }
        score.add(&logits, &labels);
        all_labels.extend(labels);
    }
    let diagnostics = HeldOutDiagnostics::compute(&features, model.feat_dim(), &all_labels, &predictions, num_classes);
    (score.finish(), diagnostics)
}

/// Fine-tunes `config`'s text encoder (resuming from its checkpoint if one exists), writing the
/// run directory's files like the vision loop. Call it through [`crate::train::train`], which
/// validates the configuration.
pub(crate) fn train_text(
    config: &ExperimentConfig,
    encoder: &str,
    max_len: usize,
    text_features: TextFeatures,
    options: &RunOptions,
) -> Result<RunSummary> {
    if max_len < 2 {
        bail!("the maximum sequence length must be at least 2 tokens, got {max_len}");
    }
    let device = config.device.autodiff_device()?;
    let eval_device = config.device.device()?;
    let TextSplits { train: train_set, validation: validation_set, test: test_set } =
        load_text_data(config, &options.data_dir)?;
    if train_set.len() < config.batch_size {
        bail!("the training set has {} examples, fewer than one batch of {}", train_set.len(), config.batch_size);
    }
    device.seed(init_seed(config.seed));
    let dir = resolve_encoder(encoder, &options.data_dir)?;
    let Encoder { model, tokenizer, .. } = Encoder::load(&dir, train_set.num_classes, &device)?;
    let mut model = model.with_features(text_features);
    let num_classes = train_set.num_classes;
    let train_tokens = TokenizedSet::new(&tokenizer, &train_set, max_len)?;
    let validation_tokens = validation_set.as_ref().map(|v| TokenizedSet::new(&tokenizer, v, max_len)).transpose()?;
    let test_tokens = TokenizedSet::new(&tokenizer, &test_set, max_len)?;

    let policy = config.step_policy();
    let mut objective = objective(&config.loss, num_classes, model.feat_dim(), &device)?;
    let (mut files, optim) =
        RunFiles::open(config, options, &mut model, optimizer(&config.optimizer, policy.weight_decay))?;
    files.restore(&mut objective, &device)?;
    let start_epoch = files.start_epoch;

    let sampler = PairedSampler::new(train_set.len(), config.batch_size, config.seed);
    let steps = sampler.steps_per_epoch();
    let mut trainer = Trainer::new(objective, optim, StepPlan::of(config, steps));
    let bar = progress_bar(options.progress, steps * config.epochs, start_epoch * steps);

    for epoch in start_epoch..config.epochs {
        // Dropout draws from Burn's generator: restart it per epoch so a resumed epoch matches.
        device.seed(init_seed(config.seed.wrapping_add(1 + epoch as u64)));
        let (first_order, second_order) = sampler.epoch_orders(epoch);
        let mut sums = Sums::default();
        let started = Instant::now();
        for step in 0..steps {
            let token_batch = |order: &[usize], on: &Device| {
                let (inputs, labels) = train_tokens.batch(&tokenizer, sampler.batch(order, step), on);
                LabelledBatch { inputs, labels }
            };
            let first = token_batch(&first_order, &device);
            let second = (trainer.objective.second_forward() != SecondForward::None)
                .then(|| token_batch(&second_order, &device));
            let batch = PairBatch {
                first: LabelledBatch { inputs: &first.inputs, labels: first.labels.clone() },
                second: second.as_ref().map(|s| LabelledBatch { inputs: &s.inputs, labels: s.labels.clone() }),
            };
            // `--distance-probe inference`: S1 and S2 again, through the inference copy (a
            // second transformer forward; the text recipe's default probes the training one).
            let inference_probe = |model: &TextModel| -> Result<DistanceStats> {
                let inference = model.valid();
                let first = token_batch(&first_order, &eval_device);
                let second = token_batch(&second_order, &eval_device);
                Ok(DistanceStats::compute(
                    inference.forward_features(&first.inputs),
                    &first.labels,
                    inference.forward_features(&second.inputs),
                    &second.labels,
                )?)
            };
            model = trainer.step(model, batch, StepIndex { epoch, step }, &mut sums, inference_probe)?;
            step_progress(&bar, epoch, &sums, config.batch_size, started, "seq");
        }
        let train_seconds = started.elapsed().as_secs_f64();
        let inference = model.valid();
        let validation =
            validation_tokens.as_ref().map(|v| evaluate(&inference, &tokenizer, v, num_classes, &eval_device).0);
        let ((test_accuracy, test_ce), mut diagnostics) =
            evaluate(&inference, &tokenizer, &test_tokens, num_classes, &eval_device);
        diagnostics.epoch = epoch + 1;
        // `images_per_second` counts sequences for text runs.
        let metrics = sums.finish(epoch, train_seconds, config.batch_size, validation, test_accuracy, test_ce);
        let validation_text = validation.map_or(String::new(), |(a, ce)| format!("  val {a:.2}% CE {ce:.4}"));
        let line = format!(
            "epoch {:>3}: train loss {:.4}{validation_text}  held-out accuracy {:.2}%  held-out CE {:.4}  \
             feature spread {:.4} (between-class {:.2})  {:.1} seq/s",
            epoch + 1,
            metrics.train_loss,
            metrics.test_accuracy,
            metrics.test_ce,
            diagnostics.feature_spread,
            diagnostics.between_class_share,
            metrics.images_per_second
        );
        announce(&bar, line);
        files.record(metrics, &trainer.objective, &model, &trainer.optim)?;
        append_diagnostics(&options.run_dir, &diagnostics)?;
    }
    bar.finish_and_clear();

    files.finish(&model.valid())
}

/// The file of [`HeldOutDiagnostics`] in a text run's directory, one JSON line per epoch.
pub const DIAGNOSTICS: &str = "text_diagnostics.jsonl";

fn append_diagnostics(run_dir: &Path, diagnostics: &HeldOutDiagnostics) -> Result<()> {
    use std::io::Write;
    let path = run_dir.join(DIAGNOSTICS);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    writeln!(file, "{}", serde_json::to_string(diagnostics)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_config(validation: usize, train_limit: Option<usize>) -> ExperimentConfig {
        use crate::config::{DataConfig, LossConfig, ModelConfig, OptimizerConfig, Schedule};
        let mut data = DataConfig::new("synthetic-text:3:300:30");
        data.validation = validation;
        data.train_limit = train_limit;
        ExperimentConfig {
            data,
            model: ModelConfig::Text { encoder: "tiny-bert".into(), max_len: 16, text_features: TextFeatures::Pooler },
            loss: LossConfig::baseline(),
            optimizer: OptimizerConfig::Adam { lr: 1e-3, weight_decay: 0.0 },
            schedule: Schedule::Constant,
            step: None,
            epochs: 1,
            batch_size: 8,
            seed: 5,
            device: crate::device::DeviceSpec::Cpu,
        }
    }

    #[test]
    fn the_test_limit_is_a_stratified_draw_not_the_first_rows() {
        let data_dir = Path::new("/nonexistent");
        let all = crate::synthetic::load_text("synthetic-text:3:300:30", Split::Test).unwrap();
        let mut config = text_config(0, None);
        config.data.test_limit = Some(9);
        let test = load_text_data(&config, data_dir).unwrap().test;
        assert_eq!(test.len(), 9);
        assert_ne!(test.texts, all.texts[..9], "taken by position");
        for class in 0..3u32 {
            assert_eq!(test.labels.iter().filter(|&&l| l == class).count(), 3, "class {class}");
        }
        // One draw for every run: another seed scores the same rows.
        config.seed += 1;
        assert_eq!(load_text_data(&config, data_dir).unwrap().test.texts, test.texts);
    }

    #[test]
    fn validation_split_is_stratified_disjoint_and_seeded() {
        let data_dir = Path::new("/nonexistent");
        let all = crate::synthetic::load_text("synthetic-text:3:300:30", Split::Train).unwrap();
        let splits = load_text_data(&text_config(60, Some(90)), data_dir).unwrap();
        let validation = splits.validation.expect("a validation split");
        assert_eq!((validation.len(), splits.train.len(), splits.test.len()), (60, 90, 30));
        for class in 0..3u32 {
            let share = all.labels.iter().filter(|&&l| l == class).count() * 60 / all.len();
            let held = validation.labels.iter().filter(|&&l| l == class).count();
            assert!(held.abs_diff(share) <= 1, "class {class}: {held} held out, share {share}");
        }
        // Disjoint: without a limit, training and validation rows partition the training split.
        let whole = load_text_data(&text_config(60, None), data_dir).unwrap();
        let mut parts: Vec<&String> =
            whole.train.texts.iter().chain(&whole.validation.as_ref().unwrap().texts).collect();
        let mut every: Vec<&String> = all.texts.iter().collect();
        parts.sort();
        every.sort();
        assert_eq!(parts, every);
        // Seeded: the same seed draws the same rows.
        let again = load_text_data(&text_config(60, Some(90)), data_dir).unwrap();
        assert_eq!(again.validation.unwrap().texts, validation.texts);
        assert_eq!(again.train.texts, splits.train.texts);
        // No validation split: the training subset of a seeded permutation, as before.
        let legacy = load_text_data(&text_config(0, Some(90)), data_dir).unwrap();
        assert!(legacy.validation.is_none());
        let mut order: Vec<usize> = (0..all.len()).collect();
        order.shuffle(&mut rng(5, Stream::Subset, 0));
        assert_eq!(legacy.train.texts, all.subset(&order[..90]).texts);
        assert!(load_text_data(&text_config(300, None), data_dir).is_err(), "nothing left to train on");
    }

    #[test]
    fn lambda_warms_up_linearly() {
        let mut loss = crate::config::LossConfig { lambda: 0.6, ..crate::config::LossConfig::baseline() };
        assert_eq!(loss.lambda_at(0, 100), 0.6, "no warm-up");
        loss.lambda_warmup = 0.1;
        assert_eq!(loss.lambda_at(0, 100), 0.0);
        assert!((loss.lambda_at(5, 100) - 0.3).abs() < 1e-12);
        assert_eq!(loss.lambda_at(10, 100), 0.6);
        assert_eq!(loss.lambda_at(99, 100), 0.6);
    }

    #[test]
    fn diagnostics_see_a_collapse() {
        // Two classes, two rows each, 2-d features. Separated: class means (0, +-1), spread 1,
        // all of it between classes. Collapsed: every row at (3, 4), spread 0, norm 5.
        let labels = [0, 0, 1, 1];
        let separated = [0.0f32, 1.0, 0.0, 1.0, 0.0, -1.0, 0.0, -1.0];
        let d = HeldOutDiagnostics::compute(&separated, 2, &labels, &[0, 0, 1, 1], 2);
        assert!((d.feature_spread - 1.0).abs() < 1e-12 && (d.between_class_share - 1.0).abs() < 1e-12, "{d:?}");
        assert_eq!(d.majority_prediction_share, 0.5);
        let collapsed = [3.0f32, 4.0, 3.0, 4.0, 3.0, 4.0, 3.0, 4.0];
        let d = HeldOutDiagnostics::compute(&collapsed, 2, &labels, &[1, 1, 1, 1], 2);
        assert_eq!((d.feature_spread, d.between_class_share, d.majority_prediction_share), (0.0, 0.0, 1.0));
        assert!((d.feature_norm - 5.0).abs() < 1e-12);
    }

    #[test]
    fn stratified_split_keeps_class_shares_and_is_reproducible() {
        let labels: Vec<u32> = (0..1000).map(|i| (i % 4) as u32).collect();
        let (train, held_out) = stratified_split(&labels, 4, 0.8, SPLIT_SEED);
        assert_eq!((train.len(), held_out.len()), (800, 200));
        for class in 0..4 {
            assert_eq!(held_out.iter().filter(|&&i| labels[i] == class).count(), 50);
        }
        let mut all: Vec<usize> = train.iter().chain(&held_out).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(stratified_split(&labels, 4, 0.8, SPLIT_SEED), (train.clone(), held_out));
        assert_ne!(stratified_split(&labels, 4, 0.8, SPLIT_SEED + 1).0, train);
    }
}
