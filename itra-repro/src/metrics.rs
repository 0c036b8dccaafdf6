//! A run's numbers: one epoch's [`EpochMetrics`] (a line of `metrics.jsonl`), the running sums
//! a training loop accumulates them in, evaluation scores, and the process's peak memory. The
//! bottom layer of the runner, with the run files above it; it imports nothing of this crate.

use std::fs;

use anyhow::{Result, bail};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// One epoch's numbers, one JSON line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    /// Mean training objective over the epoch's steps.
    pub train_loss: f64,
    /// Mean (smoothed, for LSR) cross-entropy on `S1`.
    pub train_ce: f64,
    /// Mean unweighted regulariser (matching loss or Center loss), if any.
    pub train_regularizer: Option<f64>,
    /// Mean kernel bandwidth, for ITRA and ITRA-c.
    pub sigma: Option<f64>,
    /// Figure 1's `d_same / d_all` (see [`DISTANCE_EVERY`]), averaged over the epoch.
    pub distance_ratio: Option<f64>,
    /// The measurements behind `distance_ratio`: `(global step, d_same / d_all)`.
    #[serde(default)]
    pub distance_trace: Vec<(usize, f64)>,
    /// Validation accuracy in percent, when the run holds out a validation split.
    pub val_accuracy: Option<f64>,
    /// Mean validation cross-entropy.
    pub val_ce: Option<f64>,
    /// Test accuracy in percent.
    pub test_accuracy: f64,
    /// Mean test cross-entropy.
    pub test_ce: f64,
    /// Training images (`S1`) per second, evaluation excluded.
    pub images_per_second: f64,
    /// Seconds of training in this epoch, evaluation excluded.
    pub train_seconds: f64,
    /// Share of the feature units (columns of `H1`) that were zero on every `S1` example of
    /// the epoch: dead units, the mark of a collapse.
    #[serde(default)]
    pub dead_unit_fraction: Option<f64>,
    /// Share of all feature activations of the epoch's `S1` batches that were exactly zero.
    #[serde(default)]
    pub zero_activation_fraction: Option<f64>,
    /// Mean Euclidean norm of an `S1` feature vector over the epoch.
    #[serde(default)]
    pub feature_norm: Option<f64>,
}

/// Where an epoch's wall time went, for `itra bench --epoch` and the end of `itra train`. Not a
/// number of the run: it is never written to the run's files. On an asynchronous device the
/// parts are host time (a step's queued work may be waited for in a later part).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochTiming {
    /// Waiting for the loader's next batch (made ahead by its workers) and moving it to the
    /// device.
    pub load_seconds: f64,
    /// The training steps: forwards, the objective, backward and the update, the probe excluded.
    pub step_seconds: f64,
    /// Figure 1's distance probe (its two batches made and forwarded).
    pub probe_seconds: f64,
    /// Validation and test evaluation.
    pub eval_seconds: f64,
    /// Writing the epoch's metrics line and checkpoint.
    pub checkpoint_seconds: f64,
    /// The whole epoch.
    pub wall_seconds: f64,
}

impl EpochTiming {
    /// The parts as `load 2%, step 88%, ...` of the wall time.
    pub fn shares(&self) -> String {
        let share = |part: f64| 100.0 * part / self.wall_seconds.max(1e-12);
        format!(
            "load {:.1}%, step {:.1}%, probe {:.1}%, eval {:.1}%, checkpoint {:.1}% of {:.1} s",
            share(self.load_seconds),
            share(self.step_seconds),
            share(self.probe_seconds),
            share(self.eval_seconds),
            share(self.checkpoint_seconds),
            self.wall_seconds
        )
    }
}

/// Figure 1's distance is measured on every this many-th step of an epoch, for every method
/// alike, through the forward the run's `crate::config::DistanceProbe` names (the vision
/// default: `S1` and `S2` through the inference copy of the model, so that measuring moves
/// neither the batch-norm statistics nor training; `CONVENTIONS.md`).
pub const DISTANCE_EVERY: usize = 10;

/// Accuracy and cross-entropy accumulated over batches of logits.
#[derive(Debug, Default)]
pub struct Score {
    correct: usize,
    ce_sum: f64,
    count: usize,
}

impl Score {
    /// Adds a batch: `logits` row-major `[labels.len(), classes]`.
    pub fn add(&mut self, logits: &[f32], labels: &[usize]) {
        let classes = logits.len() / labels.len().max(1);
        for (row, &label) in logits.chunks_exact(classes.max(1)).zip(labels) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let log_sum = row.iter().map(|&z| f64::from(z - max).exp()).sum::<f64>().ln() + f64::from(max);
            self.ce_sum += log_sum - f64::from(row[label]);
            let predicted = row.iter().enumerate().fold(0, |best, (k, &z)| if z > row[best] { k } else { best });
            self.correct += usize::from(predicted == label);
            self.count += 1;
        }
    }

    /// Accuracy in percent and mean cross-entropy.
    pub fn finish(&self) -> (f64, f64) {
        let n = self.count.max(1) as f64;
        (100.0 * self.correct as f64 / n, self.ce_sum / n)
    }
}

