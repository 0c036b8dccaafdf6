//! `itra data`: fetch, inspect, verify and prepare the datasets and pretrained text encoders
//! that `itra-data` registers. All the work is `itra-data`'s; this module only parses the
//! command line and explains the results.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use itra_data::download::{DownloadOptions, FetchedFile, FileSource};
use itra_data::registry::{self, ENCODERS};

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
    /// Re-check the checksum of every downloaded file of a dataset (or an encoder's files).
    Verify { id: String },
    /// List every registered dataset and encoder and whether it is present.
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
        print_files(&report.files);
        println!("{id} is ready in {}", report.dir.display());
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
    println!("{id} is ready in {}", data_dir.join(id).display());
    Ok(())
}

fn print_files(files: &[FetchedFile]) {
    for file in files {
        let how = match &file.source {
            FileSource::AlreadyPresent => "already present".to_owned(),
            FileSource::AlreadyExtracted => "already extracted".to_owned(),
            FileSource::LocalCopy { path } => format!("local copy {}", path.display()),
            FileSource::Downloaded { url } => format!("downloaded from {url}"),
        };
        println!("  {:<34} {how}", file.name);
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
    if let Some(encoder) = registry::encoder(id) {
        let dir = itra_data::encoder::encoder_dir(data_dir, id);
        let missing: Vec<_> = encoder.files.iter().filter(|(name, _)| !dir.join(name).is_file()).collect();
        let mut unverified = 0;
        let mut failed = 0;
        for (name, sha256) in encoder.files {
            let path = dir.join(name);
            let structure = path.is_file().then(|| itra_data::encoder::check_structure(&path));
            let state = match (sha256, structure) {
                (_, None) => "missing".to_owned(),
                (_, Some(Err(err))) => {
                    failed += 1;
                    format!("malformed: {err}")
                }
                (None, Some(Ok(()))) => {
                    unverified += 1;
                    "whole (structure checked), content NOT verified: no pinned digest".to_owned()
                }
                (Some(expected), Some(Ok(()))) => {
                    let actual = itra_data::file_digest(&path, registry::Checksum::Sha256(expected))?;
                    if actual == *expected {
                        "verified".to_owned()
                    } else {
                        failed += 1;
                        format!("sha256 mismatch: got {actual}")
                    }
                }
            };
            println!("  {name:<34} {state}");
        }
        if !missing.is_empty() {
            bail!("{id}: {} of {} files missing; run `itra data fetch {id}`", missing.len(), encoder.files.len());
        }
        if failed > 0 {
            bail!("{id}: {failed} of {} files failed verification", encoder.files.len());
        }
        if unverified > 0 {
            bail!(
                "{id}: {unverified} of {} files have no pinned sha256 in the registry, so their content cannot be \
                 verified (they are whole: every safetensors and JSON file checks structurally)",
                encoder.files.len()
            );
        }
        println!("{id}: all {} files verified", encoder.files.len());
        return Ok(());
    }
    let checks = itra_data::verify(id, data_dir)?;
    let mut failed = 0;
    for check in &checks {
        let state = match &check.state {
            itra_data::FileState::Verified => "verified".to_owned(),
            itra_data::FileState::VerifiedLocalCopy => "verified (decompressed payload)".to_owned(),
            itra_data::FileState::ExtractedOnly => {
                "NOT verified: the archive was removed after extraction and its extracted files have no \
                 registered digest; fetch it again to verify"
                    .to_owned()
            }
            itra_data::FileState::Missing => "missing".to_owned(),
            itra_data::FileState::Mismatch { algorithm, expected, actual } => {
                format!("{algorithm} mismatch: expected {expected}, got {actual}")
            }
        };
        failed += usize::from(!check.is_ok());
        println!("  {:<34} {state} ({})", check.name, check.path.display());
    }
    if failed > 0 {
        bail!("{id}: {failed} of {} files failed verification", checks.len());
    }
    println!("{id}: all {} files verified", checks.len());
    Ok(())
}

fn list(data_dir: &Path) {
    println!("datasets in {}:", data_dir.display());
    for status in itra_data::list(data_dir) {
        let state = if status.is_ready() {
            let dir = status.train.as_deref().unwrap_or(Path::new("?"));
            format!("ready ({})", dir.display())
        } else if status.train.is_some() || status.test.is_some() {
            format!("partial, missing {}", status.missing.join(", "))
        } else {
            "not fetched".to_owned()
        };
        println!("  {:<14} {:<26} {state}", status.id, status.title);
    }
    println!("encoders:");
    for encoder in ENCODERS {
        let dir = itra_data::encoder::encoder_dir(data_dir, encoder.id);
        let present = encoder.files.iter().filter(|(name, _)| dir.join(name).is_file()).count();
        let state = match present {
            0 => "not fetched".to_owned(),
            n if n == encoder.files.len() => format!("ready ({})", dir.display()),
            n => format!("partial ({n} of {} files)", encoder.files.len()),
        };
        println!("  {:<24} {:<40} {state}", encoder.id, encoder.repo);
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
        assert!(run(&DataCommand::Verify { id: "kmnist".into() }, data.path()).is_err(), "archives are missing");
    }
}
