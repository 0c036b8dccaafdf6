//! Fetching registered datasets: with [`crate::encoder`], the only part of the crate that
//! touches the network.
//!
//! Each file is downloaded to `<name>.part` next to its destination, resumed with an HTTP
//! `Range` request after an interruption, retried with exponential back-off, checked against
//! its registered size and checksum, and only then renamed into place. **Nothing is renamed
//! into place unverified, and nothing half-made looks finished**: a network failure (connection
//! dropped, timeout, 5xx after the retries) keeps the `.part` file for the next run to resume;
//! a size or checksum mismatch deletes it. Archives are unpacked into a staging folder, each
//! unpacked file's SHA-256 is recorded in `<data_dir>/<id>/.itra-digests.json` (so that
//! [`crate::verify`] can check the files the loader reads), and the folder is moved into place
//! once every entry has been checked.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::DataError;
use crate::cache::{DigestCache, Mode};
use crate::checksum::{Algorithm, Digest, file_digests, payload_sha256};
use crate::info::{PAYLOAD, extracted, extraction_recorded, local_copy, unpacked_verified};
use crate::manifest::{DigestManifest, EXTRACTED_MANIFEST, ManifestEntry};
use crate::read::{decompressed, open};
use crate::registry::{Checksum, DatasetSpec, RemoteFile};

/// How [`download`] fetches files.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadOptions {
    /// A base URL tried before the registered sources; a dataset file is fetched from
    /// `<mirror>/<id>/<name>`, an encoder file from `<mirror>/encoders/<id>/<name>` and an
    /// encoder's Hub listing from `<mirror>/encoders/<id>/tree.json`.
    pub mirror: Option<String>,
    /// Use only the mirror, never the registered sources.
    pub mirror_only: bool,
    /// Fetch nothing; fail with [`DataError::Offline`] listing what is missing and where it goes.
    pub offline: bool,
    /// Extra attempts per URL after a network error or a 5xx/408/429 answer.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Longest wait for the connection or for the next bytes of a response.
    pub timeout: Duration,
    /// Draw progress bars on standard error.
    pub progress: bool,
    /// Honour `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY`.
    pub proxy_from_env: bool,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            mirror: None,
            mirror_only: false,
            offline: false,
            retries: 3,
            backoff: Duration::from_secs(2),
            timeout: Duration::from_secs(60),
            progress: true,
            proxy_from_env: true,
        }
    }
}

impl DownloadOptions {
    /// Defaults, with `mirror` from `$ITRA_MIRROR` when set and `offline` when `$ITRA_OFFLINE`
    /// is set to anything but `0` or the empty string.
    pub fn from_env() -> Self {
        let mirror = std::env::var("ITRA_MIRROR").ok().filter(|m| !m.is_empty());
        let offline = std::env::var("ITRA_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0");
        DownloadOptions { mirror, offline, ..Self::default() }
    }
}

