//! The pieces a cluster runs, without a cluster: a plan's line run by `itra run --config` in
//! two processes at once trains once and gives the numbers of a run on its own, and the plans of
//! the figures name the runs the figures read.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use itra_repro::DeviceSpec;
use itra_repro::experiments::{Profile, Runner, Target, plan};

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn itra(root: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_itra"));
    command.arg("--data-dir").arg(root.join("data")).env("RUST_BACKTRACE", "0");
    command
}

/// `itra run` of line `index` of `plan`, its runs under `root`.
fn run_line(root: &Path, plan: &Path, index: usize) -> Command {
    let mut command = itra(root);
    command
        .arg("run")
        .arg("--config")
        .arg(plan)
        .args(["--index", &index.to_string(), "--runs-dir"])
        .arg(root.join("runs"))
        .arg("--results-dir")
        .arg(root.join("results"));
    command
}

/// The epochs of a run's `result.json`, timings removed.
fn numbers(run_dir: &Path) -> Vec<serde_json::Value> {
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("result.json")).unwrap()).unwrap();
    let mut epochs = summary["epochs"].as_array().unwrap().clone();
    for e in &mut epochs {
        e["images_per_second"] = 0.into();
        e["train_seconds"] = 0.into();
    }
    epochs
}

#[test]
fn two_processes_given_one_planned_run_train_it_once() {
    let root = tempfile::tempdir().unwrap();
    let planned = itra(root.path())
        .args(["reproduce", "table1", "--profile", "smoke", "--plan", "--runs-dir"])
        .arg(root.path().join("runs"))
        .output()
        .unwrap();
    assert!(planned.status.success(), "{}", text(&planned));
    let plan = root.path().join("runs/smoke/plans/table1.jsonl");
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&plan).unwrap().lines().nth(2).unwrap()).unwrap();
    let run_name = format!("{}-{}", line["slug"].as_str().unwrap(), line["hash"].as_str().unwrap());

    let alone = tempfile::tempdir().unwrap();
    let output = run_line(alone.path(), &plan, 2).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let expected = numbers(&alone.path().join("runs/smoke").join(&run_name));
    // The run was copied to the archive of committed runs, as `itra reproduce` copies it.
    assert!(alone.path().join("results/smoke/runs").join(&run_name).join("result.json").exists());

    for delay_ms in [0u64, 300, 1500] {
        let shared = tempfile::tempdir().unwrap();
        let spawn = || run_line(shared.path(), &plan, 2).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let first = spawn();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let second = spawn();
        let outputs = [first.wait_with_output().unwrap(), second.wait_with_output().unwrap()];
        let succeeded = outputs.iter().filter(|o| o.status.success()).count();
        assert!(succeeded >= 1, "delay {delay_ms} ms: neither finished:\n{}\n{}", text(&outputs[0]), text(&outputs[1]));
        for output in outputs.iter().filter(|o| !o.status.success()) {
            // The loser was refused, naming who trains the run.
            assert!(text(output).contains("pid"), "delay {delay_ms} ms: {}", text(output));
        }
        let run_dir = shared.path().join("runs/smoke").join(&run_name);
        assert_eq!(numbers(&run_dir), expected, "delay {delay_ms} ms");
        let lines = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap().lines().count();
        assert_eq!(lines, expected.len(), "delay {delay_ms} ms: metrics.jsonl holds each epoch once");
    }
}

#[test]
fn a_finished_planned_run_is_reused_not_trained_again() {
    let root = tempfile::tempdir().unwrap();
    let runner = Runner::new(
        root.path().join("data"),
        root.path().join("runs/smoke"),
        root.path().join("results"),
        1,
        DeviceSpec::Cpu,
    );
    let runs = plan(&runner, Target::Table(1), Profile::Smoke).unwrap();
    let line = itra_repro::cluster::PlanLine::new(Target::Table(1), Profile::Smoke, &runs[0]);
    let file = root.path().join("one.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&line).unwrap()).unwrap();
    let command = || run_line(root.path(), &file, 0).output().unwrap();
    let first = command();
    assert!(first.status.success(), "{}", text(&first));
    let result = root.path().join("runs/smoke").join(format!("{}-{}", line.slug, line.hash)).join("result.json");
    let written = std::fs::metadata(&result).unwrap().modified().unwrap();
    let second = command();
    assert!(second.status.success(), "{}", text(&second));
    assert_eq!(std::fs::metadata(&result).unwrap().modified().unwrap(), written, "not trained again");
    let replanned = plan(&runner, Target::Table(1), Profile::Smoke).unwrap();
    assert!(replanned[0].finished && !replanned[1].finished, "the plan sees which runs finished");
}

#[test]
fn the_plans_of_the_figures_name_the_runs_they_read() {
    let root = tempfile::tempdir().unwrap();
    let runner = Runner::new(
        root.path().join("data"),
        root.path().join("runs/smoke"),
        root.path().join("results"),
        2,
        DeviceSpec::Cpu,
    );
    let figure1 = plan(&runner, Target::Figure(1), Profile::Smoke).unwrap();
    let slugs: Vec<String> = figure1.iter().map(|run| run.config.slug()).collect();
    assert_eq!(slugs.len(), 4, "baseline and ITRA-c, two seeds each: {slugs:?}");
    assert!(slugs.iter().any(|s| s.contains("baseline-s1")) && slugs.iter().any(|s| s.contains("itra-c-l0.6-s0")));
    assert!(figure1.iter().all(|run| !run.finished && !run.need_model));
    // Figure 3 reads the weights of seed 0 of both.
    let figure3 = plan(&runner, Target::Figure(3), Profile::Smoke).unwrap();
    assert_eq!(figure3.len(), 2);
    assert!(figure3.iter().all(|run| run.need_model && run.config.seed == 0), "{figure3:?}");
    // Planning trained nothing and rendered nothing.
    assert!(!root.path().join("runs").exists() && !root.path().join("results/smoke/figure1.json").exists());
}
