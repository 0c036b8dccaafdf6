//! `ExperimentConfig`: everything that determines a run's numbers, serialisable and hashable.

use std::path::PathBuf;

use itra_core::{Bandwidth, CenterInit, Matching, Method, Normalize, SecondBatchMode};
use itra_models::Arch;
pub use itra_models::text::TextFeatures;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dataset::DatasetId;
use crate::device::DeviceSpec;

/// One training run, fully described. Two runs with equal configurations on the same machine and
/// thread count give identical numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentConfig {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub loss: LossConfig,
    pub optimizer: OptimizerConfig,
    pub schedule: Schedule,
    /// The training step's policies where they differ from the model's defaults
    /// ([`StepPolicy::default_for`]); absent otherwise, so that a configuration keeping the
    /// defaults hashes as it did before the policies were configurable. Read it through
    /// [`ExperimentConfig::step_policy`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepPolicy>,
    /// Passes over the training set.
    pub epochs: usize,
    /// Size of `S1` (and of `S2`) in images.
    pub batch_size: usize,
    /// The root of every random stream (initialisation, `S1` and `S2` order, augmentation).
    pub seed: u64,
    /// Where the run executes. Not part of [`ExperimentConfig::hash`].
    pub device: DeviceSpec,
}

/// Which data a run trains and evaluates on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    /// Dataset id (`fmnist`, `cifar10`, ...).
    pub dataset: String,
    /// Train on `n` examples of the training split (after the validation split), drawn by the
    /// run's seed, never by position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_limit: Option<usize>,
    /// Evaluate on `n` test examples: a seeded draw stratified by class (every class keeps its
    /// share), never the first `n` of a possibly class-sorted split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_limit: Option<usize>,
    /// Hold out this many training examples as a validation split, used to pick lambda: a
    /// seeded draw stratified by class. 0 trains on the whole training set.
    #[serde(default)]
    pub validation: usize,
    /// Training-time augmentation (and the evaluation transform that goes with it).
    #[serde(default)]
    pub augmentation: AugmentationRecipe,
}

/// The augmentation recipes of the paper's vision experiments, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AugmentationRecipe {
    /// Images as stored, for training and evaluation.
    #[default]
    None,
    /// Zero-pad by 1/8 of the side and take a random crop of the original size, then a random
    /// horizontal flip: pad 4 and crop 32 on CIFAR, pad 12 and crop 96 on STL-10 (the
    /// kuangliu/pytorch-cifar recipe). Evaluation sees the images as stored.
    CropFlip,
    /// `RandomResizedCrop(224)` (scale 0.08-1, ratio 3/4-4/3) and a random horizontal flip for
    /// training; evaluation resizes the shorter side to 256 and takes the central 224x224
    /// (the torchvision ImageNet recipe).
    Imagenet,
}

impl AugmentationRecipe {
    pub const ALL: [AugmentationRecipe; 3] =
        [AugmentationRecipe::None, AugmentationRecipe::CropFlip, AugmentationRecipe::Imagenet];

    /// The name on the command line and in `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            AugmentationRecipe::None => "none",
            AugmentationRecipe::CropFlip => "crop-flip",
            AugmentationRecipe::Imagenet => "imagenet",
        }
    }

    /// The training and the evaluation transform for images of `height` rows.
    pub fn transforms(self, height: usize) -> (itra_data::Augmentation, itra_data::Augmentation) {
        use itra_data::Augmentation;
        match self {
            AugmentationRecipe::None => (Augmentation::None, Augmentation::None),
            AugmentationRecipe::CropFlip => (Augmentation::CropFlip { padding: height / 8 }, Augmentation::None),
            AugmentationRecipe::Imagenet => (Augmentation::IMAGENET_TRAIN, Augmentation::IMAGENET_EVAL),
        }
    }
}

impl std::fmt::Display for AugmentationRecipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for AugmentationRecipe {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AugmentationRecipe::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| format!("unknown augmentation `{s}`; expected none, crop-flip or imagenet"))
    }
}

impl DataConfig {
    /// The dataset, parsed; an unknown id is an error that lists every valid one.
    pub fn id(&self) -> anyhow::Result<DatasetId> {
        self.dataset.parse().map_err(anyhow::Error::msg)
    }

