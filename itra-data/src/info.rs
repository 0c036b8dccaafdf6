//! Summaries of local datasets: [`info`] (example counts, class balance, shape and pixel mean or
//! text length), [`verify`] (re-checking, by reading them, the files the loader reads) and
//! [`list`] (what is present where, and whether it was verified, judged without reading any
//! data: see [`crate::cache`]).
//!
//! A file is verified only when its bytes match a digest that something authoritative recorded:
//! the registry's checksum, a payload digest, or the SHA-256 taken when an archive that had
//! matched its checksum was unpacked. Present files with no such digest are unverified, never
//! "ok".

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cache::{DigestCache, Mode};
use crate::checksum::{Algorithm, file_digest, file_digests, payload_sha256};
use crate::manifest::{DigestManifest, EXTRACTED_MANIFEST, ManifestEntry};
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
    /// The files [`verify`] checks, judged by the digests it (or `fetch`) recorded: a file
    /// changed since, or never checked, is unverified. Nothing is read.
    pub checks: Vec<FileCheck>,
}

impl DatasetStatus {
    /// Both splits are present and every file was verified and is unchanged since.
    pub fn is_ready(&self) -> bool {
        self.is_present() && all_verified(&self.checks)
    }

    /// Both splits' files are present, verified or not.
    pub fn is_present(&self) -> bool {
        self.train.is_some() && self.test.is_some()
    }
}

/// Whether there is at least one check and every one is [`FileState::Verified`].
pub fn all_verified(checks: &[FileCheck]) -> bool {
    !checks.is_empty() && checks.iter().all(FileCheck::is_ok)
}

/// The local status of every registered dataset, in registry order. **Reads no data**: whether a
/// file is verified comes from the digests [`verify`] and `fetch` recorded, for files whose size
/// and modification time are unchanged since; anything else is unverified, never ready.
pub fn list(data_dir: &Path) -> Vec<DatasetStatus> {
    DATASETS.iter().map(|spec| status(spec, data_dir)).collect()
}

/// [`list`]'s entry for the dataset described by `spec`, registered or not.
pub fn status(spec: &'static DatasetSpec, data_dir: &Path) -> DatasetStatus {
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
    let mut cache = DigestCache::open(data_dir);
    // An unreadable manifest leaves no checks, so the dataset is not ready.
    let checks = dataset_checks(spec, data_dir, &mut cache, Mode::CacheOnly).unwrap_or_default();
    DatasetStatus { id: spec.id, title: spec.title, train, test, missing, checks }
}

/// The result of checking one file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileCheck {
    /// The registered name, or the path under `<data-dir>/<id>/` of a file unpacked from an
    /// archive.
    pub name: String,
    pub path: PathBuf,
    pub state: FileState,
}

/// What a check found. Shown as `verified (<algorithm>)`, `present, not verified (<reason>)`,
/// `corrupt (<why>)` or `missing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum FileState {
    /// The bytes match every recorded digest; `algorithm` names them (`md5`, `sha256`,
    /// `sha256 of the decompressed payload`, `sha256 and git blob sha1`).
    Verified {
        algorithm: String,
    },
    /// Present, but no recorded digest describes the bytes, or (for [`list`]) they were not
    /// checked since they last changed.
    Unverified {
        reason: String,
    },
    /// Corrupt: a digest does not match.
    Mismatch {
        algorithm: String,
        expected: String,
        actual: String,
    },
    /// Corrupt: the wrong size, or malformed.
    Corrupt {
        reason: String,
    },
    Missing,
}

/// Why a present file is unverified when nothing records its digest.
pub(crate) const NO_CHECKSUM: &str = "no checksum recorded";
/// Why [`list`] calls a file unverified when no digest was recorded for it as it is now.
pub(crate) const NOT_CHECKED: &str = "not checked since it last changed";
pub(crate) const PAYLOAD: &str = "sha256 of the decompressed payload";

impl FileState {
    pub(crate) fn unverified(reason: &str) -> Self {
        FileState::Unverified { reason: reason.to_owned() }
    }

    fn verified(algorithm: &str) -> Self {
        FileState::Verified { algorithm: algorithm.to_owned() }
    }
}

