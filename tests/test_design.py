"""The embedder's design as settings: pooling, attention and fine-tuning scope, each kept by a saved folder."""

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from cftune import ConfigError, ModelSourceError, encode, load_embedder
from cftune.config import load_config
from cftune.design import EmbedderDesign, attention_of, layers_of, leaves_prompt_out, pooling_of
from cftune.models import prepare_for_inference
from cftune.prompts import named_prompts, prompt_of, set_prompt
from cftune.training import add_lora, freeze_token_embeddings
from conftest import CORPUS

TEXTS = ["Hi.", CORPUS[1], CORPUS[4], "A cat sleeps."]  # different lengths: the batch is padded


def first_token_state(embedder, text: str) -> torch.Tensor:
    """Last-layer hidden state of the first real token (BOS) of ``text``, run alone."""
    features = embedder.preprocess([text])
    with torch.no_grad():
        return embedder[0](features)["token_embeddings"][0, 0]


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_only_bidirectional_attention_lets_the_first_token_see_later_ones(tiny_models, attention):
    embedder = load_embedder(str(tiny_models["gemma3_text"]), EmbedderDesign(attention=attention))
    assert attention_of(embedder) == attention
    one = first_token_state(embedder, "A man plays a guitar.")
    other = first_token_state(embedder, "A man plays a drum.")
    changed = not torch.allclose(one, other, atol=1e-6)
    assert changed == (attention == "bidirectional")


@pytest.mark.parametrize("pooling", ["lasttoken", "mean", "weightedmean"])
@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_design_is_batch_independent_and_survives_save(tiny_models, tmp_path, pooling, attention):
    embedder = load_embedder(str(tiny_models["gemma3_text"]),
                             EmbedderDesign(prompt="eol", pooling=pooling, attention=attention))
    batch = encode(embedder, TEXTS, batch_size=len(TEXTS), precision="float32").numpy()
    for i, text in enumerate(TEXTS):
        alone = encode(embedder, [text], precision="float32").numpy()[0]
        np.testing.assert_allclose(batch[i], alone, atol=1e-5, rtol=0)

    embedder.save(str(tmp_path / "saved"))
    plain = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    np.testing.assert_allclose(plain.encode(TEXTS, convert_to_numpy=True), batch, atol=1e-5, rtol=0)
    reloaded = load_embedder(str(tmp_path / "saved"))
    assert (pooling_of(reloaded), attention_of(reloaded)) == (pooling, attention)


def test_mean_pooling_is_the_mean_of_token_states(tiny_models):
    embedder = load_embedder(str(tiny_models["gemma3_text"]), EmbedderDesign(pooling="mean"))
    features = embedder.preprocess([TEXTS[1]])
    with torch.no_grad():
        states = embedder[0](features)["token_embeddings"][0]
    np.testing.assert_allclose(encode(embedder, [TEXTS[1]], precision="float32")[0].numpy(),
                               states.mean(0).numpy(), atol=1e-6, rtol=0)


def test_lora_folder_keeps_bidirectional_attention(tiny_models, tmp_path):
    """A LoRA folder has no config.json: the switch must come back from sentence_bert_config.json."""
    embedder = load_embedder(str(tiny_models["gemma3_text"]), EmbedderDesign(attention="bidirectional", pooling="mean"))
    add_lora(embedder, load_config(overrides={"lora.dropout": 0.0}))
    with torch.no_grad():  # LoRA starts as a no-op (B = 0); make it do something
        for name, parameter in embedder.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    ours = encode(embedder, TEXTS, precision="float32").numpy()
    embedder.save(str(tmp_path / "run"))
    assert (tmp_path / "run" / "adapter_config.json").exists() and not (tmp_path / "run" / "config.json").exists()
    plain = SentenceTransformer(str(tmp_path / "run"), device="cpu")
    assert attention_of(plain) == "bidirectional"
    np.testing.assert_allclose(plain.encode(TEXTS, convert_to_numpy=True), ours, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["llama", "qwen3", "phi"])