/// Running sums of one epoch's training numbers.
#[derive(Default)]
pub struct Sums {
    pub steps: usize,
    pub loss: f64,
    pub ce: f64,
    pub regularizer: f64,
    pub regularizer_steps: usize,
    pub sigma: f64,
    pub sigma_steps: usize,
    pub distance_trace: Vec<(usize, f64)>,
    pub features: FeatureStats,
}

/// Collapse diagnostics over an epoch's `S1` features: which units were ever non-zero, how many
/// activations were zero, and the feature norms.
#[derive(Debug, Default)]
pub struct FeatureStats {
    active: Vec<bool>,
    zeros: usize,
    entries: usize,
    norm_sum: f64,
    rows: usize,
}

impl FeatureStats {
    /// Adds one batch of features `[m, d]` (read on the host; no gradient is involved).
    pub fn add(&mut self, features: &Tensor<2>) {
        let [rows, width] = features.dims();
        if rows == 0 || width == 0 {
            return;
        }
        let values: Vec<f32> = features.clone().detach().into_data().iter::<f32>().collect();
        if self.active.len() != width {
            self.active = vec![false; width];
        }
        for row in values.chunks_exact(width) {
            let mut squares = 0f64;
            for (unit, &v) in row.iter().enumerate() {
                if v == 0.0 {
                    self.zeros += 1;
                } else {
                    self.active[unit] = true;
                }
                squares += f64::from(v) * f64::from(v);
            }
            self.norm_sum += squares.sqrt();
        }
        self.entries += rows * width;
        self.rows += rows;
    }

    /// `(dead_unit_fraction, zero_activation_fraction, feature_norm)`, if any batch was added.
    pub fn finish(&self) -> Option<(f64, f64, f64)> {
        (self.rows > 0).then(|| {
            let dead = self.active.iter().filter(|&&a| !a).count();
            (
                dead as f64 / self.active.len() as f64,
                self.zeros as f64 / self.entries as f64,
                self.norm_sum / self.rows as f64,
            )
        })
    }
}

impl Sums {
    /// Adds one step's loss parts; fails on a non-finite total.
    pub fn add(&mut self, parts: &itra_core::LossParts, epoch: usize, step: usize, lr: f64) -> Result<()> {
        let total: f64 = parts.total.clone().into_scalar();
        if !total.is_finite() {
            bail!("nan or infinity in the training loss at epoch {}, step {step} (lr {lr})", epoch + 1);
        }
        self.loss += total;
        self.ce += parts.ce.clone().detach().into_scalar::<f64>();
        if let Some(term) = &parts.regularizer {
            self.regularizer += term.clone().detach().into_scalar::<f64>();
            self.regularizer_steps += 1;
        }
        if let Some(sigma) = parts.sigma {
            self.sigma += sigma;
            self.sigma_steps += 1;
        }
        self.steps += 1;
        Ok(())
    }

    pub fn finish(
        &self,
        epoch: usize,
        train_seconds: f64,
        batch_size: usize,
        validation: Option<(f64, f64)>,
        test_accuracy: f64,
        test_ce: f64,
    ) -> EpochMetrics {
        let mean = |sum: f64, count: usize| (count > 0).then(|| sum / count as f64);
        let steps = self.steps.max(1) as f64;
        let features = self.features.finish();
        EpochMetrics {
            epoch: epoch + 1,
            train_loss: self.loss / steps,
            train_ce: self.ce / steps,
            train_regularizer: mean(self.regularizer, self.regularizer_steps),
            sigma: mean(self.sigma, self.sigma_steps),
            distance_ratio: mean(self.distance_trace.iter().map(|t| t.1).sum(), self.distance_trace.len()),
            distance_trace: self.distance_trace.clone(),
            val_accuracy: validation.map(|v| v.0),
            val_ce: validation.map(|v| v.1),
            test_accuracy,
            test_ce,
            images_per_second: (self.steps * batch_size) as f64 / train_seconds.max(1e-9),
            train_seconds,
            dead_unit_fraction: features.map(|f| f.0),
            zero_activation_fraction: features.map(|f| f.1),
            feature_norm: features.map(|f| f.2),
        }
    }
}

/// Peak resident set size of this process (Linux `VmHWM`), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;

    #[test]
    fn feature_stats_find_dead_units_zeros_and_norms() {
        // Two batches of 2 x 3 features; unit 2 is zero everywhere (dead), units 0 and 1 are
        // non-zero somewhere. Zeros: 4 + 3 of 12 entries. Norms: |(3,4,0)| = 5, |(0,0,0)| = 0,
        // |(1,0,0)| = 1, |(2,2,0)| = sqrt(8).
        let device = Device::flex();
        let batch = |values: Vec<f32>| Tensor::<2>::from_data(TensorData::new(values, [2, 3]), &device);
        let mut stats = FeatureStats::default();
        assert_eq!(stats.finish(), None);
        stats.add(&batch(vec![3.0, 4.0, 0.0, 0.0, 0.0, 0.0]));
        stats.add(&batch(vec![1.0, 0.0, 0.0, 2.0, 2.0, 0.0]));
        let (dead, zeros, norm) = stats.finish().unwrap();
        assert_eq!(dead, 1.0 / 3.0);
        assert_eq!(zeros, 7.0 / 12.0);
        assert!((norm - (5.0 + 0.0 + 1.0 + 8f64.sqrt()) / 4.0).abs() < 1e-12);
    }
}
