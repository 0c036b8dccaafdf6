//! Figure 2: test cross-entropy over epochs for several lambda values, ResNet-18 on CIFAR-10,
//! STL-10 and CIFAR-100.

use std::path::{Path, PathBuf};

use anyhow::Result;
use itra_core::Method;
use itra_models::Arch;
use serde::Serialize;

use super::figure1::per_epoch;
use super::{Profile, Runner, table2};
use crate::atomic::write_atomic;
use crate::figures::{Panel, Series, line_figure};

/// The lambda values drawn (the paper does not list its own); 0 is the baseline.
pub const LAMBDAS: [f64; 4] = [0.0, 0.2, 0.6, 1.0];

#[derive(Debug, Clone, Serialize)]
pub struct Figure2Data {
    pub panels: Vec<Panel>,
    pub missing: Vec<String>,
    pub verdict: Vec<String>,
    /// The runs that had not finished when it was drawn; their panels are left out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
}

pub fn reproduce(runner: &Runner, profile: Profile, out_dir: &Path) -> Result<PathBuf> {
    let mut panels = Vec::new();
    let mut missing = Vec::new();
    let mut verdict = Vec::new();
    let mut pending = Vec::new();
    for dataset in table2::DATASETS {
        let configs: Vec<_> = LAMBDAS
            .iter()
            .map(|&lambda| {
                let method = if lambda == 0.0 { Method::Baseline } else { Method::ItraC };
                table2::config(dataset, Arch::ResNet18Cifar, method, lambda, profile)
            })
            .collect();
        if let Some(why) = runner.missing_data(&configs[0]) {
            println!("figure 2: {dataset} skipped: {why}");
            missing.push(format!("{dataset}: {why}"));
            continue;
        }
        let all_runs = configs.iter().map(|config| runner.run_seeds(config)).collect::<Result<Vec<_>>>()?;
        let waiting: Vec<String> = all_runs.iter().flat_map(|runs| runs.pending.clone()).collect();
        if !waiting.is_empty() {
            println!("figure 2: {dataset} left out: {} run(s) have not finished", waiting.len());
            missing.push(format!("{dataset}: {} run(s) have not finished", waiting.len()));
            pending.extend(waiting);
            continue;
        }
        let mut series = Vec::new();
        let mut finals = Vec::new();
        for (runs, lambda) in all_runs.iter().zip(LAMBDAS) {
            let (line, band) = per_epoch(runs, |m| m.test_ce);
            finals.push((lambda, line.last().map_or(f64::NAN, |p| p.1)));
            let label = if lambda == 0.0 { "baseline".to_owned() } else { format!("ITRA-c λ = {lambda}") };
            series.push(Series::new(label, line).with_band(band));
        }
        let base = finals[0].1;
        let best = finals[1..].iter().copied().fold((f64::NAN, f64::INFINITY), |b, f| if f.1 < b.1 { f } else { b });
        verdict.push(format!(
            "{dataset}: final test CE baseline {base:.3}, best ITRA-c {:.3} (λ = {}) — {}",
            best.1,
            best.0,
            if best.1 < base { "ITRA lowers the test loss, as the paper says" } else { "not the paper's effect" }
        ));
        panels.push(Panel {
            title: format!("ResNet-18, {dataset}"),
            x_label: "epoch".into(),
            y_label: "test cross-entropy (nats)".into(),
            series,
        });
    }
    let stem = out_dir.join("figure2");
    let data = Figure2Data { panels, missing, verdict, pending };
    write_atomic(&stem.with_extension("json"), &serde_json::to_vec_pretty(&data)?)?;
    if data.panels.is_empty() {
        println!("figure 2: no dataset is present; nothing drawn (see {}.json)", stem.display());
        return Ok(stem.with_extension("json"));
    }
    let mut caption = vec![
        format!("Figure 2 ({profile} profile): test loss of ResNet-18 for λ in {LAMBDAS:?}, {} seed(s).", runner.seeds),
        "Paper's claim: ITRA gives a clear gain in test CE over the baseline, and on STL-10 it curbs the \
         baseline's rising (overfitting) test loss as λ grows."
            .to_owned(),
        format!("Ours: {}", data.verdict.join("; ")),
    ];
    if !data.pending.is_empty() {
        caption.push(super::incomplete_caption(&data.pending));
    }
    line_figure(&data.panels, &caption, &stem)?;
    println!("\nFigure 2 ({profile} profile): {}.png", stem.display());
    for line in &data.verdict {
        println!("  {line}");
    }
    Ok(stem.with_extension("png"))
}
