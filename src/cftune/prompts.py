"""Prompts: the template a decoder embedder reads a text through, its named prompts (query, document), and the
EOS that ends every input.

The template and the EOS live in the tokenizer's chat template, the mechanism sentence-transformers 6 uses for
LLM-based embedders. It is saved as ``chat_template.jinja`` in the model folder, so a plain
``SentenceTransformer(path)`` embeds exactly as cftune does, and the template's suffix (with the EOS) is
restored when a long input is truncated.
"""

from __future__ import annotations

import json
import re

from sentence_transformers import SentenceTransformer

from cftune.aliases import PROMPTS
from cftune.config import prompt_exclusion_problem
from cftune.design import leaves_prompt_out, lm_module, pooling_of
from cftune.errors import ModelSourceError


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
