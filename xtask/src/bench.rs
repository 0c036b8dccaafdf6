//! `cargo xtask bench`: training throughput and memory, written to `docs/benchmarks.md`.

use anyhow::Result;

/// Runs `itra bench` with the given arguments.
pub fn run(features: Option<&str>, args: &[String]) -> Result<()> {
    let mut itra = vec!["bench".to_owned()];
    itra.extend(args.iter().cloned());
    crate::run_itra(features, &itra)
}