/// Where each file of a [`download`] came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DownloadReport {
    pub id: String,
    pub files: Vec<FetchedFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FetchedFile {
    pub name: String,
    pub path: PathBuf,
    pub source: FileSource,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FileSource {
    /// Present with a matching checksum; nothing fetched.
    AlreadyPresent,
    /// An archive whose extracted files are already in place.
    AlreadyExtracted,
    /// A known local copy (e.g. Debian's) verified by its decompressed payload.
    LocalCopy {
        path: PathBuf,
    },
    Downloaded {
        url: String,
    },
}

/// Fetches, verifies and (for archives) unpacks every registered file of dataset `id` into
/// `<data_dir>/<id>/`.
pub fn download(id: &str, data_dir: &Path, options: &DownloadOptions) -> Result<DownloadReport, DataError> {
    download_spec(crate::registry::spec(id)?, data_dir, options)
}

/// [`download`] for a dataset described by `spec`, registered or not.
pub fn download_spec(
    spec: &DatasetSpec,
    data_dir: &Path,
    options: &DownloadOptions,
) -> Result<DownloadReport, DataError> {
    if !spec.downloadable {
        return Err(DataError::ManualDownload { id: spec.id.to_owned(), instructions: spec.manual.to_owned() });
    }
    let dataset_dir = data_dir.join(spec.id);
    let mut report = DownloadReport { id: spec.id.to_owned(), files: Vec::new() };
    let mut offline_missing = Vec::new();
    let mut cache = DigestCache::open(data_dir);
    let result = (|| {
        for file in spec.files {
            let dest = dataset_dir.join(file.name);
            let done = |source| FetchedFile { name: file.name.to_owned(), path: dest.clone(), source };
            let unpacked = file.extract && extracted(spec, data_dir);
            if unpacked && unpacked_verified(spec, data_dir, &mut cache) {
                report.files.push(done(FileSource::AlreadyExtracted));
                continue;
            }
            let present = dest.is_file() && matches_checksum(&dest, file.checksum, &mut cache)?;
            if unpacked && !present && !extraction_recorded(spec, data_dir) {
                // Unpacked before digests were recorded, and the archive is gone: unverified,
                // which `verify` says; downloading it again is the user's call.
                report.files.push(done(FileSource::AlreadyExtracted));
                continue;
            }
            // Otherwise an unpacked file that no longer matches its record is unpacked again,
            // from the archive or from a fresh download of it.
            if present {
                if file.extract {
                    extract_recorded(&dest, &dataset_dir, file.checksum, &mut cache)?;
                }
                report.files.push(done(FileSource::AlreadyPresent));
                continue;
            }
            if let (Some(expected), Some(copy)) = (file.payload_sha256, local_copy(spec, file))
                && payload_sha256(&copy)? == expected
            {
                cache.put(&copy, PAYLOAD, expected);
                report.files.push(done(FileSource::LocalCopy { path: copy }));
                continue;
            }
            let urls = candidate_urls(spec, file, options);
            if options.offline || urls.is_empty() {
                let from = urls.first().map_or(String::new(), |u| format!(" (from {u})"));
                offline_missing.push(format!("{}{from}", dest.display()));
                continue;
            }
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
            }
            let url = fetch(&urls, &dest, file.size, file.checksum, options)?;
            cache.put(&dest, file.checksum.algorithm(), file.checksum.hex());
            if file.extract {
                extract_recorded(&dest, &dataset_dir, file.checksum, &mut cache)?;
            }
            report.files.push(done(FileSource::Downloaded { url }));
        }
        Ok(())
    })();
    cache.save();
    result?;
    if !offline_missing.is_empty() {
        return Err(DataError::Offline { missing: offline_missing });
    }
    Ok(report)
}

/// Whether `path` matches `checksum`, by a digest recorded for it unchanged or by reading it.
fn matches_checksum(path: &Path, checksum: Checksum, cache: &mut DigestCache) -> Result<bool, DataError> {
    let actual = cache.digest(path, checksum.algorithm(), Mode::Reuse, || crate::file_digest(path, checksum))?;
    Ok(actual.as_deref() == Some(checksum.hex()))
}

/// Unpacks a verified `archive` into `dataset_dir` and records each unpacked file's SHA-256 in
/// the folder's [`EXTRACTED_MANIFEST`] and the digest cache.
fn extract_recorded(
    archive: &Path,
    dataset_dir: &Path,
    checksum: Checksum,
    cache: &mut DigestCache,
) -> Result<(), DataError> {
    let (_, unpacked) = extract_archive_hashed(archive, dataset_dir)?;
    let manifest_path = dataset_dir.join(EXTRACTED_MANIFEST);
    // A manifest that cannot be read is rewritten: the archive just checked is the authority.
    let mut manifest = DigestManifest::load(&manifest_path).unwrap_or_default();
    let archive_name = archive.file_name().unwrap_or_default().to_string_lossy();
    let source = format!("unpacked from {archive_name}, which matched its {} {}", checksum.algorithm(), checksum.hex());
    for file in unpacked {
        cache.put(&dataset_dir.join(&file.name), Algorithm::Sha256.name(), &file.sha256);
        let entry = ManifestEntry {
            name: file.name.clone(),
            size: file.size,
            algorithm: Algorithm::Sha256,
            digest: file.sha256,
            source: source.clone(),
        };
        manifest.replace(&file.name, [entry]);
    }
    manifest.save(&manifest_path)
}

fn candidate_urls(spec: &DatasetSpec, file: &RemoteFile, options: &DownloadOptions) -> Vec<String> {
    let mut urls = Vec::new();
    if let Some(mirror) = &options.mirror {
        urls.push(format!("{}/{}/{}", mirror.trim_end_matches('/'), spec.id, file.name));
    }
    if !options.mirror_only {
        urls.extend(file.urls.iter().map(|u| u.to_string()));
    }
    urls
}

/// Downloads the first of `urls` that yields a file of the right size and checksum to `dest`,
/// via `<dest>.part`. Returns the URL used. On failure nothing is left at `dest`; `<dest>.part`
/// is kept after a network failure, for the next call to resume, and deleted after a size or
/// checksum mismatch. The error is the last URL's.
pub fn fetch(
    urls: &[String],
    dest: &Path,
    size: Option<u64>,
    checksum: Checksum,
    options: &DownloadOptions,
) -> Result<String, DataError> {
    fetch_verified(urls, dest, size, &[Digest::from(checksum)], options)
}

