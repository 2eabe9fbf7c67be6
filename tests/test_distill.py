"""Distillation: the teacher cache (once per text, resumable after a kill), the losses by hand, a student with a
projection into the teacher's space, and bad teacher settings."""

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from cftune import load_embedder
from cftune.cli import main
from cftune.config import load_config
from cftune.design import EmbedderDesign
from cftune.distill import DistillationLoss, Teacher, fill_cache
from cftune.encoding import encode
from cftune.models import prepare_for_inference
from cftune.training import train
from conftest import CORPUS, TRIPLETS, logged


class CountingTeacher:
    """Loads the teacher and records every text it is asked to embed."""

    def __init__(self, teacher: Teacher):
        self.teacher, self.loads, self.texts = teacher, 0, []

    def __call__(self):
        self.loads += 1
        model = self.teacher.load()
        encode_texts = model.encode

        def counting_encode(texts, **kwargs):
            self.texts += list(texts)
            return encode_texts(texts, **kwargs)

        model.encode = counting_encode
        return model


def test_the_teacher_embeds_each_distinct_text_once_ever(teacher_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("CFTUNE_CACHE", str(tmp_path / "cache"))
    teacher = Teacher.of(str(teacher_folder), "STS", "float32")
    texts = CORPUS + CORPUS[:3]  # 7 distinct texts, each several times
    first = CountingTeacher(teacher)
    cache = fill_cache(teacher, texts, chunk=3, load=first)
    assert first.loads == 1 and sorted(first.texts) == sorted(set(texts)) and cache.appended == len(set(texts))
    expected = encode(load_embedder(str(teacher_folder)), sorted(set(texts)), precision="float32",
                      prompt_name="STS").numpy()
    np.testing.assert_allclose(cache.matrix()[cache.row_of(sorted(set(texts)))], expected, atol=1e-5)

    again = CountingTeacher(teacher)
    assert fill_cache(teacher, list(reversed(texts)), load=again).appended == 0  # another run: all cached
    assert again.loads == 0 and again.texts == []
    more = CountingTeacher(teacher)
    fill_cache(teacher, [*texts, "A new sentence."], load=more)
    assert more.texts == ["A new sentence."]


def test_the_cache_is_keyed_by_the_teachers_prompt(teacher_folder):
    with_prompt = Teacher.of(str(teacher_folder), "STS", "float32").cache().folder
    assert with_prompt != Teacher.of(str(teacher_folder), None, "float32").cache().folder


KILLED_FILL = """
import sys, time
from cftune import distill
from cftune.distill import Teacher, fill_cache

appended = distill.TeacherCache.append
def slow_append(self, texts, vectors):
    appended(self, texts, vectors)
    print("chunk", flush=True)
    time.sleep(30)
distill.TeacherCache.append = slow_append
fill_cache(Teacher.of(sys.argv[1], "STS", "float32"), sys.argv[2:], chunk=2)
"""


def test_a_kill_while_caching_loses_at_most_a_batch_and_the_rerun_completes_it(teacher_folder, tmp_path,
                                                                              monkeypatch):
    texts = [f"sentence number {i} about {w}" for i, w in enumerate(CORPUS)]
    monkeypatch.setenv("CFTUNE_CACHE", str(tmp_path / "straight"))
    teacher = Teacher.of(str(teacher_folder), "STS", "float32")
    straight = fill_cache(teacher, texts, chunk=2)

    monkeypatch.setenv("CFTUNE_CACHE", str(tmp_path / "killed"))
    env = {**os.environ, "CFTUNE_CACHE": str(tmp_path / "killed")}
    process = subprocess.Popen([sys.executable, "-c", KILLED_FILL, str(teacher_folder), *texts], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout.readline() == "chunk\n" and process.stdout.readline() == "chunk\n"
    process.send_signal(signal.SIGKILL)
    process.wait()
    cache = teacher.cache()
    assert len(cache.rows) == 4  # the two chunks written before the kill
    with cache.vectors_path.open("ab") as handle:  # and what a kill inside the next append would leave
        handle.write(b"\0" * 50)
    with cache.index_path.open("ab") as handle:
        handle.write(b"0123456789")
    counting = CountingTeacher(teacher)
    resumed = fill_cache(teacher, texts, chunk=2, load=counting)
    assert len(counting.texts) == len(set(texts)) - 4  # only what was missing
    np.testing.assert_allclose(resumed.matrix()[resumed.row_of(texts)], straight.matrix()[straight.row_of(texts)],
                               atol=1e-6)
    assert resumed.index_path.stat().st_size == 41 * len(set(texts))


# --------------------------------------------------------------------------------------------- losses


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def softmax_rows(logits):
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["cosine", "mse", "kl", "similarity"])
def test_the_losses_equal_a_hand_computation(kind):
    """contrastive_weight * InfoNCE + distill_weight * distillation, on fixed vectors, against numpy."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    rng = np.random.default_rng(0)
    rows_s = [rng.normal(size=(3, 4)) for _ in range(3)]  # student: anchor, positive, negative columns of 3 rows
    rows_t = [rng.normal(size=(3, 4)) for _ in range(3)]  # teacher, the same texts
    order = np.array([2, 0, 1])  # a batch of rows 2, 0, 1: the teacher's vectors must come in that order
    s, t = [x[order] for x in rows_s], [x[order] for x in rows_t]
    candidates = unit(np.concatenate(s[1:]))
    scores = unit(s[0]) @ candidates.T * 20.0  # InfoNCE at T = 0.05: row i's positive is candidate i
    infonce = -np.mean(np.log(softmax_rows(scores)[np.arange(3), np.arange(3)]))
    if kind == "cosine":
        distill = np.mean([np.mean(1 - np.sum(unit(s[c]) * unit(t[c]), axis=1)) for c in range(3)])
    elif kind == "mse":
        distill = np.mean([np.mean((s[c] - t[c]) ** 2) for c in range(3)])
    elif kind == "similarity":  # every pair of the 9 texts, itself left out
        texts_s, texts_t = unit(np.concatenate(s)), unit(np.concatenate(t))
        others = ~np.eye(9, dtype=bool)
        distill = np.mean(((texts_s @ texts_s.T - texts_t @ texts_t.T) / 0.1)[others] ** 2)
    else:
        student_logits = unit(s[0]) @ candidates.T / 0.1
        p = softmax_rows(unit(t[0]) @ unit(np.concatenate(t[1:])).T / 0.1)
        log_q = np.log(softmax_rows(student_logits))
        distill = np.sum(p * (np.log(p) - log_q)) / 3

    class Student(torch.nn.Module):  # the model a loss is given; these losses read its device only
        device = torch.device("cpu")

    config = load_config(overrides={"teacher": "t", "distill_loss": kind, "distill_weight": 0.5,
                                    "contrastive_weight": 2.0, "distill_temperature": 0.1})
    cache = np.concatenate(rows_t).astype(np.float32)  # cache rows: column c of row i is row 3c + i
    rows = np.array([[i, 3 + i, 6 + i] for i in range(3)])
    loss = DistillationLoss(Student(), MultipleNegativesRankingLoss(Student(), scale=20.0), config, cache, rows)
    student = [torch.tensor(x, dtype=torch.float32) for x in s]
    total = float(loss.compute_loss_from_embeddings(student, torch.from_numpy(order)))
    assert total == pytest.approx(2.0 * infonce + 0.5 * distill, rel=1e-4)


# --------------------------------------------------------------------------------------------- a student


def teacher_cosine(model, teacher_folder, texts) -> float:
    teacher = encode(load_embedder(str(teacher_folder)), texts, precision="float32", prompt_name="STS")
    return float(torch.nn.functional.cosine_similarity(encode(model, texts, precision="float32"), teacher).mean())


def test_a_student_learns_the_teachers_space_and_saves_its_map(tiny_models, nli_dir, teacher_folder, tmp_path):
    from cftune import distill

    settings = {"model": str(tiny_models["llama"]), "data_dir": str(nli_dir), "prompt": "eol", "teacher":
                str(teacher_folder), "teacher_prompt": "STS", "contrastive_weight": 0, "batch_size": 8,
                "max_steps": 24, "warmup_steps": 1, "learning_rate": 1e-3, "eval_steps": 0, "save_steps": 24,
                "logging_steps": 1, "precision": "float32", "lora.dropout": 0.0, "lora.target_modules": "all-linear"}
    config = load_config(overrides=settings)
    texts = [t for row in TRIPLETS for t in row]
    # before: the untrained student with the map training starts from (fitted by ridge regression)
    before = load_embedder(config.model, EmbedderDesign(prompt="eol"))
    columns = {"anchor": [a for a, _, _ in TRIPLETS], "positive": [p for _, p, _ in TRIPLETS],
               "negative": [n for _, _, n in TRIPLETS]}
    assert distill.add_projection(before, distill.prepare(config, columns), columns, config)
    run = train(config, tmp_path / "run")

    plain = SentenceTransformer(str(run))  # a plain sentence-transformers load: the map is part of the model
    assert plain.get_embedding_dimension() == 24 == plain.encode(["A man."]).shape[1]
    ours = prepare_for_inference(load_embedder(str(run)), precision="float32")
    np.testing.assert_allclose(plain.encode(texts), encode(ours, texts, precision="float32").numpy(), atol=1e-4)
    trained, fitted = teacher_cosine(ours, teacher_folder, texts), teacher_cosine(before, teacher_folder, texts)
    assert 1 - trained < 0.8 * (1 - fitted), (fitted, trained)  # a fifth of the way left to the teacher, at least
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["projection"] is True and summary["teacher"] == str(teacher_folder)


def test_bad_teacher_settings_are_one_line_before_any_work(tiny_models, nli_dir, teacher_folder, tmp_path, capsys):
    argv = ["train", "--model", str(tiny_models["llama"]), "--data-dir", str(nli_dir), "--out", str(tmp_path / "r")]
    for settings, message in [(["teacher=org/no-such-teacher"], "'org/no-such-teacher' is not in the local"),
                              (["teacher=nosuch"], "unknown model 'nosuch'"),
                              ([f"teacher={teacher_folder}", "teacher_prompt=Retrieval"],
                               "teacher_prompt: .* has no prompt 'Retrieval'; its prompts: STS"),
                              (["teacher=minilm-l6", "gradient_cache=true"], "teacher: distillation does not"),
                              (["teacher=minilm-l6", "distill_loss=l1"], "distill_loss: must be one of cosine, mse")]:
        assert main([*argv, *(arg for s in settings for arg in ("--set", s))]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and re.search(message, error), error
    assert not (tmp_path / "r").exists()  # nothing written


def test_teacher_cache_command_fills_the_cache_train_then_reuses(teacher_folder, nli_dir, tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.setenv("CFTUNE_CACHE", str(tmp_path / "cache"))  # this test's own: others fill the session's
    texts = tmp_path / "more.txt"
    texts.write_text("A sentence of its own.\nAnother one.\n")
    argv = ["teacher-cache", "--teacher", str(teacher_folder), "--teacher-prompt", "STS", "--data", "nli",
            "--data-dir", str(nli_dir), "--texts", str(texts), "--precision", "float32"]
    assert main(argv) == 0
    distinct = len({t for row in TRIPLETS for t in row}) + 2
    assert capsys.readouterr().out.startswith(f"{distinct} texts in ")
    cache = Teacher.of(str(teacher_folder), "STS", "float32").cache()
    assert len(cache.rows) == distinct and cache.matrix().shape == (distinct, 24)
    counting = CountingTeacher(Teacher.of(str(teacher_folder), "STS", "float32"))
    fill_cache(Teacher.of(str(teacher_folder), "STS", "float32"), [t for row in TRIPLETS for t in row], load=counting)
    assert counting.loads == 0  # what train --teacher will ask for is there


def test_plain_texts_distil_by_in_batch_kl_over_the_other_texts():
    """One column of texts: each text's similarity distribution over the batch's other texts, the teacher's
    against the student's (itself left out: it would always come first), against numpy."""
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    others = ~np.eye(4, dtype=bool)

    def logits(x):
        return (unit(x) @ unit(x).T / 0.1)[others].reshape(4, 3)

    p, log_q = softmax_rows(logits(t)), np.log(softmax_rows(logits(s)))
    expected = np.sum(p * (np.log(p) - log_q)) / 4

    class Student(torch.nn.Module):
        device = torch.device("cpu")

    config = load_config(overrides={"teacher": "t", "distill_loss": "kl", "contrastive_weight": 0,
                                    "distill_temperature": 0.1})
    loss = DistillationLoss(Student(), None, config, t.astype(np.float32), np.arange(4)[:, None])
    total = float(loss.compute_loss_from_embeddings([torch.tensor(s, dtype=torch.float32)], torch.arange(4)))
    assert total == pytest.approx(expected, rel=1e-4)


def test_a_student_learns_from_a_teacher_on_plain_unlabelled_text(tiny_models, nli_dir, teacher_folder, tmp_path,
                                                                  capsys):
    from cftune.cli import main

    texts = list(dict.fromkeys(t for row in TRIPLETS for t in row))
    plain = tmp_path / "texts.txt"  # a text a line, nothing else: no positives, no labels
    plain.write_text("\n".join(texts) + "\n", encoding="utf-8")
    argv = ["train", "--model", str(tiny_models["llama"]), "--data", str(plain), "--teacher", str(teacher_folder),
            "--teacher-prompt", "STS", "--batch-size", "8", "--max-steps", "24", "--data-dir", str(nli_dir),
            "--set", "contrastive_weight=0", "--set", "distill_loss=kl", "--set", "eval_steps=0",
            "--set", "save_steps=24", "--set", "learning_rate=1e-3", "--set", "precision=float32",
            "--set", "lora.target_modules=all-linear", "--set", "logging_steps=1", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["rows"] == len(texts) and summary["projection"] is False  # KL needs no map
    losses = logged(tmp_path / "run", "loss")
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4]), losses  # the student's similarities move to the teacher's
    # with a contrastive loss, plain texts are refused: they have no positives
    assert main([*argv[:-2], "--set", "contrastive_weight=1", "--out", str(tmp_path / "other")]) == 2
    assert "unknown training data format; expected .csv, .jsonl, .parquet (a .txt of plain texts trains only " \
           "from a teacher, with contrastive_weight 0)" in capsys.readouterr().err


