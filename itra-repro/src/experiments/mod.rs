//! The paper's tables and figures as declared grids of runs, and the runner that executes them.
//!
//! A target (`table1` ... `figure3`) is one module here. It declares, for a [`Profile`], the
//! cells it needs; each cell is a set of candidate configurations (the lambda grid) run over
//! several seeds. The [`Runner`] skips runs that already finished with the same configuration
//! hash and resumes interrupted ones from their checkpoints. Lambda is chosen per cell by mean
//! validation accuracy, never by test.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use itra_core::{Method, SecondBatchMode};
use itra_models::Arch;
use serde::{Deserialize, Serialize};

use crate::config::{
    AugmentationRecipe, DataConfig, ExperimentConfig, LossConfig, ModelConfig, OptimizerConfig, Schedule,
};
use crate::device::DeviceSpec;
use crate::run_files::{RunOptions, RunSummary, files};

pub mod figure1;
pub mod figure2;
pub mod figure3;
pub mod report;
pub mod table1;
pub mod table2;
pub mod table3;
pub mod table4;

/// How big the experiments are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// The paper's setting where it states one; otherwise a standard recipe, named in the notes.
    Paper,
    /// Shrunk to what a 2-core CPU does in tens of minutes per column, on real data.
    Cpu,
    /// Seconds per run on tiny generated data, for CI.
    Smoke,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Paper => "paper",
            Profile::Cpu => "cpu",
            Profile::Smoke => "smoke",
        }
    }

    /// Seeds per configuration unless `--seeds` says otherwise.
    pub fn default_seeds(self) -> usize {
        match self {
            Profile::Paper => 3,
            Profile::Cpu => 3,
            Profile::Smoke => 2,
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "paper" => Ok(Profile::Paper),
            "cpu" => Ok(Profile::Cpu),
            "smoke" => Ok(Profile::Smoke),
            other => Err(format!("unknown profile `{other}`; expected paper, cpu or smoke")),
        }
    }
}

/// The reproducible targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Table(u8),
    Figure(u8),
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::Table(1),
        Target::Table(2),
        Target::Table(3),
        Target::Table(4),
        Target::Figure(1),
        Target::Figure(2),
        Target::Figure(3),
    ];

    pub fn name(self) -> String {
        match self {
            Target::Table(n) => format!("table{n}"),
            Target::Figure(n) => format!("figure{n}"),
        }
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown target `{s}`; expected table1..table4 or figure1..figure3"))
    }
}

/// One cell of a table: a dataset, model and method (and, in Table 3, batch size), with the
/// candidate configurations whose best (by validation accuracy) is reported.
#[derive(Debug, Clone)]
pub struct Cell {
    /// The dataset id as the paper's table names it (`fmnist`, `cifar10`, ...).
    pub dataset: String,
    /// The model id as the paper's table names it (`small-cnn`, `resnet18`, ...).
    pub model: String,
    pub method: Method,
    pub batch_size: Option<u32>,
    /// One configuration per lambda candidate, seed 0; the runner sets the seeds.
    pub candidates: Vec<ExperimentConfig>,
}

/// Everything a target runs.
#[derive(Debug, Clone)]
pub struct Grid {
    pub target: Target,
    pub profile: Profile,
    pub cells: Vec<Cell>,
    /// How the profile departs from the paper, written under the table.
    pub notes: Vec<String>,
    /// A cap on the runner's seeds (the big smoke grids run one).
    pub max_seeds: Option<usize>,
}

/// The common recipe pieces.
pub fn vision_config(
    dataset: &str,
    arch: Arch,
    method: Method,
    lambda: f64,
    optimizer: OptimizerConfig,
    epochs: usize,
    batch_size: usize,
) -> ExperimentConfig {
    ExperimentConfig {
        data: DataConfig::new(dataset),
        model: ModelConfig::Vision { arch },
        loss: LossConfig { method, lambda, second_batch: SecondBatchMode::Full, ..LossConfig::baseline() },
        optimizer,
        schedule: Schedule::Cosine,
        step: None,
        epochs,
        batch_size,
        seed: 0,
        device: DeviceSpec::Cpu,
    }
}