/// [`fetch`] against every digest of `expected`, at least one: a file is never renamed into
/// place unverified. Without a known `size`, a body cut short is caught by the digest.
pub(crate) fn fetch_verified(
    urls: &[String],
    dest: &Path,
    size: Option<u64>,
    expected: &[Digest],
    options: &DownloadOptions,
) -> Result<String, DataError> {
    if expected.is_empty() {
        return Err(DataError::NoDigest { path: dest.to_owned(), reason: "none was given".to_owned() });
    }
    let part = part_path(dest);
    let agent = agent(options);
    let mut last_error = None;
    for url in urls {
        match fetch_one(&agent, url, &part, size, expected, options) {
            Ok(()) => {
                fs::rename(&part, dest).map_err(|e| DataError::io(dest, e))?;
                return Ok(url.clone());
            }
            Err(error) => {
                // A wrong size or checksum means these bytes are bad: do not resume them. A
                // network failure keeps them for the next URL or the next run.
                if matches!(error, DataError::Checksum { .. } | DataError::Size { .. }) {
                    let _ = fs::remove_file(&part);
                }
                last_error = Some(error);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| DataError::Offline { missing: vec![dest.display().to_string()] }))
}

/// The body of a small document at `url` (at most 64 MiB), such as the Hub's file listing,
/// with the retries of `options`; `None` for an HTTP 404.
pub(crate) fn get_document(url: &str, options: &DownloadOptions) -> Result<Option<Vec<u8>>, DataError> {
    const LIMIT: u64 = 64 << 20;
    let agent = agent(options);
    let mut attempt = 0;
    loop {
        let failure = match agent.get(url).call() {
            Err(e) => e.to_string(),
            Ok(response) => match response.status().as_u16() {
                200 => {
                    let mut bytes = Vec::new();
                    match response.into_body().into_reader().take(LIMIT + 1).read_to_end(&mut bytes) {
                        Ok(_) if bytes.len() as u64 > LIMIT => {
                            return Err(DataError::Http {
                                url: url.to_owned(),
                                message: "larger than 64 MiB".to_owned(),
                            });
                        }
                        Ok(_) => return Ok(Some(bytes)),
                        Err(e) => format!("connection lost: {e}"),
                    }
                }
                404 => return Ok(None),
                status @ (408 | 429 | 500..=599) => format!("HTTP {status}"),
                status => return Err(DataError::Http { url: url.to_owned(), message: format!("HTTP {status}") }),
            },
        };
        if attempt >= options.retries {
            return Err(DataError::Http {
                url: url.to_owned(),
                message: format!("{failure} (after {} attempts)", attempt + 1),
            });
        }
        std::thread::sleep(options.backoff.saturating_mul(1 << attempt.min(16)));
        attempt += 1;
    }
}

pub(crate) fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

pub(crate) fn agent(options: &DownloadOptions) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(options.timeout))
        .timeout_recv_response(Some(options.timeout))
        .timeout_per_read(Some(options.timeout))
        .user_agent(concat!("itra-data/", env!("CARGO_PKG_VERSION")));
    if !options.proxy_from_env {
        config = config.proxy(None);
    }
    config.build().into()
}

/// One URL, with retries; resumes `part` where it left off.
fn fetch_one(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    size: Option<u64>,
    expected: &[Digest],
    options: &DownloadOptions,
) -> Result<(), DataError> {
    let mut attempt = 0;
    loop {
        match attempt_once(agent, url, part, size, options) {
            Ok(()) => break,
            Err(Attempt::Fatal(error)) => return Err(error),
            Err(Attempt::Retry(message)) if attempt >= options.retries => {
                return Err(DataError::Http {
                    url: url.to_owned(),
                    message: format!("{message} (after {} attempts)", attempt + 1),
                });
            }
            Err(Attempt::Retry(_)) => {
                std::thread::sleep(options.backoff.saturating_mul(1 << attempt.min(16)));
                attempt += 1;
            }
        }
    }
    let actual_size = fs::metadata(part).map_err(|e| DataError::io(part, e))?.len();
    if let Some(expected) = size
        && actual_size != expected
    {
        return Err(DataError::Size { path: part.to_owned(), expected, actual: actual_size });
    }
    let algorithms: Vec<Algorithm> = expected.iter().map(|d| d.algorithm).collect();
    let actual = file_digests(part, &algorithms)?;
    if let Some((digest, actual)) = expected.iter().zip(actual).find(|(digest, actual)| *actual != digest.hex) {
        return Err(DataError::Checksum {
            path: part.to_owned(),
            algorithm: digest.algorithm.name(),
            expected: digest.hex.clone(),
            actual,
        });
    }
    Ok(())
}

