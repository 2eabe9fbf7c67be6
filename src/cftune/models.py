"""Loading an embedder: any model source (``cftune.sources``) with a design (``cftune.design``) and a prompt
(``cftune.prompts``) -> a SentenceTransformer that embeds the way the paper does; LoRA merging, int8, and the
preparation of a loaded model for fast inference (``prepare_for_inference``)."""

from __future__ import annotations

import logging

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Transformer
from sentence_transformers.sentence_transformer.modules import Pooling, WeightedLayerPooling

from cftune.aliases import DEFAULT_MODEL
from cftune.config import check_quantization
from cftune.design import (
    EmbedderDesign,
    attention_config,
    bidirectional_switch_on,
    is_decoder,
    keep_config_in_saved_folder,
    layers_config,
    lm_body,
    lm_module,
    saved_layer_settings,
)
from cftune.encoding import resolve_precision
from cftune.errors import ModelSourceError
from cftune.prompts import (
    TEXT_MODALITY,
    append_eos_when_tokenizing,
    embedding_chat_template,
    resolve_prompt,
    set_named_prompts,
    set_prompt,
)
from cftune.sources import check_adapter, is_sentence_transformers_model, resolve_source

log = logging.getLogger(__name__)


def _decoder_embedder(source: str, config, design: EmbedderDesign, trust_remote_code: bool, device: str | None):
    """A raw decoder LM as an embedder of ``design`` (None settings: the paper's choice)."""
    from transformers import AutoTokenizer

    prompt = "eol" if design.prompt == "auto" else design.prompt
    pooling, include_prompt = design.pooling or "lasttoken", design.include_prompt is not False
    layers, pooled_layers = design.layers or 0, design.pooled_layers or 1
    settings = attention_config(config, design.attention or "causal") | layers_config(config, layers, pooled_layers)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    transformer = Transformer(
        source,
        model_kwargs={"trust_remote_code": trust_remote_code, "dtype": torch.float32},
        processor_kwargs={
            "trust_remote_code": trust_remote_code,
            # A model's own chat template is for chatting; replacing it is what makes ST embed plain text
            # through our template instead of wrapping it in chat turns.
            "chat_template": embedding_chat_template(tokenizer, resolve_prompt(prompt)),
        },
        config_kwargs={"trust_remote_code": trust_remote_code, **settings},
        **({} if include_prompt else {"modality_config": TEXT_MODALITY, "module_output_name": "token_embeddings"}),
    )
    keep_config_in_saved_folder(transformer, settings)
    tok = transformer.tokenizer
    if not include_prompt:
        append_eos_when_tokenizing(tok)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token  # padding is masked; the EOS position comes from the mask, not the id
    # Right padding keeps every real token at the position it has when the text is embedded alone, so a
    # sentence's embedding does not depend on its batch (left padding shifts rotary positions).
    tok.padding_side = "right"
    dimension = transformer.get_embedding_dimension()
    modules: list[torch.nn.Module] = [transformer]
    if pooled_layers > 1:
        # sentence-transformers' WeightedLayerPooling: token states = a weighted mean of the last
        # pooled_layers layers' states (weights start equal and are trained with the adapter)
        kept = layers or config.num_hidden_layers
        modules.append(WeightedLayerPooling(dimension, num_hidden_layers=kept, layer_start=kept + 1 - pooled_layers))
    modules.append(Pooling(dimension, pooling_mode=pooling, include_prompt=include_prompt))
    embedder = SentenceTransformer(modules=modules, device=device, similarity_fn_name="cosine")
    set_named_prompts(embedder, {})  # the template's prefix, where the model reads plain text
    return embedder


def _check_saved_design(model: SentenceTransformer, source: str, asked: EmbedderDesign) -> None:
    """A saved embedder is used as it was trained; asking for another design is a mistake, not a switch."""
    saved = EmbedderDesign.of(model)
    for name, value in asked.given().items():
        if name == "prompt" or (name == "layers" and value == 0):
            continue  # a prompt may be changed (set_prompt); layers 0 means all
        if value != getattr(saved, name):
            raise ModelSourceError(f"{source} embeds with {name}={getattr(saved, name)}; it cannot be loaded with "
                                   f"{name}={value} (that is a different model: train one)")
    # re-saving (export, checkpoints) must keep the design's config settings; an encoder has none to keep
    keep_config_in_saved_folder(lm_module(model), bidirectional_switch_on(lm_body(model).config)
                                | saved_layer_settings(source))


