//! Fine-tuning a pretrained text encoder with its classification head: the text branch of
//! `itra train` (the paper's Table 4), the same loop as [`crate::train`] on token batches.
//!
//! Differences from the vision loop, all fixed here rather than configured:
//! - batches are padded to their longest sequence (dynamic padding), after truncation to
//!   `max_len` tokens; the dataset is tokenised once before training;
//! - `OptimizerConfig::Adam` runs **AdamW** (decoupled weight decay, as `transformers`'
//!   fine-tuning recipes), SGD as in the vision loop;
//! - the learning rate warms up linearly over the first [`WARMUP_FRACTION`] of all steps, then
//!   follows the configured schedule;
//! - Figure 1's distance ratio is measured every [`DISTANCE_EVERY`] steps on the training
//!   forward's features, and only for methods that forward `S2`;
//! - checkpoints, resume and run files are those of the vision loop (per epoch; the final
//!   `model.bpk` holds the fine-tuned encoder and head).
//!
//! # The `ag_news-test-split` dataset
//! The CPU reproduction trains on AG News' 7,600-example **test** CSV alone, split once with a
//! fixed seed ([`SPLIT_SEED`], independent of the run's seed, so every run evaluates on the same
//! examples) and stratified by class into 80% training and 20% held-out evaluation. The file is
//! `$ITRA_AG_NEWS_TEST` if set, else `../shared/data/ag_news/test.csv` (relative to the working
//! directory, then to the workspace root), else `<data_dir>/ag_news/ag_news_csv/test.csv`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use itra_core::{DistanceStats, ItraObjectiveConfig, MmdLossConfig, SecondBatch, SecondForward};
use itra_data::sampler::{init_seed, rng};
use itra_data::{PairedSampler, Split, Stream, TextDataset};
use itra_models::text::{TextFeatureModel, TextModel, TextTokenizer, TokenSequence};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::config::{ExperimentConfig, ModelConfig};
use crate::encode::{Encoder, resolve_encoder};
use crate::train::{
    DISTANCE_EVERY, RunFiles, RunOptions, RunSummary, Score, Sums, announce, optimizer_with, progress_bar,
};

/// The dataset id of the 80/20 split of AG News' test CSV.
pub const AG_NEWS_TEST_SPLIT: &str = "ag_news-test-split";
/// The environment variable naming AG News' `test.csv` for [`AG_NEWS_TEST_SPLIT`].
pub const AG_NEWS_TEST_ENV: &str = "ITRA_AG_NEWS_TEST";
/// Seed of the [`AG_NEWS_TEST_SPLIT`] split.
pub const SPLIT_SEED: u64 = 0;
/// Share of [`AG_NEWS_TEST_SPLIT`] used for training.
pub const TRAIN_FRACTION: f64 = 0.8;
/// Share of all steps over which the learning rate warms up from 0.
pub const WARMUP_FRACTION: f64 = 0.06;
/// Sequences per evaluation batch.
const EVAL_BATCH: usize = 64;

/// Whether `id` names a text dataset this module trains on.
pub fn is_text_dataset(id: &str) -> bool {
    id == AG_NEWS_TEST_SPLIT
        || crate::synthetic::is_synthetic_text(id)
        || itra_data::registry::spec(id).is_ok_and(|s| matches!(s.format, itra_data::registry::Format::ZhangCsv { .. }))
}

