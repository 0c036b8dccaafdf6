//! The `smoke` profile of every table and figure, end to end, under insta snapshots; and the
//! runner's kill-and-resume guarantee.
//!
//! Snapshots hold the rendered markdown tables and the figures' data series, rounded (smoke
//! accuracy to 0.1, CE to 0.01) so that they survive thread-count and CPU-feature differences;
//! the git revision is filtered out. A deliberate change of numbers means reviewing and
//! committing the new snapshots (`cargo insta review`).

use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use itra_repro::DeviceSpec;
use itra_repro::experiments::{Profile, Runner, Target, reproduce};

/// Burn seeds its generator process-wide, so two trainings in parallel test threads would draw
/// each other's initial weights; the in-process tests take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn runner(root: &Path) -> Runner {
    Runner {
        // No real data: smoke runs only on generated data.
        data_dir: root.join("data"),
        runs_dir: root.join("runs"),
        results_dir: root.join("results"),
        archive_dir: None,
        seeds: Profile::Smoke.default_seeds(),
        device: DeviceSpec::Cpu,
        progress: false,
    }
}

fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"Revision [0-9a-f]+(-dirty)?|Revision unknown", "Revision [rev]");
    settings.set_prepend_module_to_snapshot(false);
    settings
}

fn snapshot_target(name: &str) {
    let _turn = serial();
    let root = tempfile::tempdir().unwrap();
    let target: Target = name.parse().unwrap();
    let output = reproduce(&runner(root.path()), target, Profile::Smoke).expect("smoke target runs");
    let text = match target {
        Target::Table(_) => std::fs::read_to_string(&output).unwrap(),
        Target::Figure(_) => {
            let json = std::fs::read_to_string(output.with_extension("json")).unwrap();
            round_json(&serde_json::from_str(&json).unwrap())
        }
    };
    if let Target::Figure(_) = target {
        for ext in ["png", "svg"] {
            let path = output.with_extension(ext);
            assert!(path.metadata().is_ok_and(|m| m.len() > 1000), "{} is drawn", path.display());
        }
    }
    settings().bind(|| insta::assert_snapshot!(name, text));
}

/// Figure data with floats rounded to 2 decimals, one value per line.
fn round_json(value: &serde_json::Value) -> String {
    fn round(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Number(n) if n.is_f64() => {
                serde_json::json!((n.as_f64().unwrap() * 100.0).round() / 100.0)
            }
            serde_json::Value::Array(items) => serde_json::Value::Array(items.iter().map(round).collect()),
            serde_json::Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), round(v))).collect(),
            other => other.clone(),
        }
    }
    serde_json::to_string_pretty(&round(value)).unwrap()
}

#[test]
fn table1_smoke() {
    snapshot_target("table1");
}

#[test]
fn table2_smoke() {
    snapshot_target("table2");
}

#[test]
fn table3_smoke() {
    snapshot_target("table3");
}

#[test]
fn table4_smoke() {
    snapshot_target("table4");
}

#[test]
fn figure1_smoke() {
    snapshot_target("figure1");
}

#[test]
fn figure2_smoke() {
    snapshot_target("figure2");
}

#[test]
fn figure3_smoke() {
    snapshot_target("figure3");
}

#[test]
fn finished_runs_are_reused_not_rerun() {
    let _turn = serial();
    let root = tempfile::tempdir().unwrap();
    let runner = runner(root.path());
    reproduce(&runner, Target::Table(1), Profile::Smoke).unwrap();
    let result = |dir: &Path| std::fs::metadata(dir.join("result.json")).unwrap().modified().unwrap();
    let run_dirs: Vec<_> = std::fs::read_dir(&runner.runs_dir).unwrap().map(|e| e.unwrap().path()).collect();
    let before: Vec<_> = run_dirs.iter().map(|d| result(d)).collect();
    reproduce(&runner, Target::Table(1), Profile::Smoke).unwrap();
    let after: Vec<_> = run_dirs.iter().map(|d| result(d)).collect();
    assert_eq!(before, after, "a second reproduce rewrites no finished run");
}

