//! The STL-10 binary version (`stl10_binary.tar.gz`).
//!
//! `<split>_X.bin` holds 96x96 colour images as raw bytes, each channel stored column-major
//! (the layout of MATLAB's arrays), which is transposed here to row-major CHW.
//! `<split>_y.bin` holds one label byte per image, numbered 1..=10, mapped here to 0..=9.

use std::io::Read;
use std::path::Path;

use crate::read::{checked_label, open, read_up_to};
use crate::{DataError, ImageDataset, Split};

pub const SIDE: usize = 96;
pub const IMAGE_BYTES: usize = 3 * SIDE * SIDE;
pub const NUM_CLASSES: usize = 10;

/// `(images, labels)` file names of `split` inside `stl10_binary/`.
pub fn file_names(split: Split) -> (&'static str, &'static str) {
    match split {
        Split::Train => ("train_X.bin", "train_y.bin"),
        Split::Test => ("test_X.bin", "test_y.bin"),
    }
}

/// Parses an `*_X.bin` file into row-major CHW images. `path` only names the source in errors.
pub fn parse_images(reader: impl Read, path: &Path) -> Result<Vec<u8>, DataError> {
    let mut reader = reader;
    let mut column_major = vec![0u8; IMAGE_BYTES];
    let mut images = Vec::new();
    let mut count: u64 = 0;
    loop {
        let got = read_up_to(&mut reader, &mut column_major).map_err(|e| DataError::io(path, e))?;
        if got == 0 {
            return Ok(images);
        }
        if got < IMAGE_BYTES {
            return Err(DataError::RecordLength {
                path: path.to_owned(),
                actual: count * IMAGE_BYTES as u64 + got as u64,
                record_len: IMAGE_BYTES as u64,
            });
        }
        for plane in column_major.chunks_exact(SIDE * SIDE) {
            // plane[col * SIDE + row] holds pixel (row, col).
            for row in 0..SIDE {
                images.extend((0..SIDE).map(|col| plane[col * SIDE + row]));
            }
        }
        count += 1;
    }
}

/// Parses a `*_y.bin` file into 0-based labels. `path` only names the source in errors.
pub fn parse_labels(reader: impl Read, path: &Path) -> Result<Vec<u32>, DataError> {
    let mut raw = Vec::new();
    let mut reader = reader;
    reader.read_to_end(&mut raw).map_err(|e| DataError::io(path, e))?;
    raw.iter()
        .enumerate()
        .map(|(record, &label)| checked_label(i64::from(label), 1, NUM_CLASSES, path, record as u64))
        .collect()
}

/// Loads `split` from an extracted `stl10_binary/` folder.
pub fn load_dir(dir: &Path, split: Split, class_names: &[&str]) -> Result<ImageDataset, DataError> {
    let (images_name, labels_name) = file_names(split);
    let images_path = dir.join(images_name);
    let labels_path = dir.join(labels_name);
    let images = parse_images(open(&images_path)?, &images_path)?;
    let labels = parse_labels(open(&labels_path)?, &labels_path)?;
    let image_count = (images.len() / IMAGE_BYTES) as u64;
    if image_count != labels.len() as u64 {
        return Err(DataError::CountMismatch {
            images_path,
            images: image_count,
            labels_path,
            labels: labels.len() as u64,
        });
    }
    Ok(ImageDataset {
        images,
        labels,
        channels: 3,
        height: SIDE,
        width: SIDE,
        num_classes: NUM_CLASSES,
        class_names: class_names.iter().map(|s| s.to_string()).collect(),
    })
}

/// Serialises CHW row-major images in the STL-10 column-major layout, for fixtures.
pub fn encode_images(chw_images: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chw_images.len());
    for plane in chw_images.chunks_exact(SIDE * SIDE) {
        for col in 0..SIDE {
            out.extend((0..SIDE).map(|row| plane[row * SIDE + col]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_major_planes_become_row_major() {
        // numpy: x = np.fromfile(f, np.uint8).reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)
        let mut file = vec![0u8; IMAGE_BYTES];
        file[SIDE * SIDE + 5 * SIDE + 2] = 200; // green plane, column 5, row 2
        let images = parse_images(&file[..], Path::new("x")).unwrap();
        assert_eq!(images[SIDE * SIDE + 2 * SIDE + 5], 200); // green plane, row 2, column 5
        assert_eq!(images.iter().filter(|&&b| b != 0).count(), 1);

        let chw: Vec<u8> = (0..2 * IMAGE_BYTES).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(parse_images(&encode_images(&chw)[..], Path::new("x")).unwrap(), chw);
    }

    #[test]
    fn labels_are_one_based_and_checked() {
        assert_eq!(parse_labels(&[1, 10, 3][..], Path::new("y")).unwrap(), vec![0, 9, 2]);
        let err = parse_labels(&[1, 0][..], Path::new("train_y.bin")).unwrap_err();
        assert_eq!(err.to_string(), "train_y.bin: record 1: label 0 out of range, expected 1..=10");
        let err = parse_images(&[0u8; IMAGE_BYTES + 1][..], Path::new("x")).unwrap_err();
        assert!(matches!(err, DataError::RecordLength { actual, .. } if actual == IMAGE_BYTES as u64 + 1));
    }

    #[test]
    fn load_dir_checks_counts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test_X.bin"), vec![9u8; 2 * IMAGE_BYTES]).unwrap();
        std::fs::write(dir.path().join("test_y.bin"), [4u8, 5]).unwrap();
        let data = load_dir(dir.path(), Split::Test, &["c"; 10]).unwrap();
        assert_eq!((data.len(), data.shape()), (2, [3, 96, 96]));
        assert_eq!(data.labels, vec![3, 4]);
        std::fs::write(dir.path().join("test_y.bin"), [4u8]).unwrap();
        let err = load_dir(dir.path(), Split::Test, &["c"; 10]).unwrap_err();
        assert!(matches!(err, DataError::CountMismatch { images: 2, labels: 1, .. }), "{err}");
    }
}