    /// The whole of `dataset`, no validation split, no augmentation.
    pub fn new(dataset: &str) -> Self {
        DataConfig {
            dataset: dataset.to_owned(),
            train_limit: None,
            test_limit: None,
            validation: 0,
            augmentation: AugmentationRecipe::None,
        }
    }
}

/// The network: a registered vision architecture or a pretrained text encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ModelConfig {
    /// An architecture of `itra-models`' vision registry, trained from scratch.
    Vision { arch: Arch },
    /// A pretrained Hugging Face encoder (`minilm`, `bert-base`, `distilbert`, `xlnet`, or a
    /// checkpoint directory), fine-tuned with its sequence-classification head.
    Text {
        encoder: String,
        /// Sequences are truncated to this many tokens; batches are padded to their longest.
        max_len: usize,
        /// What the head's final linear layer reads, and ITRA and Center loss act on: the
        /// head's pooled output (the default, and what a `config.json` without the field meant),
        /// the CLS token's last hidden state, or the masked mean of the last hidden states.
        #[serde(default)]
        text_features: TextFeatures,
    },
}

impl ModelConfig {
    /// `--model` for `dataset`, parsed: images take a registered architecture, texts a text
    /// encoder (a short name, a Hugging Face id, a tiny test encoder or a checkpoint directory).
    /// An unknown name is an error listing every valid one for that kind of dataset, so a
    /// mistyped architecture is never taken for an encoder.
    pub fn parse(
        model: &str,
        dataset: &DatasetId,
        max_len: usize,
        text_features: TextFeatures,
    ) -> Result<Self, String> {
        if !dataset.is_text() {
            return model.parse::<Arch>().map(|arch| ModelConfig::Vision { arch }).map_err(|err| {
                let hint = if crate::encode::is_known_encoder(model) {
                    format!("; `{model}` is a text encoder, and dataset `{dataset}` is images")
                } else {
                    String::new()
                };
                format!("{err}{hint}")
            });
        }
        if crate::encode::is_known_encoder(model) || std::path::Path::new(model).is_dir() {
            return Ok(ModelConfig::Text { encoder: model.to_owned(), max_len, text_features });
        }
        let hint = if model.parse::<Arch>().is_ok() {
            format!("; `{model}` is a vision architecture, and dataset `{dataset}` is text")
        } else {
            String::new()
        };
        Err(format!(
            "unknown text encoder `{model}`; expected one of {}, or a checkpoint directory{hint}",
            crate::encode::ENCODER_NAMES.join(", ")
        ))
    }

    /// The name used in run directories and tables.
    pub fn name(&self) -> String {
        match self {
            ModelConfig::Vision { arch } => arch.name().to_owned(),
            ModelConfig::Text { encoder, .. } => {
                let base = std::path::Path::new(encoder)
                    .file_name()
                    .map_or(encoder.as_str(), |n| n.to_str().unwrap_or(encoder));
                base.to_owned()
            }
        }
    }
}

/// The training objective (see `itra_core::ItraObjectiveConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    pub method: Method,
    /// Weight of the regulariser; LSR's smoothing.
    pub lambda: f64,
    pub second_batch: SecondBatchMode,
    pub bandwidth: Bandwidth,
    pub eps: f64,
    pub normalize: Normalize,
    pub center_alpha: f64,
    /// Center loss's initial centres. A `config.json` without the field predates it and meant
    /// zero centres.
    #[serde(default = "legacy_center_init")]
    pub center_init: CenterInit,
    /// Center loss with Wen et al.'s factor 1/2 (`CONVENTIONS.md`). A `config.json` without the
    /// field predates it and meant no 1/2.
    #[serde(default)]
    pub center_halve: bool,
    /// The matching term: the MMD (`CONVENTIONS.md`, the default) or `MMD^2`.
    #[serde(default)]
    pub matching: Matching,
    /// Lambda ramps linearly from 0 to `lambda` over this fraction of all steps (0: none).
    #[serde(default)]
    pub lambda_warmup: f64,
}

fn legacy_center_init() -> CenterInit {
    CenterInit::Zero
}

