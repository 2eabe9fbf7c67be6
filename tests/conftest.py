"""Tiny random-weight models of every architecture cftune supports, with tiny tokenizers trained here.

Nothing is downloaded: tokenizers are trained on a few sentences, models are built from configs.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CORPUS = [
    "A man is playing a guitar.",
    "A woman is slicing an onion in the kitchen.",
    "Two dogs run across the green field.",
    "The stock market fell sharply on Monday.",
    "He said \"no\" and left the room.",
    "Children are playing football in the park.",
    "A cat sleeps on the warm windowsill.",
] * 3

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Each decoder variant mirrors a real tokenizer quirk cftune must survive:
#   adds_bos: Gemma/Llama put BOS first (Qwen/SmolLM do not);  pad_is_eos: SmolLM2 pads with its EOS id.
DECODERS = {
    "gemma": dict(adds_bos=True, pad_is_eos=False),
    "gemma3_text": dict(adds_bos=True, pad_is_eos=False),
    "phi": dict(adds_bos=False, pad_is_eos=True),
    "llama": dict(adds_bos=True, pad_is_eos=True),
    "qwen2": dict(adds_bos=False, pad_is_eos=False),
    "qwen3": dict(adds_bos=False, pad_is_eos=True),
}
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256)


def tiny_decoder_tokenizer(adds_bos: bool, pad_is_eos: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<bos>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(CORPUS, trainer)
    if adds_bos:
        backend.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<eos>" if pad_is_eos else "<pad>")


def build_decoder(folder: Path, model_type: str, adds_bos: bool, pad_is_eos: bool) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = tiny_decoder_tokenizer(adds_bos, pad_is_eos)
    extra = {"head_dim": 8, "sliding_window": 8} if model_type.startswith("gemma") else {}
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                  **TINY, **extra)
    torch.manual_seed(0)
    # Saved with its LM head, like a real checkpoint: cftune must load the body only.
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_bert(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer()
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=200, show_progress=False,
                                        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    backend.train_from_iterator(CORPUS, trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=128)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    folders = {arch: build_decoder(root / arch, arch, **quirks) for arch, quirks in DECODERS.items()}
    folders["bert"] = build_bert(root / "bert")
    return folders


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CFTUNE_CACHE", str(tmp_path_factory.getbasetemp() / "cftune-cache"))


def assert_is_a_plot(png: Path, size: tuple[int, int]) -> bool:
    """A PNG of ``size`` (height, width) pixels with something drawn on it: an empty or blank figure fails.

    Decoded, not sized: the background is the most common colour, and a chart's axes, lines, bars and text
    cover at least 2% of the image in several other colours."""
    import matplotlib.image
    import numpy as np

    pixels = matplotlib.image.imread(png)
    assert pixels.shape[:2] == size, f"{png}: {pixels.shape[:2]} pixels, expected {size}"
    flat = (pixels[..., :3] * 255).round().astype(np.uint8).reshape(-1, 3)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    ink = 1 - counts.max() / counts.sum()
    assert ink > 0.02 and len(colours) > 10, f"{png}: looks blank ({ink:.1%} drawn, {len(colours)} colours)"
    return True


def logged(run: Path, key: str) -> list:
    """Every value of ``key`` in a run's train_log.jsonl, in step order (rows without it skipped)."""
    rows = map(json.loads, (run / "train_log.jsonl").read_text().splitlines())
    return [row[key] for row in rows if key in row]


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def sts_dir(tmp_path) -> Path:
    """A data dir with two small STS tasks that share a sentence (it must be encoded once)."""
    sentences = CORPUS[:7]
    rows12 = [{"sentence1": a, "sentence2": b, "score": float((i * 7) % 5)}
              for i, (a, b) in enumerate(zip(sentences, sentences[1:] + sentences[:1], strict=True))]
    rows_bio = [{"sentence1": sentences[0], "sentence2": "A man plays the guitar.", "score": 4.0},
                {"sentence1": sentences[2], "sentence2": "Dogs are running.", "score": 3.0},
                {"sentence1": sentences[3], "sentence2": "A cat is asleep.", "score": 0.0}]
    write_jsonl(tmp_path / "sts" / "STS12.jsonl", rows12)
    write_jsonl(tmp_path / "sts" / "BIOSSES.jsonl", rows_bio)
    return tmp_path


WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho sigma tau".split()
TRIPLETS = [(f"{a} {b} walks home.", f"{a} {b} goes home.", f"{b} {a} never sleeps.")
            for a in WORDS for b in WORDS if a != b][:96]


@pytest.fixture
def nli_dir(tmp_path):
    """A data dir in the shared layout: nli/*.csv (SimCSE header) and the STS-B dev file."""
    (tmp_path / "nli").mkdir()
    with open(tmp_path / "nli" / "triplets.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sent0", "sent1", "hard_neg"])
        writer.writerows(TRIPLETS)
    write_jsonl(tmp_path / "sts" / "STSBenchmark.dev.jsonl",
                [{"sentence1": a, "sentence2": n if i % 2 else p, "score": 1.0 if i % 2 else 4.0}
                 for i, (a, p, n) in enumerate(TRIPLETS[:20])])
    return tmp_path


def write_retrieval_set(folder, qrels: dict[str, str], layout: str = "beir"):
    documents = list(dict.fromkeys(CORPUS))  # distinct texts
    write_jsonl(folder / "corpus.jsonl", [{"_id": f"d{i}", "title": "", "text": t} for i, t in enumerate(documents)])
    write_jsonl(folder / "queries.jsonl", [{"_id": f"q{i}", "text": documents[i]} for i in range(6)])
    if layout == "beir":
        (folder / "qrels").mkdir(exist_ok=True)
        (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
            f"{q}\t{d}\t1\n" for q, d in qrels.items()))
    else:
        write_jsonl(folder / "qrels.jsonl", [{"query-id": q, "corpus-id": d, "score": 1} for q, d in qrels.items()])
    return folder


@pytest.fixture(scope="session")
def teacher_folder(tiny_models, tmp_path_factory):
    """A sentence-transformers teacher of another size than the tiny students (24 numbers, theirs are 32), with
    a named prompt, as EmbeddingGemma has."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Dense, Transformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

    torch.manual_seed(1)
    body = Transformer(str(tiny_models["bert"]))
    modules = [body, Pooling(32, pooling_mode="mean"), Dense(32, 24, activation_function=torch.nn.Identity()),
               Normalize()]
    teacher = SentenceTransformer(modules=modules, prompts={"STS": "similar: "})
    folder = tmp_path_factory.mktemp("teacher")
    teacher.save(str(folder))
    return folder
