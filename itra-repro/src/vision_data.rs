//! A vision run's data: the training, validation and test splits as [`ImageSource`]s (image
//! folders streamed, everything else in memory), the seeded subsets of its configuration, the
//! normalisation and the augmentation recipe.
//!
//! **No subset is taken by position.** The validation split is a class-stratified draw by the
//! run's seed; the training limit a seeded draw from the rest; the test limit a class-stratified
//! draw with a fixed seed ([`TEST_SUBSET_SEED`]), so every run of a table, whatever its seed,
//! is scored on the same test images. Subsets of an image folder are drawn from its file index,
//! before anything is decoded.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use itra_data::{
    Augmentation, BatchRequest, ImageSource, Loader, LoaderOptions, Normalization, Pipeline, Split, Stream,
    stratified_draw,
};
use itra_models::{FeatureModel, VisionModel};
use rand::seq::SliceRandom;

use crate::config::{AugmentationRecipe, ExperimentConfig};
use crate::dataset::DatasetId;
use crate::metrics::Score;
use crate::pipeline::{rng, to_tensor};

/// The seed of every test subset: one draw shared by all runs of a dataset and limit.
pub const TEST_SUBSET_SEED: u64 = 0;
/// The test rows a `test_limit` of `limit` keeps: one class-stratified draw on
/// [`TEST_SUBSET_SEED`], the same for every run (vision and text alike).
pub fn test_subset(labels: &[usize], limit: usize) -> Vec<usize> {
    stratified_draw(labels, limit, &mut rng(TEST_SUBSET_SEED, Stream::Subset, 2))
}

/// Images of a folder's training split its normalisation is measured on (a seeded draw), so
/// that a run never decodes the whole folder before its first step.
pub const FOLDER_STATS_SAMPLE: usize = 1000;
/// Images per evaluation batch.
pub const EVAL_BATCH: usize = 500;

/// The three splits of a run, ready for [`Pipeline`]s.
#[derive(Debug, Clone)]
pub struct VisionData {
    pub train: ImageSource,
    pub validation: Option<ImageSource>,
    pub test: ImageSource,
    pub class_names: Vec<String>,
    /// `[C, H, W]` of the images the model sees (after the transforms).
    pub input_shape: [usize; 3],
    /// The training subset's channel statistics (torchvision's for ImageNet).
    pub normalization: Normalization,
    pub train_augmentation: Augmentation,
    /// The deterministic transform of validation and test images.
    pub eval_augmentation: Augmentation,
}

impl VisionData {
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// The training pipeline, augmenting.
    pub fn train_pipeline(&self, seed: u64) -> Pipeline {
        Pipeline::new(self.train.clone(), self.train_augmentation, self.normalization.clone(), seed)
    }

    /// The pipeline that evaluates `source` (the validation or the test split).
    pub fn eval_pipeline(&self, source: &ImageSource) -> Pipeline {
        Pipeline::new(source.clone(), self.eval_augmentation, self.normalization.clone(), 0)
    }
}

fn load_source(dataset: &DatasetId, data_dir: &Path, split: Split) -> Result<ImageSource> {
    match dataset {
        DatasetId::Synthetic(id) => Ok(crate::synthetic::load(id, split)?.into()),
        DatasetId::Registry(_) | DatasetId::Folder(_) => {
            Ok(itra_data::image_source(&dataset.to_string(), data_dir, split)?)
        }
        DatasetId::AgNewsTestSplit | DatasetId::SyntheticText(_) => {
            bail!("dataset `{dataset}` is text; it has no images")
        }
    }
}

