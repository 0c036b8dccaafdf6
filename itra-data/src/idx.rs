//! The IDX format of MNIST and its drop-in replacements (Fashion-MNIST, KMNIST).
//!
//! A big-endian header (magic `0x00000803` for `u8` images with three dimensions, `0x00000801`
//! for `u8` labels with one) followed by the raw bytes. Files may be gzip-compressed; that is
//! detected from the gzip magic `1f 8b`, not from the file name.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::read::{checked_labels, decompressed, open, read_up_to};
use crate::{DataError, ImageDataset, Split};

pub const IMAGES_MAGIC: u32 = 0x0000_0803;
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Images as stored in one IDX file: `count` images of `rows x cols` bytes, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

/// The four file names of an MNIST-style dataset for `split`, gzip-compressed form:
/// `(images, labels)`. The same names without `.gz` are accepted too.
pub fn file_names(split: Split) -> (&'static str, &'static str) {
    match split {
        Split::Train => ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        Split::Test => ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    }
}

/// Parses an IDX image file, gzip-compressed or raw. `path` only names the source in errors.
pub fn parse_images(reader: impl Read, path: &Path) -> Result<IdxImages, DataError> {
    let mut reader = decompressed(reader, path)?;
    let header = read_header(&mut reader, path, 16)?;
    check_magic(&header, IMAGES_MAGIC, path)?;
    let count = be_u32(&header, 4);
    let rows = be_u32(&header, 8);
    let cols = be_u32(&header, 12);
    for (offset, name, value) in [(8, "rows", rows), (12, "cols", cols)] {
        if value == 0 {
            return Err(DataError::BadHeader {
                path: path.to_owned(),
                offset,
                message: format!("{name} is 0, expected a positive image dimension"),
            });
        }
    }
    let expected = u64::from(count)
        .checked_mul(u64::from(rows))
        .and_then(|n| n.checked_mul(u64::from(cols)))
        .ok_or_else(|| DataError::BadHeader {
            path: path.to_owned(),
            offset: 4,
            message: format!("{count} x {rows} x {cols} bytes overflows a 64-bit length"),
        })?;
    let pixels = read_payload(&mut reader, path, expected)?;
    Ok(IdxImages { count: count as usize, rows: rows as usize, cols: cols as usize, pixels })
}

/// Parses an IDX label file, gzip-compressed or raw. `path` only names the source in errors.
pub fn parse_labels(reader: impl Read, path: &Path) -> Result<Vec<u8>, DataError> {
    let mut reader = decompressed(reader, path)?;
    let header = read_header(&mut reader, path, 8)?;
    check_magic(&header, LABELS_MAGIC, path)?;
    let count = be_u32(&header, 4);
    read_payload(&mut reader, path, u64::from(count))
}

/// Loads one split from `dir`, which holds the files named by [`file_names`] (with or without
/// `.gz`). Checks the image shape against `shape` (`[1, rows, cols]`), that image and label
/// counts agree and that every label is below `class_names.len()`.
pub fn load_dir(dir: &Path, split: Split, shape: [usize; 3], class_names: &[&str]) -> Result<ImageDataset, DataError> {
    let (images_name, labels_name) = file_names(split);
    let images_path = find_file(dir, images_name).unwrap_or_else(|| dir.join(images_name));
    let labels_path = find_file(dir, labels_name).unwrap_or_else(|| dir.join(labels_name));
    let images = parse_images(open(&images_path)?, &images_path)?;
    let labels = parse_labels(open(&labels_path)?, &labels_path)?;
    let found = [1, images.rows, images.cols];
    if found != shape {
        return Err(DataError::ShapeMismatch { path: images_path, found, expected: shape });
    }
    if images.count != labels.len() {
        return Err(DataError::CountMismatch {
            images_path,
            images: images.count as u64,
            labels_path,
            labels: labels.len() as u64,
        });
    }
    let labels = checked_labels(labels.iter().map(|&l| i64::from(l)), 0, class_names.len(), &labels_path)?;
    Ok(ImageDataset {
        images: images.pixels,
        labels,
        channels: 1,
        height: images.rows,
        width: images.cols,
        num_classes: class_names.len(),
        class_names: class_names.iter().map(|s| s.to_string()).collect(),
    })
}

