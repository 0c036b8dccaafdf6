//! Rendering a table's outcomes next to the paper's numbers: markdown, LaTeX and CSV, and the
//! honest summary of which claims this run reproduced.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use itra_core::Method;

use super::{Cell, CellOutcome, Grid, Profile, Stat};
use crate::atomic::write_atomic;
use crate::paper::{self, PaperRow};
use crate::provenance::GIT_REVISION;

/// One rendered row.
#[derive(Debug, Clone)]
pub struct Row {
    pub dataset: String,
    pub model: String,
    pub method: Method,
    pub batch_size: Option<u32>,
    pub our_batch_size: Option<usize>,
    /// The lambda chosen, and how many candidates it was chosen from.
    pub lambda: Option<(f64, usize)>,
    pub accuracy: Option<Stat>,
    pub ce: Option<Stat>,
    pub paper: Option<PaperRow>,
    /// Why the cell did not run.
    pub missing: Option<String>,
    /// How many of its runs had finished, of how many, when some had not.
    pub pending: Option<(usize, usize)>,
    /// The model that actually ran, where it stands in for the paper's.
    pub stand_in: Option<String>,
}

/// Decimal places of accuracy and CE: coarser for smoke, whose snapshots must survive
/// thread-count and CPU-feature differences.
fn precision(profile: Profile) -> (usize, usize) {
    match profile {
        Profile::Smoke => (1, 2),
        _ => (2, 3),
    }
}

pub fn rows(table: u8, outcomes: &[(Cell, CellOutcome)]) -> Vec<Row> {
    outcomes
        .iter()
        .map(|(cell, outcome)| {
            let paper = paper::lookup(table, &cell.dataset, &cell.model, cell.method.name(), cell.batch_size);
            let mut row = Row {
                dataset: cell.dataset.clone(),
                model: cell.model.clone(),
                method: cell.method,
                batch_size: cell.batch_size,
                our_batch_size: None,
                lambda: None,
                accuracy: None,
                ce: None,
                paper,
                missing: None,
                pending: None,
                stand_in: None,
            };
            match outcome {
                CellOutcome::Missing(why) => row.missing = Some(why.clone()),
                CellOutcome::Pending { finished, total } => row.pending = Some((*finished, *total)),
                CellOutcome::Done { chosen, candidates } => {
                    row.our_batch_size = Some(chosen.config.batch_size);
                    row.lambda = (cell.method != Method::Baseline).then_some((chosen.config.loss.lambda, *candidates));
                    row.accuracy = chosen.final_stat(|m| Some(m.test_accuracy));
                    row.ce = chosen.final_stat(|m| Some(m.test_ce));
                    let ran = chosen.config.model.name();
                    if ran != cell.model && !ran.starts_with(&format!("{}-", cell.model)) {
                        row.stand_in = Some(ran);
                    }
                }
            }
            row
        })
        .collect()
}

fn stat(s: Option<Stat>, places: usize) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{:.p$} ± {:.p$}", s.mean, s.std, p = places),
        Some(s) => format!("{:.p$}", s.mean, p = places),
        None => "–".to_owned(),
    }
}

fn delta(ours: Option<Stat>, paper: Option<f64>, places: usize) -> String {
    match (ours, paper) {
        (Some(o), Some(p)) => format!("{:+.p$}", o.mean - p, p = places),
        _ => "–".to_owned(),
    }
}

fn paper_value(v: Option<f64>, places: usize) -> String {
    v.map_or("–".to_owned(), |v| format!("{v:.places$}"))
}

