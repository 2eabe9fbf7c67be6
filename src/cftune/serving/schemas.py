"""What a server accepts: its settings (the limits) and the request's shape (OpenAI's, with TEI's extras)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

# No real vocabulary averages more than a few characters a token, so a text over 64 characters per allowed token
# is refused without tokenizing it: tokenizing a 10 MB text to learn that it is too long costs seconds.
MAX_CHARS_PER_TOKEN = 64


@dataclass(frozen=True)
class ServeSettings:
    """How a server answers; the CLI's flags, one field each."""

    max_inputs: int = 2048  # texts per request (OpenAI's limit)
    max_batch: int = 256  # texts encoded together from concurrent requests
    max_tokens: int | None = None  # tokens of one text, template included; None: the model's max_seq_length
    max_queue: int = 4096  # texts waiting for the encoder; more get 429
    max_request_bytes: int = 8 * 2**20  # larger bodies get 413
    api_key: str | None = None  # required as "Authorization: Bearer KEY" on every route but /health
    precision: str = "auto"
    batching: bool = True  # False: each request encoded alone (the baseline benchmarks compare with)
    normalize: bool = True  # unit-length vectors, as OpenAI's
    auto_truncate: bool = False  # embed the first max_tokens of a longer text unless a request says otherwise
    strict_model_name: bool = False  # 404 for a request naming another model than the one served
    default_prompt_name: str | None = None  # the model's named prompt for requests that name none
    warm_up: bool = True  # encode a few texts at start-up, before /health answers


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request. Token ids (a list of ints, or a list of such lists) are read as this model's
    own tokens, as TEI and vLLM read them: they are decoded to text, which is then embedded as any text is."""

    model_config = ConfigDict(extra="allow")  # OpenAI clients send fields such as `user`
    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    # not OpenAI's, sentence-transformers' quantize_embeddings: "binary"/"ubinary" pack each number's sign into
    # one bit (dimension / 8 bytes); "int8"/"uint8" map each dimension's calibration range onto 256 steps,
    # on a server started with calibration texts
    embedding_type: Literal["float", "binary", "ubinary", "int8", "uint8"] = "float"
    # not OpenAI's (TEI's): one of the model's named prompts, "query" or "document", put before each text
    prompt_name: str | None = None
    # not OpenAI's (TEI's): embed the part of a text the model reads instead of refusing a longer text;
    # None: the server's --auto-truncate
    truncate: bool | None = None

    def items(self) -> list:
        """The inputs as a list (of texts, or of token-id lists): one text or one id list becomes a list of one."""
        single = isinstance(self.input, str) or (self.input and isinstance(self.input[0], int))
        return [self.input] if single else list(self.input)