/// Loads (or, for image folders, indexes) the data of `config`, with its subsets, statistics
/// and transforms.
pub fn load(config: &ExperimentConfig, data_dir: &Path) -> Result<VisionData> {
    let id = &config.data.dataset;
    let dataset = config.data.id()?;
    let full_train = load_source(&dataset, data_dir, Split::Train)?;
    let full_test = load_source(&dataset, data_dir, Split::Test)?;
    if full_train.is_empty() {
        bail!("dataset `{id}` has no training images");
    }
    if full_test.is_empty() {
        bail!("dataset `{id}` has no test images");
    }

    let labels = full_train.labels();
    let validation_len = config.data.validation;
    if validation_len >= full_train.len() {
        bail!("a validation split of {validation_len} leaves nothing of the {} training examples", full_train.len());
    }
    let (validation_indices, rest) =
        itra_data::holdout_split(&labels, validation_len, config.data.train_limit, config.seed);
    let validation = (validation_len > 0).then(|| full_train.subset(&validation_indices));
    let train = if rest.len() == full_train.len() { full_train } else { full_train.subset(&rest) };
    let test = match config.data.test_limit {
        Some(0) => bail!("--test-limit 0 leaves no test images to evaluate"),
        Some(limit) if limit < full_test.len() => full_test.subset(&test_subset(&full_test.labels(), limit)),
        _ => full_test,
    };

    let is_imagenet = matches!(dataset, DatasetId::Registry(spec) if spec.id == "imagenet");
    let normalization = match &train {
        ImageSource::Memory(data) => Normalization::of(data),
        ImageSource::Folder(_) if is_imagenet => Normalization::imagenet(),
        ImageSource::Folder(index) => {
            let mut sample: Vec<usize> = (0..index.paths.len()).collect();
            sample.shuffle(&mut rng(config.seed, Stream::Subset, 3));
            sample.truncate(FOLDER_STATS_SAMPLE);
            let ImageSource::Folder(sample) = train.subset(&sample) else { unreachable!("a folder's subset is one") };
            Normalization::of_folder(&sample).context("measuring the image folder's channel statistics")?
        }
    };
    let first_shape = train.raw_image(0).context("reading the first training image")?.1;
    let (train_augmentation, eval_augmentation) = match (config.data.augmentation, &train) {
        // ImageNet's images differ in size: without augmentation both splits are resized to 256
        // and centre-cropped to 224, the evaluation transform.
        (AugmentationRecipe::None, ImageSource::Folder(_)) if is_imagenet => {
            (Augmentation::IMAGENET_EVAL, Augmentation::IMAGENET_EVAL)
        }
        (recipe, _) => recipe.transforms(first_shape[1]),
    };
    let input_shape = train_augmentation.output_shape(first_shape);
    if eval_augmentation.output_shape(input_shape) != input_shape && !eval_augmentation.fixes_size() {
        bail!("the evaluation transform of `{}` changes the image shape", config.data.augmentation);
    }
    let class_names = train.class_names().to_vec();
    Ok(VisionData {
        train,
        validation,
        test,
        class_names,
        input_shape,
        normalization,
        train_augmentation,
        eval_augmentation,
    })
}

/// The batches of every example of `pipeline`'s source, in order, made ahead on the loader's
/// workers.
fn eval_loader(pipeline: &Pipeline, indices: &[usize]) -> Loader {
    let requests = indices.chunks(EVAL_BATCH).map(|chunk| BatchRequest::new(chunk.to_vec(), Stream::AugmentFirst));
    Loader::new(pipeline.clone(), requests.collect(), 0, LoaderOptions::default())
}

/// Accuracy (percent) and mean cross-entropy of `model` on every example of `pipeline`.
pub fn evaluate(model: &VisionModel, pipeline: &Pipeline, device: &Device) -> Result<(f64, f64)> {
    let indices: Vec<usize> = (0..pipeline.source.len()).collect();
    let mut score = Score::default();
    for batch in eval_loader(pipeline, &indices) {
        let (images, labels) = to_tensor(batch.context("loading an evaluation batch")?, device);
        score.add(&model.forward(images).into_data().iter::<f32>().collect::<Vec<_>>(), &labels);
    }
    Ok(score.finish())
}