#[test]
fn committed_runs_are_found_again_from_a_fresh_clone() {
    let _turn = serial();
    let root = tempfile::tempdir().unwrap();
    let runner = runner(root.path());
    let first = std::fs::read_to_string(reproduce(&runner, Target::Table(1), Profile::Smoke).unwrap()).unwrap();
    // What a clone has: the archived small files under results/smoke/runs, no runs directory.
    let archive = runner.results_dir.join("smoke").join("runs");
    let archived: Vec<_> = std::fs::read_dir(&archive).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(!archived.is_empty());
    for dir in &archived {
        let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["config.json", "metrics.jsonl", "result.json"], "no weights in {}", dir.display());
    }
    std::fs::remove_dir_all(&runner.runs_dir).unwrap();
    let second = std::fs::read_to_string(reproduce(&runner, Target::Table(1), Profile::Smoke).unwrap()).unwrap();
    assert!(!runner.runs_dir.exists(), "nothing was trained again");
    assert_eq!(first, second);
}

#[test]
fn a_corrupt_result_is_set_aside_and_run_again() {
    let _turn = serial();
    let root = tempfile::tempdir().unwrap();
    let runner = runner(root.path());
    let first = std::fs::read_to_string(reproduce(&runner, Target::Table(1), Profile::Smoke).unwrap()).unwrap();
    let some_run = |dir: &Path| std::fs::read_dir(dir).unwrap().next().unwrap().unwrap().path();
    let run_dir = some_run(&runner.runs_dir);
    let archived = runner.results_dir.join("smoke").join("runs").join(run_dir.file_name().unwrap());
    // Both copies cut short, as a full disk or a bad merge leaves them.
    let text = std::fs::read(run_dir.join("result.json")).unwrap();
    let cut = &text[..text.len() / 2];
    for dir in [&run_dir, &archived] {
        std::fs::write(dir.join("result.json"), cut).unwrap();
    }
    // Before: "corrupt result file ..." stopped the whole target.
    let second = std::fs::read_to_string(reproduce(&runner, Target::Table(1), Profile::Smoke).unwrap()).unwrap();
    assert_eq!(first, second, "the run trained again to the same numbers");
    for dir in [&run_dir, &archived] {
        assert_eq!(std::fs::read(dir.join("result.json.rejected")).unwrap(), cut, "{} set aside", dir.display());
        let whole = std::fs::read(dir.join("result.json")).unwrap();
        serde_json::from_slice::<serde_json::Value>(&whole).expect("a whole result again");
    }
}

/// Kills `itra train` (SIGKILL) right after its first checkpoint, resumes it, and checks the
/// final numbers against an uninterrupted run of the same configuration.
#[test]
fn a_killed_run_resumes_to_identical_numbers() {
    kill_and_resume(&[
        "--dataset",
        "synthetic:1x28x28:10:640:64",
        "--model",
        "small-cnn",
        "--method",
        "itra-c",
        "--second-batch",
        "cached",
        "--batch-size",
        "32",
    ]);
}

/// The same with seeded crop-and-flip augmentation: a resumed epoch draws the same views.
#[test]
fn a_killed_augmented_run_resumes_to_identical_numbers() {
    kill_and_resume(&[
        "--dataset",
        "synthetic:1x28x28:10:640:64",
        "--model",
        "small-cnn",
        "--method",
        "itra-c",
        "--augmentation",
        "crop-flip",
        "--batch-size",
        "32",
    ]);
}

/// The same for Center loss: the centres and which classes are initialised are restored.
#[test]
fn a_killed_center_run_resumes_to_identical_numbers() {
    kill_and_resume(&[
        "--dataset",
        "synthetic:1x28x28:10:640:64",
        "--model",
        "small-cnn",
        "--method",
        "center",
        "--batch-size",
        "32",
    ]);
}

