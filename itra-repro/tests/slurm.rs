//! Table 1's smoke grid through a real Slurm: `itra reproduce table1 --slurm` submits a job
//! array, one array task is cancelled in the middle of its run, `--collect` then marks the table
//! incomplete, `--slurm` again submits only that run, which resumes from its checkpoint, and the
//! collected table equals the one `itra reproduce table1` renders on its own, byte for byte.
//!
//! It needs a Slurm cluster that answers: `.ci/run` starts one on this machine with
//! `scripts/slurm-local.sh start` (Debian's `slurm-wlm` and `munge`) and exports `SLURM_CONF`.
//! Without one the test fails and says so. Every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(420);

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// `itra` with the smoke paths under `root`.
fn command(root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_itra"));
    command
        .arg("--data-dir")
        .arg(root.join("data"))
        .args(args)
        .arg("--runs-dir")
        .arg(root.join("runs"))
        .arg("--results-dir")
        .arg(root.join("results"))
        .env("RUST_BACKTRACE", "0");
    command
}

fn succeeded(args: &[&str], output: Output) -> Output {
    assert!(output.status.success(), "itra {args:?} failed:\n{}", text(&output));
    output
}

fn itra(root: &Path, args: &[&str]) -> Output {
    succeeded(args, command(root, args).output().expect("the itra binary runs"))
}

/// A Slurm command's output, or a failure that says what is missing.
fn slurm(tool: &str, args: &[&str]) -> String {
    let output = Command::new("timeout").arg("30").arg(tool).args(args).output().unwrap_or_else(|err| {
        panic!("cannot run {tool} ({err}): this test needs Slurm (slurm-wlm and munge; .ci/run starts one)")
    });
    assert!(
        output.status.success(),
        "`{tool} {}` failed: {}\nThis test needs a Slurm cluster that answers: run `scripts/slurm-local.sh start` \
         (as root, with Debian's slurm-wlm and munge) and export the SLURM_CONF it prints, as .ci/run does.",
        args.join(" "),
        text(&output).trim()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The job id `--slurm` printed.
fn job_id(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("submitted job "))
        .unwrap_or_else(|| panic!("no job was submitted:\n{}", text(output)));
    line.split(':').next().unwrap().to_owned()
}

/// `(task id, state)` of every task of `job`, finished ones included.
fn states(job: &str) -> Vec<(String, String)> {
    slurm("squeue", &["-h", "-t", "all", "-j", job, "-o", "%i %T"])
        .lines()
        .filter_map(|line| line.split_once(' ').map(|(id, state)| (id.to_owned(), state.trim().to_owned())))
        .collect()
}

fn is_done(state: &str) -> bool {
    ["COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY"]
        .iter()
        .any(|s| state.starts_with(s))
}

/// Waits (bounded) until every task of `job` has ended.
fn wait_for(job: &str) -> Vec<(String, String)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let states = states(job);
        if !states.is_empty() && states.iter().all(|(_, state)| is_done(state)) {
            return states;
        }
        assert!(Instant::now() < deadline, "job {job} did not finish within {WAIT:?}: {states:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The run directory of each line of a submission's `tasks.jsonl`.
fn task_run_dirs(root: &Path) -> Vec<PathBuf> {
    let slurm_dir = root.join("runs/smoke/slurm");
    let mut submissions: Vec<PathBuf> = std::fs::read_dir(&slurm_dir).unwrap().map(|e| e.unwrap().path()).collect();
    submissions.sort();
    let tasks = std::fs::read_to_string(submissions.last().unwrap().join("tasks.jsonl")).unwrap();
    tasks
        .lines()
        .map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            let name = format!("{}-{}", line["slug"].as_str().unwrap(), line["hash"].as_str().unwrap());
            root.join("runs/smoke").join(name)
        })
        .collect()
}

