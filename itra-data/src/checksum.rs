//! File digests for verifying downloads and local copies: MD5 and SHA-256 (what the registry
//! pins) and Git's blob SHA-1 (what the Hugging Face Hub states for files not stored in LFS).

use std::io::Read;
use std::path::Path;

use md5::Md5;
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use crate::DataError;
use crate::registry::Checksum;

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    Md5,
    Sha256,
    /// SHA-1 of `"blob <length>\0"` followed by the content: a Git object id.
    GitBlobSha1,
}

impl Algorithm {
    /// `md5`, `sha256` or `git blob sha1`, as error messages and reports say it.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "md5",
            Algorithm::Sha256 => "sha256",
            Algorithm::GitBlobSha1 => "git blob sha1",
        }
    }

    /// Length of the lowercase hex digest.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
            Algorithm::GitBlobSha1 => 40,
        }
    }

    /// Whether `hex` is a well-formed lowercase digest of this algorithm.
    pub fn is_hex_digest(self, hex: &str) -> bool {
        hex.len() == self.hex_len() && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

/// An expected digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Digest {
    pub algorithm: Algorithm,
    /// Lowercase hex.
    pub hex: String,
}

impl From<Checksum> for Digest {
    fn from(checksum: Checksum) -> Self {
        let algorithm = match checksum {
            Checksum::Md5(_) => Algorithm::Md5,
            Checksum::Sha256(_) => Algorithm::Sha256,
        };
        Digest { algorithm, hex: checksum.hex().to_owned() }
    }
}

/// A running digest.
pub(crate) enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
    GitBlobSha1(Sha1),
}

impl Hasher {
    /// A hasher for content of `len` bytes (only Git's blob SHA-1 needs the length up front).
    pub(crate) fn new(algorithm: Algorithm, len: u64) -> Self {
        match algorithm {
            Algorithm::Md5 => Hasher::Md5(Md5::new()),
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::GitBlobSha1 => {
                let mut sha1 = Sha1::new();
                sha1.update(format!("blob {len}\0").as_bytes());
                Hasher::GitBlobSha1(sha1)
            }
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::GitBlobSha1(h) => h.update(bytes),
        }
    }

    pub(crate) fn hex(self) -> String {
        match self {
            Hasher::Md5(h) => hex(&h.finalize()),
            Hasher::Sha256(h) => hex(&h.finalize()),
            Hasher::GitBlobSha1(h) => hex(&h.finalize()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex digests of everything `reader` yields (`len` bytes), one per algorithm, in one pass.
pub(crate) fn reader_digests(
    mut reader: impl Read,
    len: u64,
    algorithms: &[Algorithm],
    path: &Path,
) -> Result<Vec<String>, DataError> {
    let mut hashers: Vec<Hasher> = algorithms.iter().map(|&a| Hasher::new(a, len)).collect();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => return Ok(hashers.into_iter().map(Hasher::hex).collect()),
            Ok(n) => hashers.iter_mut().for_each(|h| h.update(&buffer[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DataError::io(path, e)),
        }
    }
}

/// Hex digests of the file at `path`, one per algorithm, read once.
pub(crate) fn file_digests(path: &Path, algorithms: &[Algorithm]) -> Result<Vec<String>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    reader_digests(file, len, algorithms, path)
}

/// Hex digest of the file at `path`, with the algorithm of `checksum`.
pub fn file_digest(path: &Path, checksum: Checksum) -> Result<String, DataError> {
    let algorithm = Digest::from(checksum).algorithm;
    Ok(file_digests(path, &[algorithm])?.remove(0))
}

/// SHA-256 of the gunzipped contents of `path` (or of the raw contents if not gzip).
pub(crate) fn payload_sha256(path: &Path) -> Result<String, DataError> {
    let reader = crate::read::decompressed(crate::read::open(path)?, path)?;
    Ok(reader_digests(reader, 0, &[Algorithm::Sha256], path)?.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_known_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        // RFC 1321 and FIPS 180-2 test vectors for "abc".
        assert_eq!(file_digest(&path, Checksum::Md5("")).unwrap(), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            file_digest(&path, Checksum::Sha256("")).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn git_blob_sha1_is_gits_object_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hello");
        std::fs::write(&path, b"hello\n").unwrap();
        // shell: printf 'hello\n' | git hash-object --stdin
        let digests = file_digests(&path, &[Algorithm::GitBlobSha1, Algorithm::Sha256]).unwrap();
        assert_eq!(digests[0], "ce013625030ba8dba906f756967f9e9ca394464a");
        // shell: printf 'hello\n' | sha256sum
        assert_eq!(digests[1], "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
        std::fs::write(&path, b"").unwrap();
        // The empty blob's id, e69de29..., is in every Git.
        assert_eq!(
            file_digests(&path, &[Algorithm::GitBlobSha1]).unwrap()[0],
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
        assert!(Algorithm::GitBlobSha1.is_hex_digest("e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"));
        assert!(!Algorithm::Sha256.is_hex_digest("E69DE29BB2D1D6434B8B29AE775AD8C2E48C5391"));
    }
}