impl LossConfig {
    /// The plain cross-entropy objective.
    pub fn baseline() -> Self {
        LossConfig {
            method: Method::Baseline,
            lambda: 0.0,
            second_batch: SecondBatchMode::Full,
            bandwidth: Bandwidth::Median,
            eps: 1e-8,
            normalize: Normalize::Present,
            center_alpha: 0.5,
            center_init: CenterInit::ClassMean,
            center_halve: true,
            matching: Matching::Mmd,
            lambda_warmup: 0.0,
        }
    }

    /// Lambda at `step` (from 0) of `total_steps`: `lambda * min(1, step / warm-up steps)`, the
    /// warm-up being `ceil(lambda_warmup * total_steps)` steps; `lambda` throughout without one.
    pub fn lambda_at(&self, step: usize, total_steps: usize) -> f64 {
        let warmup_steps = (self.lambda_warmup * total_steps as f64).ceil() as usize;
        if warmup_steps == 0 {
            return self.lambda;
        }
        self.lambda * (step as f64 / warmup_steps as f64).min(1.0)
    }
}

/// The optimiser, with its hyperparameters in their usual units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum OptimizerConfig {
    /// SGD with (heavy-ball) momentum and L2 weight decay added to the gradient.
    Sgd { lr: f64, momentum: f64, weight_decay: f64 },
    /// Adam (L2 weight decay added to the gradient, as `torch.optim.Adam`).
    Adam { lr: f64, weight_decay: f64 },
}

impl OptimizerConfig {
    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match *self {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::Adam { lr, .. } => lr,
        }
    }
}

/// The learning-rate schedule, evaluated per step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    Constant,
    /// Cosine annealing from the base rate to 0 over the whole run.
    Cosine,
}

impl Schedule {
    /// The learning rate at `step` of `total_steps`.
    pub fn lr(self, base: f64, step: usize, total_steps: usize) -> f64 {
        match self {
            Schedule::Constant => base,
            Schedule::Cosine => {
                let progress = step as f64 / total_steps.max(1) as f64;
                0.5 * base * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// What the training step does besides the objective and the optimiser's numbers: the policies
/// in which the paper's vision and text recipes differ. Each model kind has its default
/// ([`StepPolicy::default_for`]); `itra train --lr-warmup`, `--weight-decay-mode` and
/// `--distance-probe` override it, and every run records the policy it used in `config.json`'s
/// `step_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepPolicy {
    /// The learning rate ramps linearly from `base / w` to `base` over the first
    /// `w = ceil(lr_warmup * total_steps)` steps, then follows the schedule; 0: no warm-up.
    pub lr_warmup: f64,
    /// How Adam applies its weight decay (SGD always adds it to the gradient).
    pub weight_decay: WeightDecayMode,
    /// Which forward Figure 1's distance probe measures.
    pub distance_probe: DistanceProbe,
}

impl StepPolicy {
    /// The vision recipe: no warm-up, Adam's decay added to the gradient (`torch.optim.Adam`),
    /// the probe through the inference copy of the model.
    pub const VISION: StepPolicy =
        StepPolicy { lr_warmup: 0.0, weight_decay: WeightDecayMode::Coupled, distance_probe: DistanceProbe::Inference };
    /// The fine-tuning recipe of `transformers`: warm-up over 6 % of the steps, AdamW, and the
    /// probe on the training forward's features (a second transformer forward would double the
    /// probed steps' cost).
    pub const TEXT: StepPolicy = StepPolicy {
        lr_warmup: 0.06,
        weight_decay: WeightDecayMode::Decoupled,
        distance_probe: DistanceProbe::Training,
    };

    /// The default policy of a model kind.
    pub fn default_for(model: &ModelConfig) -> StepPolicy {
        match model {
            ModelConfig::Vision { .. } => StepPolicy::VISION,
            ModelConfig::Text { .. } => StepPolicy::TEXT,
        }
    }
}

/// How Adam applies weight decay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightDecayMode {
    /// Added to the gradient, as L2 regularisation (`torch.optim.Adam`).
    Coupled,
    /// Decoupled from the gradient (AdamW, `torch.optim.AdamW`).
    Decoupled,
}

/// Which forward Figure 1's distance probe (`d_same / d_all` every
/// [`crate::metrics::DISTANCE_EVERY`] steps of an epoch) measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DistanceProbe {
    /// `S1` and `S2` of the step through the inference copy of the model (batch norm in
    /// evaluation mode, no gradient, no effect on training), for every method alike.
    Inference,
    /// The training forward's `H1` and `H2`: free, but only for methods that forward `S2`.
    Training,
    /// Not measured.
    Off,
}

/// Names on the command line and in `config.json`, for the enums above.
macro_rules! named_enum {
    ($ty:ident, $what:literal, $($variant:ident => $name:literal),+) => {
        impl $ty {
            /// Every value.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The name on the command line and in `config.json`.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL.iter().copied().find(|v| v.name() == s).ok_or_else(|| {
                    let names: Vec<&str> = $ty::ALL.iter().map(|v| v.name()).collect();
                    format!(concat!("unknown ", $what, " `{}`; expected one of {}"), s, names.join(", "))
                })
            }
        }
    };
}