/// The markdown table, its notes and the claims summary.
pub fn markdown(grid: &Grid, rows: &[Row], seeds: usize, summary: &[String]) -> String {
    let (acc_places, ce_places) = precision(grid.profile);
    let table = match grid.target {
        super::Target::Table(n) => n,
        super::Target::Figure(_) => 0,
    };
    let mut out = String::new();
    let _ = writeln!(out, "# Table {table} ({} profile)\n", grid.profile);
    let _ = writeln!(
        out,
        "Test accuracy (%) and test cross-entropy, ours as mean ± std over {seeds} seed(s) at the last epoch, \
         beside the paper's. Δ = ours − paper. Revision {GIT_REVISION}.\n"
    );
    let pending: Vec<&Row> = rows.iter().filter(|r| r.pending.is_some()).collect();
    if !pending.is_empty() {
        let (done, total) = pending.iter().filter_map(|r| r.pending).fold((0, 0), |a, p| (a.0 + p.0, a.1 + p.1));
        let _ = writeln!(
            out,
            "**Incomplete: {} of {} cells have runs that have not finished ({done} of {total} of their runs \
             finished); they read `pending`. Run the rest and collect again.**\n",
            pending.len(),
            rows.len()
        );
    }
    let bs = table == 3;
    let _ = writeln!(
        out,
        "| Dataset | Model | Method |{} λ | Acc (ours) | Acc (paper) | Δ | CE (ours) | CE (paper) | Δ |",
        if bs { " BS (paper) | BS (ours) |" } else { "" }
    );
    let _ = writeln!(out, "|---|---|---|{}---|---|---|---|---|---|---|", if bs { "---|---|" } else { "" });
    for row in rows {
        let model = match &row.stand_in {
            Some(ran) => format!("{} (ran: {ran})", row.model),
            None => row.model.clone(),
        };
        let lambda = match row.lambda {
            Some((l, n)) if n > 1 => format!("{l} (best of {n})"),
            Some((l, _)) => format!("{l}"),
            None => "–".to_owned(),
        };
        let batch = if bs {
            format!(
                " {} | {} |",
                row.batch_size.map_or("–".into(), |b| b.to_string()),
                row.our_batch_size.map_or("–".into(), |b| b.to_string())
            )
        } else {
            String::new()
        };
        if let Some(why) = &row.missing {
            let _ = writeln!(
                out,
                "| {} | {model} | {} |{batch} – | not run | {} | – | not run | {} | – |",
                row.dataset,
                row.method,
                paper_value(row.paper.as_ref().and_then(|p| p.accuracy), 2),
                paper_value(row.paper.as_ref().and_then(|p| p.ce), 3),
            );
            let _ = why;
            continue;
        }
        if let Some((done, total)) = row.pending {
            let _ = writeln!(
                out,
                "| {} | {model} | {} |{batch} – | pending ({done}/{total} runs) | {} | – | pending | {} | – |",
                row.dataset,
                row.method,
                paper_value(row.paper.as_ref().and_then(|p| p.accuracy), 2),
                paper_value(row.paper.as_ref().and_then(|p| p.ce), 3),
            );
            continue;
        }
        let paper_acc = row.paper.as_ref().and_then(|p| p.accuracy);
        let paper_ce = row.paper.as_ref().and_then(|p| p.ce);
        let _ = writeln!(
            out,
            "| {} | {model} | {} |{batch} {lambda} | {} | {} | {} | {} | {} | {} |",
            row.dataset,
            row.method,
            stat(row.accuracy, acc_places),
            paper_value(paper_acc, 2),
            delta(row.accuracy, paper_acc, acc_places),
            stat(row.ce, ce_places),
            paper_value(paper_ce, 3),
            delta(row.ce, paper_ce, ce_places),
        );
    }
    let missing: Vec<&Row> = rows.iter().filter(|r| r.missing.is_some()).collect();
    if !missing.is_empty() {
        let _ = writeln!(out, "\n## Not run\n");
        let mut seen = std::collections::BTreeSet::new();
        for row in missing {
            if seen.insert(row.dataset.clone()) {
                let _ = writeln!(out, "- `{}`: {}", row.dataset, row.missing.as_deref().unwrap_or_default());
            }
        }
    }
    let _ = writeln!(out, "\n## Setting\n");
    for note in &grid.notes {
        let _ = writeln!(out, "- {note}");
    }
    let _ = writeln!(out, "\n## Claims\n");
    for line in summary {
        let _ = writeln!(out, "- {line}");
    }
    out
}

