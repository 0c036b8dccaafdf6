//! Handing a target's runs out to other processes and machines, and gathering them back.
//!
//! - `itra reproduce <target> --plan` writes every run of the grid as one JSON line
//!   ([`PlanLine`]) without training anything;
//! - `itra run --config <file> [--index N]` runs exactly one of them into the shared runs
//!   directory (the same directory, lock and archive as `itra reproduce` uses);
//! - `itra reproduce <target> --slurm` writes the unfinished runs and an `sbatch` script for a job
//!   array over them (task `N` runs line `N`), submits it and says how to collect;
//! - `itra reproduce <target> --collect` renders from the finished runs only, marking what is
//!   missing.
//!
//! A run is a pure function of its configuration and lives in the directory its hash names, so
//! the pieces need no coordinator: the per-run lock (`run_lock`) keeps two processes from
//! training one run, and `result.json` says it is done.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::config::ExperimentConfig;
use crate::experiments::{PlannedRun, Profile, Runner, Target};
use crate::provenance::GIT_REVISION;
use crate::run_files::RunSummary;

/// One run of a plan, as a line of its JSON lines file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanLine {
    /// The table or figure it belongs to (`table2`).
    pub target: String,
    /// The profile, which names its subdirectory of the runs and results directories.
    pub profile: Profile,
    pub slug: String,
    /// The configuration's hash, checked again before the run starts.
    pub hash: String,
    /// The target needs the run's weights, not only its numbers (Figure 3).
    #[serde(default)]
    pub need_model: bool,
    pub config: ExperimentConfig,
}

impl PlanLine {
    pub fn new(target: Target, profile: Profile, run: &PlannedRun) -> Self {
        PlanLine {
            target: target.name(),
            profile,
            slug: run.config.slug(),
            hash: run.config.hash(),
            need_model: run.need_model,
            config: run.config.clone(),
        }
    }
}

/// Where `--plan` writes by default: `<runs>/<profile>/plans/<target>.jsonl`.
pub fn default_plan_path(runs_root: &Path, target: Target, profile: Profile) -> PathBuf {
    runs_root.join(profile.name()).join("plans").join(format!("{}.jsonl", target.name()))
}

/// The lines as JSON lines.
pub fn plan_text(lines: &[PlanLine]) -> Result<String> {
    let mut text = String::new();
    for line in lines {
        text.push_str(&serde_json::to_string(line)?);
        text.push('\n');
    }
    Ok(text)
}

/// Writes the plan (atomically) and returns how many of its runs had finished.
pub fn write_plan(path: &Path, lines: &[PlanLine]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    write_atomic(path, plan_text(lines)?.as_bytes())
}

/// What `itra run --config` reads: a line of a plan, or a bare [`ExperimentConfig`] (a run's
/// `config.json` has one under `config`).
#[derive(Debug, Clone, PartialEq)]
pub enum RunRequest {
    Planned(Box<PlanLine>),
    Config(Box<ExperimentConfig>),
}

/// Reads the run `index` (0-based; Slurm's `SLURM_ARRAY_TASK_ID`) of `path`: a JSON lines plan,
/// or a JSON file holding one plan line, one configuration, or a run's `config.json`. A file of
/// several runs needs an index; a file of one takes none or 0.
pub fn read_request(path: &Path, index: Option<usize>) -> Result<RunRequest> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let whole: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    let (value, where_) = match whole {
        Some(value) if !value.is_array() => {
            if index.is_some_and(|i| i != 0) {
                bail!("{} holds one run; --index {} is past it", path.display(), index.unwrap_or(0));
            }
            (value, path.display().to_string())
        }
        _ => {
            let lines: Vec<(usize, &str)> =
                text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()).collect();
            let index = match (index, lines.len()) {
                (Some(index), _) => index,
                (None, 1) => 0,
                (None, n) => bail!("{} holds {n} runs; say which with --index (0 to {})", path.display(), n - 1),
            };
            let Some(&(number, line)) = lines.get(index) else {
                bail!(
                    "{} holds {} runs (indices 0 to {}); --index {index} is past the end",
                    path.display(),
                    lines.len(),
                    lines.len().saturating_sub(1)
                );
            };
            let value = serde_json::from_str(line)
                .with_context(|| format!("line {} of {} is not JSON", number + 1, path.display()))?;
            (value, format!("line {} of {}", number + 1, path.display()))
        }
    };
    if value.get("target").is_some() && value.get("hash").is_some() {
        let line: PlanLine =
            serde_json::from_value(value).with_context(|| format!("{where_} is not a plan line of this version"))?;
        let hash = line.config.hash();
        if hash != line.hash {
            bail!(
                "{where_} was planned as configuration {}, but this build hashes it to {hash}: the plan comes from \
                 another version of itra; write it again with `itra reproduce {} --profile {} --plan`",
                line.hash,
                line.target,
                line.profile
            );
        }
        return Ok(RunRequest::Planned(Box::new(line)));
    }
    let config = value.get("config").filter(|_| value.get("data").is_none()).cloned().unwrap_or(value);
    let config: ExperimentConfig = serde_json::from_value(config)
        .with_context(|| format!("{where_} is neither a plan line nor a configuration"))?;
    Ok(RunRequest::Config(Box::new(config)))
}