impl std::fmt::Display for FileState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileState::Verified { algorithm } => write!(f, "verified ({algorithm})"),
            FileState::Unverified { reason } => write!(f, "present, not verified ({reason})"),
            FileState::Mismatch { algorithm, expected, actual } => {
                write!(f, "corrupt ({algorithm} mismatch: expected {expected}, got {actual})")
            }
            FileState::Corrupt { reason } => write!(f, "corrupt ({reason})"),
            FileState::Missing => f.write_str("missing"),
        }
    }
}

impl FileCheck {
    /// Whether the file was verified: present with every recorded digest matching.
    pub fn is_ok(&self) -> bool {
        matches!(self.state, FileState::Verified { .. })
    }
}

/// Re-checks, by reading them, the files of `id` that the loader reads: the IDX files where
/// [`crate::locate`] finds them, downloaded files against their registered checksums, and files
/// unpacked from an archive against the SHA-256 recorded when they were unpacked. An archive
/// removed after unpacking is not reported. Records the digests for [`list`].
pub fn verify(id: &str, data_dir: &Path) -> Result<Vec<FileCheck>, DataError> {
    verify_spec(crate::registry::spec(id)?, data_dir)
}

/// [`verify`] for the dataset described by `spec`, registered or not.
pub fn verify_spec(spec: &DatasetSpec, data_dir: &Path) -> Result<Vec<FileCheck>, DataError> {
    let mut cache = DigestCache::open(data_dir);
    let checks = dataset_checks(spec, data_dir, &mut cache, Mode::Hash);
    cache.save();
    checks
}

pub(crate) fn dataset_checks(
    spec: &DatasetSpec,
    data_dir: &Path,
    cache: &mut DigestCache,
    mode: Mode,
) -> Result<Vec<FileCheck>, DataError> {
    let mut checks = Vec::new();
    for file in spec.files {
        checks.push(check_file(spec, file, data_dir, cache, mode)?);
    }
    if !spec.files.iter().any(|f| f.extract) {
        return Ok(checks);
    }
    let unpacked = unpacked_checks(spec, data_dir, cache, mode)?;
    let any_unpacked = unpacked.iter().any(|c| c.state != FileState::Missing);
    let archive_present = spec.files.iter().zip(&checks).any(|(f, c)| f.extract && c.state != FileState::Missing);
    if any_unpacked {
        // The archive is not what the loader reads; once unpacked it may be deleted.
        checks = spec
            .files
            .iter()
            .zip(checks)
            .filter(|(file, check)| !(file.extract && check.state == FileState::Missing))
            .map(|(_, check)| check)
            .collect();
    }
    if any_unpacked || archive_present {
        checks.extend(unpacked);
    }
    Ok(checks)
}

fn check_file(
    spec: &DatasetSpec,
    file: &RemoteFile,
    data_dir: &Path,
    cache: &mut DigestCache,
    mode: Mode,
) -> Result<FileCheck, DataError> {
    if spec.format == Format::Idx
        && let Some(check) = check_idx_file(spec, file, data_dir, cache, mode)?
    {
        return Ok(check);
    }
    let path = data_dir.join(spec.id).join(file.name);
    let check = |path: PathBuf, state| Ok(FileCheck { name: file.name.to_owned(), path, state });
    if path.is_file() {
        let state = registered_state(&path, file, cache, mode)?;
        return check(path, state);
    }
    if let Some(expected) = file.payload_sha256
        && let Some(copy) = local_copy(spec, file)
    {
        let state = payload_state(&copy, expected, cache, mode)?;
        return check(copy, state);
    }
    check(path, FileState::Missing)
}

/// `path` judged by `file`'s registered checksum or, failing that, its payload digest.
fn registered_state(
    path: &Path,
    file: &RemoteFile,
    cache: &mut DigestCache,
    mode: Mode,
) -> Result<FileState, DataError> {
    let checksum = file.checksum;
    let Some(actual) = cache.digest(path, checksum.algorithm(), mode, || file_digest(path, checksum))? else {
        return Ok(FileState::unverified(NOT_CHECKED));
    };
    if actual == checksum.hex() {
        return Ok(FileState::verified(checksum.algorithm()));
    }
    // A re-compressed copy is as good as the original if its payload matches.
    if let Some(expected) = file.payload_sha256 {
        match cache.digest(path, PAYLOAD, mode, || payload_sha256(path)) {
            Ok(None) => return Ok(FileState::unverified(NOT_CHECKED)),
            Ok(Some(payload)) if payload == expected => return Ok(FileState::verified(PAYLOAD)),
            // Not gzip, or another payload: the registered checksum's verdict stands.
            _ => {}
        }
    }
    Ok(FileState::Mismatch { algorithm: checksum.algorithm().to_owned(), expected: checksum.hex().to_owned(), actual })
}

