//! Every dataset the experiments use, registered once: where it comes from, how big it is,
//! its checksums, its splits, class names and example shape.

use serde::Serialize;

use crate::{DataError, Split};

/// Images (with a fixed `[channels, height, width]` shape) or text (with named CSV columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Image { shape: [usize; 3] },
    Text { columns: &'static [&'static str] },
}

/// How a downloaded file is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Checksum {
    Sha256(&'static str),
    Md5(&'static str),
}

/// One file to download: canonical URLs first, then mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RemoteFile {
    /// File name under `<data-dir>/<id>/`.
    pub name: &'static str,
    pub urls: &'static [&'static str],
    /// Exact size in bytes; `None` where no authoritative figure is known.
    pub size: Option<u64>,
    pub checksum: Option<Checksum>,
    /// Where the checksum was taken from.
    pub checksum_source: &'static str,
    /// Whether the file is an archive to unpack into `<data-dir>/<id>/`.
    pub extract: bool,
}

/// Example count of one split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SplitSpec {
    pub split: Split,
    pub examples: usize,
}

/// A dataset as the registry knows it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DatasetSpec {
    pub id: &'static str,
    pub title: &'static str,
    pub modality: Modality,
    /// Class names in label order; empty where they come from the data (ImageNet wnids).
    pub class_names: &'static [&'static str],
    /// Number of classes.
    pub num_classes: usize,
    pub splits: &'static [SplitSpec],
    /// Folder under `<data-dir>/<id>/` holding the parsed files, as the official archive extracts.
    pub subdir: &'static str,
    pub files: &'static [RemoteFile],
    /// Directories outside the data dir that may already hold the files (e.g. a Debian package).
    pub local_copies: &'static [&'static str],
    /// How to obtain the data by hand, for error messages.
    pub manual: &'static str,
}

impl DatasetSpec {
    pub fn examples(&self, split: Split) -> Option<usize> {
        self.splits.iter().find(|s| s.split == split).map(|s| s.examples)
    }

    pub fn image_shape(&self) -> Option<[usize; 3]> {
        match self.modality {
            Modality::Image { shape } => Some(shape),
            Modality::Text { .. } => None,
        }
    }
}

pub const FMNIST_CLASSES: &[&str] = &[
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
    "Ankle boot",
];

/// Romanised as torchvision's `KMNIST.classes`; the characters are お き す つ な は ま や れ を.
pub const KMNIST_CLASSES: &[&str] = &["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"];

const MNIST_SPLITS: &[SplitSpec] = &[
    SplitSpec { split: Split::Train, examples: 60_000 },
    SplitSpec { split: Split::Test, examples: 10_000 },
];

/// Where Debian's `dataset-fashion-mnist` package installs Fashion-MNIST.
pub const DEBIAN_FMNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

pub static DATASETS: &[DatasetSpec] = &[
    DatasetSpec {
        id: "kmnist",
        title: "Kuzushiji-MNIST",
        modality: Modality::Image { shape: [1, 28, 28] },
        class_names: KMNIST_CLASSES,
        num_classes: 10,
        splits: MNIST_SPLITS,
        subdir: "",
        files: &[],
        local_copies: &[],
        manual: "run `itra data fetch kmnist`",
    },
    DatasetSpec {
        id: "fmnist",
        title: "Fashion-MNIST",
        modality: Modality::Image { shape: [1, 28, 28] },
        class_names: FMNIST_CLASSES,
        num_classes: 10,
        splits: MNIST_SPLITS,
        subdir: "",
        files: &[],
        local_copies: &[DEBIAN_FMNIST_DIR],
        manual: "run `itra data fetch fmnist`, or `apt-get install dataset-fashion-mnist` on Debian/Ubuntu",
    },
];

/// Looks a dataset up by id.
pub fn spec(id: &str) -> Result<&'static DatasetSpec, DataError> {
    DATASETS.iter().find(|d| d.id == id).ok_or_else(|| DataError::UnknownDataset {
        id: id.to_owned(),
        known: DATASETS.iter().map(|d| d.id).collect::<Vec<_>>().join(", "),
    })
}
