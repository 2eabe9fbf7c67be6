import csv
import json
import os
import socket

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer

from cftune import DataFormatError, encode, load_embedder
from cftune.config import ConfigError, load_config
from cftune.data import read_triplets
from cftune.design import EmbedderDesign
from cftune.export import export
from cftune.training import add_lora, build_loss, train
from conftest import TRIPLETS, assert_is_a_plot, logged, write_jsonl


def tiny_config(tiny_models, nli_dir, **settings):
    base = {"model": str(tiny_models["llama"]), "data_dir": str(nli_dir), "batch_size": 8, "max_steps": 12,
            "warmup_steps": 2, "learning_rate": 1e-3, "eval_steps": 4, "save_steps": 4, "logging_steps": 2,
            "precision": "float32", "lora.dropout": 0.0}
    return load_config(overrides={**base, **settings})


def features(model, texts):
    return model.preprocess(texts)


def hand_infonce(a, p, n, temperature):
    """-log softmax over [all positives, all hard negatives] of cos(anchor, .)/T at the own positive."""
    a, candidates = torch.nn.functional.normalize(a, dim=-1), torch.cat([p, n]) if n is not None else p
    scores = a @ torch.nn.functional.normalize(candidates, dim=-1).T / temperature
    return torch.stack([-(scores[i, i] - torch.logsumexp(scores[i], 0)) for i in range(len(a))]).mean()


@pytest.mark.parametrize("hard_negatives", [True, False])
@pytest.mark.parametrize("gradient_cache", [False, True])
def test_loss_is_infonce_with_in_batch_and_hard_negatives(tiny_models, nli_dir, hard_negatives, gradient_cache):
    config = tiny_config(tiny_models, nli_dir, hard_negatives=hard_negatives, gradient_cache=gradient_cache,
                         mini_batch_size=2)
    model = load_embedder(config.model)
    columns = [list(c) for c in zip(*TRIPLETS[:5], strict=True)][: 3 if hard_negatives else 2]
    with torch.no_grad():
        vectors = [model(features(model, texts))["sentence_embedding"] for texts in columns]
        expected = hand_infonce(vectors[0], vectors[1], vectors[2] if hard_negatives else None, 0.05)
    loss = build_loss(model, config)(
        [features(model, texts) for texts in columns], torch.zeros(5)).detach()
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("gradient_cache", [False, True])
def test_matryoshka_loss_adds_infonce_at_each_leading_dimension(tiny_models, nli_dir, gradient_cache):
    config = tiny_config(tiny_models, nli_dir, gradient_cache=gradient_cache, mini_batch_size=2,
                         matryoshka_dims=[8, 32, 16])
    model = load_embedder(config.model)
    columns = [list(c) for c in zip(*TRIPLETS[:5], strict=True)]
    with torch.no_grad():
        vectors = [model(features(model, texts))["sentence_embedding"] for texts in columns]
        expected = sum(hand_infonce(*(v[:, :dim] for v in vectors), 0.05) for dim in (32, 16, 8))
    loss = build_loss(model, config)([features(model, texts) for texts in columns], torch.zeros(5)).detach()
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ConfigError, match="matryoshka_dims: 64 is more than this model's 32"):
        build_loss(model, load_config(overrides={"matryoshka_dims": "64,8"}))


def test_lora_trains_only_adapter_weights(tiny_models, nli_dir):
    config = tiny_config(tiny_models, nli_dir)
    model = load_embedder(config.model)
    add_lora(model, config)
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    # 2 layers x (q_proj, v_proj) x (A: r x 32, B: out x r); q out 32, v out 16 (2 kv heads of 8)
    assert sum(p.numel() for p in trainable.values()) == 2 * ((8 * 32 + 32 * 8) + (8 * 32 + 16 * 8))
    with pytest.raises(ConfigError, match="not in this model"):
        add_lora(load_embedder(config.model), load_config(overrides={"lora.target_modules": "Wqkv"}))