/// The paper's claim for each (dataset, model): ITRA-c beats the baseline in accuracy and CE.
/// Ours is "reproduced" when the difference has the paper's sign and exceeds the seed noise
/// (the two standard deviations added in quadrature).
pub fn claims(rows: &[Row], profile: Profile) -> Vec<String> {
    let (acc_places, ce_places) = precision(profile);
    let mut lines = Vec::new();
    let mut groups: Vec<(String, String, Option<u32>)> = Vec::new();
    for row in rows.iter().filter(|r| r.method == Method::ItraC) {
        groups.push((row.dataset.clone(), row.model.clone(), row.batch_size));
    }
    for (dataset, model, batch) in groups {
        let find = |m: Method| {
            rows.iter().find(|r| {
                r.dataset == dataset
                    && r.model == model
                    && r.method == m
                    && (m != Method::ItraC || r.batch_size == batch)
            })
        };
        let (Some(itra), Some(base)) = (find(Method::ItraC), find(Method::Baseline)) else { continue };
        let label = match batch {
            Some(b) => format!("{dataset}/{model}/BS {b}"),
            None => format!("{dataset}/{model}"),
        };
        if itra.missing.is_some() || base.missing.is_some() {
            lines.push(format!("{label}: not run (data missing)"));
            continue;
        }
        if itra.pending.is_some() || base.pending.is_some() {
            lines.push(format!("{label}: pending (runs not finished)"));
            continue;
        }
        let verdict = |ours: Option<Stat>, base: Option<Stat>, higher_is_better: bool, places: usize| {
            let (Some(o), Some(b)) = (ours, base) else { return "no numbers".to_owned() };
            let diff = o.mean - b.mean;
            let good = if higher_is_better { diff > 0.0 } else { diff < 0.0 };
            if o.n < 2 || b.n < 2 {
                // One seed has no spread to compare against.
                let word = if good { "same direction, seed noise unknown" } else { "not reproduced" };
                return format!("{diff:+.places$} (1 seed): {word}");
            }
            let noise = (o.std.powi(2) + b.std.powi(2)).sqrt();
            let word = match (good, diff.abs() > noise) {
                (true, true) => "reproduced",
                (true, false) => "same direction, within seed noise",
                (false, _) => "not reproduced",
            };
            format!("{diff:+.places$} (noise {noise:.places$}): {word}")
        };
        lines.push(format!(
            "{label}: ITRA-c − baseline accuracy {}; CE {}",
            verdict(itra.accuracy, base.accuracy, true, acc_places),
            verdict(itra.ce, base.ce, false, ce_places),
        ));
    }
    lines
}

fn latex(rows: &[Row], profile: Profile) -> String {
    let (acc_places, ce_places) = precision(profile);
    let mut out = String::from("\\begin{tabular}{lllrrrrrr}\n\\toprule\n");
    out.push_str("Dataset & Model & Method & $\\lambda$ & Acc & Acc (paper) & CE & CE (paper) \\\\\n\\midrule\n");
    for row in rows {
        let escape = |s: &str| s.replace('_', "\\_");
        let stat_tex = |s: Option<Stat>, p: usize| match s {
            Some(s) if s.n > 1 => format!("${:.p$} \\pm {:.p$}$", s.mean, s.std),
            Some(s) => format!("${:.p$}$", s.mean),
            None => "--".to_owned(),
        };
        let _ = writeln!(
            out,
            "{} & {} & {} & {} & {} & {} & {} & {} \\\\",
            escape(&row.dataset),
            escape(&row.model),
            row.method,
            row.lambda.map_or("--".into(), |(l, _)| l.to_string()),
            stat_tex(row.accuracy, acc_places),
            paper_value(row.paper.as_ref().and_then(|p| p.accuracy), 2),
            stat_tex(row.ce, ce_places),
            paper_value(row.paper.as_ref().and_then(|p| p.ce), 3),
        );
    }
    out.push_str("\\bottomrule\n\\end{tabular}\n");
    out
}