/// The standard training augmentation of a dataset in the `paper` profile: `crop-flip` for
/// CIFAR-10/100 and STL-10 (kuangliu/pytorch-cifar's recipe, which the paper's 92.99 % ResNet-18
/// on CIFAR-10 needs), `imagenet` for ImageNet, none for the 28x28 sets of Table 1.
pub fn paper_augmentation(dataset: &str) -> AugmentationRecipe {
    match dataset {
        "cifar10" | "cifar100" | "stl10" => AugmentationRecipe::CropFlip,
        "imagenet" => AugmentationRecipe::Imagenet,
        _ => AugmentationRecipe::None,
    }
}

/// The lambda candidates of each method (the paper names none; the paper profile covers every
/// value its tables report: LSR 0.1; Center 0.05, 0.1; ITRA 0.6, 0.8, 1.0). The cpu profile keeps
/// the paper's Table 1 values to fit its time budget.
pub fn lambda_grid(method: Method, profile: Profile) -> Vec<f64> {
    match (method, profile) {
        (Method::Baseline, _) => vec![0.0],
        (Method::Lsr, _) => vec![0.1],
        (Method::Center, Profile::Paper) => vec![0.01, 0.05, 0.1],
        (Method::Center, _) => vec![0.05, 0.1],
        (Method::Itra | Method::ItraC, Profile::Paper) => vec![0.2, 0.4, 0.6, 0.8, 1.0],
        (Method::Itra | Method::ItraC, Profile::Cpu) => vec![0.6],
        (Method::Itra | Method::ItraC, Profile::Smoke) => vec![0.6],
    }
}

/// The methods of Tables 1 and 2, in the paper's order.
pub const TABLE_METHODS: [Method; 4] = [Method::Baseline, Method::Lsr, Method::Center, Method::ItraC];

/// Where a target reads data and writes runs and results.
#[derive(Debug, Clone)]
pub struct Runner {
    pub data_dir: PathBuf,
    pub runs_dir: PathBuf,
    pub results_dir: PathBuf,
    /// The committed copies of finished runs (`results/<profile>/runs/`, set by [`reproduce`]):
    /// a run found there by its configuration hash is reused, and every run that finishes is
    /// copied there (its `config.json`, `metrics.jsonl` and `result.json`, no weights), so that a
    /// fresh clone reuses what was committed.
    pub archive_dir: Option<PathBuf>,
    pub seeds: usize,
    pub device: DeviceSpec,
    pub progress: bool,
}

/// The finished runs of one candidate configuration, one per seed.
#[derive(Debug, Clone)]
pub struct CandidateRuns {
    pub config: ExperimentConfig,
    pub runs: Vec<RunSummary>,
}

impl CandidateRuns {
    /// Mean and standard deviation over seeds of a final-epoch number.
    pub fn final_stat(&self, value: impl Fn(&crate::metrics::EpochMetrics) -> Option<f64>) -> Option<Stat> {
        let values: Vec<f64> = self.runs.iter().filter_map(|r| r.epochs.last().and_then(&value)).collect();
        Stat::of(&values)
    }
}

/// Mean ± sample standard deviation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

impl Stat {
    pub fn of(values: &[f64]) -> Option<Stat> {
        if values.is_empty() {
            return None;
        }
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = if n > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        Some(Stat { mean, std: var.sqrt(), n })
    }
}

/// A cell after running: the chosen candidate, or why it could not run.
#[derive(Debug, Clone)]
pub enum CellOutcome {
    Done { chosen: CandidateRuns, candidates: usize },
    Missing(String),
}

impl Runner {
    /// The run directory of `config`.
    pub fn run_dir(&self, config: &ExperimentConfig) -> PathBuf {
        crate::config::run_dir(&self.runs_dir, config)
    }

    /// Runs `config` unless it already finished (here or in the archive); resumes it if it
    /// was interrupted.
    pub fn run(&self, config: &ExperimentConfig) -> Result<RunSummary> {
        self.run_inner(config, false)
    }