@pytest.mark.parametrize("gradient_checkpointing", [False, True])
def test_training_lowers_the_loss_and_saves_a_plain_model(tiny_models, nli_dir, tmp_path, gradient_checkpointing):
    config = tiny_config(tiny_models, nli_dir, gradient_checkpointing=gradient_checkpointing, prompt="eol")
    run = train(config, tmp_path / "run")
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in log if "loss" in row]
    assert losses[-1] < 0.5 * losses[0]
    assert any("eval_sts-dev_spearman_cosine" in row for row in log)
    assert_is_a_plot(run / "training_curve.png", (480, 840))
    assert json.loads((run / "train_summary.json").read_text())["steps"] == 12

    texts = [t[0] for t in TRIPLETS[:4]]
    tuned = SentenceTransformer(str(run)).encode(texts)  # plain sentence-transformers, adapter included
    base = encode(load_embedder(config.model, EmbedderDesign(prompt="eol")), texts, precision="float32").numpy()
    assert np.abs(tuned - base).max() > 1e-3
    np.testing.assert_allclose(encode(load_embedder(str(run)), texts, precision="float32").numpy(), tuned,
                               atol=1e-5)

    merged = export(run, tmp_path / "merged", merge=True)
    assert not (merged / "adapter_config.json").exists()
    np.testing.assert_allclose(SentenceTransformer(str(merged)).encode(texts), tuned, atol=1e-4)


@pytest.mark.parametrize("setting, fast", [("torch_compile", "true"), ("packing", "true"),
                                           ("dataloader_workers", 2)])
def test_speed_settings_change_the_kernels_not_the_arithmetic(tiny_models, nli_dir, tmp_path, setting, fast):
    """Compiled blocks, packed batches, batches prepared in worker processes: the same losses step by step as the
    plain run (fp32), and a saved model that plain sentence-transformers loads and that embeds as the plain
    run's does."""
    plain = {"torch_compile": "false", "packing": "false", "dataloader_workers": 0}
    runs = {name: train(tiny_config(tiny_models, nli_dir, **plain | settings, max_steps=6, eval_steps=0,
                                    save_steps=6), tmp_path / name)
            for name, settings in (("plain", {}), ("fast", {setting: fast}))}
    losses = {name: logged(run, "loss") for name, run in runs.items()}
    assert len(losses["fast"]) == 3 and losses["fast"][-1] < losses["fast"][0]
    np.testing.assert_allclose(losses["fast"], losses["plain"], rtol=1e-4)
    texts = [t[0] for t in TRIPLETS[:4]]
    np.testing.assert_allclose(SentenceTransformer(str(runs["fast"])).encode(texts),
                               SentenceTransformer(str(runs["plain"])).encode(texts), atol=1e-4)


def test_resume_after_a_crash_reproduces_the_uninterrupted_run(tiny_models, nli_dir, tmp_path, monkeypatch):
    config = tiny_config(tiny_models, nli_dir, **{"lora.dropout": 0.1})
    train(config, tmp_path / "straight")

    from cftune import training

    class Killed(Exception):
        pass

    def die_after_step_9(self, args, state, control, **kwargs):
        if state.global_step == 9:  # checkpoint-8 is on disk, steps 9.. are lost, as with kill -9
            raise Killed

    monkeypatch.setattr(training.JsonLogCallback, "on_step_end", die_after_step_9, raising=False)
    with pytest.raises(Killed):
        train(config, tmp_path / "resumed")
    monkeypatch.undo()
    train(config, tmp_path / "resumed", resume=True)

    straight = load_file(tmp_path / "straight" / "adapter_model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "adapter_model.safetensors")
    assert straight.keys() == resumed.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], atol=1e-6, rtol=0)


