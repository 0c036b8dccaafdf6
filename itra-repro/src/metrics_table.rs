//! A run's per-epoch metrics as a Parquet table (`metrics.parquet`, written with `polars`),
//! beside the JSON lines of `metrics.jsonl`: one row per epoch, one column per
//! [`EpochMetrics`] field except the distance trace (which stays in the JSON lines).

use std::path::Path;

use anyhow::{Context, Result};
use polars::prelude::{Column, DataFrame, ParquetWriter};

use crate::atomic::write_atomic;
use crate::metrics::EpochMetrics;

/// The file name inside a run directory.
pub const FILE: &str = "metrics.parquet";

/// `history` as a data frame, one row per epoch.
pub fn frame(history: &[EpochMetrics]) -> Result<DataFrame> {
    let float =
        |name: &str, f: fn(&EpochMetrics) -> f64| Column::new(name.into(), history.iter().map(f).collect::<Vec<_>>());
    let optional = |name: &str, f: fn(&EpochMetrics) -> Option<f64>| {
        Column::new(name.into(), history.iter().map(f).collect::<Vec<_>>())
    };
    let columns = vec![
        Column::new("epoch".into(), history.iter().map(|m| m.epoch as u32).collect::<Vec<_>>()),
        float("train_loss", |m| m.train_loss),
        float("train_ce", |m| m.train_ce),
        optional("train_regularizer", |m| m.train_regularizer),
        optional("sigma", |m| m.sigma),
        optional("distance_ratio", |m| m.distance_ratio),
        optional("val_accuracy", |m| m.val_accuracy),
        optional("val_ce", |m| m.val_ce),
        float("test_accuracy", |m| m.test_accuracy),
        float("test_ce", |m| m.test_ce),
        float("images_per_second", |m| m.images_per_second),
        float("train_seconds", |m| m.train_seconds),
        optional("dead_unit_fraction", |m| m.dead_unit_fraction),
        optional("zero_activation_fraction", |m| m.zero_activation_fraction),
        optional("feature_norm", |m| m.feature_norm),
    ];
    DataFrame::new_infer_height(columns).context("building the metrics table")
}

/// Writes `history` to `<run_dir>/metrics.parquet`, atomically (a reader never sees half a file).
pub fn write(run_dir: &Path, history: &[EpochMetrics]) -> Result<()> {
    let mut frame = frame(history)?;
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes).finish(&mut frame).context("encoding metrics.parquet")?;
    write_atomic(&run_dir.join(FILE), &bytes)
}

#[cfg(test)]
mod tests {
    use polars::prelude::{ParquetReader, SerReader};

    use super::*;

    fn epoch(n: usize, regularizer: Option<f64>) -> EpochMetrics {
        EpochMetrics {
            epoch: n,
            train_loss: 0.5 / n as f64,
            train_ce: 0.4 / n as f64,
            train_regularizer: regularizer,
            sigma: Some(1.5),
            distance_ratio: None,
            distance_trace: vec![(0, 0.9)],
            val_accuracy: None,
            val_ce: None,
            test_accuracy: 80.0 + n as f64,
            test_ce: 0.3,
            images_per_second: 1000.0,
            train_seconds: 12.5,
            dead_unit_fraction: Some(0.25),
            zero_activation_fraction: Some(0.5),
            feature_norm: regularizer.map(|_| 7.0),
        }
    }

    #[test]
    fn parquet_round_trips_every_column() {
        let dir = tempfile::tempdir().unwrap();
        let history = [epoch(1, Some(0.25)), epoch(2, None)];
        write(dir.path(), &history).unwrap();
        let file = std::fs::File::open(dir.path().join(FILE)).unwrap();
        let read = ParquetReader::new(file).finish().unwrap();
        assert_eq!(read.shape(), (2, 15));
        assert_eq!(read, frame(&history).unwrap());
        let accuracy: Vec<Option<f64>> = read.column("test_accuracy").unwrap().f64().unwrap().iter().collect();
        assert_eq!(accuracy, [Some(81.0), Some(82.0)]);
        let regularizer: Vec<Option<f64>> = read.column("train_regularizer").unwrap().f64().unwrap().iter().collect();
        assert_eq!(regularizer, [Some(0.25), None]);
        assert_eq!(read.column("val_ce").unwrap().null_count(), 2);
    }
}
