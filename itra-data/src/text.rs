//! The text classification CSVs of Zhang, Zhao and LeCun (2015): AG News, Amazon Review Full,
//! Yahoo! Answers and Yelp Review Full.
//!
//! Each row is a 1-based class index followed by one or more text fields, RFC 4180 quoted
//! (embedded quotes doubled), with newlines inside fields written as a literal backslash-n.
//! An example's text is its fields, unescaped and joined with single spaces; empty fields are
//! skipped so that no text starts or ends with a space.

use std::io::Read;
use std::path::Path;

use crate::read::{checked_label, open};
use crate::{DataError, Split, TextDataset};

/// `train.csv` or `test.csv`.
pub fn file_name(split: Split) -> &'static str {
    match split {
        Split::Train => "train.csv",
        Split::Test => "test.csv",
    }
}

/// Parses a CSV with `text_columns` text fields after the class index. `path` only names the
/// source in errors.
pub fn parse(
    reader: impl Read,
    path: &Path,
    text_columns: usize,
    class_names: &[&str],
) -> Result<TextDataset, DataError> {
    let mut csv = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(reader);
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    let mut row = csv::StringRecord::new();
    let mut index: u64 = 0;
    loop {
        match csv.read_record(&mut row) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map_or(String::new(), |p| format!(" (line {})", p.line()));
                return Err(malformed(path, index, format!("invalid CSV{line}: {e}")));
            }
        }
        let line = row.position().map_or(0, |p| p.line());
        if row.len() != 1 + text_columns {
            return Err(malformed(
                path,
                index,
                format!("line {line}: {} fields, expected {}", row.len(), 1 + text_columns),
            ));
        }
        let label: i64 = row[0]
            .trim()
            .parse()
            .map_err(|_| malformed(path, index, format!("line {line}: class index {:?} is not an integer", &row[0])))?;
        labels.push(checked_label(label, 1, class_names.len(), path, index)?);
        texts.push(join_fields(row.iter().skip(1)));
        index += 1;
    }
    Ok(TextDataset {
        texts,
        labels,
        num_classes: class_names.len(),
        class_names: class_names.iter().map(|s| s.to_string()).collect(),
    })
}

/// Loads `split` from an extracted `*_csv/` folder.
pub fn load_dir(dir: &Path, split: Split, text_columns: usize, class_names: &[&str]) -> Result<TextDataset, DataError> {
    let path = dir.join(file_name(split));
    parse(open(&path)?, &path, text_columns, class_names)
}

fn join_fields<'a>(fields: impl Iterator<Item = &'a str>) -> String {
    fields.filter(|f| !f.is_empty()).map(|f| f.replace("\\n", "\n")).collect::<Vec<_>>().join(" ")
}

fn malformed(path: &Path, record: u64, message: String) -> DataError {
    DataError::MalformedRecord { path: path.to_owned(), record, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AG: &[&str] = &["World", "Sports", "Business", "Sci/Tech"];

    #[test]
    fn parses_quotes_escaped_newlines_and_joins_fields() {
        let csv = concat!(
            "\"3\",\"Wall St. \"\"Bears\"\"\",\"Short-sellers, \\\\n Wall Street\\nsee green.\"\n",
            "\"1\",\"Title, with comma\",\"\"\n",
            "4,plain,\"multi\nline\"\n",
        );
        let data = parse(csv.as_bytes(), Path::new("t.csv"), 2, AG).unwrap();
        assert_eq!(data.labels, vec![2, 0, 3]);
        // python: (title + " " + desc).replace("\\n", "\n")
        assert_eq!(data.texts[0], "Wall St. \"Bears\" Short-sellers, \\\n Wall Street\nsee green.");
        assert_eq!(data.texts[1], "Title, with comma");
        assert_eq!(data.texts[2], "plain multi\nline");
        assert_eq!(data.class_counts(), vec![1, 0, 1, 1]);
    }

    #[test]
    fn malformed_rows_name_file_and_record() {
        let err =
            parse("\"1\",\"a\",\"b\"\n\"2\",\"only title\"\n".as_bytes(), Path::new("test.csv"), 2, AG).unwrap_err();
        assert_eq!(err.to_string(), "test.csv: record 1: line 2: 2 fields, expected 3");
        let err = parse("\"x\",\"a\",\"b\"\n".as_bytes(), Path::new("test.csv"), 2, AG).unwrap_err();
        assert_eq!(err.to_string(), "test.csv: record 0: line 1: class index \"x\" is not an integer");
        let err = parse("\"1\",\"a\",\"b\"\n\"5\",\"a\",\"b\"\n".as_bytes(), Path::new("test.csv"), 2, AG).unwrap_err();
        assert_eq!(err.to_string(), "test.csv: record 1: label 5 out of range, expected 1..=4");
        let err = parse(&b"\"1\",\"a\",\"\xff\"\n"[..], Path::new("test.csv"), 2, AG).unwrap_err();
        assert!(matches!(err, DataError::MalformedRecord { record: 0, .. }), "{err}");
    }
}
