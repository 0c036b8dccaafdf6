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
use crate::run_files::{AlreadyFinished, RunOptions, RunSummary, files};

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
    /// Whether runs that have not finished are trained here.
    pub mode: RunMode,
    /// Every run the target asked for, finished or not (shared by clones of this runner).
    pub ledger: Ledger,
}

/// What the runner does with a run that has not finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunMode {
    /// Trains it (resuming it if it was interrupted).
    #[default]
    Train,
    /// Trains nothing: targets use the finished runs only, and every other run is noted in the
    /// ledger as pending (for `--plan`, `--slurm` and `--collect`).
    FinishedOnly,
}

/// One run a target asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRun {
    /// The configuration, with its seed and the runner's device.
    pub config: ExperimentConfig,
    /// The target needs its weights (`model.bpk`), not only its numbers (Figure 3).
    pub need_model: bool,
    /// It had finished when the target asked for it.
    pub finished: bool,
}

/// The runs a target asked for, in order, each once (a later request that needs the weights
/// upgrades an earlier one).
#[derive(Debug, Clone, Default)]
pub struct Ledger(std::sync::Arc<std::sync::Mutex<Vec<PlannedRun>>>);

impl Ledger {
    fn record(&self, config: &ExperimentConfig, need_model: bool, finished: bool) {
        let mut runs = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let hash = config.hash();
        match runs.iter_mut().find(|run| run.config.hash() == hash) {
            Some(run) => {
                if need_model && !run.need_model {
                    run.need_model = true;
                    run.finished = finished;
                }
            }
            None => runs.push(PlannedRun { config: config.clone(), need_model, finished }),
        }
    }

    /// Every run asked for so far.
    pub fn runs(&self) -> Vec<PlannedRun> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The runs asked for that had not finished.
    pub fn pending(&self) -> Vec<PlannedRun> {
        self.runs().into_iter().filter(|run| !run.finished).collect()
    }
}

/// The finished runs of one candidate configuration, one per seed.
#[derive(Debug, Clone)]
pub struct CandidateRuns {
    pub config: ExperimentConfig,
    pub runs: Vec<RunSummary>,
    /// The slugs of the seeds that have not finished ([`RunMode::FinishedOnly`] only).
    pub pending: Vec<String>,
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
    Done {
        chosen: CandidateRuns,
        candidates: usize,
    },
    Missing(String),
    /// Some of its runs have not finished ([`RunMode::FinishedOnly`]): `finished` of `total`.
    Pending {
        finished: usize,
        total: usize,
    },
}

impl Runner {
    /// A runner that trains what has not finished, with no archive and no progress bars.
    pub fn new(data_dir: PathBuf, runs_dir: PathBuf, results_dir: PathBuf, seeds: usize, device: DeviceSpec) -> Self {
        Runner {
            data_dir,
            runs_dir,
            results_dir,
            archive_dir: None,
            seeds,
            device,
            progress: false,
            mode: RunMode::Train,
            ledger: Ledger::default(),
        }
    }

    /// The run directory of `config`.
    pub fn run_dir(&self, config: &ExperimentConfig) -> PathBuf {
        crate::config::run_dir(&self.runs_dir, config)
    }

    /// Runs `config` unless it already finished (here or in the archive); resumes it if it
    /// was interrupted. `None` when it has not finished and the mode trains nothing.
    pub fn run(&self, config: &ExperimentConfig) -> Result<Option<RunSummary>> {
        self.run_inner(config, false)
    }

    /// As [`Runner::run`], but a run found only in the archive (which keeps no weights) is
    /// trained here, so that its `model.bpk` exists under [`Runner::run_dir`].
    pub fn run_with_model(&self, config: &ExperimentConfig) -> Result<Option<RunSummary>> {
        self.run_inner(config, true)
    }

    /// The finished run of `config` (here, or in the archive unless the weights are needed).
    fn finished_run(&self, config: &ExperimentConfig, need_model: bool) -> Result<Option<RunSummary>> {
        let run_dir = self.run_dir(config);
        let hash = config.hash();
        if let Some(summary) = reusable(&run_dir, &hash)? {
            self.archive(&run_dir)?;
            return Ok(Some(summary));
        }
        if !need_model
            && let Some(archive) = &self.archive_dir
            && let Some(summary) = reusable(&archive.join(run_dir.file_name().unwrap_or_default()), &hash)?
        {
            return Ok(Some(summary));
        }
        Ok(None)
    }

