//! A run directory and what is written into it: provenance, the per-epoch metrics
//! (`metrics.jsonl` and `metrics.parquet`), checkpoints, and at the end the final model and
//! `result.json`, whose presence marks the run done. Shared by the vision and the text loop;
//! it imports nothing above the metrics, the config and the run lock.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::{Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use itra_core::ItraObjective;
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::config::ExperimentConfig;
use crate::metrics::{EpochMetrics, Sums, peak_rss_mib};
use crate::provenance::Provenance;
use crate::run_lock::RunLock;

/// What a finished run reports; written as `result.json`, whose presence marks the run done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub config_hash: String,
    pub run_dir: PathBuf,
    pub epochs: Vec<EpochMetrics>,
    /// Peak resident memory of the process, in MiB, where the OS reports it.
    pub peak_rss_mib: Option<f64>,
    /// The epoch this invocation resumed from (0 for a fresh start).
    pub resumed_from_epoch: usize,
    /// Where the wall time of each epoch this invocation trained went (the vision loop's; not
    /// written to `result.json`).
    #[serde(skip)]
    pub timing: Vec<crate::metrics::EpochTiming>,
    /// The model's input, channels x height x width, after augmentation (the vision loop's;
    /// not written to `result.json`).
    #[serde(skip)]
    pub input_shape: Option<[usize; 3]>,
}

/// Options that do not change a run's numbers.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub data_dir: PathBuf,
    pub run_dir: PathBuf,
    pub progress: bool,
    /// A run that turns out to have finished once its lock is taken (another process trained
    /// it meanwhile) is not trained again: opening it fails with [`AlreadyFinished`]. The
    /// experiment runner sets this; `itra train` trains again.
    pub reuse_finished: bool,
}

/// The run had finished by the time this process held its lock.
#[derive(Debug, thiserror::Error)]
#[error("run {} has already finished", .0.run_dir.display())]
pub struct AlreadyFinished(pub Box<RunSummary>);

