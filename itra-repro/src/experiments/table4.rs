//! Table 4: fine-tuning pretrained text encoders on the four Zhang et al. (2015) text sets.

use itra_core::Method;

use super::{Cell, Grid, Profile, Target, lambda_grid};
use crate::config::{DataConfig, ExperimentConfig, LossConfig, ModelConfig, OptimizerConfig, Schedule, TextFeatures};
use crate::device::DeviceSpec;

pub const DATASETS: [&str; 4] = ["ag_news", "amazon_full", "yahoo_answers", "yelp_full"];
pub const MODELS: [&str; 3] = ["bert-base", "distilbert", "xlnet"];
pub const METHODS: [Method; 3] = [Method::Baseline, Method::Center, Method::ItraC];

pub use crate::text_train::AG_NEWS_TEST_SPLIT;
/// The generated text of the `smoke` profile (see [`crate::synthetic`]): three classes, to
/// match the three-way heads of the tiny fixture encoders (a head of another size is an error,
/// as in `transformers` without `ignore_mismatched_sizes`).
pub const SMOKE_TEXT: &str = "synthetic-text:3:384:96";
/// Training rows the `cpu` profile holds out to choose lambda: 10% of the 6,080 training rows
/// of [`AG_NEWS_TEST_SPLIT`] (152 per class), leaving 5,472 to train on.
pub const CPU_VALIDATION: usize = 608;
/// The `cpu` profile's lambda candidates: the paper's values led to a collapse of ITRA-c (0.6)
/// and to a higher CE for Center (0.1) on MiniLM (`results/README.md`), so each gets a smaller
/// value beside it, chosen between by validation accuracy.
pub const CPU_LAMBDAS_CENTER: [f64; 2] = [0.01, 0.1];
pub const CPU_LAMBDAS_ITRA_C: [f64; 2] = [0.2, 0.6];

fn config(dataset: &str, encoder: &str, method: Method, lambda: f64, profile: Profile) -> ExperimentConfig {
    let (epochs, batch_size, max_len, lr) = match profile {
        Profile::Paper => (3, 32, 128, 2e-5),
        Profile::Cpu => (1, 32, 128, 1e-4),
        // Randomly initialised tiny encoders need a larger step than fine-tuning does.
        Profile::Smoke => (3, 16, 16, 3e-3),
    };
    let mut data = DataConfig::new(dataset);
    // The smoke profile has one candidate per cell and needs no validation split.
    data.validation = match profile {
        Profile::Paper => 5000,
        Profile::Cpu => CPU_VALIDATION,
        Profile::Smoke => 0,
    };
    ExperimentConfig {
        data,
        model: ModelConfig::Text { encoder: encoder.to_owned(), max_len, text_features: TextFeatures::Pooler },
        loss: LossConfig { method, lambda, ..LossConfig::baseline() },
        optimizer: OptimizerConfig::Adam { lr, weight_decay: 0.01 },
        schedule: Schedule::Cosine,
        step: None,
        epochs,
        batch_size,
        seed: 0,
        device: DeviceSpec::Cpu,
    }
}

pub fn grid(profile: Profile) -> Grid {
    let mut cells = Vec::new();
    let settings: Vec<(&str, &str, &str)> = match profile {
        Profile::Paper => DATASETS.iter().flat_map(|&d| MODELS.iter().map(move |&m| (d, m, m))).collect(),
        // MiniLM stands in for BERT-base: the only pretrained encoder reachable here.
        Profile::Cpu => vec![("ag_news", "bert-base", "minilm")],
        Profile::Smoke => vec![("ag_news", "bert-base", "tiny-bert"), ("ag_news", "distilbert", "tiny-distilbert")],
    };
    for (dataset, model, encoder) in settings {
        let data_id = match profile {
            Profile::Paper => dataset.to_owned(),
            Profile::Cpu => AG_NEWS_TEST_SPLIT.to_owned(),
            Profile::Smoke => SMOKE_TEXT.to_owned(),
        };
        for method in METHODS {
            let lambdas = match (method, profile) {
                (Method::Baseline, _) => vec![0.0],
                (_, Profile::Paper) => lambda_grid(method, profile),
                (Method::Center, Profile::Cpu) => CPU_LAMBDAS_CENTER.to_vec(),
                (_, Profile::Cpu) => CPU_LAMBDAS_ITRA_C.to_vec(),
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
            3 epochs, batch 32, sequences truncated to 128 tokens, the Hugging Face sequence-classification head; \
            5,000 training rows held out (stratified) to choose lambda."
            .to_owned(),
        Profile::Cpu => "cpu profile: all-MiniLM-L6-v2 (a 6-layer BERT) stands in for BERT-base, fine-tuned for \
            one epoch on 80% of the AG News test split (7,600 rows, split by a seeded stratified draw; 608 of \
            its 6,080 training rows held out, stratified, to choose lambda) and evaluated on the other 20%; \
            AdamW lr 1e-4 (a small model's usual fine-tuning rate), weight decay 0.01, 6% warm-up then cosine, \
            batch 32, 128 tokens; lambda chosen by validation accuracy from Center {0.01, 0.1} and ITRA-c \
            {0.2, 0.6}."
            .to_owned(),
        Profile::Smoke => "smoke profile: tiny randomly initialised BERT and DistilBERT (2 layers, hidden 32, the \
            parity-test fixtures) on generated text, AdamW lr 3e-3, 3 epochs, batch 16."
            .to_owned(),
    }];
    Grid { target: Target::Table(4), profile, cells, notes, max_seeds: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_profile_chooses_lambda_on_a_validation_split() {
        let cpu = grid(Profile::Cpu);
        let lambdas = |method: Method| -> Vec<f64> {
            let cell = cpu.cells.iter().find(|c| c.method == method).expect("a cell per method");
            cell.candidates.iter().map(|c| c.loss.lambda).collect()
        };
        assert_eq!(lambdas(Method::Baseline), [0.0]);
        assert_eq!(lambdas(Method::Center), CPU_LAMBDAS_CENTER);
        assert_eq!(lambdas(Method::ItraC), CPU_LAMBDAS_ITRA_C);
        for config in cpu.cells.iter().flat_map(|c| &c.candidates) {
            assert_eq!(config.data.validation, CPU_VALIDATION);
            assert_eq!(config.data.dataset, AG_NEWS_TEST_SPLIT);
            config.validate().expect("a valid configuration");
        }
        // The smoke profile keeps one candidate per cell and no validation split (its snapshot).
        for cell in grid(Profile::Smoke).cells {
            assert_eq!(cell.candidates.len(), 1);
            assert_eq!(cell.candidates[0].data.validation, 0);
        }
    }
}
