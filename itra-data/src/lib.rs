//! Datasets for the ITRA experiments: a registry of every dataset used, with its sources and
//! checksums; exact parsers for the official on-disk formats (IDX, CIFAR and STL-10 binaries,
//! the Zhang et al. CSVs, image folders) into in-memory [`ImageDataset`]s and [`TextDataset`]s;
//! and a separate downloader that verifies what it fetches. Parsing and loading never touch the
//! network, and a file that fails a check is reported as a typed [`DataError`], never silently
//! accepted or patched up. The crate holds raw bytes and strings only: normalisation,
//! augmentation and tensors belong to the training code.

pub mod cifar;
mod dataset;
mod error;
pub mod idx;
mod read;
pub mod registry;
pub mod stl10;
pub mod text;

use std::path::{Path, PathBuf};

pub use dataset::{ImageDataset, Split, TextDataset};
pub use error::DataError;
pub use registry::{DatasetSpec, spec};

/// `$ITRA_DATA` if set and non-empty, else `<user cache dir>/itra` (e.g. `~/.cache/itra`),
/// else `./data`.
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("ITRA_DATA") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => dirs::cache_dir().map(|d| d.join("itra")).unwrap_or_else(|| PathBuf::from("data")),
    }
}

/// Loads split `split` of image dataset `id` from `<data_dir>/<id>/` (or a registered local
/// copy, such as Debian's Fashion-MNIST). Never downloads.
pub fn load_image_dataset(id: &str, data_dir: &Path, split: Split) -> Result<ImageDataset, DataError> {
    let spec = registry::spec(id)?;
    match spec.id {
        "fmnist" | "kmnist" => load_idx(spec, data_dir, split),
        _ => Err(DataError::UnknownDataset { id: id.to_owned(), known: "fmnist, kmnist".to_owned() }),
    }
}

fn load_idx(spec: &DatasetSpec, data_dir: &Path, split: Split) -> Result<ImageDataset, DataError> {
    let shape = spec.image_shape().expect("IDX datasets are registered as images");
    let mut searched = vec![data_dir.join(spec.id)];
    searched.extend(spec.local_copies.iter().map(PathBuf::from));
    let (images_name, labels_name) = idx::file_names(split);
    for dir in &searched {
        if idx::find_file(dir, images_name).is_some() && idx::find_file(dir, labels_name).is_some() {
            return idx::load_dir(dir, split, shape, spec.class_names);
        }
    }
    let first = &searched[0];
    let missing = [images_name, labels_name]
        .into_iter()
        .filter(|name| idx::find_file(first, name).is_none())
        .map(|name| format!("{name} (or without .gz)"))
        .collect();
    Err(DataError::Missing {
        id: spec.id.to_owned(),
        split: split.to_string(),
        missing,
        searched,
        hint: spec.manual.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_dataset_says_what_where_and_how() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_image_dataset("kmnist", dir.path(), Split::Test).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("kmnist test split not found: missing t10k-images-idx3-ubyte.gz (or without .gz), t10k-labels-idx1-ubyte.gz (or without .gz) in "), "{message}");
        assert!(message.contains(&dir.path().join("kmnist").display().to_string()), "{message}");
        assert!(message.ends_with("; run `itra data fetch kmnist`"), "{message}");
    }

    #[test]
    fn unknown_dataset_lists_known_ids() {
        let err = load_image_dataset("mnist", Path::new("."), Split::Train).unwrap_err();
        assert!(err.to_string().starts_with("unknown dataset \"mnist\", expected one of kmnist, fmnist"), "{err}");
    }
}
