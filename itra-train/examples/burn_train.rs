//! The small CNN trained with ITRA-c on real Fashion-MNIST through burn-train's
//! `SupervisedTraining`: checkpoints every epoch, Burn's accuracy and loss beside ITRA's
//! cross-entropy, matching term and bandwidth, and Burn's renderer.
//!
//! ```text
//! cargo run --release -p itra-train --example burn_train -- [--epochs 3] [--train-limit 10000]
//!     [--method itra-c] [--lambda 0.6] [--devices 1] [--resume EPOCH] [--out runs/burn-train]
//!     [--data-dir DIR]
//! ```
//!
//! Fashion-MNIST comes from `--data-dir` (default `$ITRA_DATA` or `~/.cache/itra`; fetch it with
//! `itra data fetch fmnist`) or Debian's `dataset-fashion-mnist`. `--devices 2` trains with
//! burn-train's multi-device strategy on two CPU devices. `--resume E` continues a run from its
//! epoch-`E` checkpoint in `--out`.

use std::path::PathBuf;
use std::sync::Arc;

use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::optim::AdamConfig;
use burn::tensor::{Device, Tensor};
use burn_train::metric::{AccuracyMetric, LossMetric};
use burn_train::{ExecutionStrategy, Learner, MultiDeviceOptim, SupervisedTraining};
use itra_core::{ItraObjectiveConfig, Method, PairBatch};
use itra_data::{Augmentation, Normalization, Pipeline, PipelineView, Split};
use itra_models::{Arch, FeatureModel};
use itra_train::{ImageBatcher, Itra, ItraMetric, PairLoader};

struct Args {
    epochs: usize,
    train_limit: usize,
    method: Method,
    lambda: f64,
    devices: usize,
    resume: Option<usize>,
    out: PathBuf,
    data_dir: PathBuf,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        epochs: 3,
        train_limit: 10_000,
        method: Method::ItraC,
        lambda: 0.6,
        devices: 1,
        resume: None,
        out: PathBuf::from("runs/burn-train"),
        data_dir: itra_data::default_data_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--epochs" => args.epochs = number(value()?)?,
            "--train-limit" => args.train_limit = number(value()?)?,
            "--method" => args.method = value()?.parse()?,
            "--lambda" => args.lambda = value()?.parse().map_err(|e| format!("--lambda: {e}"))?,
            "--devices" => args.devices = number(value()?)?.max(1),
            "--resume" => args.resume = Some(number(value()?)?),
            "--out" => args.out = value()?.into(),
            "--data-dir" => args.data_dir = value()?.into(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = parse().unwrap_or_else(|err| {
        eprintln!("burn_train: {err}");
        std::process::exit(2)
    });
    let load = |split| {
        itra_data::load_image_dataset("fmnist", &args.data_dir, split).unwrap_or_else(|err| {
            eprintln!("burn_train: {err}");
            std::process::exit(1)
        })
    };
    let mut train = load(Split::Train);
    if args.train_limit > 0 && args.train_limit < train.len() {
        train = train.subset(&(0..args.train_limit).collect::<Vec<_>>());
    }
    let test = load(Split::Test);
    // Normalised by the training images' statistics, as the `itra` runner does.
    let norm = Normalization::of(&train);
    let train = PipelineView::new(Pipeline::new(train, Augmentation::None, norm.clone(), 0));
    let test = PipelineView::new(Pipeline::new(test, Augmentation::None, norm, 0));

    let device = Device::flex().autodiff();
    let seed = 0;
    let pairs = PairLoader::new(train, ImageBatcher, 64, seed, args.method.uses_second_batch(), &device);
    let train_loader: Arc<dyn DataLoader<PairBatch<Tensor<4>>>> = match args.resume {
        Some(epoch) => pairs.starting_at_epoch(epoch),
        None => pairs,
    };
    let test_loader = DataLoaderBuilder::new(ImageBatcher).batch_size(500).build(test);

    let mut training = SupervisedTraining::new(&args.out, train_loader, test_loader)
        .metrics((AccuracyMetric::new(), LossMetric::new()))
        .metric_train_numeric(ItraMetric::cross_entropy())
        .metric_train_numeric(ItraMetric::regularizer())
        .metric_train_numeric(ItraMetric::bandwidth())
        .with_default_checkpointers()
        .num_epochs(args.epochs)
        .summary();
    if args.devices > 1 {
        let devices = vec![device.clone(); args.devices];
        training = training
            .with_training_strategy(ExecutionStrategy::MultiDevice(devices, MultiDeviceOptim::OptimMainDevice).into());
    }
    if let Some(epoch) = args.resume {
        training = training.checkpoint(epoch);
    }

    device.seed(seed);
    let network = itra_models::build(Arch::SmallCnn, 10, [1, 28, 28], &device).expect("the small CNN builds");
    let objective = ItraObjectiveConfig::new(args.method, 10, network.feat_dim())
        .with_lambda(args.lambda)
        .init(&device)
        .unwrap_or_else(|err| {
            eprintln!("burn_train: {err}");
            std::process::exit(2)
        });
    let model = Itra::new(network, objective, training.interrupter());
    let result = training.launch(Learner::new(model, AdamConfig::new().init(), 1e-3));
    if let Some(reason) = result.interrupted.and_then(|i| i.reason) {
        eprintln!("burn_train: stopped: {reason}");
        std::process::exit(1);
    }
    if let Some(error) = result.error {
        eprintln!("burn_train: {error}");
        std::process::exit(1);
    }
}
