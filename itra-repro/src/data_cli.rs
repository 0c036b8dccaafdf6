//! `itra data`: fetch, inspect, verify and prepare the datasets and pretrained text encoders
//! that `itra-data` registers. All the work is `itra-data`'s; this module only parses the
//! command line and explains the results.
//!
//! `verify` and `list` judge the files the loader reads (for an encoder, the folder
//! [`crate::encode::resolve_encoder`] picks). Each file is "verified (<algorithm>)", "present,
//! not verified (<why>)", "corrupt (<why>)" or "missing"; `verify` fails unless every file is
//! verified. `list` reads no data: it says "ready" only for files whose digests a `verify` or
//! `fetch` recorded and that are unchanged since, and "present, unverified" otherwise.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use itra_data::download::{DownloadOptions, FetchedFile, FileSource};
use itra_data::registry::{self, ENCODERS};
use itra_data::{FileCheck, FileState};

/// `itra data <command>`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DataCommand {
    /// Download and verify a dataset, or a pretrained text encoder, into the data directory.
    Fetch {
        /// A dataset id (see `itra data list`) or an encoder id (bert-base-uncased,
        /// distilbert-base-uncased, xlnet-base-cased, all-MiniLM-L6-v2).
        id: String,
        /// Base URL tried before the registered sources: `<mirror>/<id>/<file>` for datasets,
        /// `<mirror>/encoders/<id>/<file>` for encoders (default: $ITRA_MIRROR).
        #[arg(long)]
        mirror: Option<String>,
        /// Use only the mirror.
        #[arg(long, requires = "mirror")]
        mirror_only: bool,
        /// Fetch nothing; list what is missing and where it would come from (default: set
        /// when $ITRA_OFFLINE is set to anything but 0).
        #[arg(long)]
        offline: bool,
        /// Encoders: a local directory holding the files (e.g. a Hugging Face snapshot).
        #[arg(long)]
        from: Option<PathBuf>,
        /// Extra attempts per URL after a network error.
        #[arg(long, default_value_t = 3)]
        retries: u32,
        /// Hide progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// Summarise both splits of a local dataset: examples, class counts, shape, pixel mean.
    Info {
        /// A dataset id or `folder:<path>`.
        id: String,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-check every file the loader reads of a dataset (or an encoder) against its recorded
    /// digest; fails unless every file is verified.
    Verify { id: String },
    /// List every registered dataset and encoder and whether it is present and verified (by
    /// the digests recorded by the last verify or fetch; reads no data).
    List,
    /// Build the image-folder layout from downloaded archives (imagenet only).
    Prepare { id: String },
}

/// Runs `command` against `data_dir`.
pub fn run(command: &DataCommand, data_dir: &Path) -> Result<()> {
    match command {
        DataCommand::Fetch { id, mirror, mirror_only, offline, from, retries, quiet } => {
            let mut options = DownloadOptions::from_env();
            if mirror.is_some() {
                options.mirror = mirror.clone();
            }
            options.mirror_only = *mirror_only;
            options.offline |= *offline;
            options.retries = *retries;
            options.progress = !*quiet;
            fetch(id, data_dir, from.as_deref(), &options)
        }
        DataCommand::Info { id, json } => info(id, data_dir, *json),
        DataCommand::Verify { id } => verify(id, data_dir),
        DataCommand::List => {
            list(data_dir);
            Ok(())
        }
        DataCommand::Prepare { id } => prepare(id, data_dir),
    }
}

fn fetch(id: &str, data_dir: &Path, from: Option<&Path>, options: &DownloadOptions) -> Result<()> {
    if registry::encoder(id).is_some() {
        let report = itra_data::encoder::fetch_encoder(id, data_dir, from, options)
            .with_context(|| format!("cannot fetch encoder {id}"))?;
        for (file, check) in report.files.iter().zip(&report.checks) {
            println!("  {:<34} {}, {}", file.name, source_text(&file.source), check.state);
        }
        let unverified = report.checks.iter().filter(|c| !c.is_ok()).count();
        if unverified == 0 {
            println!("{id} is ready in {} (every file verified)", report.dir.display());
        } else {
            println!(
                "{id} is in {}, but {unverified} of {} files are NOT verified: no checksum is recorded for them \
                 (delete them and fetch again to get verified copies)",
                report.dir.display(),
                report.checks.len()
            );
        }
        return Ok(());
    }
    if from.is_some() {
        bail!("--from applies to encoders; put a dataset's files in {}", data_dir.join(id).display());
    }
    let spec = itra_data::spec(id)?;
    if !spec.downloadable {
        return explain_manual(spec, data_dir);
    }
    let report = itra_data::download(id, data_dir, options).with_context(|| format!("cannot fetch {id}"))?;
    print_files(&report.files);
    if itra_data::status(spec, data_dir).is_ready() {
        println!("{id} is ready in {} (every file verified)", data_dir.join(id).display());
    } else {
        println!(
            "{id} is in {}, but not every file it reads is verified; `itra data verify {id}` says which",
            data_dir.join(id).display()
        );
    }
    Ok(())
}

fn source_text(source: &FileSource) -> String {
    match source {
        FileSource::AlreadyPresent => "already present".to_owned(),
        FileSource::AlreadyExtracted => "already extracted".to_owned(),
        FileSource::LocalCopy { path } => format!("local copy {}", path.display()),
        FileSource::Downloaded { url } => format!("downloaded from {url}"),
    }
}

fn print_files(files: &[FetchedFile]) {
    for file in files {
        println!("  {:<34} {}", file.name, source_text(&file.source));
    }
}

/// ImageNet needs a login: say which archives go where, and what builds the layout.
fn explain_manual(spec: &registry::DatasetSpec, data_dir: &Path) -> Result<()> {
    let dir = data_dir.join(spec.id);
    if itra_data::locate(spec, data_dir, itra_data::Split::Train).is_ok()
        && itra_data::locate(spec, data_dir, itra_data::Split::Test).is_ok()
    {
        println!("{} is ready in {}", spec.id, dir.display());
        return Ok(());
    }
    let mut message = format!(
        "{} ({}) cannot be downloaded automatically: it needs a login at {}\n\nPut these files in {}:\n",
        spec.id,
        spec.title,
        spec.homepage,
        dir.display()
    );
    for file in spec.files {
        let present = if dir.join(file.name).is_file() { "present" } else { "missing" };
        let size = file.size.map_or(String::new(), |s| format!(", {s} bytes"));
        message +=
            &format!("  {:<32} [{present}] {} {}{size}\n", file.name, file.checksum.algorithm(), file.checksum.hex());
    }
    message += &format!(
        "\nthen run `itra data prepare {}`, which builds {}/train/<wnid>/ and {}/val/<wnid>/ \
         (it needs about as much free space again as the archives)",
        spec.id,
        dir.display(),
        dir.display()
    );
    bail!(message)
}

fn info(id: &str, data_dir: &Path, json: bool) -> Result<()> {
    let info = itra_data::info(id, data_dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    println!("{}", info.dataset);
    for (name, split) in [("train", &info.splits.train), ("test", &info.splits.test)] {
        let mut line = format!("  {name:<5} {:>9} examples, {} classes", split.examples, split.classes);
        if let Some([c, h, w]) = split.shape {
            line += &format!(", {c}x{h}x{w}");
        }
        if let Some(mean) = split.pixel_mean {
            line += &format!(", pixel mean {mean:.4}");
        }
        if let Some(chars) = split.mean_chars {
            line += &format!(", mean length {chars:.1} chars");
        }
        println!("{line}");
        println!("        per class: {:?}", split.class_counts);
    }
    Ok(())
}

fn verify(id: &str, data_dir: &Path) -> Result<()> {
    let checks = if let Some(encoder) = registry::encoder(id) {
        let dir = loaded_encoder_dir(id, data_dir);
        itra_data::encoder::verify_encoder(encoder, &dir, data_dir)?
    } else {
        itra_data::verify(id, data_dir)?
    };
    for check in &checks {
        println!("  {:<34} {} ({})", check.name, check.state, check.path.display());
    }
    verdict(id, &checks)
}

/// `Ok` only if every file is verified; otherwise an error counting what is not.
fn verdict(id: &str, checks: &[FileCheck]) -> Result<()> {
    if itra_data::all_verified(checks) {
        println!("{id}: all {} files verified", checks.len());
        return Ok(());
    }
    let count = |f: fn(&FileState) -> bool| checks.iter().filter(|c| f(&c.state)).count();
    let unverified = count(|s| matches!(s, FileState::Unverified { .. }));
    let corrupt = count(|s| matches!(s, FileState::Mismatch { .. } | FileState::Corrupt { .. }));
    let missing = count(|s| *s == FileState::Missing);
    let mut parts = Vec::new();
    for (n, what) in [(corrupt, "corrupt"), (missing, "missing"), (unverified, "present but not verified")] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    let hint = if corrupt + missing > 0 { format!("; run `itra data fetch {id}`") } else { String::new() };
    bail!(
        "{id}: {} of {} files not verified: {}{hint}",
        checks.len() - count(|s| matches!(s, FileState::Verified { .. })),
        checks.len(),
        parts.join(", ")
    )
}

/// The folder the loader reads encoder `id` from (for all-MiniLM-L6-v2, the PyPI package or
/// `$ITRA_MINILM_DIR` first), else `<data_dir>/encoders/<id>/`.
fn loaded_encoder_dir(id: &str, data_dir: &Path) -> PathBuf {
    crate::encode::resolve_encoder(id, data_dir).unwrap_or_else(|_| itra_data::encoder::encoder_dir(data_dir, id))
}

fn list(data_dir: &Path) {
    for line in list_lines(data_dir) {
        println!("{line}");
    }
}

/// What `itra data list` prints, line by line.
fn list_lines(data_dir: &Path) -> Vec<String> {
    let mut lines = vec![format!("datasets in {}:", data_dir.display())];
    for status in itra_data::list(data_dir) {
        let state = if status.is_ready() {
            let dir = status.train.as_deref().unwrap_or(Path::new("?"));
            format!("ready ({})", dir.display())
        } else if status.is_present() {
            present_state(status.id, &status.checks)
        } else if status.train.is_some() || status.test.is_some() {
            format!("partial, missing {}", status.missing.join(", "))
        } else {
            "not fetched".to_owned()
        };
        lines.push(format!("  {:<14} {:<26} {state}", status.id, status.title));
    }
    lines.push("encoders:".to_owned());
    for encoder in ENCODERS {
        let dir = loaded_encoder_dir(encoder.id, data_dir);
        let (checks, unreadable) = match itra_data::encoder::encoder_status(encoder, &dir, data_dir) {
            Ok(checks) => (checks, None),
            Err(error) => (Vec::new(), Some(error)),
        };
        let present = checks.iter().filter(|c| c.state != FileState::Missing).count();
        let state = match (present, unreadable) {
            // `digests.json` exists but cannot be read: whatever is there is not verified.
            (_, Some(error)) => format!("present, unverified ({error})"),
            (0, None) => "not fetched".to_owned(),
            (n, None) if n < encoder.files.len() => format!("partial ({n} of {} files)", encoder.files.len()),
            _ if itra_data::all_verified(&checks) => format!("ready ({})", dir.display()),
            _ => present_state(encoder.id, &checks),
        };
        lines.push(format!("  {:<24} {:<40} {state}", encoder.id, encoder.repo));
    }
    lines
}

/// Every file present, not all verified: corrupt if a recorded digest says so.
fn present_state(id: &str, checks: &[FileCheck]) -> String {
    if checks.iter().any(|c| matches!(c.state, FileState::Mismatch { .. } | FileState::Corrupt { .. })) {
        format!("present, CORRUPT (`itra data verify {id}` says which files)")
    } else {
        format!("present, unverified (`itra data verify {id}` checks it)")
    }
}

fn prepare(id: &str, data_dir: &Path) -> Result<()> {
    if id != "imagenet" {
        bail!("only imagenet needs preparing; the other datasets are ready once fetched");
    }
    let dir = data_dir.join("imagenet");
    let report = itra_data::imagenet::prepare(&dir).context("cannot prepare imagenet")?;
    println!(
        "imagenet: {} classes, {} training and {} validation images in {}",
        report.classes,
        report.train_images,
        report.val_images,
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: DataCommand,
    }

    #[test]
    fn parses_every_command() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["itra-data"], args].concat()).map(|c| c.command);
        assert!(matches!(
            parse(&["fetch", "cifar10", "--mirror", "http://m", "--offline"]).unwrap(),
            DataCommand::Fetch { id, mirror: Some(_), offline: true, .. } if id == "cifar10"
        ));
        assert!(matches!(parse(&["info", "fmnist", "--json"]).unwrap(), DataCommand::Info { json: true, .. }));
        assert!(matches!(parse(&["verify", "kmnist"]).unwrap(), DataCommand::Verify { .. }));
        assert!(matches!(parse(&["list"]).unwrap(), DataCommand::List));
        assert!(matches!(parse(&["prepare", "imagenet"]).unwrap(), DataCommand::Prepare { .. }));
        assert!(parse(&["fetch", "x", "--mirror-only"]).is_err(), "--mirror-only needs --mirror");
    }

    #[test]
    fn imagenet_fetch_explains_where_the_archives_go() {
        let data = tempfile::tempdir().unwrap();
        let err = run(&DataCommand::Prepare { id: "cifar10".into() }, data.path()).unwrap_err();
        assert!(err.to_string().starts_with("only imagenet needs preparing"), "{err}");
        let fetch = DataCommand::Fetch {
            id: "imagenet".into(),
            mirror: None,
            mirror_only: false,
            offline: true,
            from: None,
            retries: 0,
            quiet: true,
        };
        let message = run(&fetch, data.path()).unwrap_err().to_string();
        assert!(message.contains("ILSVRC2012_img_train.tar"), "{message}");
        assert!(message.contains("ILSVRC2012_devkit_t12.tar.gz"), "{message}");
        assert!(message.contains("`itra data prepare imagenet`"), "{message}");
        assert!(message.contains(&data.path().join("imagenet").display().to_string()), "{message}");
    }

    #[test]
    fn info_json_is_itra_data_info() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("kmnist");
        std::fs::create_dir_all(&dir).unwrap();
        for (images, labels) in [("train", "train"), ("t10k", "t10k")] {
            std::fs::write(
                dir.join(format!("{images}-images-idx3-ubyte")),
                itra_data::idx::encode_images(28, 28, &[1; 784]),
            )
            .unwrap();
            std::fs::write(dir.join(format!("{labels}-labels-idx1-ubyte")), itra_data::idx::encode_labels(&[3]))
                .unwrap();
        }
        let info = itra_data::info("kmnist", data.path()).unwrap();
        assert_eq!(info.splits.train.examples, 1);
        run(&DataCommand::Info { id: "kmnist".into(), json: true }, data.path()).unwrap();
        run(&DataCommand::List, data.path()).unwrap();
        assert!(
            run(&DataCommand::Verify { id: "kmnist".into() }, data.path()).is_err(),
            "nothing pins uncompressed files"
        );
    }

    /// Whole encoder files for `bert-base-uncased` in `<data>/encoders/bert-base-uncased/`.
    fn write_encoder(data: &Path) -> PathBuf {
        let dir = itra_data::encoder::encoder_dir(data, "bert-base-uncased");
        std::fs::create_dir_all(&dir).unwrap();
        let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let mut model = (header.len() as u64).to_le_bytes().to_vec();
        model.extend_from_slice(header);
        model.extend_from_slice(&[7u8; 8]);
        std::fs::write(dir.join("config.json"), b"{}").unwrap();
        std::fs::write(dir.join("model.safetensors"), model).unwrap();
        std::fs::write(dir.join("tokenizer.json"), b"{}").unwrap();
        dir
    }

    fn line_of<'a>(lines: &'a [String], id: &str) -> &'a str {
        lines.iter().find(|l| l.trim_start().starts_with(&format!("{id} "))).unwrap()
    }

    #[test]
    fn verify_and_list_say_ready_only_for_verified_files() {
        // Before: `list` said "ready" for any encoder or dataset whose files existed, and an
        // encoder could never verify (no digest was ever recorded).
        let data = tempfile::tempdir().unwrap();
        let dir = write_encoder(data.path());
        let verify = || run(&DataCommand::Verify { id: "bert-base-uncased".into() }, data.path());
        let err = verify().unwrap_err().to_string();
        assert_eq!(err, "bert-base-uncased: 3 of 3 files not verified: 3 present but not verified");
        let lines = list_lines(data.path());
        assert!(
            line_of(&lines, "bert-base-uncased")
                .ends_with("present, unverified (`itra data verify bert-base-uncased` checks it)")
        );

        // A manifest that records the files' digests (as a verified fetch writes it).
        let mut manifest = itra_data::DigestManifest::default();
        for name in ["config.json", "model.safetensors", "tokenizer.json"] {
            let path = dir.join(name);
            let entry = itra_data::ManifestEntry {
                name: name.into(),
                size: std::fs::metadata(&path).unwrap().len(),
                algorithm: itra_data::Algorithm::Sha256,
                digest: itra_data::file_digest(&path, registry::Checksum::Sha256("")).unwrap(),
                source: "the test".into(),
            };
            manifest.replace(name, [entry]);
        }
        manifest.save(&dir.join(itra_data::ENCODER_MANIFEST)).unwrap();
        let lines = list_lines(data.path());
        assert!(line_of(&lines, "bert-base-uncased").contains("present, unverified"), "not checked yet: {lines:?}");
        verify().unwrap();
        let lines = list_lines(data.path());
        assert!(line_of(&lines, "bert-base-uncased").contains(&format!("ready ({})", dir.display())), "{lines:?}");

        std::fs::write(dir.join("tokenizer.json"), b"[]").unwrap();
        let err = verify().unwrap_err().to_string();
        assert_eq!(
            err,
            "bert-base-uncased: 1 of 3 files not verified: 1 corrupt; run `itra data fetch bert-base-uncased`"
        );
        assert!(line_of(&list_lines(data.path()), "bert-base-uncased").contains("present, CORRUPT"));
    }

    #[test]
    fn list_says_present_unverified_for_files_nothing_can_check() {
        // Uncompressed KMNIST files: the registry pins only the .gz archives.
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("kmnist");
        std::fs::create_dir_all(&dir).unwrap();
        for prefix in ["train", "t10k"] {
            std::fs::write(
                dir.join(format!("{prefix}-images-idx3-ubyte")),
                itra_data::idx::encode_images(28, 28, &[1; 784]),
            )
            .unwrap();
            std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), itra_data::idx::encode_labels(&[3]))
                .unwrap();
        }
        let err = run(&DataCommand::Verify { id: "kmnist".into() }, data.path()).unwrap_err().to_string();
        assert_eq!(err, "kmnist: 4 of 4 files not verified: 4 present but not verified");
        let lines = list_lines(data.path());
        assert!(
            line_of(&lines, "kmnist").ends_with("present, unverified (`itra data verify kmnist` checks it)"),
            "{lines:?}"
        );
        assert!(line_of(&lines, "cifar10").ends_with("not fetched"));
    }
}
