"""Serving an embedder over HTTP (`cftune serve`).

The endpoint speaks OpenAI's embeddings API (POST /v1/embeddings, GET /v1/models), so any OpenAI client
library works against it, with TEI's extras (prompt_name, truncate). The modules: ``schemas`` (the settings
and the request), ``errors`` (the one OpenAI-shaped error), ``tokens`` (counting what the model reads,
decoding token ids), ``batcher`` (concurrent requests in shared encode batches), ``metrics`` and ``app``
(the routes).
"""

from cftune.serving.app import API_KEY_ENV, create_app, serve, shape_vectors
from cftune.serving.batcher import Batcher, Job, QueueFull
from cftune.serving.errors import ApiError
from cftune.serving.schemas import EmbeddingRequest, ServeSettings
from cftune.serving.tokens import served_max_tokens, token_counter, token_decoder

__all__ = ["API_KEY_ENV", "ApiError", "Batcher", "EmbeddingRequest", "Job", "QueueFull", "ServeSettings",
           "create_app", "serve", "served_max_tokens", "shape_vectors", "token_counter", "token_decoder"]