/// The same for a text encoder (dropout on, AdamW with warm-up): the tiny BERT on generated text.
#[test]
fn a_killed_text_run_resumes_to_identical_numbers() {
    kill_and_resume(&[
        "--dataset",
        "synthetic-text:3:480:48",
        "--model",
        "tiny-bert",
        "--max-len",
        "16",
        "--method",
        "itra-c",
        "--batch-size",
        "16",
        "--lr",
        "3e-3",
        "--cosine",
    ]);
}

/// Trains `train_args` with ITRA-c (lambda 0.6) for 4 epochs straight, and again killed after
/// its first checkpoint and resumed; both must end with the same numbers.
fn kill_and_resume(train_args: &[&str]) {
    let root = tempfile::tempdir().unwrap();
    let args = |runs: &Path| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_itra"));
        command
            .args(["--data-dir"])
            .arg(root.path().join("data"))
            .arg("train")
            .args(train_args)
            .args(["--quiet", "--lambda", "0.6", "--epochs", "4", "--seed", "5", "--runs-dir"])
            .arg(runs);
        command
    };
    let strip = |dir: &Path| -> Vec<serde_json::Value> {
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("result.json")).unwrap()).unwrap();
        summary["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e["images_per_second"] = 0.into();
                e["train_seconds"] = 0.into();
                e
            })
            .collect()
    };
    let only_dir = |runs: &Path| std::fs::read_dir(runs).unwrap().next().unwrap().unwrap().path();

    let straight = root.path().join("straight");
    assert!(args(&straight).status().unwrap().success());
    let expected = strip(&only_dir(&straight));

    let killed = root.path().join("killed");
    let mut child = args(&killed).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let checkpointed = std::fs::read_dir(&killed)
            .ok()
            .and_then(|mut d| d.next())
            .is_some_and(|e| e.unwrap().path().join("checkpoint/state.cbor").exists());
        if checkpointed || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let run_dir = only_dir(&killed);
    assert!(!run_dir.join("result.json").exists(), "the kill landed before the run finished");

    let output = args(&killed).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let resumed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("result.json")).unwrap()).unwrap();
    assert!(resumed["resumed_from_epoch"].as_u64().unwrap() >= 1, "the second invocation resumed");
    assert_eq!(strip(&run_dir), expected);
    // Whole files, byte for byte, but for the wall-clock fields: the history rewritten from the
    // checkpoint is the one that was written (a JSON round trip moved last digits).
    let straight_dir = only_dir(&straight);
    for name in ["metrics.jsonl", "result.json"] {
        let read = |dir: &Path| without_timings(&std::fs::read_to_string(dir.join(name)).unwrap());
        assert_eq!(read(&run_dir), read(&straight_dir), "{name} differs after the resume");
    }
    let lines = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap().lines().count();
    assert_eq!(lines, 4, "metrics.jsonl holds each epoch once");
    use polars::prelude::{ParquetReader, SerReader};
    let table = ParquetReader::new(std::fs::File::open(run_dir.join("metrics.parquet")).unwrap()).finish().unwrap();
    assert_eq!(table.height(), 4, "metrics.parquet holds each epoch once");
    let accuracy: Vec<f64> = table.column("test_accuracy").unwrap().f64().unwrap().into_no_null_iter().collect();
    let expected_accuracy: Vec<f64> = expected.iter().map(|e| e["test_accuracy"].as_f64().unwrap()).collect();
    assert_eq!(accuracy, expected_accuracy);
}

/// `text` with the values of the fields that differ between two runs of one configuration
/// (timings, memory, where and whether it resumed) blanked, in JSON lines or pretty JSON alike.
fn without_timings(text: &str) -> String {
    const VARYING: [&str; 5] = ["images_per_second", "train_seconds", "peak_rss_mib", "resumed_from_epoch", "run_dir"];
    let mut out = text.to_owned();
    for key in VARYING {
        let needle = format!("\"{key}\":");
        let mut from = 0;
        while let Some(at) = out[from..].find(&needle).map(|i| i + from + needle.len()) {
            let end = out[at..].find([',', '}', '\n']).map_or(out.len(), |i| i + at);
            out.replace_range(at..end, " _");
            from = at;
        }
    }
    out
}