enum Attempt {
    Retry(String),
    Fatal(DataError),
}

fn attempt_once(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    size: Option<u64>,
    options: &DownloadOptions,
) -> Result<(), Attempt> {
    let io_fatal = |e: io::Error| Attempt::Fatal(DataError::io(part, e));
    let mut offset = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if size.is_some_and(|s| offset > s) {
        fs::remove_file(part).map_err(io_fatal)?;
        offset = 0;
    }
    if size.is_some_and(|s| s > 0 && offset == s) {
        return Ok(());
    }
    let mut request = agent.get(url);
    if offset > 0 {
        request = request.header("Range", format!("bytes={offset}-"));
    }
    let response = request.call().map_err(|e| Attempt::Retry(e.to_string()))?;
    let status = response.status().as_u16();
    let append = match status {
        206 => {
            let content_range = response.headers().get("content-range").and_then(|v| v.to_str().ok());
            let resumes_at = content_range
                .and_then(|r| r.strip_prefix("bytes "))
                .and_then(|r| r.split('-').next())
                .and_then(|start| start.parse::<u64>().ok());
            if resumes_at != Some(offset) {
                // The server resumed somewhere else; start over rather than splice wrong bytes.
                fs::remove_file(part).map_err(io_fatal)?;
                return Err(Attempt::Retry(format!("unexpected Content-Range {content_range:?} for offset {offset}")));
            }
            true
        }
        200 => false,
        // The range starts at the end: the previous run got every byte.
        416 if offset > 0 => return Ok(()),
        408 | 429 | 500..=599 => return Err(Attempt::Retry(format!("HTTP {status}"))),
        _ => {
            return Err(Attempt::Fatal(DataError::Http { url: url.to_owned(), message: format!("HTTP {status}") }));
        }
    };
    let remaining =
        response.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let mut out =
        OpenOptions::new().create(true).write(true).append(append).truncate(!append).open(part).map_err(io_fatal)?;
    let start = if append { offset } else { 0 };
    let progress = progress_bar(options, url, size.or(remaining.map(|r| r + start)), start);
    let mut body = response.into_body().into_reader();
    let mut buffer = vec![0u8; 1 << 16];
    let mut received = 0u64;
    loop {
        let n = match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                out.flush().map_err(io_fatal)?;
                progress.abandon();
                return Err(Attempt::Retry(format!("connection lost: {e}")));
            }
        };
        out.write_all(&buffer[..n]).map_err(io_fatal)?;
        received += n as u64;
        progress.inc(n as u64);
    }
    out.sync_all().map_err(io_fatal)?;
    progress.finish_and_clear();
    // A body that ends early is a dropped connection, whether or not the server sent a
    // Content-Length: resume it rather than check a partial file.
    if let Some(remaining) = remaining
        && received < remaining
    {
        return Err(Attempt::Retry(format!("connection closed after {received} of {remaining} bytes")));
    }
    if let Some(size) = size
        && start + received < size
    {
        return Err(Attempt::Retry(format!("body ended at byte {} of {size}", start + received)));
    }
    Ok(())
}

fn progress_bar(options: &DownloadOptions, url: &str, total: Option<u64>, start: u64) -> indicatif::ProgressBar {
    if !options.progress {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => indicatif::ProgressBar::new(total),
        None => indicatif::ProgressBar::new_spinner(),
    };
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(url.rsplit('/').next().unwrap_or(url).to_owned());
    bar.set_position(start);
    bar
}

/// Unpacks a tar or gzip-compressed tar into `target`. Every entry must be a plain file or
/// folder with a relative path that stays inside `target`; links, absolute paths and `..`
/// are refused. Entries are unpacked into a staging folder inside `target` and moved into
/// place only once the whole archive has been read, so a failure leaves `target` as it was.
/// Returns the top-level paths created.
pub fn extract_archive(archive: &Path, target: &Path) -> Result<Vec<PathBuf>, DataError> {
    extract_archive_hashed(archive, target).map(|(created, _)| created)
}

