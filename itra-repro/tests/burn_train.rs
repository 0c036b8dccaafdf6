//! The burn-train path (`itra-train`) and the `itra` runner train the same numbers: the same
//! configuration and seed (real Fashion-MNIST, the small CNN, ITRA-c), the same data and
//! normalisation (`itra_repro::vision_data`), the same initial weights and the same `S1`/`S2`
//! orders give the same per-epoch training loss, cross-entropy, MMD and test accuracy.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::optim::AdamConfig;
use burn::tensor::{Device, Tensor};
use burn_train::metric::{AccuracyMetric, LossMetric};
use burn_train::{Learner, SupervisedTraining};
use itra_core::PairBatch;
use itra_data::PipelineView;
use itra_data::sampler::init_seed;
use itra_models::FeatureModel;
use itra_repro::config::ExperimentConfig;
use itra_repro::metrics::EpochMetrics;
use itra_train::{ImageBatcher, Itra, ItraMetric, PairLoader};

const SEED: u64 = 5;
const EPOCHS: usize = 2;

/// `itra train` of the small CNN with ITRA-c (lambda 0.6, Adam 1e-3, batches of 64) on 1,024
/// training and 500 test images: its configuration and epochs.
fn runner(runs: &Path) -> (ExperimentConfig, Vec<EpochMetrics>) {
    let output = Command::new(env!("CARGO_BIN_EXE_itra"))
        .arg("--data-dir")
        .arg(runs.join("no-data-here"))
        .args(["train", "--dataset", "fmnist", "--model", "small-cnn", "--quiet", "--runs-dir"])
        .arg(runs)
        .args(["--train-limit", "1024", "--test-limit", "500", "--batch-size", "64", "--epochs", "2"])
        .args(["--seed", "5", "--method", "itra-c", "--lambda", "0.6"])
        .output()
        .expect("the itra binary runs");
    assert!(output.status.success(), "itra train failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let run_dir = std::fs::read_dir(runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|d| d.join("metrics.jsonl").exists())
        .expect("a run directory");
    let provenance: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("config.json")).unwrap()).unwrap();
    let config = serde_json::from_value(provenance["config"].clone()).expect("the run's configuration");
    let text = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    (config, text.lines().map(|line| serde_json::from_str(line).unwrap()).collect())
}

/// The mean of burn-train's per-step `name` values in `epoch` (`Final` lines skipped).
fn logged_mean(dir: &Path, split: &str, epoch: usize, name: &str) -> f64 {
    let path = dir.join(split).join(format!("epoch-{epoch}")).join(format!("{name}.log"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let (mut sum, mut count) = (0.0, 0.0);
    for line in text.lines().filter(|line| !line.ends_with(",final")) {
        let mut fields = line.split(',');
        let value: f64 = fields.next().unwrap().parse().unwrap();
        let weight: f64 = fields.next().map_or(1.0, |w| w.parse().unwrap());
        sum += value * weight;
        count += weight;
    }
    sum / count
}

#[test]
fn burn_train_and_the_runner_give_the_same_numbers() {
    let runs = tempfile::tempdir().unwrap();
    let (config, epochs) = runner(runs.path());
    assert_eq!(epochs.len(), EPOCHS);

    // The same run through burn-train.
    let data = itra_repro::vision_data::load(&config, &runs.path().join("no-data-here")).unwrap();
    let device = Device::flex().autodiff();
    let train = PipelineView::new(data.train_pipeline(SEED));
    let test = PipelineView::new(data.eval_pipeline(&data.test));
    let pairs: Arc<dyn DataLoader<PairBatch<Tensor<4>>>> =
        PairLoader::new(train, ImageBatcher, config.batch_size, SEED, true, &device);
    let dir = tempfile::tempdir().unwrap();
    let training =
        SupervisedTraining::new(dir.path(), pairs, DataLoaderBuilder::new(ImageBatcher).batch_size(250).build(test))
            .metrics((AccuracyMetric::new(), LossMetric::new()))
            .metric_train_numeric(ItraMetric::cross_entropy())
            .metric_train_numeric(ItraMetric::regularizer())
            .with_application_logger(None)
            .num_epochs(EPOCHS);
    // The runner seeds Burn's generator for the model, then again per epoch before the first
    // forward, which is when the lazily initialised weights are drawn.
    device.seed(init_seed(SEED));
    let network = itra_models::build(itra_models::Arch::SmallCnn, 10, data.input_shape, &device).unwrap();
    let objective = itra_repro::step::objective(&config.loss, 10, network.feat_dim(), &device).unwrap();
    device.seed(init_seed(SEED.wrapping_add(1)));
    let model = Itra::new(network, objective, training.interrupter());
    let result = training.launch(Learner::new(model, AdamConfig::new().init(), config.optimizer.lr()));
    assert!(result.error.is_none() && result.interrupted.is_none());

    for (e, ours) in epochs.iter().enumerate() {
        let epoch = e + 1;
        let burn = [
            ("train loss", ours.train_loss, logged_mean(dir.path(), "train", epoch, "Loss")),
            ("train CE", ours.train_ce, logged_mean(dir.path(), "train", epoch, "CE")),
            ("train MMD", ours.train_regularizer.unwrap(), logged_mean(dir.path(), "train", epoch, "Match")),
            ("test accuracy", ours.test_accuracy, logged_mean(dir.path(), "valid", epoch, "Accuracy")),
        ];
        println!("epoch {epoch} (runner, burn-train): {burn:?}");
        for (what, runner, burn_train) in burn {
            // Same steps, same weights: only the order of the epoch's summation may differ.
            assert!(
                (runner - burn_train).abs() <= 1e-9 * runner.abs().max(1.0),
                "epoch {epoch} {what}: {runner} vs {burn_train}"
            );
        }
    }
    assert!(epochs[1].test_accuracy > 55.0, "it learns: {:?}", epochs[1].test_accuracy);
}