/// The training progress bar (hidden unless `show`), positioned at `start` of `total` steps.
pub fn progress_bar(show: bool, total: usize, start: usize) -> ProgressBar {
    let bar = if show { ProgressBar::new(total as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .expect("valid progress template"),
    );
    bar.set_position(start as u64);
    bar
}

/// Advances the progress bar by one step of `epoch` (from 0): the epoch's mean loss so far and
/// its throughput in `unit`s (`img` or `seq`) per second since `started`.
pub fn step_progress(bar: &ProgressBar, epoch: usize, sums: &Sums, batch_size: usize, started: Instant, unit: &str) {
    let seconds = started.elapsed().as_secs_f64();
    bar.set_message(format!(
        "epoch {} loss {:.4} {:.1} {unit}/s",
        epoch + 1,
        sums.loss / sums.steps.max(1) as f64,
        (sums.steps * batch_size) as f64 / seconds.max(1e-9)
    ));
    bar.inc(1);
}

/// Prints an epoch's summary line above the progress bar, or plainly when it is hidden.
pub fn announce(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

/// The files of a run directory.
pub mod files {
    pub const CONFIG: &str = "config.json";
    pub const METRICS: &str = "metrics.jsonl";
    pub const METRICS_TABLE: &str = crate::metrics_table::FILE;
    pub const RESULT: &str = "result.json";
    pub const MODEL: &str = "model.bpk";
    pub const CHECKPOINT: &str = "checkpoint";
    /// In the checkpoint: the objective's module record (Center loss's centres).
    pub const OBJECTIVE: &str = "objective.bpk";
}

/// Everything besides model, optimiser and objective that a resumed run needs.
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointState {
    pub config_hash: String,
    pub epochs_done: usize,
    pub history: Vec<EpochMetrics>,
    /// Center loss's centres, `[K, d]` row-major, in checkpoints written before the objective
    /// was saved with the module store ([`files::OBJECTIVE`]); read, never written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub centers: Option<(Vec<f32>, [usize; 2])>,
    /// Which of those centres were initialised (absent in checkpoints written before
    /// class-mean initialisation, whose centres all counted as initialised); read, never written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center_initialized: Option<Vec<bool>>,
    /// The cached-mode `H1` and its labels: the objective's one state outside its module record.
    pub cache: Option<(Vec<f32>, [usize; 2], Vec<usize>)>,
}

impl CheckpointState {
    /// The state after `history.len()` epochs, with the objective's cached features.
    pub fn capture(config_hash: &str, history: &[EpochMetrics], objective: &ItraObjective) -> Self {
        CheckpointState {
            config_hash: config_hash.to_owned(),
            epochs_done: history.len(),
            history: history.to_vec(),
            centers: None,
            center_initialized: None,
            cache: objective.cached_features().map(|(h, labels)| {
                let (values, shape) = tensor_to_host(&h);
                (values, shape, labels)
            }),
        }
    }
}

fn tensor_to_host(tensor: &Tensor<2>) -> (Vec<f32>, [usize; 2]) {
    (tensor.to_data().iter::<f32>().collect(), tensor.dims())
}

fn host_to_tensor((values, shape): (Vec<f32>, [usize; 2]), device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Writes the checkpoint for `epochs_done` into `<run>/checkpoint/`, replacing the previous one
/// only once the new one is complete.
fn save_checkpoint<M: Module>(
    run_dir: &Path,
    state: &CheckpointState,
    model: &M,
    objective: &ItraObjective,
    optim: &ModuleOptimizer,
) -> Result<()> {
    // Names unique to this writer: the run lock keeps others out, and these keep even a writer
    // that lost it from touching another's files.
    let partial = run_dir.join(format!("{}.partial.{}", files::CHECKPOINT, std::process::id()));
    let done = run_dir.join(files::CHECKPOINT);
    let old = run_dir.join(format!("{}.old.{}", files::CHECKPOINT, std::process::id()));
    for dir in [&partial, &old] {
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
    }
    fs::create_dir_all(&partial)?;
    model
        .save_into(&mut BurnpackStore::from_file(partial.join("model.bpk")).overwrite(true))
        .map_err(|err| anyhow::anyhow!("cannot save the model checkpoint: {err}"))?;
    // The objective's record: Center loss's centres and their initialised mask (the other
    // methods' objectives hold no tensor, and write nothing).
    if objective.center().is_some() {
        objective
            .save_into(&mut BurnpackStore::from_file(partial.join(files::OBJECTIVE)).overwrite(true))
            .map_err(|err| anyhow::anyhow!("cannot save the objective's state: {err}"))?;
    }
    optim.save(partial.join("optimizer.bpk")).map_err(|err| anyhow::anyhow!("cannot save the optimiser: {err:?}"))?;
    let mut state_bytes = Vec::new();
    ciborium::into_writer(state, &mut state_bytes).context("cannot encode the checkpoint state")?;
    fs::write(partial.join(STATE), state_bytes)?;
    if done.exists() {
        fs::rename(&done, &old)?;
    }
    fs::rename(&partial, &done)?;
    if old.exists() {
        fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// The checkpoint's state file: CBOR, whose floats round-trip bit for bit (so the history a
/// resumed run rewrites is the one it wrote). Checkpoints of earlier versions hold
/// [`LEGACY_STATE`] (JSON) instead.
const STATE: &str = "state.cbor";
const LEGACY_STATE: &str = "state.json";

/// Tidies what a writer killed inside [`save_checkpoint`] left: a half-written
/// `checkpoint.partial.<pid>` is removed, and a `checkpoint.old.<pid>` whose replacement never
/// landed becomes the checkpoint again. Runs under the run lock.
fn recover_checkpoint_dirs(run_dir: &Path) -> Result<()> {
    let done = run_dir.join(files::CHECKPOINT);
    let entries = fs::read_dir(run_dir).with_context(|| format!("cannot list {}", run_dir.display()))?;
    let mut olds = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if name.starts_with(&format!("{}.partial", files::CHECKPOINT)) {
            fs::remove_dir_all(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        } else if name.starts_with(&format!("{}.old", files::CHECKPOINT)) {
            olds.push(path);
        }
    }
    for old in olds {
        if done.exists() {
            fs::remove_dir_all(&old).with_context(|| format!("cannot remove {}", old.display()))?;
        } else {
            fs::rename(&old, &done).with_context(|| format!("cannot restore {}", old.display()))?;
        }
    }
    Ok(())
}

/// Loads a checkpoint of this very configuration, if one exists.
fn load_checkpoint<M: Module>(
    run_dir: &Path,
    config_hash: &str,
    model: &mut M,
    optim: ModuleOptimizer,
) -> Result<(Option<CheckpointState>, ModuleOptimizer)> {
    let dir = run_dir.join(files::CHECKPOINT);
    let state_path = dir.join(STATE);
    let legacy_path = dir.join(LEGACY_STATE);
    let state: CheckpointState = if state_path.exists() {
        ciborium::from_reader(fs::read(&state_path)?.as_slice())
            .with_context(|| format!("corrupt checkpoint {}; remove it to start over", state_path.display()))?
    } else if legacy_path.exists() {
        serde_json::from_slice(&fs::read(&legacy_path)?)
            .with_context(|| format!("corrupt checkpoint {}; remove it to start over", legacy_path.display()))?
    } else {
        return Ok((None, optim));
    };
    if state.config_hash != config_hash {
        bail!(
            "checkpoint {} belongs to configuration {}, not {config_hash}; remove it to start over",
            dir.display(),
            state.config_hash
        );
    }
    model
        .load_from(&mut BurnpackStore::from_file(dir.join("model.bpk")))
        .map_err(|err| anyhow::anyhow!("cannot load the model checkpoint in {}: {err}", dir.display()))?;
    let optim = optim
        .load(dir.join("optimizer.bpk"))
        .map_err(|err| anyhow::anyhow!("cannot load the optimiser checkpoint in {}: {err:?}", dir.display()))?;
    Ok((Some(state), optim))
}

/// Puts a checkpoint's objective state back: the centres from the objective's module record in
/// `dir` (or, in an older checkpoint, from `state`), and the cached features.
fn restore_objective(
    objective: &mut ItraObjective,
    dir: &Path,
    state: &mut CheckpointState,
    device: &Device,
) -> Result<()> {
    let record = dir.join(files::OBJECTIVE);
    if objective.center().is_some() && record.exists() {
        objective
            .load_from(&mut BurnpackStore::from_file(&record))
            .map_err(|err| anyhow::anyhow!("cannot load the objective's state from {}: {err}", record.display()))?;
    } else if let (Some(center), Some(centers)) = (objective.center(), state.centers.take()) {
        let classes = centers.1[0];
        let initialized = state.center_initialized.take().unwrap_or_else(|| vec![true; classes]);
        center.restore(host_to_tensor(centers, device), initialized).context("restoring the Center-loss centres")?;
    } else if objective.center().is_some() && state.epochs_done > 0 {
        bail!("checkpoint {} holds no Center-loss centres; remove it to start over", dir.display());
    }
    objective.restore_cache(
        state.cache.take().map(|(values, shape, labels)| (host_to_tensor((values, shape), device), labels)),
    );
    Ok(())
}

/// A run directory being written: provenance, the per-epoch metrics (`metrics.jsonl` and
/// `metrics.parquet`), checkpoints, and at the end the final model and `result.json`. Shared by
/// the vision and the text loop.
pub struct RunFiles {
    /// The run directory's lock, held for as long as the run is being written.
    lock: RunLock,
    run_dir: PathBuf,
    config_hash: String,
    metrics_file: BufWriter<File>,
    history: Vec<EpochMetrics>,
    checkpoint: Option<CheckpointState>,
    /// The epoch training starts from: 0, or the number of epochs in the checkpoint.
    pub start_epoch: usize,
}

impl RunFiles {
    /// Creates the run directory, loads this configuration's checkpoint into `model` and
    /// `optim` if there is one, writes `config.json` and rewrites `metrics.jsonl` from the
    /// checkpoint's history (so an epoch cut short leaves no line behind).
    pub fn open<M: Module>(
        config: &ExperimentConfig,
        options: &RunOptions,
        model: &mut M,
        optim: ModuleOptimizer,
    ) -> Result<(Self, ModuleOptimizer)> {
        let run_dir = options.run_dir.clone();
        fs::create_dir_all(&run_dir).with_context(|| format!("cannot create run directory {}", run_dir.display()))?;
        let lock = RunLock::acquire(&run_dir)?;
        for note in &lock.notes {
            eprintln!("note: {note}");
        }
        let config_hash = config.hash();
        if options.reuse_finished
            && let Ok(bytes) = fs::read(run_dir.join(files::RESULT))
            && let Ok(summary) = serde_json::from_slice::<RunSummary>(&bytes)
            && summary.config_hash == config_hash
        {
            return Err(AlreadyFinished(Box::new(summary)).into());
        }
        recover_checkpoint_dirs(&run_dir)?;
        let (checkpoint, optim) = load_checkpoint(&run_dir, &config_hash, model, optim)?;
        let history = checkpoint.as_ref().map(|state| state.history.clone()).unwrap_or_default();
        Provenance::new(config).write(&run_dir)?;
        let metrics_path = run_dir.join(files::METRICS);
        let mut metrics_file = BufWriter::new(
            File::create(&metrics_path).with_context(|| format!("cannot create {}", metrics_path.display()))?,
        );
        for metrics in &history {
            serde_json::to_writer(&mut metrics_file, metrics)?;
            writeln!(metrics_file)?;
        }
        metrics_file.flush()?;
        let start_epoch = history.len();
        Ok((RunFiles { lock, run_dir, config_hash, metrics_file, history, checkpoint, start_epoch }, optim))
    }

    /// Puts the checkpoint's objective state (Center loss's centres, the cached features) back
    /// into `objective`.
    pub fn restore(&mut self, objective: &mut ItraObjective, device: &Device) -> Result<()> {
        match self.checkpoint.take() {
            Some(mut state) => restore_objective(objective, &self.run_dir.join(files::CHECKPOINT), &mut state, device),
            None => Ok(()),
        }
    }

    /// Appends an epoch's metrics and checkpoints the state after it.
    pub fn record<M: Module>(
        &mut self,
        metrics: EpochMetrics,
        objective: &ItraObjective,
        model: &M,
        optim: &ModuleOptimizer,
    ) -> Result<()> {
        self.lock.check()?;
        serde_json::to_writer(&mut self.metrics_file, &metrics)?;
        writeln!(self.metrics_file)?;
        self.metrics_file.flush()?;
        self.history.push(metrics);
        crate::metrics_table::write(&self.run_dir, &self.history)?;
        let state = CheckpointState::capture(&self.config_hash, &self.history, objective);
        save_checkpoint(&self.run_dir, &state, model, objective, optim)
    }

    /// Saves the final (inference) model, writes `result.json` last and drops the checkpoint.
    pub fn finish<M: Module>(self, model: &M) -> Result<RunSummary> {
        self.lock.check()?;
        model
            .save_into(&mut BurnpackStore::from_file(self.run_dir.join(files::MODEL)).overwrite(true))
            .map_err(|err| anyhow::anyhow!("cannot save the final model: {err}"))?;
        let summary = RunSummary {
            config_hash: self.config_hash,
            run_dir: self.run_dir.clone(),
            epochs: self.history,
            peak_rss_mib: peak_rss_mib(),
            resumed_from_epoch: self.start_epoch,
            timing: Vec::new(),
            input_shape: None,
        };
        write_atomic(&self.run_dir.join(files::RESULT), &serde_json::to_vec_pretty(&summary)?)?;
        fs::remove_dir_all(self.run_dir.join(files::CHECKPOINT)).ok();
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use burn::module::{Module, Param};
    use burn::tensor::Tensor;
    use itra_core::{ItraObjectiveConfig, Method, SecondBatch};

    use super::*;

    fn center_objective(device: &Device) -> ItraObjective {
        ItraObjectiveConfig::new(Method::Center, 3, 2).with_lambda(0.05).init(device).unwrap()
    }

    /// A Center objective after one step on classes 0 and 2: those centres initialised to their
    /// batch means and moved, class 1 not yet seen.
    fn stepped_objective(device: &Device) -> ItraObjective {
        let objective = center_objective(device);
        let h = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, -1.0, 0.5, 0.25], [3, 2]), device);
        let logits = Tensor::<2>::zeros([3, 3], device);
        objective.step_loss(h, logits, &[0, 2, 0], None::<SecondBatch<'_>>).unwrap();
        objective
    }

    #[derive(Module, Debug)]
    struct Tiny {
        w: Param<Tensor<1>>,
    }

    #[test]
    fn the_objectives_state_saves_and_loads_with_the_module_store() {
        let device = Device::flex().autodiff();
        let run = tempfile::tempdir().unwrap();
        let objective = stepped_objective(&device);
        let (centers, initialized) = {
            let center = objective.center().unwrap();
            (center.centers().into_data(), center.initialized())
        };
        assert_eq!(initialized, vec![true, false, true]);
        let model = Tiny { w: Param::from_tensor(Tensor::zeros([2], &device)) };
        let optim = crate::step::optimizer(
            &crate::config::OptimizerConfig::Adam { lr: 1e-3, weight_decay: 0.0 },
            crate::config::WeightDecayMode::Coupled,
        );
        let mut state = CheckpointState::capture("hash", &[], &objective);
        assert!(state.centers.is_none(), "the centres go to the store, not the state file");
        save_checkpoint(run.path(), &state, &model, &objective, &optim).unwrap();
        let dir = run.path().join(files::CHECKPOINT);
        assert!(dir.join(files::OBJECTIVE).exists());

        let mut fresh = center_objective(&device);
        assert_eq!(fresh.center().unwrap().initialized(), vec![false, false, false]);
        restore_objective(&mut fresh, &dir, &mut state, &device).unwrap();
        let center = fresh.center().unwrap();
        assert_eq!(center.initialized(), initialized);
        assert_eq!(center.centers().into_data(), centers);
    }

    #[test]
    fn a_checkpoint_with_the_centres_in_its_state_file_still_restores() {
        // Checkpoints written before the store held the objective carry the centres in CBOR.
        let device = Device::flex().autodiff();
        let run = tempfile::tempdir().unwrap();
        let values = vec![0.5f32, -1.0, 2.0, 0.0, 1.5, 3.0];
        let mut state = CheckpointState {
            config_hash: "hash".into(),
            epochs_done: 1,
            history: Vec::new(),
            centers: Some((values.clone(), [3, 2])),
            center_initialized: Some(vec![true, false, true]),
            cache: None,
        };
        let mut objective = center_objective(&device);
        restore_objective(&mut objective, run.path(), &mut state, &device).unwrap();
        let center = objective.center().unwrap();
        assert_eq!(center.initialized(), vec![true, false, true]);
        assert_eq!(center.centers().into_data().iter::<f32>().collect::<Vec<_>>(), values);

        // A Center checkpoint with neither is refused rather than silently restarted.
        let mut empty = CheckpointState { centers: None, center_initialized: None, ..state };
        let err = restore_objective(&mut center_objective(&device), run.path(), &mut empty, &device).unwrap_err();
        assert!(err.to_string().contains("holds no Center-loss centres"), "{err}");
    }

    #[test]
    fn a_run_found_finished_under_its_lock_is_reused_only_when_asked() {
        // Another process finished the run between the runner's look and its taking the lock.
        let device = Device::flex().autodiff();
        let run = tempfile::tempdir().unwrap();
        let config =
            crate::experiments::table1::config("fmnist", Method::ItraC, 0.6, crate::experiments::Profile::Smoke);
        let finished = RunSummary {
            config_hash: config.hash(),
            run_dir: run.path().to_path_buf(),
            epochs: Vec::new(),
            peak_rss_mib: None,
            resumed_from_epoch: 0,
            timing: Vec::new(),
            input_shape: None,
        };
        write_atomic(&run.path().join(files::RESULT), &serde_json::to_vec(&finished).unwrap()).unwrap();
        let optim = || {
            crate::step::optimizer(
                &crate::config::OptimizerConfig::Adam { lr: 1e-3, weight_decay: 0.0 },
                crate::config::WeightDecayMode::Coupled,
            )
        };
        let mut model = Tiny { w: Param::from_tensor(Tensor::zeros([2], &device)) };
        let options = |reuse_finished| RunOptions {
            data_dir: run.path().join("data"),
            run_dir: run.path().to_path_buf(),
            progress: false,
            reuse_finished,
        };
        let err = RunFiles::open(&config, &options(true), &mut model, optim()).err().expect("refused to train again");
        let found = err.downcast::<AlreadyFinished>().expect("an AlreadyFinished error");
        assert_eq!(found.0.config_hash, config.hash());
        assert!(!run.path().join(files::METRICS).exists(), "nothing of the run was rewritten");
        // Another configuration's result does not count, and `itra train` trains again.
        let mut other = config.clone();
        other.seed = 9;
        assert!(RunFiles::open(&other, &options(true), &mut model, optim()).is_ok());
        assert!(RunFiles::open(&config, &options(false), &mut model, optim()).is_ok());
    }
}
