"""The embedder's design: how a language model becomes a text embedder, as one value (``EmbedderDesign``), and
how to read each setting back from a built embedder.

* prompt: the text goes through a template (``none`` = the text itself, ``eol`` = PromptEOL) and an EOS token
  is appended, so the EOS is the last real token of every input (``cftune.prompts``);
* pooling (``POOLINGS``): how token states become one vector, as sentence-transformers' Pooling modes.
  lasttoken is the paper's (the EOS state; the position comes from the attention mask, so padding side and
  pad id do not matter); mean averages every real token; weightedmean weights token i by its position i
  (SGPT, arXiv 2202.08904), so that later tokens, which have seen more of a causal text, count more;
* attention (``ATTENTIONS``): causal is the paper's (the LM as trained). bidirectional lets every token see
  the whole text, as EmbeddingGemma does; it is a switch in the model's own transformers config, so a saved
  folder carries it and a plain SentenceTransformer(path) runs the same way. Architectures without the switch
  are refused;
* layers, pooled_layers: run only the first N transformer layers; pool a weighted mean of the last N layers;
* include_prompt: whether the prompt's tokens count in a mean.

Only the transformer body runs (``AutoModel``), never the causal-LM head. Encoders (MiniLM, BGE) keep their own
pooling.
"""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Transformer
from sentence_transformers.sentence_transformer.modules import Pooling, WeightedLayerPooling
from transformers import PreTrainedModel

from cftune.config import design_problem
from cftune.errors import ConfigError, ModelSourceError


@dataclass(frozen=True)
class EmbedderDesign:
    """The six settings that make a language model an embedder; the paper's choice is the default of each.

    None means "as saved" for a saved embedder, and the paper's choice for a raw LM (``prompt`` none;
    ``auto`` gives a raw decoder eol, as training does). Checked once, here: a bad value is a ConfigError
    naming the setting.
    """

    prompt: str | None = None
    pooling: str | None = None
    attention: str | None = None
    layers: int | None = None  # 0 or None: all
    pooled_layers: int | None = None  # 1 or None: the last layer only
    include_prompt: bool | None = None

    def __post_init__(self) -> None:
        if bad := design_problem(asdict(self)):
            raise ConfigError(bad[1], bad[0])

    @classmethod
    def of(cls, model: SentenceTransformer) -> EmbedderDesign:
        """The design a built embedder has (its prompt as a template; None for an encoder's)."""
        from cftune.prompts import prompt_of

        layers, pooled_layers = layers_of(model)
        return cls(prompt=prompt_of(model), pooling=pooling_of(model), attention=attention_of(model),
                   layers=layers, pooled_layers=pooled_layers, include_prompt=not leaves_prompt_out(model))

    def given(self) -> dict[str, str | int | bool]:
        """The settings asked for (not None)."""
        return {name: value for name, value in asdict(self).items() if value is not None}

    def describe(self) -> str:
        """One line for a model card: pooling, attention, layers, prompt."""
        return (f"{self.pooling} pooling, {self.attention} attention, "
                + (f"the first {self.layers} layers" if self.layers else "all layers")
                + (f", the mean of the last {self.pooled_layers} layers" if (self.pooled_layers or 1) > 1 else "")
                + f"; prompt template `{self.prompt}`"
                + ("; the prompt's tokens left out of the mean" if self.include_prompt is False else ""))


# POOLINGS: how token states become one vector, as sentence-transformers' Pooling modes. lasttoken is the
# paper's (the EOS state); mean averages every real token; weightedmean weights token i by its position i
# (SGPT, arXiv 2202.08904), so that later tokens, which have seen more of a causal text, count more.
# ATTENTIONS: causal is the paper's (the LM as trained). bidirectional lets every token see the whole text,
# as EmbeddingGemma does; it is a switch in the model's own transformers config, so a saved folder carries
# it and a plain SentenceTransformer(path) runs the same way. Architectures without the switch are refused.
BIDIRECTIONAL_SWITCH = {"gemma3_text": "use_bidirectional_attention", "gemma3": "use_bidirectional_attention"}


