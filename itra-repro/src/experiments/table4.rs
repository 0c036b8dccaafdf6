//! Table 4: fine-tuning pretrained text encoders on the four Zhang et al. (2015) text sets.

use std::path::Path;

use anyhow::{Result, bail};
use itra_core::Method;

use super::{Cell, Grid, Profile, Target, lambda_grid};
use crate::config::{DataConfig, ExperimentConfig, LossConfig, ModelConfig, OptimizerConfig, Schedule};
use crate::device::DeviceSpec;

pub const DATASETS: [&str; 4] = ["ag_news", "amazon_full", "yahoo_answers", "yelp_full"];
pub const MODELS: [&str; 3] = ["bert-base", "distilbert", "xlnet"];
pub const METHODS: [Method; 3] = [Method::Baseline, Method::Center, Method::ItraC];

/// The AG News test split, divided reproducibly into training and held-out parts (cpu profile).
pub const AG_NEWS_TEST_SPLIT: &str = "ag_news-test-split";

fn config(dataset: &str, encoder: &str, method: Method, lambda: f64, profile: Profile) -> ExperimentConfig {
    let (epochs, batch_size, max_len, train_limit) = match profile {
        Profile::Paper => (3, 32, 128, None),
        Profile::Cpu => (1, 32, 128, None),
        Profile::Smoke => (1, 8, 32, Some(64)),
    };
    ExperimentConfig {
        data: DataConfig { dataset: dataset.to_owned(), train_limit, test_limit: None, validation: 0 },
        model: ModelConfig::Text { encoder: encoder.to_owned(), max_len },
        loss: LossConfig { method, lambda, ..LossConfig::baseline() },
        optimizer: OptimizerConfig::Adam { lr: 2e-5, weight_decay: 0.01 },
        schedule: Schedule::Cosine,
        epochs,
        batch_size,
        seed: 0,
        device: DeviceSpec::Cpu,
    }
}

pub fn grid(profile: Profile) -> Grid {
    let mut cells = Vec::new();
    let settings: Vec<(&str, &str, &str)> = match profile {
        Profile::Paper => DATASETS
            .iter()
            .flat_map(|&d| MODELS.iter().map(move |&m| (d, m, m)))
            .collect(),
        // MiniLM stands in for BERT-base: the only pretrained encoder reachable here.
        Profile::Cpu => vec![("ag_news", "bert-base", "minilm")],
        Profile::Smoke => vec![("ag_news", "bert-base", "tiny-bert"), ("ag_news", "distilbert", "tiny-distilbert")],
    };
    for (dataset, model, encoder) in settings {
        let data_id = match profile {
            Profile::Paper => dataset.to_owned(),
            Profile::Cpu => AG_NEWS_TEST_SPLIT.to_owned(),
            Profile::Smoke => "synthetic-text".to_owned(),
        };
        for method in METHODS {
            let lambdas = match (method, profile) {
                (Method::Baseline, _) => vec![0.0],
                (_, Profile::Paper) => lambda_grid(method, profile),
                (Method::Center, _) => vec![0.1],
                _ => vec![0.6],
            };
            cells.push(Cell {
                dataset: dataset.to_owned(),
                model: model.to_owned(),
                method,
                batch_size: None,
                candidates: lambdas.into_iter().map(|l| config(&data_id, encoder, method, l, profile)).collect(),
            });
        }
    }
    let notes = vec![match profile {
        Profile::Paper => "Recipe (the paper states none): AdamW lr 2e-5, weight decay 0.01, cosine schedule, \
            3 epochs, batch 32, sequences truncated to 128 tokens, the Hugging Face sequence-classification head."
            .to_owned(),
        Profile::Cpu => "cpu profile: all-MiniLM-L6-v2 (a 6-layer BERT) stands in for BERT-base, fine-tuned for \
            one epoch on 80% of the AG News test split (7,600 rows, split by a seeded stratified draw) and \
            evaluated on the other 20%; Center lambda 0.1, ITRA-c lambda 0.6 (no tuning)."
            .to_owned(),
        Profile::Smoke => "smoke profile: tiny randomly initialised BERT and DistilBERT (2 layers, hidden 32) \
            on generated text."
            .to_owned(),
    }];
    Grid { target: Target::Table(4), profile, cells, notes, max_seeds: (profile == Profile::Smoke).then_some(1) }
}

/// Whether the text data of `config` is present, without loading a model.
pub fn check_text_data(config: &ExperimentConfig, data_dir: &Path) -> Result<()> {
    let id = config.data.dataset.as_str();
    if id == "synthetic-text" {
        return Ok(());
    }
    if id == AG_NEWS_TEST_SPLIT {
        let path = ag_news_test_path(data_dir);
        if !path.exists() {
            bail!("the AG News test split is not at {} (set ITRA_AG_NEWS_TEST)", path.display());
        }
        return Ok(());
    }
    itra_data::load_text_dataset(id, data_dir, itra_data::Split::Test)?;
    Ok(())
}

/// Where the AG News test split is read from: `$ITRA_AG_NEWS_TEST`, else the official layout
/// under the data directory, else the project's shared copy beside the checkout.
pub fn ag_news_test_path(data_dir: &Path) -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("ITRA_AG_NEWS_TEST") {
        return path.into();
    }
    let official = data_dir.join("ag_news/ag_news_csv/test.csv");
    if official.exists() {
        return official;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/ag_news/test.csv")
}