    fn run_inner(&self, config: &ExperimentConfig, need_model: bool) -> Result<Option<RunSummary>> {
        let mut config = config.clone();
        config.device = self.device;
        let found = self.finished_run(&config, need_model)?;
        self.ledger.record(&config, need_model, found.is_some());
        if found.is_some() || self.mode == RunMode::FinishedOnly {
            return Ok(found);
        }
        let run_dir = self.run_dir(&config);
        let options = RunOptions {
            data_dir: self.data_dir.clone(),
            run_dir: run_dir.clone(),
            progress: self.progress,
            reuse_finished: true,
        };
        let summary = match crate::train::train(&config, &options) {
            Ok(summary) => summary,
            // Another process (an array task given the same run) finished it first.
            Err(err) if err.is::<AlreadyFinished>() => match err.downcast::<AlreadyFinished>() {
                Ok(AlreadyFinished(summary)) => *summary,
                Err(err) => return Err(err),
            },
            Err(err) => return Err(err.context(format!("run {}", config.slug()))),
        };
        self.archive(&run_dir)?;
        Ok(Some(summary))
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
        let mut runs = Vec::with_capacity(self.seeds);
        let mut pending = Vec::new();
        for seed in 0..self.seeds as u64 {
            let mut config = config.clone();
            config.seed = seed;
            match self.run(&config)? {
                Some(summary) => {
                    println!("  {}", config.slug());
                    runs.push(summary);
                }
                None => {
                    println!("  {} (not finished)", config.slug());
                    pending.push(config.slug());
                }
            }
        }
        Ok(CandidateRuns { config: config.clone(), runs, pending })
    }

    /// Runs every candidate of a cell and keeps the one with the best mean validation accuracy
    /// (the first candidate wins ties; a single candidate needs no validation). A cell with a
    /// run that has not finished is pending, so that lambda is only ever chosen over all seeds
    /// of all candidates.
    pub fn run_cell(&self, cell: &Cell) -> Result<CellOutcome> {
        if let Some(missing) = self.missing_data(&cell.candidates[0]) {
            return Ok(CellOutcome::Missing(missing));
        }
        let mut best: Option<(f64, CandidateRuns)> = None;
        let (mut finished, mut total) = (0, 0);
        for candidate in &cell.candidates {
            let runs = self.run_seeds(candidate)?;
            finished += runs.runs.len();
            total += runs.runs.len() + runs.pending.len();
            let score = runs.final_stat(|m| m.val_accuracy).map_or(0.0, |s| s.mean);
            if best.as_ref().is_none_or(|(b, _)| score > *b) {
                best = Some((score, runs));
            }
        }
        if finished < total {
            return Ok(CellOutcome::Pending { finished, total });
        }
        let (_, chosen) = best.context("a cell has at least one candidate")?;
        Ok(CellOutcome::Done { chosen, candidates: cell.candidates.len() })
    }

