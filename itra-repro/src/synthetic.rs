//! Generated image datasets for the `smoke` profile and for tests: seconds per run, no files.
//!
//! `synthetic:<C>x<H>x<W>:<classes>:<train>:<test>` (e.g. `synthetic:1x28x28:10:256:128`) gives
//! images whose pixels are a per-class random prototype plus per-image noise, so a network can
//! learn them and the smoke numbers mean something. Everything is a pure function of the id.
//!
//! `synthetic-text:<classes>:<train>:<test>` (e.g. `synthetic-text:3:96:48`) gives texts of 4 to
//! 10 words `w<id>`, id in 5..50 (the vocabulary of the tiny test encoders' word-level
//! tokenizers); each class has five characteristic words, and half of every text's words are
//! its class's, the rest uniform.

use anyhow::{Context, Result, bail};
use itra_data::{ImageDataset, Split, TextDataset};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The first word id of generated texts (after the tokenizers' special tokens).
const FIRST_WORD: usize = 5;
/// One past the last word id.
const END_WORD: usize = 50;

/// The shape of a generated text dataset: classes, training and test texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextSpec {
    pub num_classes: usize,
    pub train: usize,
    pub test: usize,
}

/// Parses `synthetic-text:<classes>:<train>:<test>`.
pub fn text_spec(id: &str) -> Result<TextSpec> {
    let spec =
        id.strip_prefix("synthetic-text:").context("a synthetic text dataset id starts with `synthetic-text:`")?;
    let parts: Vec<&str> = spec.split(':').collect();
    let [classes, train, test] = parts[..] else {
        bail!("dataset `{id}`: expected synthetic-text:<classes>:<train>:<test>");
    };
    let count =
        |text: &str| text.parse::<usize>().with_context(|| format!("dataset `{id}`: bad example count `{text}`"));
    let num_classes: usize = classes.parse().with_context(|| format!("dataset `{id}`: bad class count"))?;
    if num_classes == 0 || num_classes * 5 > END_WORD - FIRST_WORD {
        bail!("dataset `{id}`: between 1 and {} classes", (END_WORD - FIRST_WORD) / 5);
    }
    Ok(TextSpec { num_classes, train: count(train)?, test: count(test)? })
}

/// The split `split` of the generated text dataset `id`.
pub fn load_text(id: &str, split: Split) -> Result<TextDataset> {
    let TextSpec { num_classes, train, test } = text_spec(id)?;
    let count = match split {
        Split::Train => train,
        Split::Test => test,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(match split {
        Split::Train => 3,
        Split::Test => 4,
    });
    let mut texts = Vec::with_capacity(count);
    let mut labels = Vec::with_capacity(count);
    for index in 0..count {
        let label = index % num_classes;
        let words: Vec<String> = (0..rng.random_range(4..=10))
            .map(|_| {
                let word = if rng.random_bool(0.5) {
                    FIRST_WORD + 5 * label + rng.random_range(0..5)
                } else {
                    rng.random_range(FIRST_WORD..END_WORD)
                };
                format!("w{word}")
            })
            .collect();
        texts.push(words.join(" "));
        labels.push(label as u32);
    }
    Ok(TextDataset {
        texts,
        labels,
        num_classes,
        class_names: (0..num_classes).map(|k| format!("class {k}")).collect(),
    })
}

/// The shape of a generated image dataset: image shape, classes, training and test images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSpec {
    pub shape: [usize; 3],
    pub num_classes: usize,
    pub train: usize,
    pub test: usize,
}

/// Parses `synthetic:<C>x<H>x<W>:<classes>:<train>:<test>`.
pub fn image_spec(id: &str) -> Result<ImageSpec> {
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
    let count =
        |text: &str| text.parse::<usize>().with_context(|| format!("dataset `{id}`: bad example count `{text}`"));
    if num_classes == 0 || channels * height * width == 0 {
        bail!("dataset `{id}`: classes and every dimension must be positive");
    }
    Ok(ImageSpec { shape: [channels, height, width], num_classes, train: count(train)?, test: count(test)? })
}

/// The split `split` of the generated dataset `id`.
pub fn load(id: &str, split: Split) -> Result<ImageDataset> {
    let ImageSpec { shape: [channels, height, width], num_classes, train, test } = image_spec(id)?;
    let count = match split {
        Split::Train => train,
        Split::Test => test,
    };
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
        images
            .extend(prototypes[label].iter().map(|&p| (p + noise.random_range(-150.0..150.0)).clamp(0.0, 255.0) as u8));
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

    #[test]
    fn generates_class_dependent_deterministic_text() {
        let id = "synthetic-text:4:40:12";
        let train = load_text(id, Split::Train).unwrap();
        assert_eq!((train.len(), train.num_classes), (40, 4));
        assert_eq!(train, load_text(id, Split::Train).unwrap());
        assert_ne!(train.texts, load_text(id, Split::Test).unwrap().texts[..12].to_vec());
        let (mut own_words, mut all_words) = (0, 0);
        for (text, &label) in train.texts.iter().zip(&train.labels) {
            let words: Vec<usize> = text.split(' ').map(|w| w[1..].parse().unwrap()).collect();
            assert!((4..=10).contains(&words.len()));
            assert!(words.iter().all(|w| (FIRST_WORD..END_WORD).contains(w)));
            let own = FIRST_WORD + 5 * label as usize..FIRST_WORD + 5 * label as usize + 5;
            own_words += words.iter().filter(|w| own.contains(w)).count();
            all_words += words.len();
        }
        // Expected share 0.5 + 0.5 * 5 / 45 = 0.56; chance alone gives 0.11.
        let share = own_words as f64 / all_words as f64;
        assert!((0.45..0.7).contains(&share), "class-word share {share}");
        assert!(load_text("synthetic-text:10:4:4", Split::Train).is_err());
        assert!(load_text("synthetic-text:4:4", Split::Train).is_err());
    }
}