/// `dir/name` if it exists, else `dir/name` without its `.gz` suffix if that exists.
pub fn find_file(dir: &Path, gz_name: &str) -> Option<PathBuf> {
    let gz = dir.join(gz_name);
    if gz.is_file() {
        return Some(gz);
    }
    let raw = dir.join(gz_name.strip_suffix(".gz").unwrap_or(gz_name));
    raw.is_file().then_some(raw)
}

fn read_header(reader: &mut impl Read, path: &Path, len: usize) -> Result<Vec<u8>, DataError> {
    let mut header = vec![0u8; len];
    let got = read_up_to(reader, &mut header).map_err(|e| DataError::io(path, e))?;
    if got < len {
        return Err(DataError::BadHeader {
            path: path.to_owned(),
            offset: got as u64,
            message: format!("data ends after {got} bytes, expected a {len}-byte header"),
        });
    }
    Ok(header)
}

fn check_magic(header: &[u8], expected: u32, path: &Path) -> Result<(), DataError> {
    let found = be_u32(header, 0);
    if found == expected {
        Ok(())
    } else {
        Err(DataError::BadMagic { path: path.to_owned(), offset: 0, found, expected })
    }
}

fn be_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_be_bytes([bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]])
}

/// Reads exactly `expected` bytes and checks that nothing follows them.
fn read_payload(reader: &mut impl Read, path: &Path, expected: u64) -> Result<Vec<u8>, DataError> {
    // Cap the up-front allocation: a corrupt header must not reserve terabytes.
    let mut payload = Vec::with_capacity(expected.min(1 << 26) as usize);
    reader.take(expected).read_to_end(&mut payload).map_err(|e| DataError::io(path, e))?;
    if (payload.len() as u64) < expected {
        return Err(DataError::Truncated { path: path.to_owned(), expected, actual: payload.len() as u64 });
    }
    // Reading past the end also makes a gzip decoder check its CRC trailer.
    let mut extra = [0u8; 1];
    if read_up_to(reader, &mut extra).map_err(|e| DataError::io(path, e))? > 0 {
        return Err(DataError::TrailingData { path: path.to_owned(), expected });
    }
    Ok(payload)
}