    /// As [`Runner::run`], but a run found only in the archive (which keeps no weights) is
    /// trained here, so that its `model.bpk` exists under [`Runner::run_dir`].
    pub fn run_with_model(&self, config: &ExperimentConfig) -> Result<RunSummary> {
        self.run_inner(config, true)
    }

    fn run_inner(&self, config: &ExperimentConfig, need_model: bool) -> Result<RunSummary> {
        let mut config = config.clone();
        config.device = self.device;
        let run_dir = self.run_dir(&config);
        let hash = config.hash();
        if let Some(summary) = reusable(&run_dir, &hash)? {
            self.archive(&run_dir)?;
            return Ok(summary);
        }
        if !need_model
            && let Some(archive) = &self.archive_dir
            && let Some(summary) = reusable(&archive.join(run_dir.file_name().unwrap_or_default()), &hash)?
        {
            return Ok(summary);
        }
        let options = RunOptions { data_dir: self.data_dir.clone(), run_dir: run_dir.clone(), progress: self.progress };
        let summary = crate::train::train(&config, &options).with_context(|| format!("run {}", config.slug()))?;
        self.archive(&run_dir)?;
        Ok(summary)
    }

    /// Copies a finished run's small files into the archive, `result.json` last.
    fn archive(&self, run_dir: &Path) -> Result<()> {
        let Some(archive) = &self.archive_dir else { return Ok(()) };
        let target = archive.join(run_dir.file_name().unwrap_or_default());
        if target.join(files::RESULT).exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&target).with_context(|| format!("cannot create {}", target.display()))?;
        for name in [files::CONFIG, files::METRICS, files::RESULT] {
            let bytes = std::fs::read(run_dir.join(name))
                .with_context(|| format!("cannot read {}", run_dir.join(name).display()))?;
            crate::atomic::write_atomic(&target.join(name), &bytes)?;
        }
        Ok(())
    }

    /// Runs every seed of a candidate.
    pub fn run_seeds(&self, config: &ExperimentConfig) -> Result<CandidateRuns> {
        let runs = (0..self.seeds as u64)
            .map(|seed| {
                let mut config = config.clone();
                config.seed = seed;
                println!("  {}", config.slug());
                self.run(&config)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CandidateRuns { config: config.clone(), runs })
    }

    /// Runs every candidate of a cell and keeps the one with the best mean validation accuracy
    /// (the first candidate wins ties; a single candidate needs no validation).
    pub fn run_cell(&self, cell: &Cell) -> Result<CellOutcome> {
        if let Some(missing) = self.missing_data(&cell.candidates[0]) {
            return Ok(CellOutcome::Missing(missing));
        }
        let mut best: Option<(f64, CandidateRuns)> = None;
        for candidate in &cell.candidates {
            let runs = self.run_seeds(candidate)?;
            let score = runs.final_stat(|m| m.val_accuracy).map_or(0.0, |s| s.mean);
            if best.as_ref().is_none_or(|(b, _)| score > *b) {
                best = Some((score, runs));
            }
        }
        let (_, chosen) = best.context("a cell has at least one candidate")?;
        Ok(CellOutcome::Done { chosen, candidates: cell.candidates.len() })
    }

    /// `Some(explanation)` when the data a configuration needs is not on disk.
    pub fn missing_data(&self, config: &ExperimentConfig) -> Option<String> {
        let id = &config.data.dataset;
        match config.data.id() {
            Err(err) => return Some(err.to_string()),
            Ok(crate::DatasetId::Synthetic(_) | crate::DatasetId::SyntheticText(_)) => return None,
            Ok(_) => {}
        }
        let result = match config.model {
            ModelConfig::Vision { .. } => itra_data::load_image_dataset(id, &self.data_dir, itra_data::Split::Test)
                .map(|_| ())
                .map_err(Into::into),
            ModelConfig::Text { .. } => table4::check_text_data(config, &self.data_dir),
        };
        result.err().map(|err: anyhow::Error| err.to_string())
    }
}