/// The features of the examples `indices` of `pipeline` under `model`, row-major
/// `[indices.len(), feat_dim]`, with their labels.
pub fn features(
    model: &VisionModel,
    pipeline: &Pipeline,
    indices: &[usize],
    device: &Device,
) -> Result<(Vec<f32>, Vec<usize>)> {
    let mut features = Vec::with_capacity(indices.len() * model.feat_dim());
    let mut labels = Vec::with_capacity(indices.len());
    for batch in eval_loader(pipeline, indices) {
        let (images, batch_labels) = to_tensor(batch.context("loading a batch")?, device);
        features.extend(model.forward_features(images).into_data().iter::<f32>());
        labels.extend(batch_labels);
    }
    Ok((features, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DataConfig, LossConfig, ModelConfig, OptimizerConfig, Schedule};
    use crate::device::DeviceSpec;

    /// A class-sorted folder dataset: `classes` classes of `per_class` 6x5 PNGs in both splits.
    fn sorted_folder(classes: usize, per_class: usize) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for split in ["train", "val"] {
            for class in 0..classes {
                let dir = root.path().join(split).join(format!("c{class:02}"));
                std::fs::create_dir_all(&dir).unwrap();
                for i in 0..per_class {
                    let shade = (class * 20 + i) as u8;
                    image::RgbImage::from_pixel(5, 6, image::Rgb([shade, 255 - shade, 7]))
                        .save(dir.join(format!("{i:03}.png")))
                        .unwrap();
                }
            }
        }
        root
    }

    fn config(root: &Path) -> ExperimentConfig {
        ExperimentConfig {
            data: DataConfig::new(&format!("folder:{}", root.display())),
            model: ModelConfig::Vision { arch: itra_models::Arch::SmallCnn },
            loss: LossConfig::baseline(),
            optimizer: OptimizerConfig::Adam { lr: 1e-3, weight_decay: 0.0 },
            schedule: Schedule::Constant,
            step: None,
            epochs: 1,
            batch_size: 8,
            seed: 5,
            device: DeviceSpec::Cpu,
        }
    }

    fn counts(source: &ImageSource, classes: usize) -> Vec<usize> {
        let mut counts = vec![0; classes];
        source.labels().iter().for_each(|&l| counts[l] += 1);
        counts
    }

    #[test]
    fn subsets_of_a_class_sorted_folder_are_stratified_seeded_draws() {
        let root = sorted_folder(10, 12);
        let mut config = config(root.path());
        config.data.test_limit = Some(50);
        config.data.validation = 30;
        config.data.train_limit = Some(40);
        let data = load(&config, Path::new("/nonexistent")).unwrap();
        // By position, 50 test images would be classes 0-4 only.
        assert_eq!(counts(&data.test, 10), vec![5; 10]);
        let validation = data.validation.as_ref().unwrap();
        assert_eq!(counts(validation, 10), vec![3; 10]);
        assert_eq!(data.train.len(), 40);
        // Training and validation never share an image.
        let ImageSource::Folder(train) = &data.train else { panic!("a folder streams") };
        let ImageSource::Folder(val) = validation else { panic!("a folder streams") };
        assert!(train.paths.iter().all(|p| !val.paths.contains(p)));
        // The test draw does not depend on the run's seed; the validation draw does.
        config.seed = 6;
        let other = load(&config, Path::new("/nonexistent")).unwrap();
        let paths = |s: &ImageSource| match s {
            ImageSource::Folder(f) => f.paths.clone(),
            ImageSource::Memory(_) => unreachable!(),
        };
        assert_eq!(paths(&data.test), paths(&other.test));
        assert_ne!(paths(validation), paths(other.validation.as_ref().unwrap()));
        assert_eq!(data.input_shape, [3, 6, 5]);
    }

    #[test]
    fn a_zero_test_limit_is_an_error() {
        let root = sorted_folder(2, 3);
        let mut config = config(root.path());
        config.data.test_limit = Some(0);
        let err = load(&config, Path::new("/nonexistent")).unwrap_err().to_string();
        assert!(err.contains("--test-limit 0"), "{err}");
    }
}