fn csv_text(rows: &[Row]) -> Result<String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "dataset",
        "model",
        "method",
        "batch_size",
        "lambda",
        "acc_mean",
        "acc_std",
        "ce_mean",
        "ce_std",
        "seeds",
        "paper_acc",
        "paper_ce",
        "missing",
    ])?;
    let num = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    for row in rows {
        writer.write_record([
            row.dataset.clone(),
            row.model.clone(),
            row.method.to_string(),
            row.batch_size.map_or(String::new(), |b| b.to_string()),
            num(row.lambda.map(|l| l.0)),
            num(row.accuracy.map(|s| s.mean)),
            num(row.accuracy.map(|s| s.std)),
            num(row.ce.map(|s| s.mean)),
            num(row.ce.map(|s| s.std)),
            row.accuracy.map_or(String::new(), |s| s.n.to_string()),
            num(row.paper.as_ref().and_then(|p| p.accuracy)),
            num(row.paper.as_ref().and_then(|p| p.ce)),
            match (&row.missing, row.pending) {
                (Some(why), _) => why.clone(),
                (None, Some((done, total))) => format!("pending: {done} of {total} runs finished"),
                (None, None) => String::new(),
            },
        ])?;
    }
    Ok(String::from_utf8(writer.into_inner()?)?)
}

/// Writes `tableN.md`, `.tex` and `.csv` under `out_dir`, prints the claims, and returns the
/// markdown's path.
pub fn write_table(grid: &Grid, outcomes: &[(Cell, CellOutcome)], out_dir: &Path, seeds: usize) -> Result<PathBuf> {
    let table = match grid.target {
        super::Target::Table(n) => n,
        super::Target::Figure(_) => unreachable!("write_table renders tables"),
    };
    let rows = rows(table, outcomes);
    let summary = claims(&rows, grid.profile);
    let md = markdown(grid, &rows, seeds, &summary);
    let stem = out_dir.join(format!("table{table}"));
    write_atomic(&stem.with_extension("md"), md.as_bytes())?;
    write_atomic(&stem.with_extension("tex"), latex(&rows, grid.profile).as_bytes())?;
    write_atomic(&stem.with_extension("csv"), csv_text(&rows)?.as_bytes())?;
    println!("\nTable {table} ({} profile): {}", grid.profile, stem.with_extension("md").display());
    for line in &summary {
        println!("  {line}");
    }
    Ok(stem.with_extension("md"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: Method, accuracy: Stat, ce: Stat) -> Row {
        Row {
            dataset: "fmnist".into(),
            model: "small-cnn".into(),
            method,
            batch_size: None,
            our_batch_size: None,
            lambda: None,
            accuracy: Some(accuracy),
            ce: Some(ce),
            paper: None,
            missing: None,
            pending: None,
            stand_in: None,
        }
    }

    fn stat(mean: f64, std: f64, n: usize) -> Stat {
        Stat { mean, std, n }
    }

    #[test]
    fn claims_weigh_the_difference_against_the_seed_noise() {
        // Accuracy +0.5 against noise sqrt(0.3² + 0.4²) = 0.5 (not above it); CE -0.05 against 0.01.
        let rows = [
            row(Method::Baseline, stat(90.0, 0.3, 3), stat(0.30, 0.006, 3)),
            row(Method::ItraC, stat(90.5, 0.4, 3), stat(0.25, 0.008, 3)),
        ];
        assert_eq!(
            claims(&rows, Profile::Cpu),
            ["fmnist/small-cnn: ITRA-c − baseline accuracy +0.50 (noise 0.50): same direction, within seed \
              noise; CE -0.050 (noise 0.010): reproduced"]
        );
        let worse = [
            row(Method::Baseline, stat(90.0, 0.1, 2), stat(0.30, 0.0, 2)),
            row(Method::ItraC, stat(89.0, 0.1, 2), stat(0.31, 0.0, 2)),
        ];
        assert_eq!(
            claims(&worse, Profile::Cpu),
            ["fmnist/small-cnn: ITRA-c − baseline accuracy -1.00 (noise 0.14): not reproduced; CE +0.010 \
              (noise 0.000): not reproduced"]
        );
        let one_seed = [
            row(Method::Baseline, stat(6.25, 0.0, 1), stat(2.31, 0.0, 1)),
            row(Method::ItraC, stat(12.5, 0.0, 1), stat(2.32, 0.0, 1)),
        ];
        assert_eq!(
            claims(&one_seed, Profile::Smoke),
            ["fmnist/small-cnn: ITRA-c − baseline accuracy +6.2 (1 seed): same direction, seed noise unknown; \
              CE +0.01 (1 seed): not reproduced"]
        );
    }
}
