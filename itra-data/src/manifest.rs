//! What each file of a folder was verified against when it was fetched or extracted: the
//! digest manifest, a small JSON file written atomically next to the files it describes, so that
//! `verify` can re-check the bytes later without the network.
//!
//! ```json
//! {"files": [{"name": "config.json", "size": 570, "algorithm": "git-blob-sha1",
//!             "digest": "…", "source": "hub-metadata https://huggingface.co/api/models/…"}]}
//! ```
//!
//! `source` is `pinned` (the registry's digest), `hub-metadata <url>` (the Hugging Face Hub's
//! file listing) or, for files unpacked from an archive, the archive they came from.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::checksum::{Algorithm, Digest};

/// An encoder folder's manifest: `<data_dir>/encoders/<id>/digests.json`.
pub const ENCODER_MANIFEST: &str = "digests.json";
/// A dataset folder's manifest of the files unpacked from its archives:
/// `<data_dir>/<id>/.itra-digests.json`.
pub const EXTRACTED_MANIFEST: &str = ".itra-digests.json";

/// One digest a file is expected to have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path relative to the manifest's folder, `/`-separated.
    pub name: String,
    /// Exact size in bytes.
    pub size: u64,
    pub algorithm: Algorithm,
    /// Lowercase hex.
    pub digest: String,
    /// Where the digest was taken from.
    pub source: String,
}

impl ManifestEntry {
    pub fn digest(&self) -> Digest {
        Digest { algorithm: self.algorithm, hex: self.digest.clone() }
    }
}

/// Every file's expected digests; a file may have several (a pinned SHA-256 and the Hub's Git
/// blob id), all of which its bytes must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestManifest {
    pub files: Vec<ManifestEntry>,
}

impl DigestManifest {
    /// Reads `path`; an absent file is an empty manifest, a malformed one an error.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(DataError::io(path, e)),
        };
        let bad = |message: String| DataError::Manifest { path: path.to_owned(), message };
        let manifest: Self = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if let Some(entry) = manifest.files.iter().find(|e| !e.algorithm.is_hex_digest(&e.digest)) {
            return Err(bad(format!("{}: {:?} is not a {} digest", entry.name, entry.digest, entry.algorithm.name())));
        }
        Ok(manifest)
    }

    /// The expected digests of `name`.
    pub fn entries<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ManifestEntry> + 'a {
        self.files.iter().filter(move |e| e.name == name)
    }

    /// Replaces every entry of `name` by `entries`.
    pub fn replace(&mut self, name: &str, entries: impl IntoIterator<Item = ManifestEntry>) {
        self.files.retain(|e| e.name != name);
        self.files.extend(entries);
    }

    /// Writes the manifest to `path` via `<path>.part` and a rename.
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| DataError::Manifest { path: path.to_owned(), message: e.to_string() })?;
        write_atomically(path, &json)
    }
}

/// Writes `bytes` to `path` through `<path>.part`, so that a reader never sees half of them.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let part = crate::download::part_path(path);
    fs::write(&part, bytes).map_err(|e| DataError::io(&part, e))?;
    fs::rename(&part, path).map_err(|e| DataError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_malformed_digests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ENCODER_MANIFEST);
        assert_eq!(DigestManifest::load(&path).unwrap(), DigestManifest::default());
        let entry = ManifestEntry {
            name: "config.json".into(),
            size: 2,
            algorithm: Algorithm::GitBlobSha1,
            digest: "9e26dfeeb6e641a33dae4961196235bdb965b21b".into(),
            source: "pinned".into(),
        };
        let mut manifest = DigestManifest::default();
        manifest.replace("config.json", [entry.clone()]);
        manifest.save(&path).unwrap();
        assert!(!crate::download::part_path(&path).exists());
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(json["files"][0]["algorithm"], "git-blob-sha1");
        assert_eq!(DigestManifest::load(&path).unwrap().entries("config.json").collect::<Vec<_>>(), [&entry]);

        fs::write(
            &path,
            br#"{"files": [{"name": "a", "size": 1, "algorithm": "sha256", "digest": "00", "source": "x"}]}"#,
        )
        .unwrap();
        let err = DigestManifest::load(&path).unwrap_err().to_string();
        assert!(err.contains("malformed digest manifest: a: \"00\" is not a sha256 digest"), "{err}");
    }
}