def test_bidirectional_attention_is_refused_where_there_is_no_switch(tiny_models, arch):
    with pytest.raises(ModelSourceError, match="gemma3_text"):
        load_embedder(str(tiny_models[arch]), EmbedderDesign(attention="bidirectional"))


def test_a_saved_embedder_cannot_be_loaded_with_another_design(tiny_models, tmp_path):
    load_embedder(str(tiny_models["gemma3_text"]), EmbedderDesign(pooling="mean")).save(str(tmp_path / "saved"))
    with pytest.raises(ModelSourceError, match="pooling=mean"):
        load_embedder(str(tmp_path / "saved"), EmbedderDesign(pooling="lasttoken"))
    # a design is checked once, when it is made: the setting is named, whoever asks (a recipe, a flag, Python)
    with pytest.raises(ConfigError, match="^pooling: must be one of lasttoken, mean, weightedmean, got 'max-ish'$"):
        EmbedderDesign(pooling="max-ish")
    with pytest.raises(ConfigError, match="^prompt: must be one of none, eol, auto or a template"):
        EmbedderDesign(prompt="no placeholder")


def test_full_fine_tuning_trains_the_body_but_not_the_token_embeddings(tiny_models):
    embedder = load_embedder(str(tiny_models["gemma3_text"]))
    freeze_token_embeddings(embedder)
    trainable = {name for name, p in embedder.named_parameters() if p.requires_grad}
    frozen = {name for name, p in embedder.named_parameters() if not p.requires_grad}
    assert frozen == {name for name in frozen if "embed_tokens" in name} and frozen
    assert any("q_proj" in name for name in trainable) and any("mlp" in name for name in trainable)


def test_full_fine_tuning_end_to_end_keeps_the_token_embeddings(tiny_models, nli_dir, tmp_path):
    import json

    from safetensors.torch import load_file

    from cftune.training import train

    config = load_config(overrides={"model": str(tiny_models["gemma3_text"]), "data_dir": str(nli_dir),
                                    "finetune": "full", "attention": "bidirectional", "pooling": "mean",
                                    "batch_size": 8, "max_steps": 3, "warmup_steps": 1, "learning_rate": 1e-3,
                                    "eval_steps": 0, "save_steps": 3, "precision": "float32"})
    run = train(config, tmp_path / "run")
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["finetune"] == "full" and summary["peak_rss_gib"] > 0
    def weights(state: dict) -> dict:  # the saved file may prefix its keys with "model."
        return {key.removeprefix("model."): value for key, value in state.items()}

    before = weights(load_embedder(str(tiny_models["gemma3_text"]))[0].auto_model.state_dict())
    after = weights(load_file(str(run / "model.safetensors")))
    assert torch.equal(after["embed_tokens.weight"], before["embed_tokens.weight"])
    assert any(not torch.equal(after[k], before[k]) for k in after if "q_proj" in k), "the body must train"
    assert summary["trainable_parameters"] == sum(v.numel() for k, v in after.items() if "embed_tokens" not in k)
    plain = SentenceTransformer(str(run), device="cpu")
    assert attention_of(plain) == "bidirectional" and pooling_of(plain) == "mean"


def test_an_encoder_reports_its_own_bidirectional_attention(tiny_models, tmp_path):
    import json

    encoder = load_embedder(str(tiny_models["bert"]))
    assert attention_of(encoder) == "bidirectional"
    encoder.save(str(tmp_path / "saved"))  # an encoder has no switch to write into its folder
    assert "config_kwargs" not in json.loads((tmp_path / "saved" / "sentence_bert_config.json").read_text())
    assert attention_of(load_embedder(str(tmp_path / "saved"))) == "bidirectional"
    bert = load_embedder(str(tiny_models["bert"]), EmbedderDesign(attention="bidirectional"))
    assert attention_of(bert) == "bidirectional"
    with pytest.raises(ModelSourceError, match="attention=bidirectional"):
        load_embedder(str(tiny_models["bert"]), EmbedderDesign(attention="causal"))