named_enum!(WeightDecayMode, "weight-decay mode", Coupled => "coupled", Decoupled => "decoupled");
named_enum!(DistanceProbe, "distance probe", Inference => "inference", Training => "training", Off => "off");

impl ExperimentConfig {
    /// The step policy this run uses: [`ExperimentConfig::step`], or the model's default.
    pub fn step_policy(&self) -> StepPolicy {
        self.step.unwrap_or_else(|| StepPolicy::default_for(&self.model))
    }

    /// This configuration with `policy`, kept only where it differs from the model's default.
    pub fn with_step_policy(mut self, policy: StepPolicy) -> Self {
        self.step = (policy != StepPolicy::default_for(&self.model)).then_some(policy);
        self
    }

    /// This configuration with each given part of its step policy replaced (the command line's
    /// `--lr-warmup`, `--weight-decay-mode`, `--distance-probe`), the rest kept.
    pub fn with_step_policy_overrides(
        self,
        lr_warmup: Option<f64>,
        weight_decay: Option<WeightDecayMode>,
        distance_probe: Option<DistanceProbe>,
    ) -> Self {
        let current = self.step_policy();
        let policy = StepPolicy {
            lr_warmup: lr_warmup.unwrap_or(current.lr_warmup),
            weight_decay: weight_decay.unwrap_or(current.weight_decay),
            distance_probe: distance_probe.unwrap_or(current.distance_probe),
        };
        self.with_step_policy(policy)
    }
}