/// Runs one planned run as `itra reproduce` would have: into `<runs_root>/<profile>/`, copied into
/// the archive `<results_root>/<profile>/runs/`, reused if it already finished, resumed if it
/// was interrupted, refused while another process holds it.
pub fn run_planned(line: &PlanLine, runner: &Runner) -> Result<RunSummary> {
    let summary = if line.need_model { runner.run_with_model(&line.config)? } else { runner.run(&line.config)? };
    summary.context("the runner trains in this mode")
}

/// The runner `itra run` uses for a plan line: the profile's subdirectories, training mode.
pub fn runner_for(line: &PlanLine, data_dir: PathBuf, runs_root: &Path, results_root: &Path, progress: bool) -> Runner {
    let mut runner =
        Runner::new(data_dir, runs_root.join(line.profile.name()), results_root.to_path_buf(), 1, line.config.device);
    runner.archive_dir = Some(results_root.join(line.profile.name()).join("runs"));
    runner.progress = progress;
    runner
}

/// The options of a Slurm submission.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    /// `--gres`, e.g. `gpu:1`.
    pub gres: Option<String>,
    /// `--time`, e.g. `12:00:00`.
    pub time: Option<String>,
    pub cpus_per_task: Option<usize>,
    /// `--mem`, e.g. `32G`.
    pub mem: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// At most this many array tasks at once (`--array=...%N`).
    pub max_parallel: Option<usize>,
    /// Further `sbatch` options, each written as its own `#SBATCH` line (`--constraint=a100`).
    pub extra: Vec<String>,
    /// The `itra` binary the tasks run (default: this one); it must be reachable from the nodes.
    pub itra_bin: Option<PathBuf>,
    /// Write the script and the task list, but do not call `sbatch`.
    pub no_submit: bool,
}

/// What `--slurm` wrote and submitted.
#[derive(Debug, Clone)]
pub struct Submission {
    /// `<runs>/<profile>/slurm/<target>-<n>/`, with `tasks.jsonl`, `job.sbatch` and `logs/`.
    pub dir: PathBuf,
    pub script: PathBuf,
    pub tasks: Vec<PlanLine>,
    /// Runs not submitted because a live process holds them: slug and holder.
    pub running: Vec<(String, String)>,
    /// `sbatch`'s job id, unless `no_submit`.
    pub job_id: Option<String>,
}

/// Single-quotes `text` for the shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `path` made absolute (created first when `create`), as the nodes must see it.
fn absolute(path: &Path, create: bool) -> Result<PathBuf> {
    if create {
        std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    }
    match path.canonicalize() {
        Ok(path) => Ok(path),
        Err(_) if !create => Ok(std::env::current_dir().context("cannot read the current directory")?.join(path)),
        Err(err) => Err(err).with_context(|| format!("cannot resolve {}", path.display())),
    }
}

