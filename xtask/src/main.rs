//! `cargo xtask`: the project's automation, one module per task.
//!
//! Every table and figure target is a thin wrapper around `itra reproduce <target>` (the
//! experiment runner in `itra-repro`), built in release mode with the backend features given by
//! `--features`. xtask itself depends on nothing but `anyhow`, so it builds in seconds.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

mod bench;

const TARGETS: [&str; 7] = ["table1", "table2", "table3", "table4", "figure1", "figure2", "figure3"];

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  table1 .. table4      regenerate a table of the paper    (itra reproduce tableN ...)
  figure1 .. figure3    regenerate a figure of the paper   (itra reproduce figureN ...)
  bench                 measure training throughput and write docs/benchmarks.md

options are passed through to `itra reproduce`, e.g. --profile smoke|cpu|paper, --seeds N,
--device cpu|cuda:N, --plan, --collect, --slurm [--partition P --gres gpu:1 --time T ...];
`--features cuda` (before the others) picks the backend build.";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let Some(task) = (!args.is_empty()).then(|| args.remove(0)) else {
        println!("{USAGE}");
        return Ok(());
    };
    let features = take_features(&mut args);
    match task.as_str() {
        target if TARGETS.contains(&target) => {
            let mut itra = vec!["reproduce".to_owned(), target.to_owned()];
            itra.extend(args);
            run_itra(features.as_deref(), &itra)
        }
        "bench" => bench::run(features.as_deref(), &args),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown task `{other}`\n\n{USAGE}"),
    }
}

/// Removes `--features X` (or `--features=X`) from `args`.
fn take_features(args: &mut Vec<String>) -> Option<String> {
    let position = args.iter().position(|a| a == "--features" || a.starts_with("--features="))?;
    let flag = args.remove(position);
    match flag.strip_prefix("--features=") {
        Some(value) => Some(value.to_owned()),
        None => (position < args.len()).then(|| args.remove(position)),
    }
}

/// `cargo run --release -p itra-repro [--features F] -- <args>`.
pub(crate) fn run_itra(features: Option<&str>, itra_args: &[String]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command.args(["run", "--quiet", "--release", "-p", "itra-repro", "--bin", "itra"]);
    if let Some(features) = features {
        command.args(["--features", features]);
    }
    command.arg("--").args(itra_args);
    let status = command.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("`itra {}` failed ({status})", itra_args.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_flag_is_taken_out_in_both_spellings() {
        let mut args = vec!["--profile".into(), "cpu".into(), "--features".into(), "cuda".into()];
        assert_eq!(take_features(&mut args).as_deref(), Some("cuda"));
        assert_eq!(args, vec!["--profile", "cpu"]);
        let mut args = vec!["--features=tch".into()];
        assert_eq!(take_features(&mut args).as_deref(), Some("tch"));
        assert!(args.is_empty());
    }
}
