import pytest
import torch

from cftune import load_embedder
from cftune.design import EmbedderDesign, lm_body
from cftune.packing import can_pack, packed_batches, packed_states, row_layout
from conftest import CORPUS, DECODERS

TEXTS = [*CORPUS[:6], "A much longer sentence about a man who plays a guitar in the park beside two dogs.", "Hi."]


def test_texts_fill_rows_in_order_and_a_long_text_gets_its_own_row():
    rows, offsets, width = row_layout([5, 3, 9, 2, 2], row_tokens=8)
    assert rows == [0, 0, 1, 2, 2]
    assert offsets == [0, 5, 0, 0, 2]
    assert width == 9  # the 9-token text is wider than a row: its row sets the width


@pytest.mark.parametrize("arch", sorted(DECODERS))
def test_packed_states_equal_the_padded_batch(tiny_models, arch):
    model = load_embedder(str(tiny_models[arch]), EmbedderDesign(prompt="eol"))
    features = model.preprocess(TEXTS)
    lengths = features["attention_mask"].sum(dim=1)
    assert lengths.max() > 2 * lengths.min()  # texts of very different lengths: real padding to remove
    with torch.no_grad():
        padded = lm_body(model)(input_ids=features["input_ids"], attention_mask=features["attention_mask"])
        packed = packed_states(lm_body(model), features["input_ids"], features["attention_mask"], row_tokens=40)
    real = features["attention_mask"].bool()
    torch.testing.assert_close(packed[real], padded.last_hidden_state[real], rtol=1e-5, atol=1e-5)
    assert float(packed[~real].abs().max()) == 0.0
    with torch.no_grad():
        plain = model(model.preprocess(TEXTS))["sentence_embedding"]
        with packed_batches(model) as on:
            assert on
            vectors = model(model.preprocess(TEXTS))["sentence_embedding"]
    torch.testing.assert_close(vectors, plain, rtol=1e-5, atol=1e-5)
    assert "forward" not in vars(model[0])  # the block leaves the module as it found it


def test_only_causal_right_padded_last_layer_models_are_packed(tiny_models):
    assert can_pack(load_embedder(str(tiny_models["llama"])))
    assert not can_pack(load_embedder(str(tiny_models["bert"])))  # bidirectional: no packed masks
    assert not can_pack(load_embedder(str(tiny_models["gemma3_text"]), EmbedderDesign(attention="bidirectional")))
    assert not can_pack(load_embedder(str(tiny_models["llama"]), EmbedderDesign(pooled_layers=2)))
    with packed_batches(load_embedder(str(tiny_models["bert"]))) as on:
        assert not on