fn payload_state(path: &Path, expected: &str, cache: &mut DigestCache, mode: Mode) -> Result<FileState, DataError> {
    Ok(match cache.digest(path, PAYLOAD, mode, || payload_sha256(path))? {
        None => FileState::unverified(NOT_CHECKED),
        Some(actual) if actual == expected => FileState::verified(PAYLOAD),
        Some(actual) => FileState::Mismatch { algorithm: PAYLOAD.to_owned(), expected: expected.to_owned(), actual },
    })
}

/// An IDX file as the loader reads it: the first of `<data_dir>/<id>/<subdir>` and the local
/// copies that holds it, gzipped (`<name>.gz`) or not, the gzipped one first (`idx::find_file`).
/// A gzipped file is checked against the archive digest or, failing that, its payload's; an
/// uncompressed one against the payload digest. `None` if no copy exists.
fn check_idx_file(
    spec: &DatasetSpec,
    file: &RemoteFile,
    data_dir: &Path,
    cache: &mut DigestCache,
    mode: Mode,
) -> Result<Option<FileCheck>, DataError> {
    let mut dirs = vec![data_dir.join(spec.id).join(spec.subdir)];
    dirs.extend(spec.local_copies.iter().map(PathBuf::from));
    let Some(path) = dirs.iter().find_map(|dir| crate::idx::find_file(dir, file.name)) else {
        return Ok(None);
    };
    let is_gz = path.file_name().is_some_and(|n| n == file.name);
    let state = match (is_gz, file.payload_sha256) {
        (true, _) => registered_state(&path, file, cache, mode)?,
        (false, Some(expected)) => payload_state(&path, expected, cache, mode)?,
        // Nothing registered describes the uncompressed bytes: they cannot be checked.
        (false, None) => FileState::unverified("no checksum recorded for the uncompressed file"),
    };
    Ok(Some(FileCheck { name: file.name.to_owned(), path, state }))
}

/// The files the loader reads from an unpacked archive, `<subdir>/<split file>` under
/// `<data_dir>/<id>/`, against the digests recorded when they were unpacked.
fn unpacked_checks(
    spec: &DatasetSpec,
    data_dir: &Path,
    cache: &mut DigestCache,
    mode: Mode,
) -> Result<Vec<FileCheck>, DataError> {
    let dataset_dir = data_dir.join(spec.id);
    let manifest = DigestManifest::load(&dataset_dir.join(EXTRACTED_MANIFEST))?;
    let mut checks = Vec::new();
    for name in unpacked_names(spec) {
        let path = dataset_dir.join(&name);
        let state = if path.is_file() {
            let entries: Vec<ManifestEntry> = manifest.entries(&name).cloned().collect();
            check_entries(&path, &entries, cache, mode)?
        } else {
            FileState::Missing
        };
        checks.push(FileCheck { name, path, state });
    }
    Ok(checks)
}

/// `<subdir>/<file>` of every split file, relative to `<data_dir>/<id>/`.
fn unpacked_names(spec: &DatasetSpec) -> Vec<String> {
    Split::ALL
        .iter()
        .flat_map(|&split| spec.split_files(split))
        .map(|name| if spec.subdir.is_empty() { name.to_owned() } else { format!("{}/{name}", spec.subdir) })
        .collect()
}

/// Whether every unpacked split file matches the digest recorded when it was unpacked (by a
/// digest cached for it unchanged, or by reading it); `false` if the record cannot be read.
pub(crate) fn unpacked_verified(spec: &DatasetSpec, data_dir: &Path, cache: &mut DigestCache) -> bool {
    unpacked_checks(spec, data_dir, cache, Mode::Reuse).is_ok_and(|checks| all_verified(&checks))
}

/// Whether the dataset folder's manifest records a digest for every split file.
pub(crate) fn extraction_recorded(spec: &DatasetSpec, data_dir: &Path) -> bool {
    let Ok(manifest) = DigestManifest::load(&data_dir.join(spec.id).join(EXTRACTED_MANIFEST)) else { return false };
    unpacked_names(spec).iter().all(|name| manifest.entries(name).next().is_some())
}

