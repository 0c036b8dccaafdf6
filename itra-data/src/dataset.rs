use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which half of a dataset to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub const ALL: [Split; 2] = [Split::Train, Split::Test];

    /// `"train"` or `"test"`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Split {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "train" => Ok(Split::Train),
            "test" | "val" => Ok(Split::Test),
            other => Err(format!("unknown split {other:?}, expected train or test")),
        }
    }
}

/// A labelled image dataset held in memory as raw bytes.
///
/// `images` holds `len() * channels * height * width` bytes: each image is stored
/// channel-major (CHW, row-major within a channel), with the raw 0..=255 pixel values.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDataset {
    pub images: Vec<u8>,
    pub labels: Vec<u32>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub num_classes: usize,
    pub class_names: Vec<String>,
}

impl ImageDataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image: `channels * height * width`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// `[channels, height, width]`.
    pub fn shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }

    /// The CHW bytes of image `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let image_len = self.image_len();
        &self.images[i * image_len..(i + 1) * image_len]
    }

    /// A new dataset holding the examples at `indices`, in that order (repeats allowed).
    ///
    /// # Panics
    /// If any index is `>= len()`.
    pub fn subset(&self, indices: &[usize]) -> ImageDataset {
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        ImageDataset { images, labels, class_names: self.class_names.clone(), ..*self }
    }

    /// Examples per class, indexed by label; its length is `num_classes`.
    pub fn class_counts(&self) -> Vec<usize> {
        class_counts(&self.labels, self.num_classes)
    }

    /// Mean of all pixel values on the raw 0..=255 scale; 0 for an empty dataset.
    pub fn pixel_mean(&self) -> f64 {
        if self.images.is_empty() {
            return 0.0;
        }
        // A u64 sum cannot overflow: it would take over 7e16 bytes.
        let sum: u64 = self.images.iter().map(|&b| u64::from(b)).sum();
        sum as f64 / self.images.len() as f64
    }
}

/// A labelled text dataset; `texts[i]` is the joined text fields of example `i`.
#[derive(Debug, Clone, PartialEq)]
pub struct TextDataset {
    pub texts: Vec<String>,
    pub labels: Vec<u32>,
    pub num_classes: usize,
    pub class_names: Vec<String>,
}

impl TextDataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// A new dataset holding the examples at `indices`, in that order.
    ///
    /// # Panics
    /// If any index is `>= len()`.
    pub fn subset(&self, indices: &[usize]) -> TextDataset {
        TextDataset {
            texts: indices.iter().map(|&i| self.texts[i].clone()).collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
        }
    }

    pub fn class_counts(&self) -> Vec<usize> {
        class_counts(&self.labels, self.num_classes)
    }

    /// Mean text length in Unicode scalar values; 0 for an empty dataset.
    pub fn mean_chars(&self) -> f64 {
        if self.texts.is_empty() {
            return 0.0;
        }
        let total: usize = self.texts.iter().map(|t| t.chars().count()).sum();
        total as f64 / self.texts.len() as f64
    }
}

fn class_counts(labels: &[u32], num_classes: usize) -> Vec<usize> {
    let mut counts = vec![0; num_classes];
    for &label in labels {
        // Labels are checked against num_classes at load time; a hand-built dataset may not be.
        if let Some(count) = counts.get_mut(label as usize) {
            *count += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ImageDataset {
        ImageDataset {
            images: vec![0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23],
            labels: vec![1, 0, 1],
            channels: 1,
            height: 2,
            width: 2,
            num_classes: 3,
            class_names: vec!["a".into(), "b".into(), "c".into()],
        }
    }

    #[test]
    fn image_subset_counts_mean() {
        let data = tiny();
        assert_eq!(data.len(), 3);
        assert_eq!(data.image(1), &[10, 11, 12, 13]);
        let sub = data.subset(&[2, 0, 2]);
        assert_eq!(sub.labels, vec![1, 1, 1]);
        assert_eq!(sub.image(0), &[20, 21, 22, 23]);
        assert_eq!(sub.image(1), &[0, 1, 2, 3]);
        assert_eq!(data.class_counts(), vec![1, 2, 0]);
        // numpy: np.arange(4)[None] + [[0],[10],[20]] -> mean 11.5
        assert!((data.pixel_mean() - 11.5).abs() < 1e-12);
        assert!(data.subset(&[]).is_empty());
        assert_eq!(data.subset(&[]).pixel_mean(), 0.0);
    }

    #[test]
    fn split_parses() {
        assert_eq!("train".parse::<Split>(), Ok(Split::Train));
        assert_eq!("test".parse::<Split>(), Ok(Split::Test));
        assert!("dev".parse::<Split>().is_err());
        assert_eq!(Split::Test.to_string(), "test");
    }

    #[test]
    fn text_mean_chars_counts_scalars() {
        let data = TextDataset {
            texts: vec!["héllo".into(), "abc".into()],
            labels: vec![0, 1],
            num_classes: 2,
            class_names: vec!["x".into(), "y".into()],
        };
        assert_eq!(data.mean_chars(), 4.0);
        assert_eq!(data.class_counts(), vec![1, 1]);
    }
}