/// A regular file unpacked by [`extract_archive_hashed`].
pub(crate) struct UnpackedFile {
    /// Path relative to the target folder, `/`-separated.
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// [`extract_archive`], also returning every unpacked regular file with its SHA-256 (hashed in
/// the staging folder, before anything is moved into place).
pub(crate) fn extract_archive_hashed(
    archive: &Path,
    target: &Path,
) -> Result<(Vec<PathBuf>, Vec<UnpackedFile>), DataError> {
    let file_name = archive.file_name().unwrap_or_default().to_string_lossy();
    let staging = target.join(format!(".{file_name}.extracting"));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| DataError::io(&staging, e))?;
    }
    fs::create_dir_all(&staging).map_err(|e| DataError::io(&staging, e))?;
    let mut unpacked = Vec::new();
    if let Err(error) = unpack_checked(archive, &staging).and_then(|()| hash_tree(&staging, "", &mut unpacked)) {
        let _ = fs::remove_dir_all(&staging);
        return Err(error);
    }
    let mut created = Vec::new();
    let entries = fs::read_dir(&staging).map_err(|e| DataError::io(&staging, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(&staging, e))?;
        let dest = target.join(entry.file_name());
        if dest.is_dir() {
            fs::remove_dir_all(&dest).map_err(|e| DataError::io(&dest, e))?;
        } else if dest.exists() {
            fs::remove_file(&dest).map_err(|e| DataError::io(&dest, e))?;
        }
        fs::rename(entry.path(), &dest).map_err(|e| DataError::io(&dest, e))?;
        created.push(dest);
    }
    fs::remove_dir(&staging).map_err(|e| DataError::io(&staging, e))?;
    created.sort();
    unpacked.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((created, unpacked))
}

/// SHA-256 and size of every regular file under `dir`, named `<prefix><relative path>`.
fn hash_tree(dir: &Path, prefix: &str, out: &mut Vec<UnpackedFile>) -> Result<(), DataError> {
    for entry in fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let kind = entry.file_type().map_err(|e| DataError::io(&path, e))?;
        if kind.is_dir() {
            hash_tree(&path, &format!("{name}/"), out)?;
        } else if kind.is_file() {
            let size = entry.metadata().map_err(|e| DataError::io(&path, e))?.len();
            let sha256 = file_digests(&path, &[Algorithm::Sha256])?.remove(0);
            out.push(UnpackedFile { name, size, sha256 });
        }
    }
    Ok(())
}

fn unpack_checked(archive: &Path, staging: &Path) -> Result<(), DataError> {
    let io_error = |e| DataError::io(archive, e);
    let reader = decompressed(open(archive)?, archive)?;
    let mut tar = tar::Archive::new(reader);
    for entry in tar.entries().map_err(io_error)? {
        let mut entry = entry.map_err(io_error)?;
        let path = entry.path().map_err(io_error)?.into_owned();
        let refuse = |reason: &str| DataError::UnsafeArchiveEntry {
            archive: archive.to_owned(),
            entry: path.display().to_string(),
            reason: reason.to_owned(),
        };
        if !path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(refuse("its path is absolute or leaves the target folder"));
        }
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Directory => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                return Err(refuse("links are not extracted"));
            }
            // Metadata records (pax, GNU) carry nothing to write.
            _ => continue,
        }
        if !entry.unpack_in(staging).map_err(io_error)? {
            return Err(refuse("its path leaves the target folder"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_lists_every_missing_file_and_its_source() {
        let data = tempfile::tempdir().unwrap();
        let options = DownloadOptions { offline: true, progress: false, ..DownloadOptions::default() };
        let err = download("kmnist", data.path(), &options).unwrap_err();
        let DataError::Offline { missing } = &err else { panic!("{err}") };
        assert_eq!(missing.len(), 4);
        let first = data.path().join("kmnist/train-images-idx3-ubyte.gz");
        assert_eq!(
            missing[0],
            format!(
                "{} (from https://codh.rois.ac.jp/kmnist/dataset/kmnist/train-images-idx3-ubyte.gz)",
                first.display()
            )
        );
        assert!(err.to_string().starts_with("offline: 4 files missing: "), "{err}");
    }

    #[test]
    fn imagenet_is_manual() {
        let err = download("imagenet", Path::new("."), &DownloadOptions::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("imagenet cannot be downloaded automatically: download ILSVRC2012_img_train.tar"),
            "{err}"
        );
    }

    #[test]
    fn mirror_comes_first_and_mirror_only_drops_registered_urls() {
        let spec = crate::registry::spec("cifar10").unwrap();
        let options = DownloadOptions { mirror: Some("http://m.example/data/".into()), ..DownloadOptions::default() };
        let urls = candidate_urls(spec, &spec.files[0], &options);
        assert_eq!(urls[0], "http://m.example/data/cifar10/cifar-10-binary.tar.gz");
        assert_eq!(urls[1], "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz");
        let only = DownloadOptions { mirror_only: true, ..options };
        assert_eq!(candidate_urls(spec, &spec.files[0], &only).len(), 1);
    }
}