def test_eval_scores_a_teacher_with_its_named_prompt(teacher_folder, sts_dir, tmp_path, capsys):
    """`eval --prompt-name STS` puts the teacher's prompt before every sentence: its scores are those of vectors
    encoded with that prompt, not without it; a name the model lacks is a one-line error."""
    from scipy.stats import spearmanr

    from cftune.data import read_sts_jsonl

    pairs = read_sts_jsonl(sts_dir / "sts" / "STS12.jsonl")
    model = load_embedder(str(teacher_folder))

    def score(prompt_name):
        a, b = (torch.nn.functional.normalize(encode(model, list(side), precision="float32",
                                                     prompt_name=prompt_name), dim=-1)
                for side in (pairs.sentence1, pairs.sentence2))
        return 100 * spearmanr((a * b).sum(-1).numpy(), pairs.scores).statistic

    out = tmp_path / "teacher"
    argv = ["eval", "--model", str(teacher_folder), "--tasks", "STS12", "--data-dir", str(sts_dir),
            "--precision", "float32", "--out", str(out)]
    assert main([*argv, "--prompt-name", "STS"]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["scores"]["STS12"] == pytest.approx(score("STS"), abs=1e-6)
    assert result["scores"]["STS12"] != pytest.approx(score(None), abs=1e-3)  # the prompt changed the vectors
    assert result["prompt"] == "similar: "
    capsys.readouterr()
    assert main([*argv[:-2], "--prompt-name", "passage"]) == 2
    assert f"--prompt-name: {teacher_folder} has no prompt 'passage'; its prompts: STS" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["eval", "--tasks", "STS12", "--prompt-name", "passage"],
                                     ["embed", "--prompt-name", "passage"],
                                     ["similarity", "a", "b", "--prompt-name-b", "passage"],
                                     ["serve", "--default-prompt-name", "passage"]], ids=lambda c: c[0])
def test_a_prompt_name_the_model_lacks_fails_before_it_loads(command, teacher_folder, sts_dir, tmp_path):
    """Every command taking a named prompt reads the model's declared prompts from its folder: a name it lacks
    is a one-line error before torch is imported (and nothing is written)."""
    from test_cli import probe

    texts = tmp_path / "texts.txt"
    texts.write_text("a\n")
    extra = {"eval": ["--data-dir", str(sts_dir), "--out", str(tmp_path / "out")],
             "embed": ["--input", str(texts), "--out", str(tmp_path / "vectors.npy")]}.get(command[0], [])
    before = sorted(tmp_path.rglob("*"))
    code, heavy, stderr = probe(*command, "--model", str(teacher_folder), *extra)
    assert (code, heavy) == (2, [])
    assert stderr.strip().endswith("has no prompt 'passage'; its prompts: STS, document, query")
    assert sorted(tmp_path.rglob("*")) == before
