//! ITRA-c on a text encoder through burn-train's `SupervisedTraining`: `Itra<TextModel,
//! TokenBatch>` on token batches of `itra-data`'s `TextDataset` (a burn `Dataset` of
//! `TextItem`s), with a tokenising `Batcher` of the kind a Burn user writes in a few lines. The
//! loss parts logged are `ItraObjective`'s on the same batches, replayed by hand, and training
//! moves the encoder's weights.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::Dataset;
use burn::optim::AdamConfig;
use burn::tensor::Device;
use burn_train::metric::{AccuracyMetric, LossMetric};
use burn_train::{Learner, SupervisedTraining};
use itra_core::{ItraObjectiveConfig, LabelledBatch, Method, PairBatch};
use itra_data::{TextDataset, TextItem};
use itra_models::text::{TextConfig, TextFeatureModel, TextModel, TextTokenizer, TokenBatch};
use itra_train::{Itra, ItraMetric, PairLoader};

use common::{logged, replay, weights};

const BATCH: usize = 16;
const LR: f64 = 3e-3;
const MAX_LEN: usize = 12;

/// Texts to token batches with the encoder's tokenizer, labels kept on the host.
#[derive(Clone)]
struct TextBatcher {
    tokenizer: Arc<TextTokenizer>,
}

impl Batcher<TextItem, LabelledBatch<TokenBatch>> for TextBatcher {
    fn batch(&self, items: Vec<TextItem>, device: &Device) -> LabelledBatch<TokenBatch> {
        let texts: Vec<&str> = items.iter().map(|item| item.text.as_str()).collect();
        let ids = self.tokenizer.encode(&texts, MAX_LEN).expect("the fixture tokenizer encodes any text");
        LabelledBatch { inputs: ids.to_batch(device), labels: items.iter().map(|item| item.label).collect() }
    }
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../itra-models/tests/fixtures/text/tiny-bert")
}

/// The fixture BERT's architecture (32 wide, word-level vocabulary `w5`, `w6`, ...) with its
/// dropout off, freshly initialised from `seed`: without dropout the step draws nothing random,
/// so the replay below sees the very numbers burn-train saw.
fn encoder(seed: u64, device: &Device) -> TextModel {
    let path = fixture().join("config.json");
    let json = std::fs::read_to_string(&path).unwrap();
    let json = json
        .replace("\"hidden_dropout_prob\": 0.1", "\"hidden_dropout_prob\": 0.0")
        .replace("\"attention_probs_dropout_prob\": 0.1", "\"attention_probs_dropout_prob\": 0.0");
    assert!(!json.contains("_prob\": 0.1"), "the fixture's dropout is not where this test expects it");
    let config = TextConfig::parse(&json, &path).unwrap();
    device.seed(seed);
    TextModel::new(&config, 3, device).unwrap()
}

/// `n` texts of three classes: each class's words come from its own band of the vocabulary,
/// with two words every class shares.
fn texts(n: usize, offset: usize) -> TextDataset {
    let mut state = 0x9e37_79b9_u64.wrapping_add(offset as u64);
    let mut next = || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    let (mut all, mut labels) = (Vec::new(), Vec::new());
    for i in 0..n {
        let class = (i + offset) % 3;
        let mut words: Vec<String> = (0..6).map(|_| format!("w{}", 5 + 12 * class + next() % 12)).collect();
        words.insert(next() % 6, format!("w{}", 41 + next() % 2));
        all.push(words.join(" "));
        labels.push(class as u32);
    }
    TextDataset { texts: all, labels, num_classes: 3, class_names: vec!["a".into(), "b".into(), "c".into()] }
}

#[test]
fn a_text_encoder_trains_with_itra_c_through_supervised_training() {
    let device = Device::flex().autodiff();
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = Arc::new(TextTokenizer::from_dir(&fixture(), itra_models::text::ModelType::Bert).unwrap());
    let batcher = TextBatcher { tokenizer };
    let train = texts(96, 0);
    let epochs = 2;

    let network = encoder(11, &device);
    let start = network.clone();
    let objective = |model: &TextModel| {
        ItraObjectiveConfig::new(Method::ItraC, 3, model.feat_dim()).with_lambda(0.6).init(&device).unwrap()
    };
    let loader = PairLoader::new(train.clone(), batcher.clone(), BATCH, 3, true, &device);
    let steps = loader.epoch_indices(0);
    assert_eq!(steps.len(), 96 / BATCH);
    let train_loader: Arc<dyn DataLoader<PairBatch<TokenBatch>>> = loader;
    let valid_loader = DataLoaderBuilder::new(batcher.clone()).batch_size(32).build(texts(48, 1));
    let training = SupervisedTraining::new(dir.path(), train_loader, valid_loader)
        .metrics((AccuracyMetric::new(), LossMetric::new()))
        .metric_train_numeric(ItraMetric::cross_entropy())
        .metric_train_numeric(ItraMetric::regularizer())
        .with_application_logger(None)
        .num_epochs(epochs);
    let model: Itra<TextModel, TokenBatch> = Itra::new(network, objective(&start), training.interrupter());
    let result = training.launch(Learner::new(model, AdamConfig::new().init(), LR));
    assert!(result.error.is_none(), "{:?}", result.error);
    assert!(result.interrupted.is_none(), "{:?}", result.interrupted.as_ref().map(|i| &i.reason));

    // The first epoch again by hand: the runner's step on the loader's batches, same optimiser.
    let batch_of = |indices: &[usize]| {
        let items = indices.iter().map(|&i| train.get(i).unwrap()).collect();
        batcher.batch(items, &device)
    };
    let (ce, term, total) = replay(&objective(&start), start, &steps, batch_of, LR);
    assert_eq!(logged(dir.path(), 1, "CE"), ce);
    assert_eq!(logged(dir.path(), 1, "Match"), term);
    assert_eq!(logged(dir.path(), 1, "Loss"), total);

    // And training moved every part of the encoder, not just the head.
    let (before, after) = (weights(&encoder(11, &device)), weights(&result.model.model));
    assert_eq!(before.len(), after.len());
    let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!(moved > before.len() * 9 / 10, "{moved} of {} weights moved", before.len());
}