def _gather_worker(rank, world, port, folder, result_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        config = load_config(overrides={"lora.dropout": 0.0})
        model = load_embedder(folder)
        torch.manual_seed(0)
        add_lora(model, config)
        torch.manual_seed(1)  # the same non-zero LoRA B everywhere, so gradients reach A too
        for name, p in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.1)
        half = TRIPLETS[:8][rank * 4:(rank + 1) * 4]
        columns = [features(model, list(c)) for c in zip(*half, strict=True)]
        loss = build_loss(model, config, world_size=world)(columns, None)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        for g in grads.values():  # what DDP does: average the gradients of all processes
            torch.distributed.all_reduce(g)
            g /= world
        loss = loss.detach().clone()
        torch.distributed.all_reduce(loss)
        if rank == 0:
            torch.save({"loss": loss / world, "grads": grads}, result_path)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow  # two real processes over gloo
def test_two_processes_gather_negatives_like_one_big_batch(tiny_models, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_gather_worker, args=(2, port, str(tiny_models["llama"]), tmp_path / "r.pt"),
                                nprocs=2, join=True)
    two = torch.load(tmp_path / "r.pt")

    config = load_config(overrides={"lora.dropout": 0.0})
    model = load_embedder(str(tiny_models["llama"]))
    torch.manual_seed(0)
    add_lora(model, config)
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    loss = build_loss(model, config)([features(model, list(c)) for c in zip(*TRIPLETS[:8], strict=True)], None)
    loss.backward()
    torch.testing.assert_close(two["loss"], loss.detach(), atol=1e-5, rtol=0)
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(two["grads"][name], p.grad, atol=1e-5, rtol=1e-4)