/// The batch script of a job array over `tasks` lines of `tasks_file`.
#[allow(clippy::too_many_arguments)]
pub fn sbatch_script(
    target: Target,
    profile: Profile,
    tasks: usize,
    tasks_file: &Path,
    logs: &Path,
    itra_bin: &Path,
    data_dir: &Path,
    runs_root: &Path,
    results_root: &Path,
    options: &SlurmOptions,
) -> String {
    let name = target.name();
    let mut out = String::new();
    let _ = writeln!(out, "#!/bin/bash");
    let _ = writeln!(
        out,
        "# Written by `itra reproduce {name} --profile {profile} --slurm` (itra revision {GIT_REVISION}).\n\
         # One array task per unfinished run: task N runs line N (from 0) of tasks.jsonl. Runs that\n\
         # finished are reused and interrupted ones resume from their checkpoints, so resubmitting this\n\
         # script, or running `--slurm` again (which submits only what is still unfinished), is safe.\n\
         # Edit freely; the lines below are sbatch's options."
    );
    let _ = writeln!(out, "#SBATCH --job-name=itra-{name}-{profile}");
    let limit = options.max_parallel.map_or(String::new(), |n| format!("%{n}"));
    let _ = writeln!(out, "#SBATCH --array=0-{}{limit}", tasks.saturating_sub(1));
    let _ = writeln!(out, "#SBATCH --output={}/%A_%a.out", logs.display());
    let optional = [
        ("partition", &options.partition),
        ("gres", &options.gres),
        ("time", &options.time),
        ("mem", &options.mem),
        ("account", &options.account),
        ("qos", &options.qos),
    ];
    for (flag, value) in optional {
        if let Some(value) = value {
            let _ = writeln!(out, "#SBATCH --{flag}={value}");
        }
    }
    if let Some(cpus) = options.cpus_per_task {
        let _ = writeln!(out, "#SBATCH --cpus-per-task={cpus}");
    }
    for extra in &options.extra {
        let _ = writeln!(out, "#SBATCH {extra}");
    }
    let _ = writeln!(out, "\nset -euo pipefail");
    let _ = writeln!(
        out,
        "echo \"itra: array task ${{SLURM_ARRAY_TASK_ID}} of job ${{SLURM_ARRAY_JOB_ID}} on $(hostname)\""
    );
    let _ = writeln!(
        out,
        "exec {} --data-dir {} run --config {} --index \"$SLURM_ARRAY_TASK_ID\" --runs-dir {} --results-dir {}",
        shell_quote(&itra_bin.display().to_string()),
        shell_quote(&data_dir.display().to_string()),
        shell_quote(&tasks_file.display().to_string()),
        shell_quote(&runs_root.display().to_string()),
        shell_quote(&results_root.display().to_string()),
    );
    out
}

