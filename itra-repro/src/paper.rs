//! The numbers the ITRA paper (Li et al., AAAI 2023) reports in its Tables 1-4.
//!
//! The data live in `paper/table{1,2,3,4}.csv` at the workspace root and are embedded at compile
//! time. `paper/README.md` documents the columns, the mapping from the paper's labels to the ids
//! used here, and the ambiguities in the paper. Short version:
//!
//! - `method` is one of `baseline`, `lsr`, `center`, `itra-c`. The tables label the proposed method
//!   "ITRA", but the experiments section says "class-conditional ITRA-c is tested", so its rows are
//!   recorded as `itra-c`. No table reports plain (unconditional) ITRA.
//! - `lambda` is the weight the paper reports for the row (for `lsr` it is the smoothing epsilon);
//!   `None` for the baseline.
//! - `batch_size` is set only in Table 3.
//! - Table 1 does not name its network; its rows use the placeholder model id `small-cnn`.
//! - The paper prints single numbers, never `mean ± std`, so `accuracy_std` and `ce_std` are
//!   always `None` (the CSVs do not have those columns).

use std::fmt;

use serde::Deserialize;

const TABLE1_CSV: &str = include_str!("../../paper/table1.csv");
const TABLE2_CSV: &str = include_str!("../../paper/table2.csv");
const TABLE3_CSV: &str = include_str!("../../paper/table3.csv");
const TABLE4_CSV: &str = include_str!("../../paper/table4.csv");

/// The numbers of the paper's tables that this module holds.
pub const TABLES: [u8; 4] = [1, 2, 3, 4];

/// One row of one of the paper's tables: one (dataset, model, method[, batch size]) cell group.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PaperRow {
    /// The paper's table number, 1..=4.
    pub table: u8,
    /// Dataset id, e.g. `cifar10`, `ag_news`.
    pub dataset: String,
    /// Model id, e.g. `resnet18`, `bert-base`.
    pub model: String,
    /// Method id: `baseline`, `lsr`, `center` or `itra-c`.
    pub method: String,
    /// The lambda the paper reports for the row (LSR: epsilon); `None` where it prints "-".
    pub lambda: Option<f64>,
    /// Training batch size (Table 3 only).
    pub batch_size: Option<u32>,
    /// Top-1 test accuracy in percent.
    pub accuracy: Option<f64>,
    /// Test cross-entropy.
    pub ce: Option<f64>,
    /// Standard deviation of the accuracy; the paper never prints one.
    #[serde(default)]
    pub accuracy_std: Option<f64>,
    /// Standard deviation of the cross-entropy; the paper never prints one.
    #[serde(default)]
    pub ce_std: Option<f64>,
}

/// Why [`table`] could not return a table.
#[derive(Debug)]
pub enum PaperError {
    /// The paper has no table with this number among the embedded ones (valid: 1..=4).
    UnknownTable(u8),
    /// The embedded CSV did not parse.
    Csv {
        /// The table being parsed.
        table: u8,
        /// The underlying parse error.
        source: csv::Error,
    },
    /// A row of `tableN.csv` claims to belong to another table.
    WrongTable {
        /// The table being parsed.
        table: u8,
        /// 0-based index of the offending data row.
        row: usize,
        /// The `table` field found in that row.
        found: u8,
    },
}

impl fmt::Display for PaperError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PaperError::UnknownTable(n) => {
                write!(f, "the paper has no table {n} (embedded tables: 1, 2, 3, 4)")
            }
            PaperError::Csv { table, source } => {
                write!(f, "paper/table{table}.csv does not parse: {source}")
            }
            PaperError::WrongTable { table, row, found } => {
                write!(f, "paper/table{table}.csv: data row {row} has table = {found}, expected {table}")
            }
        }
    }
}

impl std::error::Error for PaperError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PaperError::Csv { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The embedded CSV text of table `n`, if the paper has it.
pub fn csv_text(n: u8) -> Option<&'static str> {
    match n {
        1 => Some(TABLE1_CSV),
        2 => Some(TABLE2_CSV),
        3 => Some(TABLE3_CSV),
        4 => Some(TABLE4_CSV),
        _ => None,
    }
}