fn table(root: &Path) -> String {
    let text = std::fs::read_to_string(root.join("results/smoke/table1.md")).unwrap();
    text.lines().filter(|line| !line.contains("Revision")).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_smoke_grid_through_slurm_survives_a_cancelled_task_and_gives_the_local_table() {
    // The cluster answers and has a node up.
    let nodes = slurm("sinfo", &["-h", "-o", "%T"]);
    assert!(
        nodes.lines().any(|state| state.starts_with("idle") || state.starts_with("mix") || state.starts_with("alloc")),
        "no Slurm node is up: {nodes:?}"
    );

    // The local reproduction, beside the cluster's (whose tasks run one at a time).
    let local = tempfile::tempdir().unwrap();
    let local_args = ["reproduce", "table1", "--profile", "smoke"];
    let local_run = command(local.path(), &local_args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Submit the grid, one task at a time, and cancel a task while its run is between its
    // first checkpoint and its end (the next one if a run finishes before the cancel lands).
    let cluster = tempfile::tempdir().unwrap();
    let root = cluster.path();
    let submitted = itra(root, &["reproduce", "table1", "--profile", "smoke", "--slurm", "--max-parallel", "1"]);
    let job = job_id(&submitted);
    let run_dirs = task_run_dirs(root);
    assert_eq!(run_dirs.len(), 10, "table 1's smoke grid has 10 runs");
    let deadline = Instant::now() + WAIT;
    let mut cancelled: Option<usize> = None;
    let mut tried = Vec::new();
    while cancelled.is_none() {
        assert!(Instant::now() < deadline, "no task could be cancelled mid-run within {WAIT:?} (tried {tried:?})");
        let running = (0..run_dirs.len()).find(|&i| {
            !tried.contains(&i)
                && run_dirs[i].join("checkpoint/state.cbor").exists()
                && !run_dirs[i].join("result.json").exists()
        });
        let Some(i) = running else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        tried.push(i);
        slurm("scancel", &[&format!("{job}_{i}")]);
        // Did the cancel land before the run finished?
        let until = Instant::now() + Duration::from_secs(60);
        let state = loop {
            let state = states(&job).into_iter().find(|(id, _)| *id == format!("{job}_{i}")).map(|s| s.1);
            if state.as_deref().is_some_and(is_done) || Instant::now() > until {
                break state;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if state.as_deref().is_some_and(|s| s.starts_with("CANCELLED")) && !run_dirs[i].join("result.json").exists() {
            cancelled = Some(i);
        }
    }
    let victim = cancelled.unwrap();
    let ended = wait_for(&job);
    for (id, state) in &ended {
        let wanted = if *id == format!("{job}_{victim}") { "CANCELLED" } else { "COMPLETED" };
        assert!(state.starts_with(wanted) || tried.iter().any(|t| *id == format!("{job}_{t}")), "{id}: {state}");
    }
    assert!(!run_dirs[victim].join("result.json").exists());

    // Collecting now renders the finished runs and marks the rest.
    let collected = itra(root, &["reproduce", "table1", "--profile", "smoke", "--collect"]);
    let partial = table(root);
    assert!(partial.contains("**Incomplete:") && partial.contains("pending ("), "{partial}");
    assert!(text(&collected).contains("1 of 10 runs have not finished"), "{}", text(&collected));

    // Submitting again submits only the cancelled run, which resumes.
    let again = itra(root, &["reproduce", "table1", "--profile", "smoke", "--slurm"]);
    assert!(text(&again).contains("submitted job") && text(&again).contains(": 1 array task,"), "{}", text(&again));
    let job = job_id(&again);
    let ended = wait_for(&job);
    assert_eq!(ended.len(), 1);
    assert!(ended[0].1.starts_with("COMPLETED"), "{ended:?}");
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dirs[victim].join("result.json")).unwrap()).unwrap();
    assert_eq!(result["resumed_from_epoch"], 1, "the cancelled run resumed from its epoch-1 checkpoint");

    // Everything finished: nothing more to submit, and the table is the local one.
    let done = itra(root, &["reproduce", "table1", "--profile", "smoke", "--slurm"]);
    assert!(text(&done).contains("nothing to submit"), "{}", text(&done));
    itra(root, &["reproduce", "table1", "--profile", "smoke", "--collect"]);
    succeeded(&local_args, local_run.wait_with_output().unwrap());
    assert_eq!(table(root), table(local.path()));
}