/// Serialises images in the IDX format (uncompressed); fixtures and tests use it.
pub fn encode_images(rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let count = pixels.len() as u32 / (rows * cols);
    let mut out = Vec::with_capacity(16 + pixels.len());
    for word in [IMAGES_MAGIC, count, rows, cols] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// Serialises labels in the IDX format (uncompressed); fixtures and tests use it.
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn name() -> &'static Path {
        Path::new("fixture-idx")
    }

    #[test]
    fn parses_raw_and_gzip() {
        let pixels: Vec<u8> = (0..2 * 3 * 2).collect();
        let raw = encode_images(3, 2, &pixels);
        for bytes in [raw.clone(), gzip(&raw)] {
            let images = parse_images(&bytes[..], name()).unwrap();
            assert_eq!((images.count, images.rows, images.cols), (2, 3, 2));
            assert_eq!(images.pixels, pixels);
        }
        let labels = encode_labels(&[3, 1, 4]);
        assert_eq!(parse_labels(&gzip(&labels)[..], name()).unwrap(), vec![3, 1, 4]);
    }

    #[test]
    fn wrong_magic_names_both_values() {
        let labels = encode_labels(&[1; 8]);
        let err = parse_images(&labels[..], name()).unwrap_err();
        assert!(matches!(err, DataError::BadMagic { found: LABELS_MAGIC, expected: IMAGES_MAGIC, .. }));
        assert_eq!(err.to_string(), "fixture-idx: bad magic number 0x00000801 at offset 0, expected 0x00000803");
    }

    #[test]
    fn truncated_and_trailing_payloads() {
        let raw = encode_images(2, 2, &[7; 8]);
        let err = parse_images(&raw[..raw.len() - 3], name()).unwrap_err();
        assert!(matches!(err, DataError::Truncated { expected: 8, actual: 5, .. }), "{err}");
        assert_eq!(err.to_string(), "fixture-idx: truncated payload: expected 8 bytes after the header, got 5");
        let err = parse_images(&gzip(&raw[..raw.len() - 3])[..], name()).unwrap_err();
        assert!(matches!(err, DataError::Truncated { expected: 8, actual: 5, .. }), "{err}");
        let mut long = raw.clone();
        long.push(0);
        let err = parse_images(&long[..], name()).unwrap_err();
        assert!(matches!(err, DataError::TrailingData { expected: 8, .. }), "{err}");
    }

    #[test]
    fn short_header_zero_dims_and_corrupt_gzip_are_errors() {
        let err = parse_labels(&[0, 0, 8][..], name()).unwrap_err();
        assert!(matches!(err, DataError::BadHeader { offset: 3, .. }), "{err}");
        let err = parse_images(&encode_images(1, 1, &[])[..12], name()).unwrap_err();
        assert!(matches!(err, DataError::BadHeader { .. }), "{err}");
        let mut zero_rows = encode_images(1, 1, &[]);
        zero_rows[8..12].copy_from_slice(&0u32.to_be_bytes());
        let err = parse_images(&zero_rows[..], name()).unwrap_err();
        assert!(matches!(err, DataError::BadHeader { offset: 8, .. }), "{err}");
        // A header promising ~2^64 bytes must fail cleanly, not allocate.
        let mut huge = encode_images(1, 1, &[]);
        huge[4..16].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff]);
        assert!(matches!(parse_images(&huge[..], name()), Err(DataError::Truncated { .. })));
        huge[4..16].copy_from_slice(&[0xff; 12]);
        assert!(matches!(parse_images(&huge[..], name()), Err(DataError::BadHeader { offset: 4, .. })));
        let mut corrupt = gzip(&encode_labels(&[1, 2, 3]));
        let crc_at = corrupt.len() - 8;
        corrupt[crc_at] ^= 0xff;
        assert!(matches!(parse_labels(&corrupt[..], name()), Err(DataError::Io { .. })));
    }

    #[test]
    fn load_dir_checks_counts_labels_and_shape() {
        let dir = tempfile::tempdir().unwrap();
        let classes = ["a", "b", "c"];
        let write = |name: &str, bytes: Vec<u8>| std::fs::write(dir.path().join(name), bytes).unwrap();
        write("train-images-idx3-ubyte.gz", gzip(&encode_images(2, 2, &[1; 12])));
        write("train-labels-idx1-ubyte", encode_labels(&[0, 2, 1]));
        let data = load_dir(dir.path(), Split::Train, [1, 2, 2], &classes).unwrap();
        assert_eq!(data.len(), 3);
        assert_eq!(data.labels, vec![0, 2, 1]);
        assert_eq!(data.class_names, vec!["a", "b", "c"]);

        let err = load_dir(dir.path(), Split::Train, [1, 28, 28], &classes).unwrap_err();
        assert!(matches!(err, DataError::ShapeMismatch { found: [1, 2, 2], .. }), "{err}");

        write("train-labels-idx1-ubyte", encode_labels(&[0, 3, 1]));
        let err = load_dir(dir.path(), Split::Train, [1, 2, 2], &classes).unwrap_err();
        assert!(matches!(err, DataError::LabelOutOfRange { record: 1, label: 3, min: 0, max: 2, .. }));
        assert!(
            err.to_string().ends_with("train-labels-idx1-ubyte: record 1: label 3 out of range, expected 0..=2"),
            "{err}"
        );

        write("train-labels-idx1-ubyte", encode_labels(&[0, 1]));
        let err = load_dir(dir.path(), Split::Train, [1, 2, 2], &classes).unwrap_err();
        assert!(matches!(err, DataError::CountMismatch { images: 3, labels: 2, .. }), "{err}");
    }
}