/// The summary of a run that already finished with this configuration hash.
pub fn finished(run_dir: &Path, hash: &str) -> Result<Option<RunSummary>> {
    let path = run_dir.join(files::RESULT);
    if !path.exists() {
        return Ok(None);
    }
    let summary: RunSummary = serde_json::from_slice(&std::fs::read(&path)?)
        .with_context(|| format!("corrupt result file {}", path.display()))?;
    if summary.config_hash != hash {
        bail!("{} holds configuration {}, expected {hash}", path.display(), summary.config_hash);
    }
    Ok(Some(summary))
}

/// [`finished`], except that a `result.json` that does not parse or holds another
/// configuration is moved aside to `result.json.rejected` (saying so), and the run counts as
/// not finished: it is trained again rather than stopping a whole target.
fn reusable(run_dir: &Path, hash: &str) -> Result<Option<RunSummary>> {
    match finished(run_dir, hash) {
        Ok(summary) => Ok(summary),
        Err(err) => {
            let path = run_dir.join(files::RESULT);
            let aside = run_dir.join(format!("{}.rejected", files::RESULT));
            std::fs::rename(&path, &aside).with_context(|| {
                format!("{err:#}; and it cannot be moved aside: delete {} to run it again", path.display())
            })?;
            eprintln!("warning: {err:#}; moved it to {}, and the run counts as unfinished", aside.display());
            Ok(None)
        }
    }
}

/// Runs a target's cells, in order.
pub fn run_grid(runner: &Runner, grid: &Grid) -> Result<Vec<(Cell, CellOutcome)>> {
    let mut outcomes = Vec::with_capacity(grid.cells.len());
    for cell in &grid.cells {
        println!("{} / {} / {}", cell.dataset, cell.model, cell.method);
        let outcome = runner.run_cell(cell)?;
        if let CellOutcome::Missing(why) = &outcome {
            println!("  skipped: {why}");
        }
        outcomes.push((cell.clone(), outcome));
    }
    Ok(outcomes)
}

/// Runs `target` for `profile` and writes its outputs under `<results>/<profile>/`.
pub fn reproduce(runner: &Runner, target: Target, profile: Profile) -> Result<PathBuf> {
    let out_dir = runner.results_dir.join(profile.name());
    std::fs::create_dir_all(&out_dir)?;
    let mut runner = runner.clone();
    if runner.archive_dir.is_none() {
        runner.archive_dir = Some(out_dir.join("runs"));
    }
    let runner = &runner;
    match target {
        Target::Table(n) => {
            let grid = match n {
                1 => table1::grid(profile),
                2 => table2::grid(profile),
                3 => table3::grid(profile),
                4 => table4::grid(profile),
                _ => unreachable!("Target::ALL holds tables 1 to 4"),
            };
            let mut runner = runner.clone();
            runner.seeds = grid.max_seeds.map_or(runner.seeds, |cap| runner.seeds.min(cap));
            let outcomes = run_grid(&runner, &grid)?;
            report::write_table(&grid, &outcomes, &out_dir, runner.seeds)
        }
        Target::Figure(1) => figure1::reproduce(runner, profile, &out_dir),
        Target::Figure(2) => figure2::reproduce(runner, profile, &out_dir),
        Target::Figure(3) => figure3::reproduce(runner, profile, &out_dir),
        Target::Figure(_) => unreachable!("Target::ALL holds figures 1 to 3"),
    }
}

/// Groups outcomes by (dataset, model), in first-seen order.
pub fn by_group(outcomes: &[(Cell, CellOutcome)]) -> Vec<((String, String), Vec<&(Cell, CellOutcome)>)> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut groups: BTreeMap<(String, String), Vec<&(Cell, CellOutcome)>> = BTreeMap::new();
    for entry in outcomes {
        let key = (entry.0.dataset.clone(), entry.0.model.clone());
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(entry);
    }
    order.into_iter().map(|key| (key.clone(), groups.remove(&key).unwrap_or_default())).collect()
}
