//! Figure 1: over training, the normalised distance between same-class samples of two
//! mini-batches, test accuracy and test CE, ITRA-c against the baseline (SGD).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use itra_core::Method;
use itra_models::Arch;
use serde::Serialize;

use super::{CandidateRuns, Profile, Runner, Stat, table1, table2};
use crate::ExperimentConfig;
use crate::atomic::write_atomic;
use crate::figures::{Panel, Series, line_figure};

/// The two configurations compared: the baseline and ITRA-c.
pub fn configs(profile: Profile) -> [ExperimentConfig; 2] {
    match profile {
        // The paper's Figure 1 is ResNet-18 on CIFAR-10; Table 2's best lambda there is 0.8.
        Profile::Paper => [
            table2::config("cifar10", Arch::ResNet18Cifar, Method::Baseline, 0.0, profile),
            table2::config("cifar10", Arch::ResNet18Cifar, Method::ItraC, 0.8, profile),
        ],
        // Real Fashion-MNIST: the same runs as Table 1's (reused by configuration hash).
        _ => [
            table1::config("fmnist", Method::Baseline, 0.0, profile),
            table1::config("fmnist", Method::ItraC, 0.6, profile),
        ],
    }
}

/// The plotted data, also written as JSON beside the figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure1Data {
    pub dataset: String,
    pub model: String,
    pub panels: Vec<Panel>,
    pub verdict: Vec<String>,
    /// The runs that had not finished when it was drawn (none for a complete figure).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
}

/// Mean over seeds of a per-epoch number, with the std band.
pub fn per_epoch(
    runs: &CandidateRuns,
    value: impl Fn(&crate::metrics::EpochMetrics) -> f64,
) -> (Vec<(f64, f64)>, Vec<(f64, f64, f64)>) {
    let epochs = runs.runs.iter().map(|r| r.epochs.len()).min().unwrap_or(0);
    let mut line = Vec::new();
    let mut band = Vec::new();
    for e in 0..epochs {
        let values: Vec<f64> = runs.runs.iter().map(|r| value(&r.epochs[e])).collect();
        if let Some(s) = Stat::of(&values) {
            let x = (e + 1) as f64;
            line.push((x, s.mean));
            band.push((x, s.mean - s.std, s.mean + s.std));
        }
    }
    (line, band)
}

/// Mean over seeds of the distance trace, by global step.
fn distance_series(runs: &CandidateRuns) -> Vec<(f64, f64)> {
    let traces: Vec<Vec<(usize, f64)>> =
        runs.runs.iter().map(|r| r.epochs.iter().flat_map(|e| e.distance_trace.iter().copied()).collect()).collect();
    let len = traces.iter().map(Vec::len).min().unwrap_or(0);
    (0..len)
        .map(|i| {
            let step = traces[0][i].0 as f64;
            let mean = traces.iter().map(|t| t[i].1).sum::<f64>() / traces.len() as f64;
            (step, mean)
        })
        .collect()
}

/// The mean of the last third of a series minus the mean of its middle third: negative when
/// it is still falling late in training.
fn late_trend(points: &[(f64, f64)]) -> f64 {
    let n = points.len();
    if n < 3 {
        return 0.0;
    }
    let third = n / 3;
    let mean = |s: &[(f64, f64)]| s.iter().map(|p| p.1).sum::<f64>() / s.len().max(1) as f64;
    mean(&points[n - third..]) - mean(&points[third..n - third])
}

pub fn reproduce(runner: &Runner, profile: Profile, out_dir: &Path) -> Result<PathBuf> {
    let [baseline, itra] = configs(profile);
    if let Some(why) = runner.missing_data(&baseline) {
        bail!("figure 1 needs `{}`: {why}", baseline.data.dataset);
    }
    let base_runs = runner.run_seeds(&baseline)?;
    let itra_runs = runner.run_seeds(&itra)?;
    let pending: Vec<String> = base_runs.pending.iter().chain(&itra_runs.pending).cloned().collect();
    let stem = out_dir.join("figure1");
    if base_runs.runs.is_empty() || itra_runs.runs.is_empty() {
        return super::not_drawn(&stem, "figure1", &pending);
    }
    let labels = ["SGD (baseline)".to_owned(), format!("ITRA-c (λ = {})", itra.loss.lambda)];

    let distance = Panel {
        title: "same-class distance across mini-batches".into(),
        x_label: "training step".into(),
        y_label: "d_same / d_all".into(),
        series: vec![
            Series::new(labels[0].clone(), distance_series(&base_runs)),
            Series::new(labels[1].clone(), distance_series(&itra_runs)),
        ],
    };
    let metric_panel = |title: &str, y_label: &str, value: fn(&crate::metrics::EpochMetrics) -> f64| {
        let series = [(&base_runs, &labels[0]), (&itra_runs, &labels[1])]
            .into_iter()
            .map(|(runs, label)| {
                let (line, band) = per_epoch(runs, value);
                Series::new(label.clone(), line).with_band(band)
            })
            .collect();
        Panel { title: title.into(), x_label: "epoch".into(), y_label: y_label.into(), series }
    };
    let accuracy = metric_panel("test accuracy", "accuracy (%)", |m| m.test_accuracy);
    let ce = metric_panel("test cross-entropy", "cross-entropy (nats)", |m| m.test_ce);

    let last = |s: &Series| s.points.last().map_or(f64::NAN, |p| p.1);
    let (d_base, d_itra) = (&distance.series[0].points, &distance.series[1].points);
    let verdict = vec![
        format!(
            "distance: ITRA-c ends at {:.3} vs SGD {:.3}; late-training trend ITRA-c {:+.4}, SGD {:+.4} — {}",
            d_itra.last().map_or(f64::NAN, |p| p.1),
            d_base.last().map_or(f64::NAN, |p| p.1),
            late_trend(d_itra),
            late_trend(d_base),
            if late_trend(d_itra) < late_trend(d_base) && d_itra.last().map(|p| p.1) < d_base.last().map(|p| p.1) {
                "the same effect as the paper"
            } else {
                "not the paper's effect"
            }
        ),
        format!(
            "final test accuracy ITRA-c {:.2}% vs SGD {:.2}%; test CE {:.3} vs {:.3}",
            last(&accuracy.series[1]),
            last(&accuracy.series[0]),
            last(&ce.series[1]),
            last(&ce.series[0])
        ),
    ];
    let dataset = baseline.data.dataset.clone();
    let model = baseline.model.name();
    let mut caption = vec![
        format!("Figure 1 ({profile} profile): {model} on {dataset}, {} seed(s), mean ± std.", runner.seeds),
        "Paper's claim: under SGD the same-class distance stabilises, while under ITRA it keeps decreasing, with \
         higher test accuracy and lower test CE."
            .to_owned(),
        format!("Ours: {}", verdict.join("; ")),
    ];
    if !pending.is_empty() {
        caption.push(super::incomplete_caption(&pending));
    }
    let data = Figure1Data { dataset, model, panels: vec![distance, accuracy, ce], verdict, pending };
    line_figure(&data.panels, &caption, &stem)?;
    write_atomic(&stem.with_extension("json"), &serde_json::to_vec_pretty(&data)?)?;
    println!("\nFigure 1 ({profile} profile): {}.png", stem.display());
    for line in &data.verdict {
        println!("  {line}");
    }
    Ok(stem.with_extension("png"))
}
