"""Model sources and aliases -> a SentenceTransformer that embeds the way the paper does.

Decoder LMs (Gemma, Phi, Llama/MiniCPM, Qwen, SmolLM) become EOS-pooled embedders:

* the text goes through a prompt template (``none`` = the text itself, ``eol`` = PromptEOL) and an EOS
  token is appended, so the EOS is the last real token of every input;
* only the transformer body runs (``AutoModel``), never the causal-LM head;
* the hidden state of the last layer at that EOS is the embedding (sentence-transformers' ``lasttoken``
  pooling, which finds the position from the attention mask, so padding side and pad id do not matter).

The template and the EOS live in the tokenizer's chat template, the mechanism sentence-transformers 6 uses
for LLM-based embedders. It is saved as ``chat_template.jinja`` in the model folder, so a plain
``SentenceTransformer(path)`` embeds exactly as cftune does, and the template's suffix (with the EOS) is
restored when a long input is truncated. Encoders (MiniLM, BGE) keep their own pooling.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import typing
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Transformer
from sentence_transformers.sentence_transformer.modules import Pooling, WeightedLayerPooling
from transformers import PreTrainedModel

# the names the command line needs live in the light cftune.aliases (no torch), re-exported here
from cftune.aliases import ALIASES, DEFAULT_MODEL, PROMPTS, Alias, cache_dir  # noqa: F401
from cftune.config import ATTENTIONS, POOLINGS, PRECISIONS, QUANTIZATIONS, prompt_exclusion_problem
from cftune.errors import ConfigError, ModelSourceError
from cftune.io import cpu_has_native_bf16
from cftune.sources import check_adapter, is_sentence_transformers_model, resolve_source

log = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------------------------- prompt + EOS


def resolve_prompt(prompt: str | None) -> str:
    """'none', 'eol' or a custom template containing {text} exactly once -> the template."""
    template = PROMPTS.get(prompt or "none", prompt or "")
    if template.count("{text}") != 1:
        raise ModelSourceError(f"prompt must be one of {list(PROMPTS)} or a template containing {{text}} once, "
                               f"got {prompt!r}")
    return template


_TEMPLATE_MARK = "cftune-prompt:"


def embedding_chat_template(tokenizer, template: str) -> str:
    """A Jinja chat template that renders `[BOS] prefix <named prompt>text suffix EOS` for the last message.

    A named prompt (``encode(prompt_name="query")``, ``encode_query``) reaches a chat template as a system
    message (sentence-transformers' message format); it is put before the text, as sentence-transformers
    puts a prompt before plain text."""
    if tokenizer.eos_token is None:
        raise ModelSourceError("this tokenizer has no EOS token, so it cannot be EOS-pooled")
    prefix, suffix = template.split("{text}")
    probe = tokenizer("a")["input_ids"]
    adds_bos = tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id]
    return (
        f"{{#- {_TEMPLATE_MARK} {json.dumps(template)} -#}}"
        "{%- set text = messages[-1]['content'] -%}"
        "{%- if text is not string -%}{%- set text = text | map(attribute='text') | join(' ') -%}{%- endif -%}"
        "{%- set named = namespace(prompt='') -%}"
        "{%- for m in messages[:-1] if m['role'] == 'system' -%}{%- set named.prompt = named.prompt ~ "
        "(m['content'] if m['content'] is string else m['content'] | map(attribute='text') | join(' ')) -%}"
        "{%- endfor -%}"
        + ("{{ bos_token }}" if adds_bos else "")
        + f"{{% raw %}}{prefix}{{% endraw %}}{{{{ named.prompt }}}}{{{{ text }}}}{{% raw %}}{suffix}{{% endraw %}}"
        + "{{ eos_token }}"
    )


def prompt_of(model: SentenceTransformer) -> str | None:
    """The prompt template a cftune decoder embedder uses, or None for an encoder."""
    chat_template = getattr(lm_module(model).tokenizer, "chat_template", None) or ""
    match = re.search(re.escape(_TEMPLATE_MARK) + r' (".*?") -#\}', chat_template)
    return json.loads(match.group(1)) if match else None


def lm_module(model: SentenceTransformer) -> Transformer:
    """The first module of every cftune embedder: the language model and its tokenizer."""
    return typing.cast(Transformer, model[0])


def lm_body(model: SentenceTransformer) -> PreTrainedModel:
    """The transformers model inside (a PEFT-wrapped one included: peft injects into it in place)."""
    return lm_module(model).auto_model


def set_prompt(model: SentenceTransformer, prompt: str | None) -> None:
    """Change the prompt of an already built decoder embedder (the saved folder keeps it)."""
    if prompt_of(model) is None:
        if prompt in (None, "none"):
            return
        raise ModelSourceError("prompt templates apply to EOS-pooled decoder LMs; this model is an encoder "
                               "with its own pooling")
    template = resolve_prompt(prompt)
    if leaves_prompt_out(model) and (problem := prompt_exclusion_problem(prompt or "none", pooling_of(model) or "")):
        raise ModelSourceError(f"this model leaves its prompt out of the mean (include_prompt: {problem})")
    named = named_prompts(model)
    tokenizer = lm_module(model).tokenizer
    assert tokenizer is not None  # a decoder embedder (prompt_of found its template) has one
    tokenizer.chat_template = embedding_chat_template(tokenizer, template)
    set_named_prompts(model, named)


# An embedder that leaves its prompt out of the mean (include_prompt=false) reads plain text, not the chat
# template: sentence-transformers counts the tokens of a prompt it puts before plain text, and leaves that many
# out of the pooling, but it does not count them in a chat template. So the template's prefix becomes the
# model's default prompt, each named prompt is that prefix plus its own text (the order the chat template
# renders), and the tokenizer itself appends the EOS. The chat template stays, unused, as the record of the
# template (prompt_of reads it).
TEMPLATE_PROMPT = "template"  # the default prompt's name: the template's text before {text}
TEXT_MODALITY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}


def leaves_prompt_out(model: SentenceTransformer) -> bool:
    return any(isinstance(m, Pooling) and not m.include_prompt for m in model)


def _prompt_prefix(model: SentenceTransformer) -> str:
    """What sentence-transformers must put before each text itself ("" where the chat template does it)."""
    return (prompt_of(model) or "{text}").split("{text}")[0] if leaves_prompt_out(model) else ""


def named_prompts(model: SentenceTransformer) -> dict[str, str]:
    """The model's named prompts (query, document) as they were given, without the template's prefix."""
    prefix = _prompt_prefix(model)
    return {name: (text or "")[len(prefix):] for name, text in model.prompts.items() if name != TEMPLATE_PROMPT}


def set_named_prompts(model: SentenceTransformer, named: dict[str, str]) -> dict[str, str]:
    """Give the model these named prompts; returns what sentence-transformers must put before a text for each
    (the template's prefix included where the model reads plain text)."""
    prefix = _prompt_prefix(model)
    full = {name: prefix + text for name, text in named.items()}
    model.prompts = {**full, **({TEMPLATE_PROMPT: prefix} if prefix else {})}
    model.default_prompt_name = TEMPLATE_PROMPT if prefix else None
    return full


def append_eos_when_tokenizing(tokenizer) -> None:
    """Make the tokenizer end every text with EOS itself (kept in its tokenizer.json), keeping its BOS."""
    from tokenizers import processors

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelSourceError("include_prompt=false needs a fast (tokenizers) tokenizer; this model has a slow one")
    if tokenizer.eos_token is None:
        raise ModelSourceError("this tokenizer has no EOS token, so it cannot be EOS-pooled")
    probe = tokenizer("a")["input_ids"]
    bos = [tokenizer.bos_token] if tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id] else []
    eos = tokenizer.eos_token
    backend.post_processor = processors.TemplateProcessing(
        single=[*bos, "$A", eos], pair=[*bos, "$A", eos, "$B:1", f"{eos}:1"],
        special_tokens=[(token, tokenizer.convert_tokens_to_ids(token)) for token in [*bos, eos]])


# --------------------------------------------------------------------------------------------- loading


def attention_config(config, attention: str) -> dict:
    """The transformers config settings that give ``attention`` on this architecture."""
    if attention not in ATTENTIONS:
        raise ModelSourceError(f"attention must be one of {', '.join(ATTENTIONS)}, got {attention!r}")
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


def _decoder_embedder(source: str, config, prompt: str | None, pooling: str, attention: str, layers: int,
                      pooled_layers: int, include_prompt: bool, trust_remote_code: bool, device: str | None):
    from transformers import AutoTokenizer

    if pooling not in POOLINGS:
        raise ModelSourceError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    if not include_prompt and (problem := prompt_exclusion_problem(prompt or "none", pooling)):
        raise ModelSourceError(f"include_prompt: {problem}")
    design = attention_config(config, attention) | layers_config(config, layers, pooled_layers)
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
        config_kwargs={"trust_remote_code": trust_remote_code, **design},
        **({} if include_prompt else {"modality_config": TEXT_MODALITY, "module_output_name": "token_embeddings"}),
    )
    keep_config_in_saved_folder(transformer, design)
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


