//! Figure 3: t-SNE of test features, the baseline beside ITRA-c.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use itra_models::FeatureModel;
use serde::Serialize;

use super::{Profile, Runner, figure1};
use crate::atomic::write_atomic;
use crate::figures::{ScatterGroup, TsneConfig, scatter_figure, tsne_flat};
use crate::vision_train::load_trained_model;

/// Test points embedded per panel.
fn points(profile: Profile) -> usize {
    match profile {
        Profile::Smoke => 96,
        _ => 1000,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure3Data {
    pub dataset: String,
    pub model: String,
    /// Mean distance to the own class's centroid over mean distance between class centroids, in
    /// the feature space itself (not the t-SNE map): lower is more compact.
    pub compactness: Vec<(String, f64)>,
    pub verdict: String,
}

/// Features of `n` test images (a class-stratified draw with the fixed test seed, the same for
/// every run) under a finished run's model.
fn test_features(
    runner: &Runner,
    config: &crate::ExperimentConfig,
    n: usize,
) -> Result<(Vec<f32>, usize, Vec<usize>, Vec<String>)> {
    let data = crate::vision_data::load(config, &runner.data_dir)?;
    let device = config.device.device()?;
    let model = load_trained_model(config, &runner.run_dir(config), data.input_shape, data.num_classes(), &device)?;
    let drawn = itra_data::stratified_draw(
        &data.test.labels(),
        n,
        &mut crate::pipeline::rng(crate::vision_data::TEST_SUBSET_SEED, itra_data::Stream::Subset, 4),
    );
    let (features, labels) = crate::vision_data::features(&model, &data.eval_pipeline(&data.test), &drawn, &device)?;
    Ok((features, model.feat_dim(), labels, data.class_names.clone()))
}

/// Within-class spread over between-class spread of the features.
pub fn compactness(features: &[f32], dim: usize, labels: &[usize]) -> f64 {
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut centroids = vec![vec![0f64; dim]; classes];
    let mut counts = vec![0usize; classes];
    for (row, &label) in features.chunks_exact(dim).zip(labels) {
        counts[label] += 1;
        for (c, &v) in centroids[label].iter_mut().zip(row) {
            *c += f64::from(v);
        }
    }
    for (centroid, &count) in centroids.iter_mut().zip(&counts) {
        centroid.iter_mut().for_each(|c| *c /= count.max(1) as f64);
    }
    let distance =
        |a: &[f64], b: &dyn Fn(usize) -> f64| a.iter().enumerate().map(|(i, x)| (x - b(i)).powi(2)).sum::<f64>().sqrt();
    let within = features
        .chunks_exact(dim)
        .zip(labels)
        .map(|(row, &label)| distance(&centroids[label], &|i| f64::from(row[i])))
        .sum::<f64>()
        / labels.len().max(1) as f64;
    let present: Vec<usize> = (0..classes).filter(|&k| counts[k] > 0).collect();
    let mut between = 0.0;
    let mut pairs = 0usize;
    for (i, &a) in present.iter().enumerate() {
        for &b in &present[i + 1..] {
            between += distance(&centroids[a], &|d| centroids[b][d]);
            pairs += 1;
        }
    }
    within / (between / pairs.max(1) as f64)
}

pub fn reproduce(runner: &Runner, profile: Profile, out_dir: &Path) -> Result<PathBuf> {
    let configs = figure1::configs(profile);
    if let Some(why) = runner.missing_data(&configs[0]) {
        bail!("figure 3 needs `{}`: {why}", configs[0].data.dataset);
    }
    let labels = ["SGD (baseline)".to_owned(), format!("ITRA-c (λ = {})", configs[1].loss.lambda)];
    let stem = out_dir.join("figure3");
    // Seed 0, reused when Table 1 or Figure 1 already ran it here; the committed copies of runs
    // hold no weights, so from a fresh clone this trains it.
    let mut pending = Vec::new();
    for config in &configs {
        if runner.run_with_model(config)?.is_none() {
            pending.push(config.slug());
        }
    }
    if !pending.is_empty() {
        return super::not_drawn(&stem, "figure3", &pending);
    }
    let mut panels = Vec::new();
    let mut compact = Vec::new();
    for (config, label) in configs.iter().zip(&labels) {
        let mut config = config.clone();
        config.device = runner.device;
        let (features, dim, classes, names) = test_features(runner, &config, points(profile))?;
        compact.push((label.clone(), compactness(&features, dim, &classes)));
        let tsne_config = TsneConfig {
            iterations: if profile == Profile::Smoke { 250 } else { 1000 },
            perplexity: if profile == Profile::Smoke { 10.0 } else { 30.0 },
            ..TsneConfig::default()
        };
        let embedding = tsne_flat(&features, dim, &tsne_config)?;
        let mut groups: Vec<ScatterGroup> =
            names.iter().map(|n| ScatterGroup { label: n.clone(), points: Vec::new() }).collect();
        for (point, &class) in embedding.iter().zip(&classes) {
            groups[class].points.push(*point);
        }
        groups.retain(|g| !g.points.is_empty());
        panels.push((label.clone(), groups));
    }
    let verdict = format!(
        "feature compactness (within/between class distance, lower is tighter): SGD {:.3}, ITRA-c {:.3} — {}",
        compact[0].1,
        compact[1].1,
        if compact[1].1 < compact[0].1 {
            "ITRA-c's classes are more compact, as the paper says"
        } else {
            "not the paper's effect"
        }
    );
    let dataset = configs[0].data.dataset.clone();
    let model = configs[0].model.name();
    let caption = vec![
        format!(
            "Figure 3 ({profile} profile): t-SNE of {} test features of {model} on {dataset} (seed 0).",
            points(profile)
        ),
        "Paper's claim: ITRA learns more compact, better separated class clusters than SGD.".to_owned(),
        format!("Ours: {verdict}"),
    ];
    scatter_figure(&panels, &caption, &stem)?;
    let data = Figure3Data { dataset, model, compactness: compact, verdict };
    write_atomic(&stem.with_extension("json"), &serde_json::to_vec_pretty(&data)?)?;
    println!("\nFigure 3 ({profile} profile): {}.png\n  {}", stem.display(), data.verdict);
    Ok(stem.with_extension("png"))
}