def eos_states_by_layer(folder, texts) -> torch.Tensor:
    """Every layer's hidden state at the appended EOS, each text run alone, computed with transformers only:
    shape (texts, layers + 1, hidden); index 0 is the token embeddings, -1 the last layer (after its norm)."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    body = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    rows = []
    for text in texts:
        ids = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
        with torch.no_grad():
            hidden = body(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        rows.append(torch.stack([layer[0, -1] for layer in hidden]))
    return torch.stack(rows)


def test_layers_runs_only_the_first_layers_and_survives_save(tiny_models, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    folder = tiny_models["gemma3_text"]
    embedder = load_embedder(str(folder), EmbedderDesign(layers=1))
    assert layers_of(embedder) == (1, 1)
    ours = encode(embedder, TEXTS, precision="float32").numpy()
    # the reference: transformers' own one-layer model of the same weights, at the appended EOS
    tokenizer = AutoTokenizer.from_pretrained(folder)
    body = AutoModel.from_pretrained(folder, dtype=torch.float32, num_hidden_layers=1).eval()
    for i, text in enumerate(TEXTS):
        ids = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
        with torch.no_grad():
            expected = body(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        np.testing.assert_allclose(ours[i], expected.numpy(), atol=1e-5, rtol=0)
    full = encode(load_embedder(str(folder)), TEXTS, precision="float32").numpy()
    assert not np.allclose(ours, full, atol=1e-3)  # the second layer really was left out

    add_lora(embedder, load_config(overrides={"lora.dropout": 0.0}))
    with torch.no_grad():
        for name, parameter in embedder.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    tuned = encode(embedder, TEXTS, precision="float32").numpy()
    embedder.save(str(tmp_path / "run"))  # a LoRA folder: no config.json, the layer count lives in ST's config
    plain = SentenceTransformer(str(tmp_path / "run"), device="cpu")
    np.testing.assert_allclose(plain.encode(TEXTS, convert_to_numpy=True), tuned, atol=1e-5, rtol=0)
    reloaded = prepare_for_inference(load_embedder(str(tmp_path / "run")))  # merged, as eval loads it
    assert layers_of(reloaded) == (1, 1)
    reloaded.save(str(tmp_path / "again"))  # what export writes: still one layer
    np.testing.assert_allclose(SentenceTransformer(str(tmp_path / "again"), device="cpu").encode(TEXTS), tuned,
                               atol=1e-5, rtol=0)
    with pytest.raises(ModelSourceError, match="layers=1; it cannot be loaded with layers=2"):
        load_embedder(str(tmp_path / "run"), EmbedderDesign(layers=2))
    with pytest.raises(ModelSourceError, match="layers must be between 1 and this model's 2"):
        load_embedder(str(folder), EmbedderDesign(layers=3))


def test_pooled_layers_is_the_mean_of_the_last_layers_states(tiny_models, tmp_path):
    folder = tiny_models["gemma3_text"]
    embedder = load_embedder(str(folder), EmbedderDesign(pooled_layers=2))
    assert layers_of(embedder) == (2, 2)
    ours = encode(embedder, TEXTS, precision="float32").numpy()
    by_layer = eos_states_by_layer(folder, TEXTS)
    np.testing.assert_allclose(ours, by_layer[:, -2:].mean(1).numpy(), atol=1e-5, rtol=0)
    assert not np.allclose(ours, by_layer[:, -1].numpy(), atol=1e-3)

    batch = encode(embedder, TEXTS, batch_size=len(TEXTS), precision="float32").numpy()
    np.testing.assert_allclose(batch, ours, atol=1e-5, rtol=0)
    embedder.save(str(tmp_path / "saved"))
    plain = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    np.testing.assert_allclose(plain.encode(TEXTS, convert_to_numpy=True), ours, atol=1e-5, rtol=0)
    assert layers_of(load_embedder(str(tmp_path / "saved"))) == (2, 2)
    with pytest.raises(ModelSourceError, match="pooled_layers must be between 1 and the 1 layers kept"):
        load_embedder(str(folder), EmbedderDesign(layers=1, pooled_layers=2))


def record_prompts(monkeypatch) -> list:
    """The prompt of every preprocess call (the training collator tokenizes batch columns with it)."""
    prompts_seen = []
    real_preprocess = SentenceTransformer.preprocess

    def recording_preprocess(self, inputs, *args, prompt=None, **kwargs):
        prompts_seen.append(prompt)
        return real_preprocess(self, inputs, *args, prompt=prompt, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "preprocess", recording_preprocess)
    return prompts_seen


def test_query_and_document_prompts_are_trained_saved_and_used_by_plain_sentence_transformers(
        tiny_models, nli_dir, tmp_path, monkeypatch):
    from cftune.training import train

    prompts_seen = record_prompts(monkeypatch)
    config = load_config(overrides={"model": str(tiny_models["gemma3_text"]), "data_dir": str(nli_dir),
                                    "prompt": "eol", "query_prompt": "query: ", "document_prompt": "passage: ",
                                    "pooling": "mean",  # a tiny random model's EOS state barely sees the text
                                    "max_steps": 2, "batch_size": 8, "eval_steps": 0, "save_steps": 2,
                                    "precision": "float32", "lora.dropout": 0.0})
    run = train(config, tmp_path / "run")
    monkeypatch.undo()
    # the collator tokenizes each batch column by column: anchor with the query prompt, the rest as documents
    # (the model card's widget examples are embedded without prompts: they are not training batches)
    batches = [p for p in prompts_seen if p is not None]
    assert len(batches) >= 6 and batches == ["query: ", "passage: ", "passage: "] * (len(batches) // 3)

    plain = SentenceTransformer(str(run), device="cpu")
    assert plain.prompts["query"] == "query: " and plain.prompts["document"] == "passage: "
    ours = load_embedder(str(run))
    as_query = encode(ours, TEXTS, precision="float32", prompt_name="query").numpy()
    np.testing.assert_allclose(plain.encode_query(TEXTS), as_query, atol=1e-5, rtol=0)
    np.testing.assert_allclose(plain.encode_document(TEXTS),
                               encode(ours, TEXTS, precision="float32", prompt_name="document").numpy(), atol=1e-5)
    # the named prompt goes before the text, inside the eol template: the same as writing it there
    np.testing.assert_allclose(as_query, encode(ours, [f"query: {t}" for t in TEXTS], precision="float32").numpy(),
                               atol=1e-5, rtol=0)
    assert not np.allclose(as_query, encode(ours, TEXTS, precision="float32").numpy(), atol=1e-3)
    with pytest.raises(ConfigError, match="prompt name 'passage': this model has"):
        encode(ours, TEXTS, prompt_name="passage")


def test_mntp_loss_is_next_token_prediction_at_the_masked_positions(tiny_models):
    """With (almost) every maskable token masked, the loss is transformers' own causal-LM cross-entropy of the
    masked input, at the positions before each masked token."""
    from transformers import AutoModelForCausalLM

    from cftune.mntp import mntp_loss, output_embeddings

    folder = tiny_models["gemma3_text"]
    embedder = load_embedder(str(folder))
    texts = TEXTS[:3]
    with torch.no_grad():
        ours = mntp_loss(embedder, output_embeddings(embedder), texts, 0.9999, torch.Generator().manual_seed(0))
    tokenizer = embedder.tokenizer
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    chosen = mask.bool() & ~torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    chosen[:, 0] = False
    mask_id = tokenizer.pad_token_id if tokenizer.mask_token_id is None else tokenizer.mask_token_id  # as ours
    masked = torch.where(chosen, torch.full_like(ids, mask_id), ids)
    lm = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = lm(input_ids=masked, attention_mask=mask).logits[:, :-1][chosen[:, 1:]]
    expected = torch.nn.functional.cross_entropy(logits, ids[:, 1:][chosen[:, 1:]])
    assert float(ours) == pytest.approx(float(expected), rel=1e-4)


def test_mntp_warm_up_runs_before_contrastive_training_and_lowers_its_loss(tiny_models, nli_dir, tmp_path):
    import json

    from cftune.training import train

    config = load_config(overrides={"model": str(tiny_models["gemma3_text"]), "data_dir": str(nli_dir),
                                    "attention": "bidirectional", "mntp_steps": 12, "learning_rate": 3e-3,
                                    "max_steps": 2, "batch_size": 8, "eval_steps": 0, "save_steps": 2,
                                    "precision": "float32", "lora.dropout": 0.0})
    run = train(config, tmp_path / "run")
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["mntp_last_loss"] < summary["mntp_first_loss"] and summary["steps"] == 2
    assert attention_of(load_embedder(str(run))) == "bidirectional"


PREFIX = "Represent this sentence: "


def token_states(embedder, texts: list[str], **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    features = embedder.preprocess(texts, **kwargs)
    with torch.no_grad():
        return embedder[0](features)["token_embeddings"], features["attention_mask"]


@pytest.mark.parametrize("arch", ["gemma3_text", "qwen3"])  # with and without a BOS
def test_leaving_the_prompt_out_changes_nothing_without_a_prompt(tiny_models, tmp_path, arch):
    """With no prompt, the plain-text path (tokenizer appends EOS) embeds exactly as the chat-template path."""
    included = load_embedder(str(tiny_models[arch]), EmbedderDesign(pooling="mean"))
    left_out = load_embedder(str(tiny_models[arch]), EmbedderDesign(pooling="mean", include_prompt=False))
    np.testing.assert_array_equal(included.tokenize(TEXTS)["input_ids"], left_out.tokenize(TEXTS)["input_ids"])
    np.testing.assert_allclose(encode(left_out, TEXTS, precision="float32").numpy(),
                               encode(included, TEXTS, precision="float32").numpy(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("pooling", ["mean", "weightedmean"])
def test_the_prompt_is_left_out_of_the_mean_and_a_saved_folder_does_the_same(tiny_models, tmp_path, pooling):
    embedder = load_embedder(str(tiny_models["gemma3_text"]),
                             EmbedderDesign(prompt=PREFIX + "{text}", pooling=pooling, include_prompt=False))
    ours = encode(embedder, TEXTS, batch_size=len(TEXTS), precision="float32").numpy()
    tokenizer = embedder.tokenizer
    prompt_tokens = len(tokenizer(PREFIX)["input_ids"]) - 1  # BOS + the prefix (the EOS after it is not)
    for i, text in enumerate(TEXTS):
        states, _ = token_states(embedder, [PREFIX + text])
        ids = tokenizer(PREFIX + text)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        kept = states[0, prompt_tokens:]  # the text and its EOS
        weights = torch.arange(prompt_tokens + 1, len(ids) + 1, dtype=torch.float32)[:, None]
        expected = kept.mean(0) if pooling == "mean" else (kept * weights).sum(0) / weights.sum()
        np.testing.assert_allclose(ours[i], expected.numpy(), atol=1e-5, rtol=0)  # batched == alone, by hand
    with_prompt = load_embedder(str(tiny_models["gemma3_text"]),
                                EmbedderDesign(prompt=PREFIX + "{text}", pooling=pooling))
    assert not np.allclose(encode(with_prompt, TEXTS, precision="float32").numpy(), ours, atol=1e-3)

    embedder.save(str(tmp_path / "saved"))
    plain = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    np.testing.assert_allclose(plain.encode(TEXTS, convert_to_numpy=True), ours, atol=1e-5, rtol=0)
    reloaded = prepare_for_inference(load_embedder(str(tmp_path / "saved")), precision="float32")
    assert prompt_of(reloaded) == PREFIX + "{text}" and leaves_prompt_out(reloaded)
    np.testing.assert_allclose(encode(reloaded, TEXTS, precision="float32").numpy(), ours, atol=1e-5, rtol=0)
    with pytest.raises(ModelSourceError, match="include_prompt=True"):
        load_embedder(str(tmp_path / "saved"), EmbedderDesign(include_prompt=True))
    set_prompt(reloaded, "none")  # a new prefix (here none) is what is put before, and left out, now
    np.testing.assert_allclose(encode(reloaded, TEXTS, precision="float32").numpy(),
                               encode(load_embedder(str(tiny_models["gemma3_text"]), EmbedderDesign(pooling=pooling)),
                                      TEXTS, precision="float32").numpy(), atol=1e-5, rtol=0)
    with pytest.raises(ModelSourceError, match="'eol' puts text after it"):
        set_prompt(reloaded, "eol")


@pytest.mark.parametrize(("settings", "message"), [
    ({"pooling": "lasttoken"}, "needs mean or weightedmean pooling, not lasttoken"),
    ({"pooling": "mean", "prompt": "eol"}, "'eol' puts text after it"),
])
def test_leaving_the_prompt_out_is_refused_where_it_cannot_work(tiny_models, settings, message):
    with pytest.raises(ConfigError, match=f"^include_prompt: false .*{message}"):  # the same error, either way
        EmbedderDesign(include_prompt=False, **settings)
    with pytest.raises(ConfigError, match=f"^include_prompt: false .*{message}"):
        load_config(overrides={"include_prompt": False, **settings})


def test_training_leaves_the_template_and_the_named_prompts_out_of_the_mean(tiny_models, nli_dir, tmp_path,
                                                                            monkeypatch):
    from cftune.export import export
    from cftune.training import train

    prompts_seen = record_prompts(monkeypatch)
    config = load_config(overrides={"model": str(tiny_models["gemma3_text"]), "data_dir": str(nli_dir),
                                    "prompt": PREFIX + "{text}", "query_prompt": "query: ", "pooling": "mean",
                                    "include_prompt": False, "max_steps": 2, "batch_size": 8, "eval_steps": 0,
                                    "save_steps": 2, "precision": "float32", "lora.dropout": 0.0})
    run = train(config, tmp_path / "run")
    monkeypatch.undo()
    # plain text: the collator puts the template's prefix, then the column's named prompt, before each text
    # (the model card's widget examples are embedded with the default prompt, the prefix alone)
    steps = [i for i, p in enumerate(prompts_seen) if p == PREFIX + "query: "]
    assert len(steps) >= 2 and all(prompts_seen[i + 1:i + 3] == [PREFIX, PREFIX] for i in steps)
    assert set(prompts_seen) - {None} == {PREFIX + "query: ", PREFIX}

    plain = SentenceTransformer(str(run), device="cpu")
    ours = prepare_for_inference(load_embedder(str(run)), precision="float32")
    assert named_prompts(ours) == {"query": "query: ", "document": ""}
    as_query = encode(ours, TEXTS, precision="float32", prompt_name="query").numpy()
    np.testing.assert_allclose(plain.encode_query(TEXTS), as_query, atol=1e-5, rtol=0)
    np.testing.assert_allclose(plain.encode(TEXTS), encode(ours, TEXTS, precision="float32").numpy(), atol=1e-5)
    # the query's vector is the mean over the text (and EOS) only: prefix and query prompt are left out
    prompt_tokens = len(ours.tokenizer(PREFIX + "query: ")["input_ids"]) - 1
    states, _ = token_states(ours, [PREFIX + "query: " + TEXTS[1]])
    np.testing.assert_allclose(as_query[1], states[0, prompt_tokens:].mean(0).numpy(), atol=1e-5, rtol=0)
    assert "the prompt's tokens left out of the mean" in (run / "README.md").read_text()
    for merge in (False, True):  # exported with its adapter, or merged: plain sentence-transformers, same vectors
        exported = SentenceTransformer(str(export(run, tmp_path / f"export-{merge}", merge=merge)), device="cpu")
        np.testing.assert_allclose(exported.encode_query(TEXTS), as_query, atol=1e-5, rtol=0)