/// All rows of the paper's table `n` (1..=4), in the order of the CSV file.
pub fn table(n: u8) -> Result<Vec<PaperRow>, PaperError> {
    let text = csv_text(n).ok_or(PaperError::UnknownTable(n))?;
    let mut reader = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for (i, record) in reader.deserialize::<PaperRow>().enumerate() {
        let row = record.map_err(|source| PaperError::Csv { table: n, source })?;
        if row.table != n {
            return Err(PaperError::WrongTable { table: n, row: i, found: row.table });
        }
        rows.push(row);
    }
    Ok(rows)
}

/// All rows of Tables 1-4.
pub fn all() -> Result<Vec<PaperRow>, PaperError> {
    let mut rows = Vec::new();
    for n in TABLES {
        rows.extend(table(n)?);
    }
    Ok(rows)
}

/// The row of table `table` for (`dataset`, `model`, `method`, `batch_size`).
///
/// With `batch_size: Some(b)` the row must have batch size `b`. With `None` the batch size is
/// treated as unspecified: the row is returned when exactly one row matches the other three keys
/// (this is every row of Tables 1, 2 and 4, and the `baseline`/`center` rows of Table 3);
/// Table 3's `itra-c` rows exist for three batch sizes each, so they need `Some(b)`.
/// Returns `None` for an unknown table or key, or an ambiguous match.
pub fn lookup(table: u8, dataset: &str, model: &str, method: &str, batch_size: Option<u32>) -> Option<PaperRow> {
    let rows = self::table(table).ok()?;
    let mut hits = rows.into_iter().filter(|r| {
        r.dataset == dataset
            && r.model == model
            && r.method == method
            && batch_size.is_none_or(|b| r.batch_size == Some(b))
    });
    let first = hits.next()?;
    if hits.next().is_some() {
        return None;
    }
    Some(first)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use super::*;

    fn set<'a>(rows: &'a [PaperRow], f: impl Fn(&'a PaperRow) -> &'a str) -> BTreeSet<&'a str> {
        rows.iter().map(f).collect()
    }

    fn expect_set(got: BTreeSet<&str>, want: &[&str], what: &str, n: u8) {
        let want: BTreeSet<&str> = want.iter().copied().collect();
        assert_eq!(got, want, "table {n}: set of {what}");
    }

    /// Expected shape of each table, written out from reading the paper.
    struct Shape {
        n: u8,
        rows: usize,
        datasets: &'static [&'static str],
        models: &'static [&'static str],
        methods: &'static [&'static str],
    }

    const SHAPES: [Shape; 4] = [
        // Table 1: KMNIST, FMNIST x {Baseline, LSR, Center, ITRA}; the network is not named
        // (placeholder `small-cnn`). 2 datasets x 1 model x 4 methods = 8 rows.
        Shape {
            n: 1,
            rows: 8,
            datasets: &["kmnist", "fmnist"],
            models: &["small-cnn"],
            methods: &["baseline", "lsr", "center", "itra-c"],
        },
        // Table 2: {Resnet18, VGG13, MobileV2} x {Baseline, LSR, Center, ITRA} on
        // CIFAR10, STL10, CIFAR100. 3 datasets x 3 models x 4 methods = 36 rows.
        Shape {
            n: 2,
            rows: 36,
            datasets: &["cifar10", "stl10", "cifar100"],
            models: &["resnet18", "vgg13", "mobilenetv2"],
            methods: &["baseline", "lsr", "center", "itra-c"],
        },
        // Table 3: Resnet-101 on CIFAR-100 and Resnet-18 on ImageNet; Baseline (BS 200 / 256),
        // Center lambda=0.05 (BS 200 / 256), ITRA lambda=0.6 at BS 50,100,200 / 64,128,256.
        // 2 datasets x (1 + 1 + 3) rows = 10 rows.
        Shape {
            n: 3,
            rows: 10,
            datasets: &["cifar100", "imagenet"],
            models: &["resnet101", "resnet18"],
            methods: &["baseline", "center", "itra-c"],
        },
        // Table 4: {Bert-base, DistillBert, XLNet} x {Baseline, Center, ITRA} on AG's News,
        // Amazon Full, Yahoo Answers, Yelp Full (no LSR). 4 datasets x 3 models x 3 methods = 36.
        Shape {
            n: 4,
            rows: 36,
            datasets: &["ag_news", "amazon_full", "yahoo_answers", "yelp_full"],
            models: &["bert-base", "distilbert", "xlnet"],
            methods: &["baseline", "center", "itra-c"],
        },
    ];

    #[test]
    fn tables_parse_with_the_papers_shape() {
        for s in &SHAPES {
            let rows = table(s.n).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(rows.len(), s.rows, "table {}: row count", s.n);
            expect_set(set(&rows, |r| &r.dataset), s.datasets, "datasets", s.n);
            expect_set(set(&rows, |r| &r.model), s.models, "models", s.n);
            expect_set(set(&rows, |r| &r.method), s.methods, "methods", s.n);
            assert!(rows.iter().all(|r| r.table == s.n));
        }
        assert_eq!(all().unwrap().len(), 8 + 36 + 10 + 36);
    }

    #[test]
    fn values_are_present_and_in_range() {
        for n in TABLES {
            for r in table(n).unwrap() {
                let acc = r.accuracy.unwrap_or_else(|| panic!("no accuracy: {r:?}"));
                assert!((0.0..=100.0).contains(&acc), "accuracy out of range: {r:?}");
                // Every cell of Tables 1-4 also prints a CE value.
                let ce = r.ce.unwrap_or_else(|| panic!("no CE: {r:?}"));
                assert!(ce > 0.0, "CE not positive: {r:?}");
                // The paper prints no standard deviations.
                assert_eq!((r.accuracy_std, r.ce_std), (None, None), "{r:?}");
                // Baselines have no lambda ("-"); every other method reports one.
                assert_eq!(r.lambda.is_none(), r.method == "baseline", "{r:?}");
                if let Some(l) = r.lambda {
                    assert!(l > 0.0 && l <= 1.0, "lambda out of range: {r:?}");
                }
                // Only Table 3 has batch sizes.
                assert_eq!(r.batch_size.is_some(), n == 3, "{r:?}");
            }
        }
    }

    #[test]
    fn keys_are_unique_per_table() {
        for n in TABLES {
            let rows = table(n).unwrap();
            let mut seen = HashSet::new();
            for r in &rows {
                let key = (&r.dataset, &r.model, &r.method, r.batch_size);
                assert!(seen.insert(key), "table {n}: duplicate key {key:?}");
            }
        }
    }

    #[test]
    fn unknown_tables_are_errors() {
        for n in [0, 5, 255] {
            let err = table(n).unwrap_err();
            assert!(matches!(err, PaperError::UnknownTable(m) if m == n));
            assert!(err.to_string().contains("no table"));
        }
        assert!(lookup(5, "cifar10", "resnet18", "baseline", None).is_none());
    }

    #[test]
    fn lookup_finds_printed_cells() {
        // Table 1, KMNIST, ITRA: lambda 0.8, 95.79, 0.170.
        let r = lookup(1, "kmnist", "small-cnn", "itra-c", None).unwrap();
        assert_eq!((r.lambda, r.accuracy, r.ce), (Some(0.8), Some(95.79), Some(0.170)));
        // Table 2, MobileV2 / CIFAR10 / ITRA: lambda 1.0, 89.37, 0.43.
        let r = lookup(2, "cifar10", "mobilenetv2", "itra-c", None).unwrap();
        assert_eq!((r.lambda, r.accuracy, r.ce), (Some(1.0), Some(89.37), Some(0.43)));
        // Table 2, VGG13 / STL10 / LSR (epsilon 0.1): 74.50, 1.51.
        let r = lookup(2, "stl10", "vgg13", "lsr", None).unwrap();
        assert_eq!((r.lambda, r.accuracy, r.ce), (Some(0.1), Some(74.50), Some(1.51)));
        // Table 3: ITRA rows need the batch size; baseline is unique without it.
        assert!(lookup(3, "cifar100", "resnet101", "itra-c", None).is_none());
        let r = lookup(3, "cifar100", "resnet101", "itra-c", Some(100)).unwrap();
        assert_eq!((r.lambda, r.accuracy, r.ce), (Some(0.6), Some(77.35), Some(1.01)));
        let r = lookup(3, "imagenet", "resnet18", "baseline", None).unwrap();
        assert_eq!((r.batch_size, r.accuracy, r.ce), (Some(256), Some(50.01), Some(2.24)));
        assert!(lookup(3, "imagenet", "resnet18", "baseline", Some(64)).is_none());
        // Table 4, XLNet / Yelp Full / ITRA: lambda 1.0, 63.32, 1.08.
        let r = lookup(4, "yelp_full", "xlnet", "itra-c", None).unwrap();
        assert_eq!((r.lambda, r.accuracy, r.ce), (Some(1.0), Some(63.32), Some(1.08)));
        // No LSR in Table 4, no plain `itra` anywhere.
        assert!(lookup(4, "ag_news", "bert-base", "lsr", None).is_none());
        assert!(lookup(2, "cifar10", "resnet18", "itra", None).is_none());
    }

    fn acc(t: u8, d: &str, m: &str, method: &str, bs: Option<u32>) -> f64 {
        lookup(t, d, m, method, bs).unwrap().accuracy.unwrap()
    }

    fn ce(t: u8, d: &str, m: &str, method: &str) -> f64 {
        lookup(t, d, m, method, None).unwrap().ce.unwrap()
    }

    /// The paper's running text quotes numbers derived from Tables 2 and 4; they must follow from
    /// the recorded cells (an independent check against transcription errors).
    #[test]
    fn text_claims_follow_from_the_tables() {
        // "for the relatively more challenging ... STL10 data set, ITRA outperforms the baseline
        // with a significant margin, i.e., Resnet 1.9%, VGG13 1.4% and MobilenetV2 2.9%."
        for (model, claim) in [("resnet18", 1.9), ("vgg13", 1.4), ("mobilenetv2", 2.9)] {
            let gain = acc(2, "stl10", model, "itra-c", None) - acc(2, "stl10", model, "baseline", None);
            assert!((gain - claim).abs() < 0.05, "{model}: {gain} vs {claim}");
        }
        // "for Bert-base, DistillBert, XLNet models, ITRA achieves an average accuracy improvement
        // of 1.3%, 0.3%, 0.5%, respectively, and an average CE value improvement of 22.4%, 16.1%,
        // and 15.6%" (relative improvements, averaged over the four datasets).
        let datasets = ["ag_news", "amazon_full", "yahoo_answers", "yelp_full"];
        for (model, acc_claim, ce_claim) in [("bert-base", 1.3, 22.4), ("distilbert", 0.3, 16.1), ("xlnet", 0.5, 15.6)]
        {
            let mut acc_gain = 0.0;
            let mut ce_gain = 0.0;
            for d in datasets {
                let (ab, ai) = (acc(4, d, model, "baseline", None), acc(4, d, model, "itra-c", None));
                let (cb, ci) = (ce(4, d, model, "baseline"), ce(4, d, model, "itra-c"));
                acc_gain += 100.0 * (ai - ab) / ab / 4.0;
                ce_gain += 100.0 * (cb - ci) / cb / 4.0;
            }
            assert!((acc_gain - acc_claim).abs() < 0.05, "{model}: {acc_gain} vs {acc_claim}");
            assert!((ce_gain - ce_claim).abs() < 0.05, "{model}: {ce_gain} vs {ce_claim}");
        }
        // "Table 3 illustrates that ITRA achieves a better performance even with 1/4 batch size
        // compared to the baseline".
        assert!(
            acc(3, "cifar100", "resnet101", "itra-c", Some(50)) > acc(3, "cifar100", "resnet101", "baseline", None)
        );
        assert!(acc(3, "imagenet", "resnet18", "itra-c", Some(64)) > acc(3, "imagenet", "resnet18", "baseline", None));
    }

    #[test]
    fn csv_headers_are_identical() {
        let header = TABLE1_CSV.lines().next().unwrap();
        assert_eq!(header, "table,dataset,model,method,lambda,batch_size,accuracy,ce");
        for n in TABLES {
            assert_eq!(csv_text(n).unwrap().lines().next().unwrap(), header, "table {n}");
        }
    }
}
