//! Datasets for the ITRA experiments: a registry of every dataset used, with its sources and
//! checksums ([`registry`]); exact parsers for the official on-disk formats (IDX, CIFAR and
//! STL-10 binaries, the Zhang et al. CSVs, image folders) into in-memory [`ImageDataset`]s and
//! [`TextDataset`]s; and a separate downloader ([`download()`], [`encoder::fetch_encoder`])
//! that verifies what it fetches. **Parsing and loading never touch the network**, and a file
//! that fails a check is reported as a typed [`DataError`], never silently accepted, patched up
//! or left half-written. **Nothing is called verified without a digest**: [`verify`] and
//! [`encoder::verify_encoder`] report each file as verified (naming the algorithm), present but
//! not verified, corrupt or missing ([`FileState`]).
//!
//! The input pipeline lives here too: per-channel [`Normalization`] cached next to the data,
//! seeded [`Augmentation`], the paired `S1`/`S2` [`PairedSampler`] and a [`Loader`] that makes
//! [`Batch`]es of normalised `f32` pixels on worker threads. **The crate never depends on a
//! tensor library**: turning a [`Batch`] into a tensor is the trainer's job.

pub mod augment;
mod cache;
mod checksum;
pub mod cifar;
mod dataset;
pub mod download;
pub mod encoder;
mod error;
pub mod folder;
#[doc(hidden)]
pub mod fuzzing;
pub mod idx;
pub mod imagenet;
mod info;
pub mod items;
mod loader;
mod manifest;
mod normalize;
mod read;
pub mod registry;
pub mod sampler;
pub mod stl10;
pub mod text;

use std::path::{Path, PathBuf};

pub use checksum::{Algorithm, Digest, file_digest};
pub use dataset::{ImageDataset, Split, TextDataset};
pub use download::{DownloadOptions, DownloadReport, download};
pub use error::DataError;
pub use info::{
    DatasetInfo, DatasetStatus, FileCheck, FileState, SplitInfo, SplitsInfo, all_verified, info, list, status, verify,
    verify_spec,
};
pub use manifest::{DigestManifest, ENCODER_MANIFEST, EXTRACTED_MANIFEST, ManifestEntry};
pub use registry::{DatasetSpec, Format, spec};

pub use augment::Augmentation;
pub use items::{ImageItem, PipelineView, RawImage, TextItem};
pub use loader::{Batch, BatchRequest, ImageSource, Loader, LoaderOptions, Pipeline, folder_source};
pub use normalize::{Normalization, STATS_FILE};
pub use sampler::{PairedSampler, Stream};
pub use sampler::{holdout_split, stratified_draw};

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
///
/// `id` is a registered id (`fmnist`, `kmnist`, `cifar10`, `cifar100`, `stl10`, `imagenet`) or
/// `folder:<path>` for a generic image folder ([`folder::load_split`]). ImageNet is decoded
/// eagerly and resized to 224x224, which takes ~190 GB for the training split; stream it with
/// [`folder::index`] and [`folder::decode`] instead.
pub fn load_image_dataset(id: &str, data_dir: &Path, split: Split) -> Result<ImageDataset, DataError> {
    if let Some(root) = id.strip_prefix("folder:") {
        return folder::load_split(Path::new(root), split, None);
    }
    let spec = registry::spec(id)?;
    let Some(shape) = spec.image_shape() else {
        return Err(DataError::WrongModality { id: spec.id.to_owned(), expected: "an image" });
    };
    let dir = locate(spec, data_dir, split)?;
    match spec.format {
        Format::Idx => idx::load_dir(&dir, split, shape, spec.class_names),
        Format::Cifar10 => cifar::load_dir(&dir, split, cifar::Variant::Cifar10, spec.class_names),
        Format::Cifar100 => cifar::load_dir(&dir, split, cifar::Variant::Cifar100, spec.class_names),
        Format::Stl10 => stl10::load_dir(&dir, split, spec.class_names),
        Format::ImageFolder => {
            let [_, height, width] = shape;
            let train_classes = folder::index(&dir.join(folder::split_dir_name(Split::Train)), None)
                .map(|index| index.class_names)
                .ok();
            folder::load_dir(&dir.join(folder::split_dir_name(split)), Some([height, width]), train_classes.as_deref())
        }
        Format::ZhangCsv { .. } => {
            unreachable!("text datasets are registered with a text modality")
        }
    }
}

/// Split `split` of image dataset `id` as a [`ImageSource`] for a [`Pipeline`]: image folders
/// (`imagenet`, `folder:<path>`) are **indexed, not decoded**, so that each image is decoded
/// when its batch is made and memory is bounded by the batch and the prefetch depth, not by the
/// dataset; every other dataset is loaded into memory by [`load_image_dataset`]. Never
/// downloads.
///
/// A `folder:<root>` has `root/train/<class>/` and `root/val/<class>/` (or `root/test/`), the
/// test split labelled with the training split's classes; a root without split folders is a
/// training split only.
pub fn image_source(id: &str, data_dir: &Path, split: Split) -> Result<ImageSource, DataError> {
    if let Some(root) = id.strip_prefix("folder:") {
        return folder::index_split(Path::new(root), split).map(Into::into);
    }
    let spec = registry::spec(id)?;
    if spec.format != Format::ImageFolder {
        return load_image_dataset(id, data_dir, split).map(Into::into);
    }
    let dir = locate(spec, data_dir, split)?;
    let train = folder::index(&dir.join(folder::split_dir_name(Split::Train)), None);
    match split {
        Split::Train => train.map(Into::into),
        Split::Test => {
            let classes = train.ok().map(|index| index.class_names);
            folder::index(&dir.join(folder::split_dir_name(split)), classes.as_deref()).map(Into::into)
        }
    }
}

