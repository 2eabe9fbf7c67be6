"""The FastAPI app: /v1/embeddings, /v1/models, /health and /metrics, in OpenAI's request and response shapes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import logging
import time

import numpy as np
from sentence_transformers import SentenceTransformer

from cftune.encoding import check_dimension
from cftune.errors import ConfigError
from cftune.serving.batcher import Batcher, QueueFull
from cftune.serving.errors import ApiError
from cftune.serving.metrics import Metrics
from cftune.serving.schemas import MAX_CHARS_PER_TOKEN, EmbeddingRequest, ServeSettings
from cftune.serving.tokens import served_max_tokens, token_counter, token_decoder

log = logging.getLogger(__name__)
API_KEY_ENV = "CFTUNE_API_KEY"


def shape_vectors(vectors: np.ndarray, dimensions: int | None, normalize: bool) -> np.ndarray:
    """The leading ``dimensions`` numbers (None: all), then unit length when ``normalize``."""
    vectors = vectors[:, :dimensions]
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12) if normalize else vectors


class Embedder:
    """What the embeddings route does with a request, step by step; each step raises ApiError on a bad one."""

    def __init__(self, model: SentenceTransformer, name: str, settings: ServeSettings,
                 calibration: np.ndarray | None):
        self.model, self.name, self.settings, self.calibration = model, name, settings, calibration
        self.limit = served_max_tokens(model, settings.max_tokens)
        if settings.default_prompt_name is not None:
            if settings.default_prompt_name not in model.prompts:
                raise ConfigError(f"default prompt name {settings.default_prompt_name!r} is not one of this "
                                  f"model's prompts ({', '.join(model.prompts) or 'it has none'})")
            model.default_prompt_name = settings.default_prompt_name  # what encode and the token count use
        model.max_seq_length = self.limit  # where sentence-transformers cuts a text that is truncated
        self.count_tokens = token_counter(model)
        self.decode_tokens = token_decoder(model)
        self.full_dimension = model.get_embedding_dimension()
        self.max_chars = self.limit * MAX_CHARS_PER_TOKEN

    def not_served(self, name: str, param: str | None = None) -> ApiError:
        return ApiError(404, f"model {name!r} is not served here; this server serves {self.name!r}", param,
                        code="model_not_found")

    def check_options(self, body: EmbeddingRequest) -> None:
        """Everything but the inputs: the model's name, the output type and length, the prompt."""
        if self.settings.strict_model_name and body.model not in (None, self.name):
            raise self.not_served(body.model or "", "model")
        if body.embedding_type in ("int8", "uint8") and self.calibration is None:
            raise ApiError(400, f"{body.embedding_type} needs calibration ranges: start the server with "
                                "--calibration FILE (texts like the ones you will embed)", "embedding_type")
        if body.embedding_type in ("binary", "ubinary") and (body.dimensions or self.full_dimension or 8) % 8:
            raise ApiError(400, "binary embeddings pack 8 numbers a byte: dimensions must be a multiple of 8",
                           "dimensions")
        try:
            check_dimension(body.dimensions, self.full_dimension, "dimensions")
        except ConfigError as bad:
            raise ApiError(400, str(bad), "dimensions") from None
        if body.prompt_name is not None and body.prompt_name not in self.model.prompts:
            raise ApiError(400, f"prompt_name {body.prompt_name!r} is not one of this model's prompts "
                                f"({', '.join(self.model.prompts) or 'it has none'})", "prompt_name")

    async def texts(self, body: EmbeddingRequest, truncate: bool) -> list[str]:
        """The request's texts (token ids decoded), each one checked: not empty, valid Unicode, not far too
        long; with truncation, each cut to the characters that can hold the tokens the model reads."""
        from fastapi.concurrency import run_in_threadpool

        inputs = body.items()
        if not inputs:
            raise ApiError(400, "input must not be empty", "input")
        if len(inputs) > self.settings.max_inputs:
            raise ApiError(400, f"input has {len(inputs)} items; at most {self.settings.max_inputs} per request",
                           "input")
        if isinstance(inputs[0], list):  # token ids
            if empty := [i for i, ids in enumerate(inputs) if not ids]:
                raise ApiError(400, f"input[{empty[0]}] is empty", "input")
            try:
                texts = await run_in_threadpool(self.decode_tokens, inputs)
            except ValueError as bad:
                raise ApiError(400, str(bad), "input") from None
        else:
            texts = inputs
        for i, text in enumerate(texts):
            if not text.strip():
                raise ApiError(400, f"input[{i}] is empty", "input")
            if len(text) > self.max_chars and not truncate:
                raise ApiError(400, f"input[{i}] has {len(text)} characters; at most {self.max_chars} "
                                    f"({MAX_CHARS_PER_TOKEN} per token of the {self.limit} tokens read)", "input")
            try:
                text.encode("utf-8")  # JSON's "\ud800" escapes decode to lone surrogates, which no tokenizer takes
            except UnicodeEncodeError as err:
                raise ApiError(400, f"input[{i}] is not valid Unicode text ({err.reason} at character "
                                    f"{err.start})", "input") from None
        # the model reads a text's first tokens only, far within its first max_chars characters: cutting there
        # first spares tokenizing the rest
        return [text[:self.max_chars] for text in texts] if truncate else texts

    async def token_counts(self, texts: list[str], prompt_name: str | None, truncate: bool) -> list[int]:
        """Each text's tokens as the model gets them; more than the limit is a 400 unless truncating."""
        from fastapi.concurrency import run_in_threadpool

        counts = await run_in_threadpool(self.count_tokens, texts, prompt_name)  # off the event loop
        for i, count in enumerate(counts):
            if count > self.limit and not truncate:
                raise ApiError(400, f"input[{i}] has {count} tokens; at most {self.limit}, the model's template "
                                    f'and special tokens included (send "truncate": true to embed its first '
                                    f"{self.limit})", "input")
        return counts

    def payload(self, vectors: np.ndarray, body: EmbeddingRequest) -> list[dict]:
        """OpenAI's data items: the vectors cut, normalized, quantized as asked, as floats or base64."""
        vectors = shape_vectors(vectors, body.dimensions, self.settings.normalize)
        if body.embedding_type != "float":
            from sentence_transformers.util.quantization import quantize_embeddings

            reference = None if self.calibration is None else \
                shape_vectors(self.calibration, body.dimensions, self.settings.normalize)
            vectors = np.asarray(quantize_embeddings(vectors, body.embedding_type, calibration_embeddings=reference))
        else:
            vectors = vectors.astype(np.float32)
        return [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(v.tobytes()).decode() if body.encoding_format == "base64"
                 else v.tolist()} for i, v in enumerate(vectors)]