/// Plans `target`, writes the unfinished runs (less those a live process holds) and the batch
/// script under `<runs>/<profile>/slurm/<target>-<n>/`, and submits it with `sbatch` unless
/// `options.no_submit`. `None` when every run has finished (there is nothing to submit).
pub fn submit(
    runner: &Runner,
    target: Target,
    profile: Profile,
    runs_root: &Path,
    options: &SlurmOptions,
) -> Result<Option<Submission>> {
    let planned = crate::experiments::plan(runner, target, profile)?;
    let mut tasks = Vec::new();
    let mut running = Vec::new();
    for run in planned.iter().filter(|run| !run.finished) {
        match crate::run_lock::live_holder(&runner.run_dir(&run.config)) {
            Some(holder) => running.push((run.config.slug(), holder.to_string())),
            None => tasks.push(PlanLine::new(target, profile, run)),
        }
    }
    if tasks.is_empty() && running.is_empty() {
        return Ok(None);
    }
    let runs_root = absolute(runs_root, true)?;
    let results_root = absolute(&runner.results_dir, true)?;
    let data_dir = absolute(&runner.data_dir, false)?;
    let base = runs_root.join(profile.name()).join("slurm");
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    // A fresh directory per submission: `<target>-1`, `<target>-2`, ...
    let dir = (1..)
        .map(|n| base.join(format!("{}-{n}", target.name())))
        .find(|dir| std::fs::create_dir(dir).is_ok())
        .context("a fresh submission directory")?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let tasks_file = dir.join("tasks.jsonl");
    write_plan(&tasks_file, &tasks)?;
    let itra_bin = match &options.itra_bin {
        Some(path) => path.canonicalize().with_context(|| format!("--itra-bin {}", path.display()))?,
        None => std::env::current_exe().context("cannot tell where this itra binary is")?,
    };
    let script = dir.join("job.sbatch");
    let text = sbatch_script(
        target,
        profile,
        tasks.len(),
        &tasks_file,
        &logs,
        &itra_bin,
        &data_dir,
        &runs_root,
        &results_root,
        options,
    );
    write_atomic(&script, text.as_bytes())?;
    let mut submission = Submission { dir, script, tasks, running, job_id: None };
    if options.no_submit || submission.tasks.is_empty() {
        return Ok(Some(submission));
    }
    let output = Command::new("sbatch")
        .arg("--parsable")
        .arg(&submission.script)
        .current_dir(&submission.dir)
        .output()
        .map_err(|err| {
            anyhow::anyhow!(
                "cannot run sbatch ({err}); the script is written: {} (submit it on a Slurm login node, or pass \
                 --no-submit to only write it)",
                submission.script.display()
            )
        })?;
    if !output.status.success() {
        bail!(
            "sbatch refused {} ({}): {}",
            submission.script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    // `--parsable` prints `<job id>` or `<job id>;<cluster>`.
    let job_id = stdout.trim().split(';').next().unwrap_or_default().to_owned();
    if job_id.is_empty() || !job_id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch printed no job id for {}: `{}`", submission.script.display(), stdout.trim());
    }
    submission.job_id = Some(job_id);
    Ok(Some(submission))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::table1;

    fn line(seed: u64) -> PlanLine {
        let mut config = table1::config("fmnist", itra_core::Method::ItraC, 0.6, Profile::Smoke);
        config.seed = seed;
        PlanLine::new(Target::Table(1), Profile::Smoke, &PlannedRun { config, need_model: false, finished: false })
    }

    #[test]
    fn a_plan_line_is_read_back_by_index_and_an_index_past_the_end_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.jsonl");
        write_plan(&path, &[line(0), line(1), line(2)]).unwrap();
        assert_eq!(read_request(&path, Some(1)).unwrap(), RunRequest::Planned(Box::new(line(1))));
        let err = read_request(&path, None).unwrap_err().to_string();
        assert!(err.contains("holds 3 runs") && err.contains("--index"), "{err}");
        let err = read_request(&path, Some(3)).unwrap_err().to_string();
        assert!(err.contains("indices 0 to 2") && err.contains("plan.jsonl"), "{err}");
    }

    #[test]
    fn a_plan_line_whose_hash_this_build_does_not_give_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.jsonl");
        let mut stale = line(1);
        stale.hash = "0123456789abcdef".into();
        write_plan(&path, &[line(0), stale]).unwrap();
        assert!(read_request(&path, Some(0)).is_ok());
        let err = format!("{:#}", read_request(&path, Some(1)).unwrap_err());
        assert!(err.contains("0123456789abcdef") && err.contains("--plan") && err.contains("line 2 of"), "{err}");
    }

    #[test]
    fn a_bare_configuration_and_a_runs_config_json_are_runs_too() {
        let dir = tempfile::tempdir().unwrap();
        let config = line(4).config;
        let bare = dir.path().join("bare.json");
        std::fs::write(&bare, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        assert_eq!(read_request(&bare, None).unwrap(), RunRequest::Config(Box::new(config.clone())));
        let provenance = dir.path().join("config.json");
        let record = serde_json::json!({ "config": config, "config_hash": config.hash() });
        std::fs::write(&provenance, serde_json::to_vec(&record).unwrap()).unwrap();
        assert_eq!(read_request(&provenance, Some(0)).unwrap(), RunRequest::Config(Box::new(config)));
        let garbage = dir.path().join("garbage.json");
        std::fs::write(&garbage, "{\"epochs\": \"many\"}").unwrap();
        let err = format!("{:#}", read_request(&garbage, None).unwrap_err());
        assert!(err.contains("garbage.json") && err.contains("neither a plan line nor a configuration"), "{err}");
    }

    #[test]
    fn the_batch_script_runs_line_n_as_task_n_with_the_options_given() {
        let options = SlurmOptions {
            partition: Some("gpu".into()),
            gres: Some("gpu:1".into()),
            time: Some("12:00:00".into()),
            cpus_per_task: Some(8),
            max_parallel: Some(4),
            extra: vec!["--constraint=a100".into()],
            ..SlurmOptions::default()
        };
        let script = sbatch_script(
            Target::Table(2),
            Profile::Paper,
            30,
            Path::new("/shared/runs/paper/slurm/table2-1/tasks.jsonl"),
            Path::new("/shared/runs/paper/slurm/table2-1/logs"),
            Path::new("/home/me/it's/itra"),
            Path::new("/shared/data"),
            Path::new("/shared/runs"),
            Path::new("/shared/results"),
            &options,
        );
        for expected in [
            "#!/bin/bash\n",
            "#SBATCH --job-name=itra-table2-paper\n",
            "#SBATCH --array=0-29%4\n",
            "#SBATCH --output=/shared/runs/paper/slurm/table2-1/logs/%A_%a.out\n",
            "#SBATCH --partition=gpu\n",
            "#SBATCH --gres=gpu:1\n",
            "#SBATCH --time=12:00:00\n",
            "#SBATCH --cpus-per-task=8\n",
            "#SBATCH --constraint=a100\n",
            "exec '/home/me/it'\\''s/itra' --data-dir '/shared/data' run --config \
             '/shared/runs/paper/slurm/table2-1/tasks.jsonl' --index \"$SLURM_ARRAY_TASK_ID\" --runs-dir \
             '/shared/runs' --results-dir '/shared/results'\n",
        ] {
            assert!(script.contains(expected), "missing {expected:?} in\n{script}");
        }
        assert!(!script.contains("--mem") && !script.contains("--account"), "{script}");
    }
}