/// AG News' test CSV for [`AG_NEWS_TEST_SPLIT`] (see the module docs for the search order).
pub fn ag_news_test_csv(data_dir: &Path) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(AG_NEWS_TEST_ENV) {
        return Ok(PathBuf::from(path));
    }
    let relative = Path::new("../shared/data/ag_news/test.csv");
    let candidates = [
        relative.to_owned(),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative),
        data_dir.join("ag_news/ag_news_csv/test.csv"),
    ];
    candidates.iter().find(|p| p.is_file()).cloned().with_context(|| {
        format!(
            "AG News test.csv not found; set {AG_NEWS_TEST_ENV} or place it at one of: {}",
            candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    })
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

/// The training and evaluation sets of `config` (limits applied as in the vision loop).
pub fn load_text_data(config: &ExperimentConfig, data_dir: &Path) -> Result<(TextDataset, TextDataset)> {
    let id = config.data.dataset.as_str();
    let (mut train, mut test) = if crate::synthetic::is_synthetic_text(id) {
        (crate::synthetic::load_text(id, Split::Train)?, crate::synthetic::load_text(id, Split::Test)?)
    } else if id == AG_NEWS_TEST_SPLIT {
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
    if let Some(limit) = config.data.train_limit.filter(|&l| l < train.len()) {
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng(config.seed, Stream::Subset, 0));
        train = train.subset(&order[..limit]);
    }
    if let Some(limit) = config.data.test_limit.filter(|&l| l < test.len()) {
        test = test.subset(&(0..limit).collect::<Vec<_>>());
    }
    Ok((train, test))
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

/// Accuracy (percent) and mean cross-entropy of `model` on `set`, in batches sorted by length
/// (padding changes nothing but speed).
fn evaluate(model: &TextModel, tokenizer: &TextTokenizer, set: &TokenizedSet, device: &Device) -> (f64, f64) {
    let mut order: Vec<usize> = (0..set.labels.len()).collect();
    order.sort_by_key(|&i| set.sequences[i].ids.len());
    let mut score = Score::default();
    for chunk in order.chunks(EVAL_BATCH) {
        let (batch, labels) = set.batch(tokenizer, chunk, device);
        score.add(&model.forward(&batch).into_data().iter::<f32>().collect::<Vec<_>>(), &labels);
    }
    score.finish()
}

/// Fine-tunes `config`'s text encoder (resuming from its checkpoint if one exists), writing the
/// run directory's files like [`crate::train::train`].
pub fn train_text(config: &ExperimentConfig, options: &RunOptions) -> Result<RunSummary> {
    let ModelConfig::Text { encoder, max_len } = &config.model else {
        bail!("model `{}` is a vision architecture; it trains on image datasets", config.model.name());
    };
    if !is_text_dataset(&config.data.dataset) {
        bail!("dataset `{}` is not a text dataset; text encoders train on text", config.data.dataset);
    }
    if *max_len < 2 {
        bail!("the maximum sequence length must be at least 2 tokens, got {max_len}");
    }
    let device = config.device.autodiff_device()?;
    let eval_device = config.device.device()?;
    let (train_set, test_set) = load_text_data(config, &options.data_dir)?;
    if train_set.len() < config.batch_size {
        bail!("the training set has {} examples, fewer than one batch of {}", train_set.len(), config.batch_size);
    }
    device.seed(init_seed(config.seed));
    let dir = resolve_encoder(encoder, &options.data_dir)?;
    let Encoder { mut model, tokenizer, .. } = Encoder::load(&dir, train_set.num_classes, &device)?;
    let train_tokens = TokenizedSet::new(&tokenizer, &train_set, *max_len)?;
    let test_tokens = TokenizedSet::new(&tokenizer, &test_set, *max_len)?;

    let loss = &config.loss;
    let mut objective = ItraObjectiveConfig::new(loss.method, train_set.num_classes, model.feat_dim())
        .with_lambda(loss.lambda)
        .with_second_batch(loss.second_batch)
        .with_center_alpha(loss.center_alpha)
        .with_mmd(MmdLossConfig::new().with_bandwidth(loss.bandwidth).with_eps(loss.eps).with_normalize(loss.normalize))
        .init(&device)?;

    let (mut files, mut optim) = RunFiles::open(config, options, &mut model, optimizer_with(&config.optimizer, true))?;
    files.restore(&mut objective, &device);
    let start_epoch = files.start_epoch;

    let sampler = PairedSampler::new(train_set.len(), config.batch_size, config.seed);
    let steps = sampler.steps_per_epoch();
    let total_steps = steps * config.epochs;
    let warmup_steps = ((WARMUP_FRACTION * total_steps as f64).ceil() as usize).max(1);
    let bar = progress_bar(options.progress, total_steps, start_epoch * steps);

    for epoch in start_epoch..config.epochs {
        // Dropout draws from Burn's generator: restart it per epoch so a resumed epoch matches.
        device.seed(init_seed(config.seed.wrapping_add(1 + epoch as u64)));
        let (first_order, second_order) = sampler.epoch_orders(epoch);
        let mut sums = Sums::default();
        let started = Instant::now();
        for step in 0..steps {
            let global_step = epoch * steps + step;
            let warmup = ((global_step + 1) as f64 / warmup_steps as f64).min(1.0);
            let lr = warmup * config.schedule.lr(config.optimizer.lr(), global_step, total_steps);
            let (batch, labels) = train_tokens.batch(&tokenizer, sampler.batch(&first_order, step), &device);
            let h1 = model.forward_features(&batch);
            let logits = model.forward_head(h1.clone());
            let second_labels;
            let second = match objective.second_forward() {
                SecondForward::None => None,
                mode => {
                    let (batch2, labels2) = train_tokens.batch(&tokenizer, sampler.batch(&second_order, step), &device);
                    second_labels = labels2;
                    let mut h2 = model.forward_features(&batch2);
                    if mode == SecondForward::Detached {
                        h2 = h2.detach();
                    }
                    Some(SecondBatch { features: h2, labels: &second_labels })
                }
            };
            // Figure 1's ratio, here from the training forward's features (no extra pass: a
            // transformer forward is too dear to repeat in evaluation mode).
            if let Some(second) = second.as_ref().filter(|_| global_step % DISTANCE_EVERY == 0) {
                let stats = DistanceStats::compute(h1.clone(), &labels, second.features.clone(), second.labels)?;
                if let Some(same) = stats.same_class.filter(|_| stats.all_pairs > 0.0) {
                    sums.distance_trace.push((global_step, same / stats.all_pairs));
                }
            }
            let parts = objective.step_loss(h1, logits, &labels, second).context("training objective")?;
            sums.add(&parts, epoch, step, lr)?;
            let grads = GradientsParams::from_grads(parts.total.backward(), &model);
            model = optim.step(lr, model, grads);
            let seconds = started.elapsed().as_secs_f64();
            bar.set_message(format!(
                "epoch {} loss {:.4} {:.1} seq/s",
                epoch + 1,
                sums.loss / sums.steps as f64,
                (sums.steps * config.batch_size) as f64 / seconds.max(1e-9)
            ));
            bar.inc(1);
        }
        let train_seconds = started.elapsed().as_secs_f64();
        let (test_accuracy, test_ce) = evaluate(&model.valid(), &tokenizer, &test_tokens, &eval_device);
        // `images_per_second` counts sequences for text runs.
        let metrics = sums.finish(epoch, train_seconds, config.batch_size, None, test_accuracy, test_ce);
        let line = format!(
            "epoch {:>3}: train loss {:.4}  held-out accuracy {:.2}%  held-out CE {:.4}  {:.1} seq/s",
            epoch + 1,
            metrics.train_loss,
            metrics.test_accuracy,
            metrics.test_ce,
            metrics.images_per_second
        );
        announce(&bar, line);
        files.record(metrics, &objective, &model, &optim)?;
    }
    bar.finish_and_clear();

    files.finish(&model.valid())
}

#[cfg(test)]
mod tests {
    use super::*;

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