def create_app(model: SentenceTransformer, model_name: str, settings: ServeSettings | None = None, *,
               calibration: np.ndarray | None = None):
    """The app for ``model``, answering as ``model_name`` (see ``ServeSettings`` for the limits).

    Nothing slow runs on the event loop (tokenizing and encoding run on threads), so /health and small requests
    stay fast while big ones are worked on; bodies over ``max_request_bytes`` get a 413 (by Content-Length
    before reading, else as soon as the streamed body passes the limit), and more than ``max_queue`` waiting
    texts a 429. Vectors are unit length unless ``normalize`` is off, as OpenAI's are; a request's
    ``dimensions`` keeps each vector's leading numbers (for Matryoshka models), cut before the normalization.
    ``calibration``: the model's vectors of some representative texts, whose per-dimension ranges int8 and
    uint8 outputs are scaled to.

    A request holds at most ``max_inputs`` texts; the texts of concurrent requests are encoded together, up to
    ``max_batch`` at a time. Any ``model`` name a client sends is answered by the one model served (clients
    hard-code names such as text-embedding-3-small), unless ``strict_model_name``. A text is read whole or not
    at all: one whose tokens (as ``token_counter`` counts them) are more than ``max_tokens`` (default and most:
    the model's max_seq_length) gets a 400, unless the request asks for ``"truncate": true`` or the server
    truncates by default (``auto_truncate``); then the model reads its first ``max_tokens`` tokens
    (sentence-transformers cuts it, keeping the template's suffix and EOS), and ``usage`` counts those.
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import Response
    from starlette.datastructures import Headers
    from starlette.exceptions import HTTPException as StarletteHTTPException

    settings = settings or ServeSettings()
    metrics = Metrics()
    batcher = Batcher(model, max_batch=settings.max_batch, precision=settings.precision, enabled=settings.batching,
                      max_queue=settings.max_queue, metrics=metrics)
    embedder = Embedder(model, model_name, settings, calibration)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        # Encodes before the first request: the first calls pay one-time costs (int8's compiled kernels take
        # seconds, once for a batch of one text and again for several, as torch.compile specializes size 1),
        # and /health answers only after them, so a load balancer sends no request to a cold server.
        for texts in (["warm-up"], ["warm-up", "a second, longer text to warm up the encoder with"]) * \
                settings.warm_up:
            await asyncio.to_thread(batcher.encode, texts)
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="cftune embeddings", lifespan=lifespan)

    @app.exception_handler(ApiError)
    async def api_error(request, error: ApiError):
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        if first.get("type") == "json_invalid":
            return ApiError(400, "the request body is not valid JSON").response()
        if where.startswith("input"):  # pydantic names each member of the union it tried: one line says it all
            return ApiError(400, "input must be a string, a list of strings, or token ids (a list of ints, or a "
                                 "list of lists of ints)", "input").response()
        return ApiError(400, f"{where or 'body'}: {first.get('msg')}", where or None).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        return ApiError(exc.status_code, str(exc.detail)).response()

    too_large = ApiError(413, f"the request body is over {settings.max_request_bytes} bytes")

    def limit_body(inner):
        """413 for a body over max_request_bytes, read no further: by its Content-Length before reading, else
        as it streams in. (FastAPI's own max_body_size answers a Content-Length in plain text, not OpenAI's JSON.)"""
        async def limited(scope, receive, send):
            length = Headers(scope=scope).get("content-length", "") if scope["type"] == "http" else ""
            if length.isdigit() and int(length) > settings.max_request_bytes:
                return await too_large.response()(scope, receive, send)
            seen = 0

            async def counting_receive():
                nonlocal seen
                message = await receive()
                seen += len(message.get("body", b""))
                if seen > settings.max_request_bytes:
                    raise StarletteHTTPException(413, too_large.message)  # FastAPI passes it on to http_error
                return message
            return await inner(scope, counting_receive, send)
        return limited

    app.add_middleware(limit_body)

    @app.middleware("http")
    async def check_api_key(request: Request, call_next):
        key = settings.api_key
        if key is not None and request.url.path != "/health":  # a load balancer's probe carries no key
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            # The scheme name is case-insensitive (RFC 9110); the key is compared exactly, in constant time.
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), key.encode()):
                return ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                                kind="authentication_error").response()
        return await call_next(request)

    @app.middleware("http")
    async def count_embedding_requests(request: Request, call_next):
        if request.url.path != "/v1/embeddings":
            return await call_next(request)
        with metrics.seconds.time():
            response = await call_next(request)
        metrics.requests.labels(status=str(response.status_code)).inc()
        return response

    @app.get("/metrics")
    async def prometheus_metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        metrics.waiting.set(batcher.waiting)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_name}

    served = {"id": model_name, "object": "model", "created": int(time.time()), "owned_by": "cftune"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [served]}

    @app.get("/v1/models/{name:path}")  # a hub-style name has a slash in it
    async def retrieve_model(name: str):
        if name != model_name and settings.strict_model_name:
            raise embedder.not_served(name)
        return served

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest):
        truncate = settings.auto_truncate if body.truncate is None else body.truncate
        embedder.check_options(body)
        texts = await embedder.texts(body, truncate)
        counts = await embedder.token_counts(texts, body.prompt_name, truncate)
        try:
            vectors = await batcher.embed(texts, body.prompt_name)
        except QueueFull as err:
            raise ApiError(429, str(err), kind="rate_limit_error") from None
        tokens = sum(min(count, embedder.limit) for count in counts)  # what the model read
        metrics.texts.inc(len(texts))
        metrics.tokens.inc(tokens)
        return {"object": "list", "data": embedder.payload(vectors, body), "model": model_name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    return app


def serve(model: SentenceTransformer, model_name: str, settings: ServeSettings, *, host: str = "127.0.0.1",
          port: int = 8000, calibration: np.ndarray | None = None) -> None:
    import uvicorn

    app = create_app(model, model_name, settings, calibration=calibration)
    log.info("serving %s on http://%s:%d/v1/embeddings%s", model_name, host, port,
             " (API key required)" if settings.api_key else "")
    uvicorn.run(app, host=host, port=port, log_level="warning")