impl ExperimentConfig {
    /// Every hyperparameter in its domain, or an error naming the first that is not: a run
    /// never silently replaces a bad value (a negative weight decay, a NaN momentum) by another.
    pub fn validate(&self) -> Result<(), String> {
        let finite_at_least = |name: &str, value: f64, low: f64| {
            if value.is_finite() && value >= low {
                Ok(())
            } else {
                Err(format!("{name} must be finite and >= {low}, got {value}"))
            }
        };
        let dataset: DatasetId = self.data.dataset.parse()?;
        match (&self.model, dataset.is_text()) {
            (ModelConfig::Vision { arch }, true) => {
                return Err(format!(
                    "dataset `{dataset}` is text; train it with a text encoder (--model minilm, ...), not {arch}"
                ));
            }
            (ModelConfig::Text { encoder, .. }, false) => {
                return Err(format!(
                    "dataset `{dataset}` is images; `{encoder}` is a text encoder, and images train a vision \
                     architecture ({})",
                    Arch::ALL.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
                ));
            }
            _ => {}
        }
        if self.epochs == 0 {
            return Err("--epochs must be at least 1".to_owned());
        }
        if self.batch_size == 0 {
            return Err("--batch-size must be at least 1".to_owned());
        }
        if self.data.train_limit == Some(0) {
            return Err("--train-limit 0 leaves nothing to train on".to_owned());
        }
        if self.data.test_limit == Some(0) {
            return Err("--test-limit 0 leaves no test examples to evaluate".to_owned());
        }
        let lr = self.optimizer.lr();
        if !(lr.is_finite() && lr > 0.0) {
            return Err(format!("--lr must be finite and positive, got {lr}"));
        }
        match self.optimizer {
            OptimizerConfig::Sgd { momentum, weight_decay, .. } => {
                finite_at_least("--weight-decay", weight_decay, 0.0)?;
                if !(momentum.is_finite() && (0.0..1.0).contains(&momentum)) {
                    return Err(format!("--momentum must be in [0, 1), got {momentum}"));
                }
            }
            OptimizerConfig::Adam { weight_decay, .. } => finite_at_least("--weight-decay", weight_decay, 0.0)?,
        }
        let loss = &self.loss;
        finite_at_least("--lambda", loss.lambda, 0.0)?;
        if loss.method != Method::Baseline && loss.lambda == 0.0 {
            return Err(format!(
                "--method {} with --lambda 0 is the baseline; give its weight (the paper's: LSR 0.1, Center 0.05, ITRA 0.6)",
                loss.method
            ));
        }
        if loss.method == Method::Lsr && loss.lambda >= 1.0 {
            return Err(format!("label smoothing must be below 1, got {}", loss.lambda));
        }
        if !(loss.eps.is_finite() && loss.eps > 0.0) {
            return Err(format!("the MMD floor eps must be finite and positive, got {}", loss.eps));
        }
        if !(loss.center_alpha > 0.0 && loss.center_alpha <= 1.0) {
            return Err(format!("the centre rate alpha must be in (0, 1], got {}", loss.center_alpha));
        }
        if let Bandwidth::Fixed(sigma) = loss.bandwidth
            && !(sigma.is_finite() && sigma > 0.0)
        {
            return Err(format!("--bandwidth must be finite and positive, got {sigma}"));
        }
        if !(0.0..=1.0).contains(&loss.lambda_warmup) {
            let warmup = loss.lambda_warmup;
            return Err(format!("--lambda-warmup must be in [0, 1] (a fraction of the steps), got {warmup}"));
        }
        let lr_warmup = self.step_policy().lr_warmup;
        if !(0.0..=1.0).contains(&lr_warmup) {
            return Err(format!("--lr-warmup must be in [0, 1] (a fraction of the steps), got {lr_warmup}"));
        }
        Ok(())
    }