def is_decoder(config) -> bool:
    """True for causal LMs (embedded at EOS), False for encoders (keep their own pooling)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in config.architectures or []):
        return True  # also covers remote-code models such as MiniCPM
    model_type = config.model_type
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def lm_module(model: SentenceTransformer) -> Transformer:
    """The first module of every cftune embedder: the language model and its tokenizer."""
    return typing.cast(Transformer, model[0])


def lm_body(model: SentenceTransformer) -> PreTrainedModel:
    """The transformers model inside (a PEFT-wrapped one included: peft injects into it in place)."""
    return lm_module(model).auto_model


def weights_per_token(model: SentenceTransformer) -> int:
    """The body's parameters outside its token embeddings: the weights every token meets (a 270M Gemma 3 is
    102M of them; its other 168M are the embedding table, a lookup)."""
    body = lm_body(model)
    table = typing.cast(torch.nn.Embedding, body.get_input_embeddings())
    return sum(p.numel() for p in body.parameters()) - table.weight.numel()


def attention_config(config, attention: str) -> dict:
    """The transformers config settings that give ``attention`` (checked by EmbedderDesign) on this
    architecture."""
    if attention == "causal":
        return {}
    switch = BIDIRECTIONAL_SWITCH.get(config.model_type)
    if switch is None:
        raise ModelSourceError(f"attention=bidirectional needs a model whose transformers config has the "
                               f"switch (model types: {', '.join(BIDIRECTIONAL_SWITCH)}); this one is "
                               f"{config.model_type!r}")
    return {switch: True}


def bidirectional_switch_on(config) -> dict:
    """``{switch: True}`` when this decoder's config has bidirectional attention switched on, else ``{}``."""
    switch = BIDIRECTIONAL_SWITCH.get(config.model_type)
    return {switch: True} if switch and getattr(config, switch, False) else {}


def attention_of(model: SentenceTransformer) -> str:
    config = lm_body(model).config
    if not is_decoder(config):
        return "bidirectional"  # an encoder (BERT, MiniLM) always was
    return "bidirectional" if bidirectional_switch_on(config) else "causal"


def keep_config_in_saved_folder(transformer: Transformer, settings: dict) -> None:
    """Make every save of this module (trainer checkpoints too) record ``settings`` as its config_kwargs.

    A LoRA folder holds no config.json: sentence-transformers rebuilds the config from the base model,
    and would silently drop a switch set at load time. ``config_kwargs`` in sentence_bert_config.json is
    what its loader applies on top of that base config, so plain ``SentenceTransformer(path)`` keeps it.
    """
    if settings:
        # setattr: torch's Module.__setattr__ is typed for tensors and modules, not for a settings dict
        setattr(transformer, "config_kwargs", settings)  # noqa: B010
        transformer.config_keys = [*Transformer.config_keys, "config_kwargs"]


def layers_config(config, layers: int, pooled_layers: int) -> dict:
    """The transformers config settings that keep the first ``layers`` transformer layers (0: all of them)
    and hand the hidden states of every layer to the pooling (needed to pool the last ``pooled_layers``)."""
    total = config.num_hidden_layers
    if not 0 <= layers <= total:
        raise ModelSourceError(f"layers must be between 1 and this model's {total} (0: all), got {layers}")
    kept = layers or total
    if not 1 <= pooled_layers <= kept:
        raise ModelSourceError(f"pooled_layers must be between 1 and the {kept} layers kept, got {pooled_layers}")
    settings: dict = {"output_hidden_states": True} if pooled_layers > 1 else {}
    if layers and layers < total:
        settings["num_hidden_layers"] = layers
        if getattr(config, "layer_types", None):  # Gemma 3: one attention type (sliding or full) per layer
            settings["layer_types"] = list(config.layer_types[:layers])
    return settings


def layers_of(model: SentenceTransformer) -> tuple[int, int]:
    """(transformer layers the embedder runs, layers its pooling averages over)."""
    layers = lm_body(model).config.num_hidden_layers
    weighted = [m for m in model if isinstance(m, WeightedLayerPooling)]
    return layers, (layers + 1 - weighted[0].layer_start if weighted else 1)


def pooling_of(model: SentenceTransformer) -> str | None:
    poolers = [m for m in model if isinstance(m, Pooling)]
    return poolers[0].pooling_mode if poolers else None


def leaves_prompt_out(model: SentenceTransformer) -> bool:
    return any(isinstance(m, Pooling) and not m.include_prompt for m in model)


def saved_layer_settings(folder: str) -> dict:
    """The layer settings a saved folder's sentence_bert_config.json applies on top of its base config (a LoRA
    folder has no config.json of its own, so that is where they live)."""
    path = Path(folder) / "sentence_bert_config.json"
    if not path.is_file():
        return {}
    saved = json.loads(path.read_text(encoding="utf-8")).get("config_kwargs") or {}
    return {key: saved[key] for key in ("num_hidden_layers", "layer_types", "output_hidden_states") if key in saved}
