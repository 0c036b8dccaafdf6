//! File digests for verifying downloads and local copies.

use std::io::Read;
use std::path::Path;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::DataError;
use crate::registry::Checksum;

/// A running MD5 or SHA-256.
pub(crate) enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
}

impl Hasher {
    pub(crate) fn for_checksum(checksum: Checksum) -> Self {
        match checksum {
            Checksum::Md5(_) => Hasher::Md5(Md5::new()),
            Checksum::Sha256(_) => Hasher::Sha256(Sha256::new()),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    pub(crate) fn hex(self) -> String {
        match self {
            Hasher::Md5(h) => hex(&h.finalize()),
            Hasher::Sha256(h) => hex(&h.finalize()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex digest of everything `reader` yields, with the algorithm of `checksum`.
pub(crate) fn reader_digest(mut reader: impl Read, checksum: Checksum, path: &Path) -> Result<String, DataError> {
    let mut hasher = Hasher::for_checksum(checksum);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => return Ok(hasher.hex()),
            Ok(n) => hasher.update(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DataError::io(path, e)),
        }
    }
}

/// Hex digest of the file at `path`, with the algorithm of `checksum`.
pub fn file_digest(path: &Path, checksum: Checksum) -> Result<String, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    reader_digest(file, checksum, path)
}

/// Checks `path` against `checksum`, returning a [`DataError::Checksum`] on mismatch.
pub(crate) fn verify_file(path: &Path, checksum: Checksum) -> Result<(), DataError> {
    let actual = file_digest(path, checksum)?;
    if actual == checksum.hex() {
        Ok(())
    } else {
        Err(DataError::Checksum {
            path: path.to_owned(),
            algorithm: checksum.algorithm(),
            expected: checksum.hex().to_owned(),
            actual,
        })
    }
}

/// SHA-256 of the gunzipped contents of `path` (or of the raw contents if not gzip).
pub(crate) fn payload_sha256(path: &Path) -> Result<String, DataError> {
    let reader = crate::read::decompressed(crate::read::open(path)?, path)?;
    reader_digest(reader, Checksum::Sha256(""), path)
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
        let err = verify_file(&path, Checksum::Md5("00000000000000000000000000000000")).unwrap_err();
        assert!(err.to_string().ends_with(
            "abc: md5 checksum mismatch: expected 00000000000000000000000000000000, got 900150983cd24fb0d6963f7d28e17f72"
        ), "{err}");
    }
}