def layers_of(model: SentenceTransformer) -> tuple[int, int]:
    """(transformer layers the embedder runs, layers its pooling averages over)."""
    layers = lm_body(model).config.num_hidden_layers
    weighted = [m for m in model if isinstance(m, WeightedLayerPooling)]
    return layers, (layers + 1 - weighted[0].layer_start if weighted else 1)


def pooling_of(model: SentenceTransformer) -> str | None:
    poolers = [m for m in model if isinstance(m, Pooling)]
    return poolers[0].pooling_mode if poolers else None


def _check_saved_design(model: SentenceTransformer, source: str,
                        asked: dict[str, str | int | bool | None]) -> None:
    """A saved embedder is used as it was trained; asking for another design is a mistake, not a switch."""
    layers, pooled_layers = layers_of(model)
    saved = {"pooling": pooling_of(model), "attention": attention_of(model), "layers": layers,
             "pooled_layers": pooled_layers, "include_prompt": not leaves_prompt_out(model)}
    for name, value in asked.items():
        if value is not None and value != saved[name] and not (name == "layers" and value == 0):
            raise ModelSourceError(f"{source} embeds with {name}={saved[name]}; it cannot be loaded with "
                                   f"{name}={value} (that is a different model: train one)")
    # re-saving (export, checkpoints) must keep the design's config settings; an encoder has none to keep
    keep_config_in_saved_folder(lm_module(model), bidirectional_switch_on(lm_body(model).config)
                                | _saved_layer_settings(source))