    /// `Some(explanation)` when the data a configuration needs is not on disk. Looks only for
    /// the files the registry lists for both splits (or an image folder's split directories),
    /// decoding nothing: the run loads its data once, when it trains.
    pub fn missing_data(&self, config: &ExperimentConfig) -> Option<String> {
        let dataset = match config.data.id() {
            Ok(dataset) => dataset,
            Err(err) => return Some(err.to_string()),
        };
        let present = || -> Result<()> {
            match &dataset {
                crate::DatasetId::Synthetic(_) | crate::DatasetId::SyntheticText(_) => {}
                crate::DatasetId::AgNewsTestSplit => {
                    crate::text_train::ag_news_test_csv(&self.data_dir)?;
                }
                crate::DatasetId::Registry(spec) => {
                    for split in [itra_data::Split::Test, itra_data::Split::Train] {
                        itra_data::locate(spec, &self.data_dir, split)?;
                    }
                }
                crate::DatasetId::Folder(root) => {
                    for split in [itra_data::Split::Test, itra_data::Split::Train] {
                        itra_data::folder::index_split(root, split)?;
                    }
                }
            }
            Ok(())
        };
        present().err().map(|err| err.to_string())
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
    let output = match target {
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
    }?;
    let pending = runner.ledger.pending();
    if runner.mode == RunMode::FinishedOnly && !pending.is_empty() {
        println!(
            "\n{} of {} runs have not finished; {} shows the finished ones only, marked incomplete:",
            pending.len(),
            runner.ledger.runs().len(),
            output.display()
        );
        for run in &pending {
            println!("  {} ({})", run.config.slug(), runner.run_dir(&run.config).display());
        }
    }
    Ok(output)
}

/// Every run `target` needs in `profile` (each seed its own run, with the runner's device), in
/// the order the target asks for them, and whether each has finished (in the runs directory, or
/// in the archive of committed runs). Trains nothing and renders nothing.
pub fn plan(runner: &Runner, target: Target, profile: Profile) -> Result<Vec<PlannedRun>> {
    let scratch = tempfile::tempdir().context("cannot create a scratch directory for the plan")?;
    let mut runner = runner.clone();
    runner.archive_dir =
        Some(runner.archive_dir.clone().unwrap_or_else(|| runner.results_dir.join(profile.name()).join("runs")));
    runner.results_dir = scratch.path().to_path_buf();
    runner.mode = RunMode::FinishedOnly;
    runner.ledger = Ledger::default();
    reproduce(&runner, target, profile)?;
    Ok(runner.ledger.runs())
}

/// Writes `<stem>.json` for a figure that cannot be drawn yet, naming the runs it waits for,
/// and returns its path.
fn not_drawn(stem: &Path, figure: &str, pending: &[String]) -> Result<PathBuf> {
    let path = stem.with_extension("json");
    let record = serde_json::json!({ "figure": figure, "drawn": false, "pending": pending });
    crate::atomic::write_atomic(&path, &serde_json::to_vec_pretty(&record)?)?;
    println!("{figure}: not drawn, {} run(s) have not finished (see {})", pending.len(), path.display());
    Ok(path)
}

/// The caption line of a figure drawn from the finished runs only.
fn incomplete_caption(pending: &[String]) -> String {
    format!("INCOMPLETE: {} run(s) have not finished; drawn from the finished ones only.", pending.len())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(data_dir: &Path) -> Runner {
        Runner::new(data_dir.to_path_buf(), data_dir.join("runs"), data_dir.join("results"), 1, DeviceSpec::Cpu)
    }

    #[test]
    fn data_is_found_from_the_registrys_file_list_without_decoding_it() {
        let data = tempfile::tempdir().unwrap();
        let config = table1::config("kmnist", Method::Baseline, 0.0, Profile::Cpu);
        let dir = data.path().join("kmnist");
        std::fs::create_dir_all(&dir).unwrap();
        // Every file of both splits, none of them an IDX file: present, and nothing read.
        for name in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz"] {
            std::fs::write(dir.join(name), b"not an idx file").unwrap();
        }
        let missing = runner(data.path()).missing_data(&config).expect("the training labels are missing");
        assert!(
            missing.contains("kmnist train split not found") && missing.contains("train-labels-idx1-ubyte.gz"),
            "{missing}"
        );
        std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), b"not an idx file").unwrap();
        assert_eq!(runner(data.path()).missing_data(&config), None);
    }

    #[test]
    fn an_image_folder_needs_both_split_directories() {
        let data = tempfile::tempdir().unwrap();
        let root = data.path().join("pets");
        std::fs::create_dir_all(root.join("train/cat")).unwrap();
        let mut config = table1::config("kmnist", Method::Baseline, 0.0, Profile::Cpu);
        config.data.dataset = format!("folder:{}", root.display());
        config.model = ModelConfig::Vision { arch: Arch::ResNet18 };
        let missing = runner(data.path()).missing_data(&config);
        assert!(missing.is_some(), "no val/ split: {missing:?}");
        std::fs::create_dir_all(root.join("val/cat")).unwrap();
        assert_eq!(runner(data.path()).missing_data(&config), None);
    }
}
