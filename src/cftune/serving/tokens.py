"""Tokens: how many the model reads of a text (the whole rendered sequence), the most a server accepts, and
token-id inputs decoded back to text."""

from __future__ import annotations

from sentence_transformers import SentenceTransformer

from cftune.design import lm_module
from cftune.errors import ConfigError


def served_max_tokens(model: SentenceTransformer, max_tokens: int | None) -> int:
    """The most tokens of one text a server reads: ``max_tokens``, by default the model's own max_seq_length.

    More than the model reads is refused: sentence-transformers would cut every longer text to max_seq_length
    without a word, and texts that differ only past it would get the same vector."""
    reads = model.max_seq_length
    if reads is None:
        raise ConfigError("this model declares no max_seq_length, so the longest text it reads is unknown")
    if max_tokens is not None and max_tokens > reads:
        raise ConfigError(f"{max_tokens} is more than this model reads: its max_seq_length is {reads} tokens "
                          f"(leave it out to accept texts up to {reads})", "max_tokens")
    return reads if max_tokens is None else max_tokens


def token_counter(model: SentenceTransformer):
    """(texts, prompt_name) -> how many tokens the model gets for each whole text, as ``encode`` would give them.

    That is the full sequence, compared with max_seq_length: special tokens (BOS, EOS, [CLS], [SEP]), the prompt
    template and the named prompt included. Each text is rendered as sentence-transformers renders it (its own
    message format and the tokenizer's chat template, or the prompt put before the text) and that whole string
    is tokenized: counting the text alone and adding the template's size would be wrong where tokens merge across
    the seam (a text ending in "." before a template's closing quote).

    The tokenizer is a copy of the model's own: the encode thread switches padding and truncation of the model's
    fast tokenizer on and off, and a concurrent call from the request thread would see (and break) that state.
    """
    module = lm_module(model)
    tokenizer = module.tokenizer
    assert tokenizer is not None, "a text embedder has a tokenizer"
    chat = "message" in module.modality_config  # else plain text, the prompt put before it (encoders and such)
    formatter = module.input_formatter

    def render(texts: list[str], prompt: str | None) -> list[str]:
        if not chat:
            return [prompt + text for text in texts] if prompt else texts  # as sentence-transformers puts it
        messages = formatter.batch_to_message("text", {"text": texts})[1]["message"]
        if prompt:  # a named prompt reaches the chat template as a system message
            messages = formatter.prepend_prompt_to_messages(messages, prompt)
        return module.processor.apply_chat_template(messages, tokenize=False)  # renders only: no tokenizer state

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (pure Python) tokenizer keeps no such state
        def tokenize(strings: list[str]) -> list[int]:
            return [len(tokenizer.encode(s, add_special_tokens=not chat)) for s in strings]
    else:
        from tokenizers import Tokenizer

        own = Tokenizer.from_str(backend.to_str())
        own.no_padding()
        own.no_truncation()

        def tokenize(strings: list[str]) -> list[int]:
            return [len(e) for e in own.encode_batch(strings, add_special_tokens=not chat)]

    def count(texts: list[str], prompt_name: str | None = None) -> list[int]:
        # the prompt encode puts in: the named one, else the model's default (the template's prefix, where the
        # model reads plain text)
        name = prompt_name if prompt_name is not None else model.default_prompt_name
        prompt = model.prompts.get(name) if name else None
        # Tokenizing releases the GIL, but freeing the Encodings holds it: a few texts at a time keep each such
        # pause short for the event loop (8 MiB of text in one call: a 0.17 s pause).
        return [n for start in range(0, len(texts), 16) for n in tokenize(render(texts[start:start + 16], prompt))]
    return count


def token_decoder(model: SentenceTransformer):
    """(list of token-id lists) -> their texts, decoded with the model's tokenizer (special tokens dropped: the
    model adds its own); raises ValueError naming the first id outside the vocabulary."""
    tokenizer = lm_module(model).tokenizer
    assert tokenizer is not None, "a text embedder has a tokenizer"
    vocabulary = len(tokenizer)

    def decode(lists: list[list[int]]) -> list[str]:
        for i, ids in enumerate(lists):
            if bad := next((t for t in ids if not 0 <= t < vocabulary), None):
                raise ValueError(f"input[{i}] has token id {bad}; this model's tokenizer has ids 0 to "
                                 f"{vocabulary - 1}")
        return tokenizer.batch_decode(lists, skip_special_tokens=True)
    return decode
