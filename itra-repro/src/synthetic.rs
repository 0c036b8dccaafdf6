//! Generated image datasets for the `smoke` profile and for tests: seconds per run, no files.
//!
//! `synthetic:<C>x<H>x<W>:<classes>:<train>:<test>` (e.g. `synthetic:1x28x28:10:256:128`) gives
//! images whose pixels are a per-class random prototype plus per-image noise, so a network can
//! learn them and the smoke numbers mean something. Everything is a pure function of the id.

use anyhow::{Context, Result, bail};
use itra_data::{ImageDataset, Split};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Whether `id` names a generated dataset.
pub fn is_synthetic(id: &str) -> bool {
    id.starts_with("synthetic:")
}

/// The split `split` of the generated dataset `id`.
pub fn load(id: &str, split: Split) -> Result<ImageDataset> {
    let spec = id.strip_prefix("synthetic:").context("a synthetic dataset id starts with `synthetic:`")?;
    let parts: Vec<&str> = spec.split(':').collect();
    let [shape, classes, train, test] = parts[..] else {
        bail!("dataset `{id}`: expected synthetic:<C>x<H>x<W>:<classes>:<train>:<test>");
    };
    let dims: Vec<usize> = shape
        .split('x')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("dataset `{id}`: bad shape `{shape}`"))?;
    let [channels, height, width] = dims[..] else {
        bail!("dataset `{id}`: the shape needs three dimensions, got `{shape}`");
    };
    let num_classes: usize = classes.parse().with_context(|| format!("dataset `{id}`: bad class count"))?;
    let count: usize = match split {
        Split::Train => train.parse(),
        Split::Test => test.parse(),
    }
    .with_context(|| format!("dataset `{id}`: bad example count"))?;
    if num_classes == 0 || channels * height * width == 0 {
        bail!("dataset `{id}`: classes and every dimension must be positive");
    }
    let image_len = channels * height * width;
    let mut prototypes = ChaCha8Rng::seed_from_u64(0x5eed);
    let prototypes: Vec<Vec<f32>> =
        (0..num_classes).map(|_| (0..image_len).map(|_| prototypes.random_range(40.0..216.0)).collect()).collect();
    let mut noise = ChaCha8Rng::seed_from_u64(match split {
        Split::Train => 1,
        Split::Test => 2,
    });
    let mut images = Vec::with_capacity(count * image_len);
    let mut labels = Vec::with_capacity(count);
    for index in 0..count {
        let label = index % num_classes;
        labels.push(label as u32);
        images.extend(prototypes[label].iter().map(|&p| (p + noise.random_range(-150.0..150.0)).clamp(0.0, 255.0) as u8));
    }
    Ok(ImageDataset {
        images,
        labels,
        channels,
        height,
        width,
        num_classes,
        class_names: (0..num_classes).map(|k| format!("class {k}")).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_balanced_deterministic_splits() {
        let id = "synthetic:3x8x8:4:40:12";
        let train = load(id, Split::Train).unwrap();
        assert_eq!((train.len(), train.channels, train.height, train.width, train.num_classes), (40, 3, 8, 8, 4));
        assert_eq!(train.class_counts(), vec![10; 4]);
        assert_eq!(train, load(id, Split::Train).unwrap());
        assert_ne!(train.images[..192], load(id, Split::Test).unwrap().images[..192]);
        assert!(load("synthetic:3x8:4:40:12", Split::Train).is_err());
    }
}
