//! The CIFAR-10 and CIFAR-100 binary versions (`cifar-10-binary.tar.gz`,
//! `cifar-100-binary.tar.gz`).
//!
//! Each record is the label byte(s) followed by a 32x32 colour image as 3072 bytes: the red
//! plane, then green, then blue, each row-major, which is already CHW. CIFAR-10 records carry one
//! label byte; CIFAR-100 records carry the coarse (superclass) label, then the fine label, which
//! is the class used here.

use std::io::Read;
use std::path::Path;

use crate::read::{checked_label, open, read_up_to};
use crate::{DataError, ImageDataset, Split};

pub const IMAGE_BYTES: usize = 3 * 32 * 32;

/// Which of the two CIFAR binary formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Cifar10,
    Cifar100,
}

impl Variant {
    /// Bytes per record: label byte(s) plus the image.
    pub fn record_len(self) -> usize {
        self.label_bytes() + IMAGE_BYTES
    }

    fn label_bytes(self) -> usize {
        match self {
            Variant::Cifar10 => 1,
            Variant::Cifar100 => 2,
        }
    }

    pub fn num_classes(self) -> usize {
        match self {
            Variant::Cifar10 => 10,
            Variant::Cifar100 => 100,
        }
    }

    /// Batch files of `split`, relative to the extracted folder.
    pub fn file_names(self, split: Split) -> &'static [&'static str] {
        match (self, split) {
            (Variant::Cifar10, Split::Train) => {
                &["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"]
            }
            (Variant::Cifar10, Split::Test) => &["test_batch.bin"],
            (Variant::Cifar100, Split::Train) => &["train.bin"],
            (Variant::Cifar100, Split::Test) => &["test.bin"],
        }
    }
}

/// Parses one CIFAR binary file, appending its images (CHW) and class labels. `path` only names
/// the source in errors.
pub fn parse(
    reader: impl Read,
    path: &Path,
    variant: Variant,
    images: &mut Vec<u8>,
    labels: &mut Vec<u32>,
) -> Result<(), DataError> {
    let mut reader = reader;
    let record_len = variant.record_len();
    let mut record = vec![0u8; record_len];
    let mut index: u64 = 0;
    loop {
        let got = read_up_to(&mut reader, &mut record).map_err(|e| DataError::io(path, e))?;
        if got == 0 {
            return Ok(());
        }
        if got < record_len {
            return Err(DataError::RecordLength {
                path: path.to_owned(),
                actual: index * record_len as u64 + got as u64,
                record_len: record_len as u64,
            });
        }
        let label = record[variant.label_bytes() - 1];
        if variant == Variant::Cifar100 && record[0] >= 20 {
            return Err(DataError::LabelOutOfRange {
                path: path.to_owned(),
                record: index,
                label: i64::from(record[0]),
                min: 0,
                max: 19,
            });
        }
        labels.push(checked_label(i64::from(label), 0, variant.num_classes(), path, index)?);
        images.extend_from_slice(&record[variant.label_bytes()..]);
        index += 1;
    }
}

/// Loads `split` from an extracted `cifar-10-batches-bin/` or `cifar-100-binary/` folder.
pub fn load_dir(dir: &Path, split: Split, variant: Variant, class_names: &[&str]) -> Result<ImageDataset, DataError> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for name in variant.file_names(split) {
        let path = dir.join(name);
        parse(open(&path)?, &path, variant, &mut images, &mut labels)?;
    }
    Ok(ImageDataset {
        images,
        labels,
        channels: 3,
        height: 32,
        width: 32,
        num_classes: variant.num_classes(),
        class_names: class_names.iter().map(|s| s.to_string()).collect(),
    })
}

/// One record in the binary format, for fixtures: `labels` is `[label]` for CIFAR-10 and
/// `[coarse, fine]` for CIFAR-100.
pub fn encode_record(labels: &[u8], image: &[u8; IMAGE_BYTES]) -> Vec<u8> {
    let mut record = labels.to_vec();
    record.extend_from_slice(image);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(seed: u8) -> [u8; IMAGE_BYTES] {
        std::array::from_fn(|i| (i as u8).wrapping_mul(seed))
    }

    #[test]
    fn parses_cifar10_and_cifar100_records() {
        let bytes = [encode_record(&[7], &image(1)), encode_record(&[0], &image(3))].concat();
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        parse(&bytes[..], Path::new("b"), Variant::Cifar10, &mut images, &mut labels).unwrap();
        assert_eq!(labels, vec![7, 0]);
        assert_eq!(&images[IMAGE_BYTES..], &image(3));
        // Red plane first: byte 1024 of the image is the first green pixel.
        assert_eq!(images[1024], image(1)[1024]);

        let bytes = [encode_record(&[19, 99], &image(2)), encode_record(&[4, 30], &image(5))].concat();
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        parse(&bytes[..], Path::new("b"), Variant::Cifar100, &mut images, &mut labels).unwrap();
        assert_eq!(labels, vec![99, 30], "the fine label is the class");
        assert_eq!(&images[..IMAGE_BYTES], &image(2));
    }

    #[test]
    fn truncated_record_and_bad_labels_are_errors() {
        let bytes = [encode_record(&[1], &image(1)), vec![2; 100]].concat();
        let err = parse(&bytes[..], Path::new("test_batch.bin"), Variant::Cifar10, &mut Vec::new(), &mut Vec::new())
            .unwrap_err();
        assert_eq!(err.to_string(), "test_batch.bin: length 3173 bytes is not a whole number of 3073-byte records");
        let bytes = [encode_record(&[1], &image(1)), encode_record(&[10], &image(1))].concat();
        let err = parse(&bytes[..], Path::new("b"), Variant::Cifar10, &mut Vec::new(), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, DataError::LabelOutOfRange { record: 1, label: 10, max: 9, .. }), "{err}");
        let bytes = encode_record(&[20, 1], &image(1));
        let err = parse(&bytes[..], Path::new("b"), Variant::Cifar100, &mut Vec::new(), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, DataError::LabelOutOfRange { record: 0, label: 20, max: 19, .. }), "{err}");
    }

    #[test]
    fn load_dir_reads_all_batches() {
        let dir = tempfile::tempdir().unwrap();
        for (i, name) in Variant::Cifar10.file_names(Split::Train).iter().enumerate() {
            std::fs::write(dir.path().join(name), encode_record(&[i as u8], &image(i as u8))).unwrap();
        }
        let data = load_dir(dir.path(), Split::Train, Variant::Cifar10, &["c"; 10]).unwrap();
        assert_eq!(data.labels, vec![0, 1, 2, 3, 4]);
        assert_eq!(data.image(4), &image(4));
        let err = load_dir(dir.path(), Split::Test, Variant::Cifar10, &["c"; 10]).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }) && err.to_string().contains("test_batch.bin"), "{err}");
    }
}
