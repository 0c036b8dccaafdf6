//! Reading helpers shared by the parsers.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::DataError;

/// Converts raw labels, numbered from `first`, to 0-based `u32` class indices, checking each
/// against `num_classes`.
pub(crate) fn checked_labels(
    labels: impl IntoIterator<Item = i64>,
    first: i64,
    num_classes: usize,
    path: &Path,
) -> Result<Vec<u32>, DataError> {
    labels
        .into_iter()
        .enumerate()
        .map(|(record, label)| checked_label(label, first, num_classes, path, record as u64))
        .collect()
}

/// One raw label, numbered from `first`, as a 0-based class index.
pub(crate) fn checked_label(
    label: i64,
    first: i64,
    num_classes: usize,
    path: &Path,
    record: u64,
) -> Result<u32, DataError> {
    let max = first + num_classes as i64 - 1;
    if (first..=max).contains(&label) {
        Ok((label - first) as u32)
    } else {
        Err(DataError::LabelOutOfRange { path: path.to_owned(), record, label, min: first, max })
    }
}

/// Opens `path` for buffered reading.
pub(crate) fn open(path: &Path) -> Result<BufReader<File>, DataError> {
    File::open(path).map(BufReader::new).map_err(|e| DataError::io(path, e))
}

/// Wraps `reader` in a gzip decoder if its first two bytes are the gzip magic.
pub(crate) fn decompressed<'a>(mut reader: impl Read + 'a, path: &Path) -> Result<Box<dyn Read + 'a>, DataError> {
    let mut head = [0u8; 2];
    let got = read_up_to(&mut reader, &mut head).map_err(|e| DataError::io(path, e))?;
    let rejoined = io::Cursor::new(head[..got].to_vec()).chain(reader);
    if head[..got] == [0x1f, 0x8b] {
        // Multi-member aware: `gzip` may write several members and all must be read.
        Ok(Box::new(flate2::read::MultiGzDecoder::new(rejoined)))
    } else {
        Ok(Box::new(rejoined))
    }
}

pub(crate) fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
