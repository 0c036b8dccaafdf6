//! Summaries of local datasets: [`info`] (example counts, class balance, shape and pixel mean or
//! text length), [`list`] (what is present where) and [`verify`] (re-checking checksums).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checksum::{file_digest, payload_sha256};
use crate::registry::{DATASETS, DatasetSpec, Format, RemoteFile};
use crate::{DataError, ImageDataset, Split, TextDataset};

/// What `itra data info <id> --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetInfo {
    pub dataset: String,
    pub splits: SplitsInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitsInfo {
    pub train: SplitInfo,
    pub test: SplitInfo,
}

/// One split. Images carry `shape` and `pixel_mean`; texts carry `mean_chars`. Means are
/// rounded to 4 decimals so that the JSON is stable across platforms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitInfo {
    pub examples: usize,
    pub classes: usize,
    pub class_counts: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shape: Option<[usize; 3]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixel_mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_chars: Option<f64>,
}

impl SplitInfo {
    pub fn of_images(data: &ImageDataset) -> Self {
        SplitInfo {
            examples: data.len(),
            classes: data.num_classes,
            class_counts: data.class_counts(),
            shape: Some(data.shape()),
            pixel_mean: Some(round4(data.pixel_mean())),
            mean_chars: None,
        }
    }

    pub fn of_texts(data: &TextDataset) -> Self {
        SplitInfo {
            examples: data.len(),
            classes: data.num_classes,
            class_counts: data.class_counts(),
            shape: None,
            pixel_mean: None,
            mean_chars: Some(round4(data.mean_chars())),
        }
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Loads both splits of `id` (a registered id or `folder:<path>`) and summarises them.
pub fn info(id: &str, data_dir: &Path) -> Result<DatasetInfo, DataError> {
    let is_text = !id.starts_with("folder:") && crate::registry::spec(id)?.is_text();
    let split_info = |split| {
        if is_text {
            crate::load_text_dataset(id, data_dir, split).map(|d| SplitInfo::of_texts(&d))
        } else {
            crate::load_image_dataset(id, data_dir, split).map(|d| SplitInfo::of_images(&d))
        }
    };
    Ok(DatasetInfo {
        dataset: id.to_owned(),
        splits: SplitsInfo { train: split_info(Split::Train)?, test: split_info(Split::Test)? },
    })
}

/// Local status of one registered dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetStatus {
    pub id: &'static str,
    pub title: &'static str,
    /// Where the training split's files were found, if they were.
    pub train: Option<PathBuf>,
    /// Where the test split's files were found, if they were.
    pub test: Option<PathBuf>,
    /// Files missing from `<data-dir>/<id>/`, for the splits not found.
    pub missing: Vec<String>,
}

impl DatasetStatus {
    pub fn is_ready(&self) -> bool {
        self.train.is_some() && self.test.is_some()
    }
}

/// The local status of every registered dataset, in registry order. Checks that files exist,
/// not their contents; see [`verify`].
pub fn list(data_dir: &Path) -> Vec<DatasetStatus> {
    DATASETS
        .iter()
        .map(|spec| {
            let mut missing = Vec::new();
            let mut found = |split| match crate::locate(spec, data_dir, split) {
                Ok(dir) => Some(dir),
                Err(DataError::Missing { missing: names, .. }) => {
                    missing.extend(names);
                    None
                }
                Err(_) => None,
            };
            let train = found(Split::Train);
            let test = found(Split::Test);
            DatasetStatus { id: spec.id, title: spec.title, train, test, missing }
        })
        .collect()
}

/// The result of re-checking one registered file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileCheck {
    pub name: &'static str,
    pub path: PathBuf,
    pub state: FileState,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum FileState {
    /// The file matches its registered checksum.
    Verified,
    /// A known local copy (e.g. Debian's) whose decompressed payload matches.
    VerifiedLocalCopy,
    Mismatch {
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    /// The archive is gone but its extracted files are present; they cannot be re-checked.
    ExtractedOnly,
    Missing,
}

impl FileCheck {
    /// Whether the file was verified: present with a matching digest. Extracted files whose
    /// archive is gone are present but unverified, so not ok.
    pub fn is_ok(&self) -> bool {
        matches!(self.state, FileState::Verified | FileState::VerifiedLocalCopy)
    }
}

/// Re-checks the checksum of every registered file of `id` found locally.
pub fn verify(id: &str, data_dir: &Path) -> Result<Vec<FileCheck>, DataError> {
    let spec = crate::registry::spec(id)?;
    spec.files.iter().map(|file| check_file(spec, file, data_dir)).collect()
}

pub(crate) fn check_file(spec: &DatasetSpec, file: &RemoteFile, data_dir: &Path) -> Result<FileCheck, DataError> {
    if spec.format == Format::Idx
        && let Some(check) = check_idx_file(spec, file, data_dir)?
    {
        return Ok(check);
    }
    let path = data_dir.join(spec.id).join(file.name);
    let check = |state| Ok(FileCheck { name: file.name, path: path.clone(), state });
    if path.is_file() {
        let actual = file_digest(&path, file.checksum)?;
        if actual == file.checksum.hex() {
            return check(FileState::Verified);
        }
        // A re-compressed copy in the data dir is as good as the original if its payload matches.
        if file.payload_sha256.is_some_and(|p| payload_sha256(&path).is_ok_and(|a| a == p)) {
            return check(FileState::VerifiedLocalCopy);
        }
        return check(FileState::Mismatch {
            algorithm: file.checksum.algorithm(),
            expected: file.checksum.hex().to_owned(),
            actual,
        });
    }
    if let Some(expected) = file.payload_sha256
        && let Some(copy) = local_copy(spec, file)
    {
        let actual = payload_sha256(&copy)?;
        let state = if actual == expected {
            FileState::VerifiedLocalCopy
        } else {
            FileState::Mismatch { algorithm: "sha256 (decompressed)", expected: expected.to_owned(), actual }
        };
        return Ok(FileCheck { name: file.name, path: copy, state });
    }
    if file.extract && extracted(spec, data_dir) {
        return check(FileState::ExtractedOnly);
    }
    check(FileState::Missing)
}

/// An IDX file as the loader reads it: the first of `<data_dir>/<id>/<subdir>` and the local
/// copies that holds it, gzipped (`<name>.gz`) or not, the gzipped one first (`idx::find_file`).
/// A gzipped file is checked against the archive digest or, failing that, its payload's; an
/// uncompressed one against the payload digest. `None` if no copy exists.
fn check_idx_file(spec: &DatasetSpec, file: &RemoteFile, data_dir: &Path) -> Result<Option<FileCheck>, DataError> {
    let mut dirs = vec![data_dir.join(spec.id).join(spec.subdir)];
    dirs.extend(spec.local_copies.iter().map(PathBuf::from));
    let Some(path) = dirs.iter().find_map(|dir| crate::idx::find_file(dir, file.name)) else {
        return Ok(None);
    };
    let is_gz = path.file_name().is_some_and(|n| n == file.name);
    let payload_matches = |path: &Path| file.payload_sha256.is_some_and(|p| payload_sha256(path).is_ok_and(|a| a == p));
    let state = if is_gz {
        let actual = file_digest(&path, file.checksum)?;
        if actual == file.checksum.hex() {
            FileState::Verified
        } else if payload_matches(&path) {
            FileState::VerifiedLocalCopy
        } else {
            FileState::Mismatch { algorithm: file.checksum.algorithm(), expected: file.checksum.hex().to_owned(), actual }
        }
    } else {
        match file.payload_sha256 {
            Some(expected) => {
                let actual = payload_sha256(&path)?;
                if actual == expected {
                    FileState::VerifiedLocalCopy
                } else {
                    FileState::Mismatch { algorithm: "sha256 (decompressed)", expected: expected.to_owned(), actual }
                }
            }
            // Nothing registered describes the uncompressed bytes: they cannot be checked.
            None => FileState::Mismatch {
                algorithm: "sha256 (decompressed)",
                expected: "no registered payload digest".to_owned(),
                actual: payload_sha256(&path)?,
            },
        }
    };
    Ok(Some(FileCheck { name: file.name, path, state }))
}

/// The first registered local copy of `file`, if any exists.
pub(crate) fn local_copy(spec: &DatasetSpec, file: &RemoteFile) -> Option<PathBuf> {
    spec.local_copies.iter().map(|dir| Path::new(dir).join(file.name)).find(|p| p.is_file())
}

/// Whether every split's parsed files are present under `<data_dir>/<id>/<subdir>/`.
pub(crate) fn extracted(spec: &DatasetSpec, data_dir: &Path) -> bool {
    let dir = data_dir.join(spec.id).join(spec.subdir);
    Split::ALL.iter().all(|&split| {
        spec.split_files(split).iter().all(|name| match spec.format {
            Format::ImageFolder => dir.join(name).is_dir(),
            Format::Idx => crate::idx::find_file(&dir, name).is_some(),
            _ => dir.join(name).is_file(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cifar;

    #[test]
    fn info_json_has_the_documented_shape() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("cifar10/cifar-10-batches-bin");
        std::fs::create_dir_all(&dir).unwrap();
        let image = [100u8; cifar::IMAGE_BYTES];
        let mut dark = image;
        dark[..1024].fill(0);
        let batch = [cifar::encode_record(&[3], &image), cifar::encode_record(&[5], &dark)].concat();
        for name in cifar::Variant::Cifar10.file_names(Split::Train) {
            std::fs::write(dir.join(name), &batch).unwrap();
        }
        std::fs::write(dir.join("test_batch.bin"), cifar::encode_record(&[9], &image)).unwrap();
        let info = info("cifar10", data.path()).unwrap();
        let json = serde_json::to_value(&info).unwrap();
        // python: (5 * 3072 * 100 + 5 * 2048 * 100) / (10 * 3072) = 83.3333...
        assert_eq!(
            json,
            serde_json::json!({
                "dataset": "cifar10",
                "splits": {
                    "train": {"examples": 10, "classes": 10, "class_counts": [0, 0, 0, 5, 0, 5, 0, 0, 0, 0],
                              "shape": [3, 32, 32], "pixel_mean": 83.3333},
                    "test": {"examples": 1, "classes": 10, "class_counts": [0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                             "shape": [3, 32, 32], "pixel_mean": 100.0}
                }
            })
        );
        let statuses = list(data.path());
        let cifar10 = statuses.iter().find(|s| s.id == "cifar10").unwrap();
        assert!(cifar10.is_ready() && cifar10.missing.is_empty());
        let kmnist = statuses.iter().find(|s| s.id == "kmnist").unwrap();
        assert!(!kmnist.is_ready() && kmnist.missing.len() == 4, "{kmnist:?}");
        let checks = verify("cifar10", data.path()).unwrap();
        assert_eq!(checks[0].state, FileState::ExtractedOnly);
        // Present, but nothing checked their bytes: not verified.
        assert!(!checks[0].is_ok());
    }

    #[test]
    fn text_info_reports_mean_chars() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("ag_news/ag_news_csv");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("train.csv"), "\"1\",\"ab\",\"cd\"\n\"2\",\"x\",\"\"\n").unwrap();
        std::fs::write(dir.join("test.csv"), "\"4\",\"abc\",\"d\"\n").unwrap();
        let json = serde_json::to_value(info("ag_news", data.path()).unwrap()).unwrap();
        assert_eq!(
            json["splits"]["train"],
            serde_json::json!({"examples": 2, "classes": 4, "class_counts": [1, 1, 0, 0], "mean_chars": 3.0})
        );
        assert_eq!(json["splits"]["test"]["mean_chars"], 5.0);
    }

    #[test]
    fn verify_flags_mismatches_and_missing_files() {
        let data = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(data.path().join("kmnist")).unwrap();
        std::fs::write(data.path().join("kmnist/train-images-idx3-ubyte.gz"), b"junk").unwrap();
        let checks = verify("kmnist", data.path()).unwrap();
        assert!(matches!(
            &checks[0].state,
            FileState::Mismatch { algorithm: "md5", expected, actual }
                if expected == "bdb82020997e1d708af4cf47b453dcf7" && actual.len() == 32
        ));
        assert!(checks[1..].iter().all(|c| c.state == FileState::Missing));
        assert!(!checks[0].is_ok());
    }

    #[test]
    fn verify_checks_the_uncompressed_file_the_loader_reads() {
        // A truncated uncompressed copy in the data directory is what `info` and training read
        // (it comes before Debian's intact .gz); verify must judge that file, not the system copy.
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("fmnist");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("train-images-idx3-ubyte"), [0u8, 0, 8, 3, 0, 0, 0, 1]).unwrap();
        let checks = verify("fmnist", data.path()).unwrap();
        assert_eq!(checks[0].path, dir.join("train-images-idx3-ubyte"));
        assert!(matches!(&checks[0].state, FileState::Mismatch { algorithm: "sha256 (decompressed)", .. }));
        assert!(!checks[0].is_ok());
    }
}