def load_embedder(model: str = DEFAULT_MODEL, design: EmbedderDesign | None = None, *, adapter: str | None = None,
                  device: str | None = None) -> SentenceTransformer:
    """Any source cftune knows -> a SentenceTransformer, as exact as training needs it (fp32, LoRA apart).

    Args:
        model: alias (see ``ALIASES``), hub id, local HF folder, ``.gguf`` file or sentence-transformers folder.
        design: for a raw decoder LM, how it embeds (``EmbedderDesign``; None settings: the paper's choice).
            A saved embedder keeps its own design, and asking it for another is an error; its prompt may be
            changed (``auto`` keeps it).
        adapter: optional PEFT (LoRA) adapter folder to apply on top.
        device: torch device; sentence-transformers picks one when None.

    For speed rather than exactness, ``prepare_for_inference`` the result.
    """
    design = design or EmbedderDesign()
    source, trust_remote_code = resolve_source(model)
    if is_sentence_transformers_model(source):
        embedder = SentenceTransformer(source, device=device, trust_remote_code=trust_remote_code)
        _check_saved_design(embedder, source, design)
        if design.prompt not in (None, "auto"):
            set_prompt(embedder, design.prompt)
    else:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        if is_decoder(config):
            embedder = _decoder_embedder(source, config, design, trust_remote_code, device)
        else:
            embedder = SentenceTransformer(source, device=device, trust_remote_code=trust_remote_code)
            set_prompt(embedder, None if design.prompt == "auto" else design.prompt)
            _check_saved_design(embedder, source, design)
    if adapter is not None:
        check_adapter(adapter)
        embedder.load_adapter(adapter)
    return embedder


def prepare_for_inference(model: SentenceTransformer, *, precision: str | None = None,
                          quantize: str | None = None) -> SentenceTransformer:
    """Make a loaded embedder fast to run, in memory (a folder on disk keeps its adapter): LoRA merged into the
    weights, eval mode, and either ``quantize`` int8 (see ``quantize_int8``; ``precision`` is then ignored) or,
    where ``precision`` (``auto``, ``float32``, ``bfloat16``; None: the weights as they are) resolves to bf16,
    bf16 weights cast once here instead of autocast casting every weight again at every batch (faster:
    results/inference-speed/)."""
    check_quantization(quantize, str(model.device))
    merge_lora(model)
    model.eval()
    if quantize == "int8":
        quantize_int8(model)
    elif precision is not None and resolve_precision(precision, model.device) == "bfloat16":
        model.to(torch.bfloat16)
    return model


def quantize_int8(model: SentenceTransformer) -> None:
    """Every linear layer of the transformer in int8: int8 weights (one scale per output channel) and int8
    activations (one scale per token, computed as each batch runs); see ``cftune.int8``."""
    from cftune.int8 import quantize_linear_layers

    quantize_linear_layers(lm_body(model))
    # read by effective_precision, so a report says int8, not float32 (not a declared Module attribute)
    setattr(model, "cftune_quantization", "int8")  # noqa: B010


def merge_lora(model: SentenceTransformer) -> bool:
    """Fold every LoRA layer into its base weight (W += B A * alpha / r) and drop the adapter.

    Returns whether there was an adapter. An unmerged adapter adds two small matmuls to every adapted
    layer on every pass: a tuned model with LoRA on all linear layers encoded 2x slower than its base.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    body = lm_body(model)
    if not getattr(body, "peft_config", None):
        return False
    for name, module in list(body.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(body.get_submodule(parent) if parent else body, child, module.get_base_layer())
    body._hf_peft_config_loaded = False  # save_pretrained writes full weights again, not an adapter
    del body.peft_config
    # transformers re-applies, on save, the key renamings it did on load; those included the adapter's
    # "base_model.model." prefix, which no longer exists.
    setattr(body, "_weight_conversions", None)  # noqa: B010 - not a declared attribute of PreTrainedModel
    return True