def test_bad_triplet_rows_are_named_or_skipped(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("sent0,sent1,hard_neg\na,b,c\nd,,f\ng,h\ni,j,k\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"t\.csv:3: positive \(sent1\) must be a non-empty text"):
        read_triplets(path)
    kept = read_triplets(path, skip_bad_rows=True)
    assert kept.columns["anchor"] == ["a", "i"]
    assert [s.split(": ")[0] for s in kept.skipped] == [f"{path}:3", f"{path}:4"]
    bad_header = tmp_path / "h.jsonl"  # one of cftune's names, so not read by position: the other is missing
    write_jsonl(bad_header, [{"anchr": "a", "positive": "b"}])
    with pytest.raises(DataFormatError, match=r"h\.jsonl:1: no anchor column: .* \(name it with columns: "
                                              r"anchor=COLUMN\)"):
        read_triplets(bad_header)


def test_config_from_yaml_and_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: phi-2\nlearning_rate: 5.0e-5\nlora:\n  r: 8\n  alpha: 32\n")
    config = load_config(recipe, ["lora.r=16", "hard_negatives=off", "max_rows=none"])
    assert (config.model, config.learning_rate, config.lora.r, config.lora.alpha) == ("phi-2", 5e-5, 16, 32)
    assert config.hard_negatives is False and config.max_rows is None
    for bad, message in [(["lora.rank=4"], "unknown setting 'lora.rank'"), (["max_steps=lots"], "expected int"),
                         (["novalue"], "key=value")]:
        with pytest.raises(ConfigError, match=message):
            load_config(recipe, bad)


def tensorboard_scalars(folder) -> dict[str, list[float]]:
    """Every scalar in the TensorBoard event files under ``folder``, read record by record (length, crc,
    event, crc), with tensorboardX's own protobuf classes."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[float]] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        data = path.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append(value.simple_value)
    return scalars


def test_report_to_tensorboard_gets_the_logged_losses(tiny_models, nli_dir, tmp_path):
    pytest.importorskip("tensorboardX")
    run = train(tiny_config(tiny_models, nli_dir, report_to=["tensorboard"], eval_steps=0, max_steps=4,
                            logging_steps=1), tmp_path / "run")
    assert tensorboard_scalars(run / "checkpoints")["train/loss"] == pytest.approx(logged(run, "loss"), rel=1e-5)


def test_a_tracker_that_is_not_installed_stops_training_before_the_model_loads(tiny_models, nli_dir, tmp_path,
                                                                                monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else
                        real_find_spec(name, *a))
    monkeypatch.setattr("cftune.training.load_embedder", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(ConfigError, match=r"report_to: wandb is not installed here \(pip install wandb\)"):
        train(tiny_config(tiny_models, nli_dir, report_to="wandb"), tmp_path / "run")
    with pytest.raises(ConfigError, match="report_to: must be a list of tensorboard, trackio, wandb"):
        tiny_config(tiny_models, nli_dir, report_to="tensorbored")


def test_several_hard_negatives_are_all_candidates_and_train_reads_them(tiny_models, nli_dir, tmp_path):
    rows = TRIPLETS[:24]
    data = tmp_path / "mined.csv"
    with data.open("w", newline="") as handle:  # what `cftune mine --negatives 2` writes
        writer = csv.writer(handle)
        writer.writerow(["anchor", "positive", "negative_1", "negative_2"])
        writer.writerows((a, p, n, rows[(i + 5) % len(rows)][2]) for i, (a, p, n) in enumerate(rows))
    config = tiny_config(tiny_models, nli_dir, data=str(data), max_steps=2, eval_steps=0, batch_size=4)
    model = load_embedder(config.model)
    columns = [[row[c] for row in list(csv.reader(data.open()))[1:6]] for c in range(4)]
    with torch.no_grad():
        a, p, n1, n2 = (model(features(model, texts))["sentence_embedding"] for texts in columns)
        expected = hand_infonce(a, p, torch.cat([n1, n2]), 0.05)
    loss = build_loss(model, config)([features(model, texts) for texts in columns], torch.zeros(5)).detach()
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    run = train(config, tmp_path / "run")
    assert json.loads((run / "train_summary.json").read_text())["steps"] == 2


def hand_cosent(a: torch.Tensor, b: torch.Tensor, scores: list[float], scale: float = 20.0) -> torch.Tensor:
    """CoSENT (Su 2022): log(1 + sum over pairs i, j with score_i > score_j of exp(scale * (cos_j - cos_i)))."""
    cos = torch.nn.functional.cosine_similarity(a, b)
    terms = [scale * (cos[j] - cos[i]) for i in range(len(scores)) for j in range(len(scores))
             if scores[i] > scores[j]]
    return torch.logsumexp(torch.stack([torch.zeros(())] + terms), 0)


def test_scored_pairs_train_with_cosent_for_epochs_in_batches_with_a_warmup_ratio(tiny_models, nli_dir, tmp_path,
                                                                                     caplog):
    from cftune.cli import main
    from cftune.prompts import prompt_of

    pairs = [(a, n if i % 3 else p, float(i % 5)) for i, (a, p, n) in enumerate(TRIPLETS[:30])]
    data = tmp_path / "scored.csv"  # another file's names, mapped with --columns
    with data.open("w", newline="") as handle:
        csv.writer(handle).writerows([("text_a", "text_b", "similarity"), *pairs])
    columns = "sentence1=text_a,sentence2=text_b,score=similarity"
    config = tiny_config(tiny_models, nli_dir, data=str(data), loss="cosent", columns=columns)
    model = load_embedder(config.model)
    with torch.no_grad():
        a, b = (model(features(model, [row[c] for row in pairs[:6]]))["sentence_embedding"] for c in (0, 1))
        expected = hand_cosent(a, b, [row[2] for row in pairs[:6]])
    scores = torch.tensor([row[2] for row in pairs[:6]])
    loss = build_loss(model, config)([features(model, [row[c] for row in pairs[:6]]) for c in (0, 1)], scores)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)

    out = tmp_path / "run"  # no recipe: 2 epochs of 30 rows in batches of 8 = 2 x 3 steps, 10% of them warm-up
    assert main(["train", "--model", config.model, "--data", str(data), "--columns", columns, "--loss", "cosent",
                 "--epochs", "2", "--batch-size", "8", "--data-dir", str(nli_dir), "--set", "eval_steps=3",
                 "--set", "save_steps=3", "--set", "logging_steps=1", "--set", "learning_rate=1e-3",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert (summary["steps"], summary["warmup_steps"], summary["rows"]) == (6, 1, 30)
    rates = logged(out, "learning_rate")
    # the first step is the warm-up (from 0), the second at the full rate, then the cosine decay
    assert rates[:2] == pytest.approx([0, 1e-3]) and rates[-1] < rates[1]
    assert prompt_of(load_embedder(str(out))) == 'This sentence : "{text}" means in one word:"'  # auto: eol

    caplog.clear()  # a warm-up as long as the run is said, not silently kept
    train(tiny_config(tiny_models, nli_dir, max_steps=2, warmup_steps=5, eval_steps=0, save_steps=2),
          tmp_path / "short")
    assert "warmup_steps=5 is not fewer than the run's 2 steps: the learning rate never reaches 0.001" in caplog.text


@pytest.mark.parametrize("settings, problem", [
    (["loss=cosent", "gradient_cache=true"], "gradient_cache: goes with loss infonce"),
    (["loss=angle", "teacher=all-mpnet-base-v2"], "teacher: goes with loss infonce"),
    (["loss=mse"], "loss: must be one of infonce, cosent, angle"),
    (["epochs=0"], "epochs: must be > 0"), (["warmup_ratio=1"], "warmup_ratio: must be >= 0 and < 1"),
    (["torch_compile=yes"], "torch_compile: must be one of auto, true, false"),
    (["packing=on"], "packing: must be one of auto, true, false"),
    (["dataloader_workers=-1"], "dataloader_workers: must be >= 0"),
])
def test_training_option_mistakes_are_named(settings, problem):
    with pytest.raises(ConfigError, match=problem):
        load_config(None, settings)


def test_compiling_without_a_cpp_compiler_is_refused_before_any_work(tiny_models, nli_dir, tmp_path, monkeypatch):
    from cftune import training

    monkeypatch.setattr(training.shutil, "which", lambda name: None)
    monkeypatch.setattr(training.torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="torch_compile: true needs a C[+][+] compiler on a CPU"):
        train(tiny_config(tiny_models, nli_dir, torch_compile="true"), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    assert load_config(None, ["torch_compile=true"]).torch_compile == "true"  # YAML's true reads as the word
    assert load_config(overrides={"packing": False}).packing == "false"


def test_the_model_card_names_the_base_model_and_data_by_hub_id(tiny_models, nli_dir, tmp_path, monkeypatch):
    from cftune.aliases import hub_id_of
    from cftune.training import data_origin

    assert hub_id_of("gemma3-270m") == "google/gemma-3-270m"  # a packaged GGUF: the model it was made from
    assert hub_id_of("phi-2") == "microsoft/phi-2" and hub_id_of("org/some-model") == "org/some-model"
    assert hub_id_of(str(tiny_models["llama"])) is None  # a local folder says nothing about the hub
    config = tiny_config(tiny_models, nli_dir, max_steps=2, eval_steps=0, save_steps=2)
    run = train(config, tmp_path / "run")
    metadata = (run / "README.md").read_text().split("---")[1]
    assert "base_model" not in metadata and "datasets:" not in metadata  # local model, local stand-in data
    assert "#### SimCSE NLI triplets" in (run / "README.md").read_text()
    # the usage example's similarities are computed once, for the final card; checkpoints skip that pass
    assert "print(similarities)\n# tensor([[" in (run / "README.md").read_text()
    checkpoint_cards = [card.read_text() for card in run.glob("checkpoints/checkpoint-*/README.md")]
    assert checkpoint_cards and all("print(similarities.shape)" in card for card in checkpoint_cards)
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace(str(tiny_models["llama"]), "phi-2"))
    assert hub_id_of(str(run)) == "microsoft/phi-2"  # a run folder: its base

    assert data_origin("nli", None, "x.csv") == {"name": "SimCSE NLI triplets",
                                                 "id": "princeton-nlp/datasets-for-simcse"}
    assert data_origin("org/pairs:triplet", None, "x") == {"name": "org/pairs:triplet", "id": "org/pairs"}
    # what the hub reads: a model made from a hub model, on hub data (the lookups above, made for this model)
    monkeypatch.setattr("cftune.aliases.hub_id_of", lambda model: "google/gemma-3-270m")
    monkeypatch.setattr("cftune.training.data_origin",
                        lambda spec, data_dir, source: {"name": "all-nli", "id": "o/all-nli"})
    run = train(config, tmp_path / "from-hub")
    metadata = (run / "README.md").read_text().split("---")[1]
    assert "base_model: google/gemma-3-270m" in metadata and "datasets:\n- o/all-nli\n" in metadata, metadata


def test_export_in_bf16_or_fp16_halves_the_folder_and_embeds_as_cftune_does(tiny_models, nli_dir, tmp_path):
    from cftune.cli import main

    run = train(tiny_config(tiny_models, nli_dir, max_steps=2, eval_steps=0, save_steps=2), tmp_path / "run")
    texts = [t[0] for t in TRIPLETS[:6]]
    full = tmp_path / "fp32"
    assert main(["export", str(run), "--merge", "--out", str(full)]) == 0
    reference = SentenceTransformer(str(full)).encode(texts)
    size = (full / "model.safetensors").stat().st_size
    for dtype, torch_dtype in [("bf16", torch.bfloat16), ("fp16", torch.float16)]:
        out = tmp_path / dtype
        assert main(["export", str(run), "--merge", "--dtype", dtype, "--out", str(out)]) == 0
        weights = load_file(out / "model.safetensors")
        assert {t.dtype for t in weights.values()} == {torch_dtype}
        assert (out / "model.safetensors").stat().st_size < 0.55 * size
        plain = SentenceTransformer(str(out))  # loads in the type it was saved in, as cftune does
        assert next(plain.parameters()).dtype == torch_dtype
        vectors = plain.encode(texts)
        # cftune's encode of the same folder autocasts, so norms and softmax run in fp32: equal to bf16 rounding
        np.testing.assert_allclose(encode(load_embedder(str(out)), texts, precision="auto").numpy(), vectors,
                                   atol=2e-2)
        cosines = (vectors * reference).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(reference, axis=1)
        assert cosines.min() > 0.99, cosines


@pytest.mark.parametrize("name", __import__("cftune.config", fromlist=["recipe_names"]).recipe_names())
def test_every_shipped_recipe_loads_and_every_experiment_names_shipped_recipes(name):
    from cftune.config import EXPERIMENTS, recipe_names

    config = load_config(name)  # parsed, coerced and range-checked, as `cftune train --config NAME` does
    assert config.model and (config.max_steps or config.epochs)
    named = {recipe for experiment in EXPERIMENTS.values() for recipe in experiment.recipes.values()}
    assert named <= set(recipe_names())


def test_an_encoder_trains_with_its_own_pooling_by_default(tiny_models, nli_dir, tmp_path):
    """pooling auto: an encoder (a saved sentence-transformers model with mean pooling) trains as it is, as a
    student does; asking it for another pooling is still an error."""
    from cftune.design import pooling_of

    run = train(tiny_config(tiny_models, nli_dir, model=str(tiny_models["bert"]), max_steps=2, eval_steps=0,
                            save_steps=2, **{"lora.target_modules": "all-linear"}), tmp_path / "run")
    assert pooling_of(load_embedder(str(run))) == pooling_of(load_embedder(str(tiny_models["bert"])))
    assert json.loads((run / "train_summary.json").read_text())["design"].startswith(
        f"{pooling_of(load_embedder(str(tiny_models['bert'])))} pooling")
    with pytest.raises(Exception, match="cannot be loaded with pooling=lasttoken"):
        train(tiny_config(tiny_models, nli_dir, model=str(tiny_models["bert"]), pooling="lasttoken", max_steps=2,
                          eval_steps=0, save_steps=2), tmp_path / "other")