/// `path` against every one of `entries` (its recorded size and digests); unverified if there
/// are none.
pub(crate) fn check_entries(
    path: &Path,
    entries: &[ManifestEntry],
    cache: &mut DigestCache,
    mode: Mode,
) -> Result<FileState, DataError> {
    if entries.is_empty() {
        return Ok(FileState::unverified(NO_CHECKSUM));
    }
    let size = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?.len();
    if let Some(entry) = entries.iter().find(|e| e.size != size) {
        return Ok(FileState::Corrupt { reason: format!("{size} bytes, expected {} ({})", entry.size, entry.source) });
    }
    let mut algorithms: Vec<Algorithm> = entries.iter().map(|e| e.algorithm).collect();
    algorithms.dedup();
    let cached: Option<Vec<String>> = match mode {
        Mode::Hash => None,
        Mode::Reuse | Mode::CacheOnly => algorithms.iter().map(|a| cache.get(path, a.name())).collect(),
    };
    let actual = match cached {
        Some(digests) => digests,
        None if mode == Mode::CacheOnly => return Ok(FileState::unverified(NOT_CHECKED)),
        None => {
            let digests = file_digests(path, &algorithms)?;
            for (algorithm, digest) in algorithms.iter().zip(&digests) {
                cache.put(path, algorithm.name(), digest);
            }
            digests
        }
    };
    for entry in entries {
        let index = algorithms.iter().position(|&a| a == entry.algorithm).unwrap_or_default();
        if actual[index] != entry.digest {
            return Ok(FileState::Mismatch {
                algorithm: entry.algorithm.name().to_owned(),
                expected: entry.digest.clone(),
                actual: actual[index].clone(),
            });
        }
    }
    let names: Vec<&str> = algorithms.iter().map(|a| a.name()).collect();
    Ok(FileState::verified(&names.join(" and ")))
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
        // Before: `is_ready()` only asked whether the files existed. Nothing recorded a digest
        // for these bytes, so they are present, not ready.
        assert!(cifar10.is_present() && !cifar10.is_ready() && cifar10.missing.is_empty());
        let kmnist = statuses.iter().find(|s| s.id == "kmnist").unwrap();
        assert!(!kmnist.is_ready() && kmnist.missing.len() == 4, "{kmnist:?}");
        let checks = verify("cifar10", data.path()).unwrap();
        // The files the loader reads, not the (absent) archive; no digest describes them.
        let names: Vec<_> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names[0], "cifar-10-batches-bin/data_batch_1.bin");
        assert_eq!(names.len(), 6, "{names:?}");
        assert_eq!(checks[0].state.to_string(), "present, not verified (no checksum recorded)");
        assert!(!checks[0].is_ok());
        assert!(!all_verified(&checks));
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
            FileState::Mismatch { algorithm, expected, actual }
                if algorithm == "md5" && expected == "bdb82020997e1d708af4cf47b453dcf7" && actual.len() == 32
        ));
        assert!(
            checks[0]
                .state
                .to_string()
                .starts_with("corrupt (md5 mismatch: expected bdb82020997e1d708af4cf47b453dcf7, got ")
        );
        assert!(checks[1..].iter().all(|c| c.state == FileState::Missing));
        assert_eq!(checks[1].state.to_string(), "missing");
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
        assert!(matches!(&checks[0].state, FileState::Mismatch { algorithm, .. } if algorithm == PAYLOAD));
        assert!(!checks[0].is_ok());
    }

    #[test]
    fn list_trusts_only_digests_recorded_for_the_file_as_it_is() {
        // Before: `list` said "ready" for any file that existed. Now a digest recorded by `verify`
        // counts until the file's size or modification time changes.
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("ag_news/ag_news_csv");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("train.csv"), "\"1\",\"a\",\"b\"\n").unwrap();
        std::fs::write(dir.join("test.csv"), "\"1\",\"a\",\"b\"\n").unwrap();
        let ag_news = |data: &Path| list(data).into_iter().find(|s| s.id == "ag_news").unwrap();
        let before = ag_news(data.path());
        assert!(before.is_present() && !before.is_ready());
        assert_eq!(before.checks[0].state, FileState::unverified(NOT_CHECKED));
        let checks = verify("ag_news", data.path()).unwrap();
        assert!(matches!(&checks[0].state, FileState::Mismatch { algorithm, .. } if algorithm == "md5"));
        // `list` now knows the bytes are wrong without reading them again.
        assert!(matches!(&ag_news(data.path()).checks[0].state, FileState::Mismatch { .. }));
    }
}
