//! Digests computed earlier, keyed by path, size and modification time, in
//! `<data_dir>/.itra-digests-cache.json`: what lets `list` say that data was verified without
//! reading it again. A file whose size or modification time has changed since is unchecked.
//! The cache is disposable: one that cannot be read counts as empty, one that cannot be written
//! is skipped, and `verify` always re-hashes. (An edit that keeps the size and lands within the
//! filesystem's timestamp resolution of the moment the digest was taken looks unchanged to
//! `list`; `verify` still catches it.)

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::DataError;

pub(crate) const CACHE_FILE: &str = ".itra-digests-cache.json";

/// How a check obtains a file's digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Read the file and record the digest (`verify`).
    Hash,
    /// Use a recorded digest if the file is unchanged since, else hash (`fetch`).
    Reuse,
    /// Use a recorded digest if the file is unchanged since, else report it unchecked (`list`).
    CacheOnly,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    path: String,
    /// `md5`, `sha256`, `git blob sha1` or `sha256 of the decompressed payload`.
    label: String,
    size: u64,
    modified_ns: u64,
    digest: String,
}

#[derive(Debug, Default)]
pub(crate) struct DigestCache {
    file: Option<PathBuf>,
    entries: Vec<Entry>,
    changed: bool,
}

impl DigestCache {
    pub(crate) fn open(data_dir: &Path) -> Self {
        let file = data_dir.join(CACHE_FILE);
        let entries = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        DigestCache { file: Some(file), entries, changed: false }
    }

    /// The `label` digest recorded for `path`, if the file is unchanged since.
    pub(crate) fn get(&self, path: &Path, label: &str) -> Option<String> {
        let (key, size, modified_ns) = identity(path)?;
        self.entries
            .iter()
            .find(|e| e.path == key && e.label == label && e.size == size && e.modified_ns == modified_ns)
            .map(|e| e.digest.clone())
    }

    /// Records `digest` as the `label` digest of `path` as it is now.
    pub(crate) fn put(&mut self, path: &Path, label: &str, digest: &str) {
        let Some((key, size, modified_ns)) = identity(path) else { return };
        self.entries.retain(|e| !(e.path == key && e.label == label));
        self.entries.push(Entry { path: key, label: label.to_owned(), size, modified_ns, digest: digest.to_owned() });
        self.changed = true;
    }

    /// The `label` digest of `path` by `mode`: `None` only in [`Mode::CacheOnly`], for a file
    /// not checked since it last changed.
    pub(crate) fn digest(
        &mut self,
        path: &Path,
        label: &str,
        mode: Mode,
        compute: impl FnOnce() -> Result<String, DataError>,
    ) -> Result<Option<String>, DataError> {
        if mode != Mode::Hash
            && let Some(digest) = self.get(path, label)
        {
            return Ok(Some(digest));
        }
        if mode == Mode::CacheOnly {
            return Ok(None);
        }
        let digest = compute()?;
        self.put(path, label, &digest);
        Ok(Some(digest))
    }

    /// Writes the cache back if anything was recorded; failures are ignored (see the module docs).
    pub(crate) fn save(&self) {
        let Some(file) = self.file.as_deref().filter(|_| self.changed) else { return };
        let Ok(json) = serde_json::to_vec(&self.entries) else { return };
        if let Some(dir) = file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = crate::manifest::write_atomically(file, &json);
    }
}

/// `(absolute path, size, modification time in ns)` of a file.
fn identity(path: &Path) -> Option<(String, u64, u64)> {
    let metadata = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    let modified_ns = u64::try_from(metadata.modified().ok()?.duration_since(UNIX_EPOCH).ok()?.as_nanos()).ok()?;
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    Some((absolute.display().to_string(), metadata.len(), modified_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_unchecked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let mut cache = DigestCache::open(dir.path());
        assert_eq!(cache.digest(&path, "md5", Mode::CacheOnly, || unreachable!()).unwrap(), None);
        let computed = cache.digest(&path, "md5", Mode::Reuse, || Ok("d1".into())).unwrap();
        assert_eq!(computed.as_deref(), Some("d1"));
        cache.save();
        let mut reopened = DigestCache::open(dir.path());
        assert_eq!(reopened.digest(&path, "md5", Mode::CacheOnly, || unreachable!()).unwrap().as_deref(), Some("d1"));
        assert_eq!(reopened.get(&path, "sha256"), None, "per algorithm");
        std::fs::write(&path, b"abcd").unwrap();
        assert_eq!(reopened.get(&path, "md5"), None, "the size changed");
        assert_eq!(reopened.digest(&path, "md5", Mode::Hash, || Ok("d2".into())).unwrap().as_deref(), Some("d2"));
    }
}