/// Loads split `split` of text dataset `id` (`ag_news`, `amazon_full`, `yahoo_answers`,
/// `yelp_full`) from `<data_dir>/<id>/<id>_csv/`. Never downloads.
pub fn load_text_dataset(id: &str, data_dir: &Path, split: Split) -> Result<TextDataset, DataError> {
    let spec = registry::spec(id)?;
    let Format::ZhangCsv { text_columns } = spec.format else {
        return Err(DataError::WrongModality { id: spec.id.to_owned(), expected: "a text" });
    };
    let dir = locate(spec, data_dir, split)?;
    text::load_dir(&dir, split, text_columns, spec.class_names)
}

/// The directory holding `split` of `spec`: `<data_dir>/<id>/<subdir>` or the first registered
/// local copy that has every file, else an error naming the missing files and where they
/// were looked for.
pub fn locate(spec: &DatasetSpec, data_dir: &Path, split: Split) -> Result<PathBuf, DataError> {
    let mut searched = vec![data_dir.join(spec.id).join(spec.subdir)];
    searched.extend(spec.local_copies.iter().map(PathBuf::from));
    let needed = spec.split_files(split);
    if let Some(dir) = searched.iter().find(|dir| needed.iter().all(|name| split_file_exists(spec, dir, name))) {
        return Ok(dir.clone());
    }
    let missing = needed
        .iter()
        .filter(|name| !split_file_exists(spec, &searched[0], name))
        .map(|name| match spec.format {
            Format::Idx => format!("{name} (or without .gz)"),
            Format::ImageFolder => format!("{name}/"),
            _ => name.to_string(),
        })
        .collect();
    Err(DataError::Missing {
        id: spec.id.to_owned(),
        split: split.to_string(),
        missing,
        searched,
        hint: spec.manual.to_owned(),
    })
}

fn split_file_exists(spec: &DatasetSpec, dir: &Path, name: &str) -> bool {
    match spec.format {
        Format::Idx => idx::find_file(dir, name).is_some(),
        Format::ImageFolder => dir.join(name).is_dir(),
        _ => dir.join(name).is_file(),
    }
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

        let err = load_image_dataset("cifar10", dir.path(), Split::Train).unwrap_err();
        assert!(err.to_string().contains("missing data_batch_1.bin, data_batch_2.bin"), "{err}");
        assert!(err.to_string().contains("cifar10/cifar-10-batches-bin"), "{err}");
    }

    #[test]
    fn unknown_dataset_and_wrong_modality() {
        let err = load_image_dataset("mnist", Path::new("."), Split::Train).unwrap_err();
        assert!(
            err.to_string().starts_with("unknown dataset \"mnist\", expected one of kmnist, fmnist, cifar10"),
            "{err}"
        );
        let err = load_image_dataset("ag_news", Path::new("."), Split::Train).unwrap_err();
        assert_eq!(err.to_string(), "ag_news is not an image dataset");
        let err = load_text_dataset("cifar10", Path::new("."), Split::Train).unwrap_err();
        assert_eq!(err.to_string(), "cifar10 is not a text dataset");
    }

    #[test]
    fn loads_every_registered_format_from_its_official_layout() {
        let data = tempfile::tempdir().unwrap();
        let root = data.path();
        let write = |rel: &str, bytes: &[u8]| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        };
        write("kmnist/t10k-images-idx3-ubyte", &idx::encode_images(28, 28, &[3; 2 * 784]));
        write("kmnist/t10k-labels-idx1-ubyte", &idx::encode_labels(&[9, 0]));
        let kmnist = load_image_dataset("kmnist", root, Split::Test).unwrap();
        assert_eq!((kmnist.len(), kmnist.class_names[9].as_str()), (2, "wo"));

        let image = [5u8; cifar::IMAGE_BYTES];
        write("cifar100/cifar-100-binary/test.bin", &cifar::encode_record(&[3, 42], &image));
        let cifar100 = load_image_dataset("cifar100", root, Split::Test).unwrap();
        assert_eq!((cifar100.labels[0], cifar100.class_names[42].as_str()), (42, "leopard"));

        write("stl10/stl10_binary/test_X.bin", &[1u8; stl10::IMAGE_BYTES]);
        write("stl10/stl10_binary/test_y.bin", &[10]);
        let stl = load_image_dataset("stl10", root, Split::Test).unwrap();
        assert_eq!((stl.labels[0], stl.class_names[9].as_str()), (9, "truck"));

        folder::tests::write_image(&root.join("imagenet/train/n01/a.JPEG"), 8, 6, 0);
        folder::tests::write_image(&root.join("imagenet/train/n02/b.JPEG"), 5, 5, 0);
        folder::tests::write_image(&root.join("imagenet/val/n02/c.JPEG"), 7, 9, 0);
        let val = load_image_dataset("imagenet", root, Split::Test).unwrap();
        assert_eq!((val.labels.clone(), val.shape(), val.num_classes), (vec![1], [3, 224, 224], 2));

        write("yelp_full/yelp_review_full_csv/test.csv", b"\"5\",\"great\\nfood\"\n\"1\",\"meh\"\n");
        let yelp = load_text_dataset("yelp_full", root, Split::Test).unwrap();
        assert_eq!(yelp.texts, vec!["great\nfood", "meh"]);
        assert_eq!(yelp.labels, vec![4, 0]);
    }
}