def _saved_layer_settings(folder: str) -> dict:
    """The layer settings a saved folder's sentence_bert_config.json applies on top of its base config (a LoRA
    folder has no config.json of its own, so that is where they live)."""
    path = Path(folder) / "sentence_bert_config.json"
    if not path.is_file():
        return {}
    saved = json.loads(path.read_text(encoding="utf-8")).get("config_kwargs") or {}
    return {key: saved[key] for key in ("num_hidden_layers", "layer_types", "output_hidden_states") if key in saved}


def load_embedder(
    model: str = DEFAULT_MODEL,
    *,
    adapter: str | None = None,
    prompt: str | None = None,
    pooling: str | None = None,
    attention: str | None = None,
    layers: int | None = None,
    pooled_layers: int | None = None,
    include_prompt: bool | None = None,
    device: str | None = None,
    inference: bool = False,
    precision: str | None = None,
    quantize: str | None = None,
) -> SentenceTransformer:
    """Any source cftune knows -> a SentenceTransformer.

    Args:
        model: alias (see ``ALIASES``), hub id, local HF folder, ``.gguf`` file or sentence-transformers folder.
        adapter: optional PEFT (LoRA) adapter folder to apply on top.
        prompt: ``none``, ``eol`` or a template with ``{text}``; decoders only. ``None`` keeps a saved
            model's prompt (and means ``none`` for a raw LM); ``auto`` keeps a saved model's prompt and gives
            a raw decoder LM ``eol`` (what training uses by default).
        pooling: one of ``POOLINGS`` for a raw decoder LM (default ``lasttoken``, the paper's); a saved
            embedder keeps its own, and asking it for another one is an error.
        attention: ``causal`` (default) or ``bidirectional`` for a raw decoder LM; as ``pooling`` otherwise.
        layers: for a raw decoder LM, run only its first ``layers`` transformer layers and pool the last of
            them (0 or None: all, the paper's choice); the rest are not loaded. As ``pooling`` otherwise.
        pooled_layers: for a raw decoder LM, pool a weighted mean of the last ``pooled_layers`` layers'
            states (1 or None: the last layer only); as ``pooling`` otherwise.
        include_prompt: for a raw decoder LM, False leaves the prompt's tokens (the template's text before
            ``{text}`` and a named prompt) out of a mean or weightedmean pooling (default True: the mean
            includes them); as ``pooling`` otherwise.
        device: torch device; sentence-transformers picks one when None.
        inference: load for speed rather than for training: a LoRA adapter (saved in the folder or given
            with ``adapter``) is merged into the weights in memory; the folder on disk keeps its adapter.
        precision: with ``inference``, the precision the model will encode in (``auto``, ``float32`` or
            ``bfloat16``); where that is bf16 the weights are cast to bf16 once, here, instead of autocast
            casting every weight again at every batch (faster: results/inference-speed/).
        quantize: with ``inference``, ``int8`` runs every linear layer of the transformer in int8 (see
            ``quantize_int8``); ``precision`` is then ignored.
    """
    if quantize is not None:  # said before the model loads
        if quantize not in QUANTIZATIONS:
            raise ConfigError(f"quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
        if not inference:
            raise ConfigError("quantize is for inference loads (eval, embed, similarity, serve); training needs "
                              "float weights")
        from sentence_transformers.util import get_device_name

        target = str(device or get_device_name())  # the device sentence-transformers will load onto
        if not target.startswith("cpu"):
            raise ConfigError(f"quantize=int8 is for CPUs; on {target} use --precision auto (bf16 where the "
                              "hardware has it)")
    source, trust_remote_code = resolve_source(model)
    design = {"pooling": pooling, "attention": attention, "layers": layers, "pooled_layers": pooled_layers,
              "include_prompt": include_prompt}
    if is_sentence_transformers_model(source):
        embedder = SentenceTransformer(source, device=device, trust_remote_code=trust_remote_code)
        _check_saved_design(embedder, source, design)
        if prompt not in (None, "auto"):
            set_prompt(embedder, prompt)
    else:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        if is_decoder(config):
            prompt = "eol" if prompt == "auto" else prompt
            embedder = _decoder_embedder(source, config, prompt, pooling or "lasttoken", attention or "causal",
                                         layers or 0, pooled_layers or 1, include_prompt is not False,
                                         trust_remote_code, device)
        else:
            embedder = SentenceTransformer(source, device=device, trust_remote_code=trust_remote_code)
            set_prompt(embedder, None if prompt == "auto" else prompt)
            _check_saved_design(embedder, source, design)
    if adapter is not None:
        check_adapter(adapter)
        embedder.load_adapter(adapter)
    if inference:
        merge_lora(embedder)
        embedder.eval()
        if quantize == "int8":
            quantize_int8(embedder)
        elif precision is not None and resolve_precision(precision, embedder.device) == "bfloat16":
            embedder.to(torch.bfloat16)
    return embedder


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


# --------------------------------------------------------------------------------------------- encoding


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """'auto' -> bfloat16 where the hardware runs it fast (CUDA with bf16, CPUs with AVX512-BF16/AMX)."""
    if precision != "auto":
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be {' or '.join(PRECISIONS)}, got {precision!r}")
        return precision
    if torch.device(device).type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if cpu_has_native_bf16() else "float32"  # emulated bf16 is slower than fp32


def effective_precision(model: SentenceTransformer, precision: str) -> str:
    """What ``model`` really encodes in: ``int8`` or bf16 if an inference load quantized or cast its
    weights, otherwise ``precision`` resolved for its device."""
    if quantization := getattr(model, "cftune_quantization", None):
        return str(quantization)
    if next(model.parameters()).dtype == torch.bfloat16:
        return "bfloat16"
    return resolve_precision(precision, model.device)


def autocast(precision: str, device: torch.device | str):
    """Matrix work in bf16, reductions and norms in fp32 (torch's autocast lists); faster than fp32 where the
    CPU has bf16 natively (``cftune doctor`` says)."""
    if precision != "bfloat16":  # float32, or int8 (its kernels take fp32 in)
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def check_dimension(dimension: int | None, full: int | None, name: str = "dimension") -> None:
    """A vector length a model can give: 1 up to its full length (None asks for the full length)."""
    if dimension is not None and not 1 <= dimension <= (full or dimension):
        raise ConfigError(f"{name} must be between 1 and this model's {full}, got {dimension}")


def set_output_dimension(model: SentenceTransformer, dimension: int | None) -> None:
    """Make ``model`` return only the leading ``dimension`` numbers of each vector (None: all of them).

    That is what a Matryoshka-trained model is for; sentence-transformers' ``truncate_dim`` does the cut.
    """
    model.truncate_dim = None  # get_embedding_dimension counts a cut already made
    check_dimension(dimension, model.get_embedding_dimension())
    model.truncate_dim = dimension


def encode(
    model: SentenceTransformer,
    texts: list[str],
    *,
    batch_size: int = 32,
    precision: str = "auto",
    show_progress_bar: bool = False,
    prompt_name: str | None = None,
) -> torch.Tensor:
    """Batched, length-sorted encoding (sentence-transformers sorts longest-first) as a float32 tensor.

    ``prompt_name``: one of the model's named prompts (``query``, ``document``), put before each text."""
    if prompt_name is not None and prompt_name not in model.prompts:
        raise ConfigError(f"prompt name {prompt_name!r}: this model has "
                          + (f"{', '.join(model.prompts)}" if model.prompts else "no named prompts"))
    with autocast(effective_precision(model, precision), model.device):
        vectors = model.encode(texts, batch_size=batch_size, convert_to_tensor=True,
                               show_progress_bar=show_progress_bar, prompt_name=prompt_name)
    return vectors.float()
