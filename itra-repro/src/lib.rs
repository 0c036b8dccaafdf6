//! The experiment runner behind the `itra` command line: experiment configurations, the training
//! loop, run directories with their provenance, and the paper's reported numbers.
//!
//! This is the one crate that combines the others (`itra-core` losses, `itra-models`
//! architectures, `itra-data` datasets) and the one that writes results. It never downloads data
//! itself; `itra-data` does.

pub mod atomic;
pub mod bench;
pub mod bench_epoch;
pub mod cluster;
pub mod config;
pub mod data_cli;
pub mod dataset;
pub mod device;
pub mod encode;
pub mod experiments;
pub mod figures;
pub mod metrics;
pub mod metrics_table;
pub mod paper;
pub mod pipeline;
pub mod provenance;
pub mod run_files;
pub mod run_lock;
pub mod step;
pub mod synthetic;
pub mod text_train;
pub mod train;
pub mod vision_data;
pub mod vision_train;

pub use config::ExperimentConfig;
pub use dataset::DatasetId;
pub use device::DeviceSpec;

#[cfg(test)]
mod layering {
    //! The runner's modules form layers: no module reaches, through `crate::` paths in its
    //! code (comments and test modules aside), a module that reaches back to it.

    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// The top-level modules named by `crate::` paths in `code`, grouped imports included.
    fn crate_references(code: &str) -> BTreeSet<String> {
        let ident = |text: &str| -> String {
            text.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
        };
        let mut found = BTreeSet::new();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a, b::{C, D}, e}`: the first name of each top-level item.
                let (mut depth, mut start) = (0usize, 0usize);
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            found.insert(ident(&group[start..i]));
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            found.insert(ident(&group[start..i]));
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
            } else {
                found.insert(ident(rest));
            }
        }
        found.remove("");
        found
    }

    fn collect(dir: &Path, root: &Path, graph: &mut BTreeMap<String, BTreeSet<String>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                collect(&path, root, graph);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(root).unwrap();
            let first = relative.components().next().unwrap().as_os_str().to_str().unwrap();
            let module = first.trim_end_matches(".rs").to_owned();
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            let code: String =
                code.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
            let mut references = crate_references(&code);
            references.remove(&module);
            graph.entry(module).or_default().extend(references);
        }
    }

    #[test]
    fn references_are_read_from_paths_and_groups() {
        let code = "use crate::config::{A, B};\nuse crate::{metrics::{C, D}, step};\nlet x = crate::train::train(y);";
        let found: Vec<String> = crate_references(code).into_iter().collect();
        assert_eq!(found, ["config", "metrics", "step", "train"]);
    }

    #[test]
    fn the_runners_modules_have_no_import_cycle() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut graph = BTreeMap::new();
        collect(&root, &root, &mut graph);
        assert!(graph.contains_key("train") && graph.contains_key("step"), "{:?}", graph.keys());
        // Depth-first search; a module met again while still on the path closes a cycle.
        fn visit<'a>(
            module: &'a str,
            graph: &'a BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) -> Result<(), String> {
            if let Some(at) = path.iter().position(|m| *m == module) {
                return Err(format!("{} -> {module}", path[at..].join(" -> ")));
            }
            if done.contains(module) {
                return Ok(());
            }
            path.push(module);
            for next in graph.get(module).into_iter().flatten().filter(|m| graph.contains_key(*m)) {
                visit(next, graph, path, done)?;
            }
            path.pop();
            done.insert(module);
            Ok(())
        }
        let mut done = BTreeSet::new();
        for module in graph.keys() {
            visit(module, &graph, &mut Vec::new(), &mut done).unwrap_or_else(|cycle| panic!("import cycle: {cycle}"));
        }
        // The training layers in order: each below imports nothing above.
        let layers = ["metrics", "run_files", "step", "vision_train", "train"];
        for (i, low) in layers.iter().enumerate() {
            for high in &layers[i + 1..] {
                assert!(!graph[*low].contains(*high), "{low} imports {high}");
            }
        }
    }
}