    /// A stable hash of everything that determines the numbers (the device excluded), used to
    /// recognise a finished run.
    pub fn hash(&self) -> String {
        let mut numbers = self.clone();
        numbers.device = DeviceSpec::Cpu;
        // A policy equal to the model's default is the default, however it was written.
        numbers.step = numbers.step.filter(|policy| *policy != StepPolicy::default_for(&numbers.model));
        let json = serde_json::to_vec(&numbers).expect("an experiment config always serialises");
        let digest = Sha256::digest(&json);
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// A short human-readable name: `fmnist-small-cnn-itra-c-l0.6-s1`.
    pub fn slug(&self) -> String {
        let lambda =
            if self.loss.method == Method::Baseline { String::new() } else { format!("-l{}", self.loss.lambda) };
        format!(
            "{}-{}-{}{}-s{}",
            self.data.dataset.replace([':', '/'], "_"),
            self.model.name(),
            self.loss.method,
            lambda,
            self.seed
        )
    }
}

/// Where a run's files go: `<runs>/<slug>-<hash>/`.
pub fn run_dir(runs_root: &std::path::Path, config: &ExperimentConfig) -> PathBuf {
    runs_root.join(format!("{}-{}", config.slug(), config.hash()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ExperimentConfig {
        ExperimentConfig {
            data: DataConfig::new("fmnist"),
            model: ModelConfig::Vision { arch: Arch::SmallCnn },
            loss: LossConfig::baseline(),
            optimizer: OptimizerConfig::Adam { lr: 1e-3, weight_decay: 0.0 },
            schedule: Schedule::Constant,
            step: None,
            epochs: 1,
            batch_size: 128,
            seed: 1,
            device: DeviceSpec::Cpu,
        }
    }

    #[test]
    fn the_step_policy_is_the_models_default_unless_overridden_and_only_then_in_the_hash() {
        let vision = config();
        assert_eq!(vision.step_policy(), StepPolicy::VISION);
        // The default written out is the default: same hash, nothing serialised.
        let explicit = ExperimentConfig { step: Some(StepPolicy::VISION), ..config() };
        assert_eq!(explicit.hash(), vision.hash());
        let normalised = config().with_step_policy(StepPolicy::VISION);
        assert_eq!(normalised.step, None);
        assert!(serde_json::to_value(&normalised).unwrap().get("step").is_none());
        // Any difference is a different run, and is recorded.
        let warm = config().with_step_policy(StepPolicy { lr_warmup: 0.1, ..StepPolicy::VISION });
        assert_ne!(warm.hash(), vision.hash());
        assert_eq!(serde_json::to_value(&warm).unwrap()["step"]["lr_warmup"], 0.1);
        assert_eq!(warm.step_policy().lr_warmup, 0.1);
        let decoupled =
            config().with_step_policy(StepPolicy { weight_decay: WeightDecayMode::Decoupled, ..StepPolicy::VISION });
        assert_ne!(decoupled.hash(), vision.hash());
        assert_eq!(serde_json::to_value(&decoupled).unwrap()["step"]["weight_decay"], "decoupled");
        // A text model's default is the fine-tuning recipe.
        let text = ExperimentConfig {
            data: DataConfig::new("ag_news"),
            model: ModelConfig::Text { encoder: "minilm".into(), max_len: 64, text_features: TextFeatures::Pooler },
            ..config()
        };
        assert_eq!(text.step_policy(), StepPolicy::TEXT);
        assert_eq!(text.clone().with_step_policy(StepPolicy::TEXT).step, None);
        // Out of range is refused.
        let bad = config().with_step_policy(StepPolicy { lr_warmup: 1.5, ..StepPolicy::VISION });
        assert!(bad.validate().unwrap_err().contains("--lr-warmup"), "{:?}", bad.validate());
    }

    #[test]
    fn policy_names_parse_and_list_the_valid_ones() {
        assert_eq!("decoupled".parse::<WeightDecayMode>(), Ok(WeightDecayMode::Decoupled));
        assert_eq!("training".parse::<DistanceProbe>(), Ok(DistanceProbe::Training));
        let err = "eval".parse::<DistanceProbe>().unwrap_err();
        assert!(err.contains("inference, training, off"), "{err}");
        for probe in DistanceProbe::ALL {
            assert_eq!(probe.to_string().parse::<DistanceProbe>(), Ok(*probe));
        }
    }

    #[test]
    fn hash_ignores_the_device_but_not_the_numbers() {
        let a = config();
        let mut b = config();
        b.device = DeviceSpec::Cuda(0);
        assert_eq!(a.hash(), b.hash());
        b.seed = 2;
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn augmentation_and_center_rules_are_part_of_the_hash_and_the_record() {
        let a = config();
        let mut b = config();
        b.data.augmentation = AugmentationRecipe::CropFlip;
        assert_ne!(a.hash(), b.hash());
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json["data"]["augmentation"], "crop-flip");
        let mut c = config();
        c.loss.center_init = CenterInit::Zero;
        assert_ne!(a.hash(), c.hash());
        let mut d = config();
        d.loss.center_halve = false;
        assert_ne!(a.hash(), d.hash());
        assert_eq!(json["loss"]["center_init"], "class-mean");
        assert_eq!(json["loss"]["center_halve"], true);
    }

    #[test]
    fn a_config_written_before_the_new_fields_reads_as_the_old_rules() {
        let mut json = serde_json::to_value(config()).unwrap();
        for (section, key) in [("data", "augmentation"), ("loss", "center_init"), ("loss", "center_halve")] {
            json[section].as_object_mut().unwrap().remove(key);
        }
        let old: ExperimentConfig = serde_json::from_value(json).unwrap();
        assert_eq!(old.data.augmentation, AugmentationRecipe::None);
        assert_eq!(old.loss.center_init, CenterInit::Zero);
        assert!(!old.loss.center_halve);
    }

    #[test]
    fn crop_flip_pads_an_eighth_of_the_side() {
        use itra_data::Augmentation;
        assert_eq!(AugmentationRecipe::CropFlip.transforms(32).0, Augmentation::CropFlip { padding: 4 });
        assert_eq!(AugmentationRecipe::CropFlip.transforms(96).0, Augmentation::CropFlip { padding: 12 });
        assert_eq!(
            AugmentationRecipe::Imagenet.transforms(500),
            (Augmentation::IMAGENET_TRAIN, Augmentation::IMAGENET_EVAL)
        );
        assert_eq!("crop-flip".parse::<AugmentationRecipe>(), Ok(AugmentationRecipe::CropFlip));
        assert!("cropflip".parse::<AugmentationRecipe>().unwrap_err().contains("none, crop-flip or imagenet"));
    }

    #[test]
    fn a_model_is_parsed_for_its_kind_of_dataset_and_a_wrong_one_lists_the_valid_names() {
        let parse = |model: &str, dataset: &str| {
            ModelConfig::parse(model, &dataset.parse().unwrap(), 128, TextFeatures::Pooler)
        };
        assert_eq!(parse("resnet18", "cifar10"), Ok(ModelConfig::Vision { arch: Arch::ResNet18 }));
        assert!(matches!(parse("minilm", "ag_news"), Ok(ModelConfig::Text { encoder, .. }) if encoder == "minilm"));
        // A mistyped architecture names the architectures, never an encoder error.
        let err = parse("resnet19", "cifar10").unwrap_err();
        assert!(err.contains("resnet19") && err.contains("small-cnn") && err.contains("mobilenetv2-cifar"), "{err}");
        let err = parse("minilm", "fmnist").unwrap_err();
        assert!(err.contains("text encoder") && err.contains("images"), "{err}");
        let err = parse("bert-bsae", "ag_news").unwrap_err();
        assert!(err.contains("unknown text encoder `bert-bsae`") && err.contains("distilbert"), "{err}");
        let err = parse("resnet18", "yelp_full").unwrap_err();
        assert!(err.contains("vision architecture"), "{err}");
        // A mismatched configuration file fails validation the same way.
        let mut text_on_images = config();
        text_on_images.model =
            ModelConfig::Text { encoder: "minilm".into(), max_len: 16, text_features: TextFeatures::Pooler };
        assert!(text_on_images.validate().unwrap_err().contains("images"));
        let mut unknown = config();
        unknown.data.dataset = "fminst".into();
        assert!(unknown.validate().unwrap_err().contains("unknown dataset `fminst`"));
    }

    #[test]
    fn out_of_domain_hyperparameters_are_named() {
        assert_eq!(config().validate(), Ok(()));
        let check = |edit: &dyn Fn(&mut ExperimentConfig), needle: &str| {
            let mut c = config();
            edit(&mut c);
            let err = c.validate().unwrap_err();
            assert!(err.contains(needle), "{err}");
        };
        check(&|c| c.optimizer = OptimizerConfig::Adam { lr: -1.0, weight_decay: 0.0 }, "--lr");
        check(&|c| c.optimizer = OptimizerConfig::Adam { lr: 1e-3, weight_decay: -1.0 }, "--weight-decay");
        check(&|c| c.optimizer = OptimizerConfig::Sgd { lr: 0.1, momentum: f64::NAN, weight_decay: 0.0 }, "--momentum");
        check(
            &|c| c.optimizer = OptimizerConfig::Sgd { lr: 0.1, momentum: 0.9, weight_decay: f64::NAN },
            "--weight-decay",
        );
        check(&|c| c.epochs = 0, "--epochs");
        check(&|c| c.data.test_limit = Some(0), "--test-limit 0");
        check(&|c| c.loss.method = Method::ItraC, "with --lambda 0 is the baseline");
        check(
            &|c| {
                c.loss.method = Method::Lsr;
                c.loss.lambda = 1.0;
            },
            "below 1",
        );
    }

    #[test]
    fn config_round_trips_through_json() {
        let a = config();
        let json = serde_json::to_string(&a).unwrap();
        let b: ExperimentConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn cosine_schedule_ends_at_zero() {
        assert_eq!(Schedule::Cosine.lr(0.1, 0, 10), 0.1);
        assert!(Schedule::Cosine.lr(0.1, 10, 10).abs() < 1e-12);
        assert_eq!(Schedule::Constant.lr(0.1, 5, 10), 0.1);
    }
}
