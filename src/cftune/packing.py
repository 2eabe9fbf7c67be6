"""Sequence packing for training a causal decoder: a batch's texts laid end to end, not padded to the longest.

sentence-transformers embeds a column as one padded batch: every text is computed at the width of the longest,
and the positives and negatives share one pass padded to the longest of both. On NLI batches much of what is
computed is padding, and where the matrix products are the step's time (a CPU), padding costs what a token
does. Packed, the texts of a batch fill a few rows of about ``ROW_TOKENS`` tokens each; position ids restart at
every text, which is how transformers recognises packed sequences (its masks then keep each text to itself: the
same attention, the same positions, the same vectors as the padded batch, to rounding). The body's states are
put back in the padded layout, so pooling and every module after it run unchanged.

Only where that equality holds: a causal decoder (packing detection is in transformers' causal masks) that pads
on the right, pooling the last layer. Measured: results/train-profile/README.md.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import torch
from sentence_transformers import SentenceTransformer

from cftune.design import EmbedderDesign, lm_module

ROW_TOKENS = 256  # a packed row's length: attention inside a row grows with its square, so rows stay short


def can_pack(model: SentenceTransformer) -> bool:
    """Whether packing gives this model's padded results: causal attention, right padding, last-layer pooling."""
    design = EmbedderDesign.of(model)
    return (design.attention == "causal" and design.pooled_layers == 1
            and getattr(lm_module(model).tokenizer, "padding_side", None) == "right")


def row_layout(lengths: list[int], row_tokens: int) -> tuple[list[int], list[int], int]:
    """Each text's row and offset when the texts fill rows of ``row_tokens`` in order (a longer text gets a row
    of its own length), and the rows' common width."""
    rows, offsets, row, used, width = [], [], 0, 0, 0
    for length in lengths:
        if used and used + length > row_tokens:
            row, used = row + 1, 0
        rows.append(row)
        offsets.append(used)
        used += length
        width = max(width, used)
    return rows, offsets, width


def packed_states(body, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  row_tokens: int = ROW_TOKENS) -> torch.Tensor:
    """The body's last hidden states for a right-padded batch, computed packed and returned padded (zeros at the
    padding, which pooling masks out)."""
    real = attention_mask.bool()
    lengths = real.sum(dim=1)
    rows, offsets, width = row_layout(lengths.tolist(), row_tokens)
    # where each real token goes in the packed rows, in the order real[...] lists them (row by row)
    starts = torch.tensor(rows, device=input_ids.device) * width + torch.tensor(offsets, device=input_ids.device)
    positions = torch.arange(real.shape[1], device=input_ids.device).expand_as(real)[real]
    target = starts.repeat_interleave(lengths) + positions
    count = rows[-1] + 1
    packed_ids = input_ids.new_zeros(count * width)
    packed_ids[target] = input_ids[real]
    # every text counts from 0; the padding at a row's end counts 0, 0, ...: a text of one token each
    packed_positions = torch.zeros(count * width, dtype=torch.long, device=input_ids.device)
    packed_positions[target] = positions
    output = body(input_ids=packed_ids.view(count, width), position_ids=packed_positions.view(count, width),
                  attention_mask=None, use_cache=False, return_dict=True)
    states = output.last_hidden_state.reshape(count * width, -1)
    unpacked = states.new_zeros(*real.shape, states.shape[-1])
    unpacked[real] = states[target]
    return unpacked


def _packed_forward(self, features: dict, **kwargs) -> dict:
    """sentence-transformers' Transformer.forward for a batch of token ids (plain text, or text through a chat
    template: its "message" modality), packed; anything else goes the usual way."""
    modality = self.modality_config.get(features.get("modality", "text"), {})
    if kwargs or "attention_mask" not in features or modality.get("method") != "forward" \
            or modality.get("method_output_name") != "last_hidden_state":
        return type(self).forward(self, features, **kwargs)
    features["token_embeddings"] = packed_states(self.model, features["input_ids"], features["attention_mask"])
    return features


@contextlib.contextmanager
def packed_batches(model: SentenceTransformer, wanted: bool = True) -> Iterator[bool]:
    """Within the block, ``model`` computes its text batches packed where ``wanted`` and ``can_pack``; yields
    whether it does."""
    if not (wanted and can_pack(model)):
        yield False
        return
    module = lm_module(model)
    # an instance attribute: nn.Module calls self.forward, so this one module packs and its class is untouched
    setattr(module, "forward", types.MethodType(_packed_forward, module))  # noqa: B010
    try:
        yield True
    finally:
        del module.forward
