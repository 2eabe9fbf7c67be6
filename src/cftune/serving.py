"""Serving an embedder over HTTP (`cftune serve`).

The HTTP endpoint speaks OpenAI's embeddings API (POST /v1/embeddings, GET /v1/models), so any OpenAI
client library works against it. Concurrent requests are gathered into shared batches: on a CPU one batch of
32 texts costs far less than 32 batches of one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import logging
import threading
import time
import typing
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from sentence_transformers import SentenceTransformer

from cftune.errors import ConfigError
from cftune.models import check_dimension, encode, lm_module

log = logging.getLogger(__name__)
API_KEY_ENV = "CFTUNE_API_KEY"
# No real vocabulary averages more than a few characters a token, so a text over 64 characters per allowed token
# is refused without tokenizing it: tokenizing a 10 MB text to learn that it is too long costs seconds.
MAX_CHARS_PER_TOKEN = 64


class Metrics:
    """What /metrics tells Prometheus, on a registry of the app's own (prometheus_client)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("cftune_requests", "embedding requests answered, by HTTP status", ["status"],
                                registry=self.registry)
        self.seconds = Histogram("cftune_request_seconds", "time to answer an embedding request",
                                 registry=self.registry)
        self.texts = Counter("cftune_texts_embedded", "texts embedded", registry=self.registry)
        self.tokens = Counter("cftune_tokens", "tokens in the texts embedded", registry=self.registry)
        self.batch = Histogram("cftune_batch_texts", "texts per shared encode batch", registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
        self.waiting = Gauge("cftune_queue_texts", "texts waiting for the encoder", registry=self.registry)


class QueueFull(Exception):
    """More texts are waiting for the encoder than the server accepts (answered 429)."""


class Batcher:
    """Gathers the texts of concurrent requests into shared encode calls on one worker thread.

    At most ``max_queue`` texts wait for the encoder; beyond that ``embed`` raises QueueFull at once, so a
    flood of requests is refused instead of piling up memory and latency. With ``enabled=False`` every request
    is encoded on its own (the baseline `serve_load.py` compares with).
    """

    def __init__(self, model: SentenceTransformer, *, max_batch: int, precision: str, enabled: bool = True,
                 wait_ms: float = 2.0, max_queue: int = 4096, metrics: Metrics | None = None):
        self.model, self.max_batch, self.precision, self.enabled = model, max_batch, precision, enabled
        self.metrics = metrics
        self.wait, self.max_queue = wait_ms / 1000, max_queue
        self.queue: asyncio.Queue = asyncio.Queue()  # replaced by a fresh one on each start()
        self.waiting = 0  # texts in the queue; changed on the event loop only, so no lock
        self.lock = threading.Lock()  # one encode at a time: torch already uses every core

    def _encode(self, texts: list[str], prompt_name: str | None = None) -> np.ndarray:
        with self.lock:
            return encode(self.model, texts, batch_size=32, precision=self.precision,
                          prompt_name=prompt_name).cpu().numpy()

    def _encode_jobs(self, jobs: list) -> list[np.ndarray]:
        """One encode call per named prompt among the jobs (sentence-transformers takes one per call)."""
        vectors: list[np.ndarray] = [np.empty(0)] * len(jobs)
        for name in dict.fromkeys(job[1] for job in jobs):
            mine = [i for i, job in enumerate(jobs) if job[1] == name]
            together = self._encode([t for i in mine for t in jobs[i][0]], name)
            start = 0
            for i in mine:
                vectors[i] = together[start:start + len(jobs[i][0])]
                start += len(jobs[i][0])
        return vectors

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.worker.cancel()

    async def embed(self, texts: list[str], prompt_name: str | None = None) -> np.ndarray:
        if self.waiting + len(texts) > self.max_queue:
            raise QueueFull(f"{self.waiting} texts are waiting to be embedded (at most {self.max_queue}); "
                            "retry later")
        future = asyncio.get_running_loop().create_future()
        self.waiting += len(texts)
        self.queue.put_nowait((texts, prompt_name, future))
        return await future

    def _take(self, job):
        self.waiting -= len(job[0])
        return job

    async def _run(self) -> None:
        while True:
            jobs = [self._take(await self.queue.get())]
            size = len(jobs[0][0])
            deadline = time.perf_counter() + self.wait
            # Take what else is waiting, up to max_batch texts; wait a moment for stragglers.
            while self.enabled and size < self.max_batch:
                timeout = deadline - time.perf_counter()
                try:
                    job = self.queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self.queue.get(),
                                                                                                timeout)
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                jobs.append(self._take(job))
                size += len(job[0])
            jobs = [job for job in jobs if not job[2].done()]  # nobody waits for a cancelled request's vectors
            if not jobs:
                continue
            if self.metrics:
                self.metrics.batch.observe(sum(len(job[0]) for job in jobs))
            try:
                vectors = await asyncio.to_thread(self._encode_jobs, jobs)
            except Exception as err:  # noqa: BLE001 - every waiting request must hear of it
                for *_, future in jobs:
                    if not future.done():
                        future.set_exception(err)
                continue
            for (*_, future), job_vectors in zip(jobs, vectors, strict=True):
                if not future.done():  # a client that went away has a cancelled future
                    future.set_result(job_vectors)


def served_max_tokens(model: SentenceTransformer, max_tokens: int | None) -> int:
    """The most tokens of one text a server reads: ``max_tokens``, by default the model's own max_seq_length.

    More than the model reads is refused: sentence-transformers would cut every longer text to max_seq_length
    without a word, and texts that differ only past it would get the same vector."""
    reads = model.max_seq_length
    if reads is None:
        raise ConfigError("this model declares no max_seq_length, so the longest text it reads is unknown")
    if max_tokens is not None and max_tokens > reads:
        raise ConfigError(f"--max-tokens {max_tokens} is more than this model reads: its max_seq_length is {reads} "
                          f"tokens (leave --max-tokens out to accept texts up to {reads})")
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


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request. Token ids (a list of ints, or a list of such lists) are read as this model's
    own tokens, as TEI and vLLM read them: they are decoded to text, which is then embedded as any text is."""

    model_config = ConfigDict(extra="allow")  # OpenAI clients send fields such as `user`
    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: str = "float"
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


def shape_vectors(vectors: np.ndarray, dimensions: int | None, normalize: bool) -> np.ndarray:
    """The leading ``dimensions`` numbers (None: all), then unit length when ``normalize``."""
    vectors = vectors[:, :dimensions]
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12) if normalize else vectors


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


def create_app(model: SentenceTransformer, model_name: str, *, max_batch: int = 256, max_inputs: int = 2048,
               max_tokens: int | None = None, api_key: str | None = None, precision: str = "auto",
               batching: bool = True, max_queue: int = 4096, max_request_bytes: int = 8 * 2**20,
               normalize: bool = True, calibration: np.ndarray | None = None, auto_truncate: bool = False,
               strict_model_name: bool = False, default_prompt_name: str | None = None, warm_up: bool = True):
    """The FastAPI app: /v1/embeddings, /v1/models and /health, OpenAI's request and response shapes.

    A request holds at most ``max_inputs`` texts (OpenAI's limit: 2,048); the texts of concurrent requests are
    encoded together, up to ``max_batch`` at a time. Any ``model`` name a client sends is answered by the one
    model served (clients hard-code names such as text-embedding-3-small), unless ``strict_model_name``: then a
    name other than ``model_name`` gets a 404. ``default_prompt_name``: the model's named prompt used for a
    request that names none (TEI's --default-prompt-name; for clients that cannot send ``prompt_name``).
    ``warm_up``: encode a few texts at start-up, before the app answers (off only to measure what it saves).

    Nothing slow runs on the event loop (tokenizing and encoding run on threads), so /health and small
    requests stay fast while big ones are worked on; bodies over ``max_request_bytes`` get a 413 (by
    Content-Length before reading, else as soon as the streamed body passes the limit), and more than
    ``max_queue`` waiting texts a 429. Vectors are unit length unless ``normalize`` is off, as OpenAI's are;
    a request's ``dimensions`` keeps each vector's leading numbers (for Matryoshka models), cut before the
    normalization. ``calibration``: the model's vectors of some representative texts, whose per-dimension
    ranges int8 and uint8 outputs are scaled to.

    A text is read whole or not at all: one whose tokens (as ``token_counter`` counts them) are more than
    ``max_tokens`` (default and most: the model's max_seq_length) gets a 400, unless the request asks for
    ``"truncate": true`` or the server was started with ``auto_truncate``; then the model reads its first
    ``max_tokens`` tokens (sentence-transformers cuts it, keeping the template's suffix and EOS), and ``usage``
    counts those. The model is set to read at most ``max_tokens`` (its max_seq_length), so that a cut is made
    there.
    """
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.datastructures import Headers
    from starlette.exceptions import HTTPException as StarletteHTTPException

    metrics = Metrics()
    batcher = Batcher(model, max_batch=max_batch, precision=precision, enabled=batching, max_queue=max_queue,
                      metrics=metrics)
    limit = served_max_tokens(model, max_tokens)
    if default_prompt_name is not None:
        if default_prompt_name not in model.prompts:
            raise ConfigError(f"default prompt name {default_prompt_name!r} is not one of this model's prompts "
                              f"({', '.join(model.prompts) or 'it has none'})")
        model.default_prompt_name = default_prompt_name  # what encode and the token count use when none is named
    model.max_seq_length = limit  # where sentence-transformers cuts a text that is truncated
    count_tokens = token_counter(model)
    decode_tokens = token_decoder(model)
    full_dimension = model.get_embedding_dimension()
    max_chars = limit * MAX_CHARS_PER_TOKEN

    @contextlib.asynccontextmanager
    async def lifespan(app):
        # Encodes before the first request: the first calls pay one-time costs (int8's compiled kernels take
        # seconds, once for a batch of one text and again for several, as torch.compile specializes size 1),
        # and /health answers only after them, so a load balancer sends no request to a cold server.
        for texts in (["warm-up"], ["warm-up", "a second, longer text to warm up the encoder with"]) * warm_up:
            await asyncio.to_thread(batcher._encode, texts)
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="cftune embeddings", lifespan=lifespan)

    def error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
              code: str | None = None):
        return JSONResponse(status_code=status,
                            content={"error": {"message": message, "type": kind, "param": param, "code": code}})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        if first.get("type") == "json_invalid":
            return error(400, "the request body is not valid JSON")
        if where.startswith("input"):  # pydantic names each member of the union it tried: one line says it all
            return error(400, "input must be a string, a list of strings, or token ids (a list of ints, or a list "
                              "of lists of ints)", "input")
        return error(400, f"{where or 'body'}: {first.get('msg')}", where or None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail))

    too_large = f"the request body is over {max_request_bytes} bytes"

    def limit_body(inner):
        """413 for a body over max_request_bytes, read no further: by its Content-Length before reading, else
        as it streams in. (FastAPI's own max_body_size answers a Content-Length in plain text, not OpenAI's JSON.)"""
        async def limited(scope, receive, send):
            length = Headers(scope=scope).get("content-length", "") if scope["type"] == "http" else ""
            if length.isdigit() and int(length) > max_request_bytes:
                return await error(413, too_large)(scope, receive, send)
            seen = 0

            async def counting_receive():
                nonlocal seen
                message = await receive()
                seen += len(message.get("body", b""))
                if seen > max_request_bytes:
                    raise StarletteHTTPException(413, too_large)  # FastAPI passes it on to http_error
                return message
            return await inner(scope, counting_receive, send)
        return limited

    app.add_middleware(limit_body)

    @app.middleware("http")
    async def check_api_key(request: Request, call_next):
        if api_key is not None and request.url.path != "/health":  # a load balancer's probe carries no key
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            # The scheme name is case-insensitive (RFC 9110); the key is compared exactly, in constant time.
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), api_key.encode()):
                return error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                             kind="authentication_error")
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

    def not_served(name: str, param: str | None = None):
        return error(404, f"model {name!r} is not served here; this server serves {model_name!r}", param,
                     code="model_not_found")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [served]}

    @app.get("/v1/models/{name:path}")  # a hub-style name has a slash in it
    async def retrieve_model(name: str):
        return served if name == model_name or not strict_model_name else not_served(name)

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest):
        inputs = [body.input] if isinstance(body.input, str) or (body.input and isinstance(body.input[0], int)) \
            else body.input
        truncate = auto_truncate if body.truncate is None else body.truncate
        if strict_model_name and body.model not in (None, model_name):
            return not_served(body.model, "model")
        if body.encoding_format not in ("float", "base64"):
            return error(400, f"encoding_format must be 'float' or 'base64', got {body.encoding_format!r}",
                         "encoding_format")
        if body.embedding_type in ("int8", "uint8") and calibration is None:
            return error(400, f"{body.embedding_type} needs calibration ranges: start the server with --calibration "
                              "FILE (texts like the ones you will embed)", "embedding_type")
        if body.embedding_type in ("binary", "ubinary") and (body.dimensions or full_dimension or 8) % 8:
            return error(400, "binary embeddings pack 8 numbers a byte: dimensions must be a multiple of 8",
                         "dimensions")
        try:
            check_dimension(body.dimensions, full_dimension, "dimensions")
        except ConfigError as bad:
            return error(400, str(bad), "dimensions")
        if not inputs:
            return error(400, "input must not be empty", "input")
        if len(inputs) > max_inputs:
            return error(400, f"input has {len(inputs)} items; at most {max_inputs} per request", "input")
        if isinstance(inputs[0], list):  # token ids
            if any(not ids for ids in inputs):
                return error(400, f"input[{next(i for i, ids in enumerate(inputs) if not ids)}] is empty", "input")
            try:
                texts = await run_in_threadpool(decode_tokens, inputs)
            except ValueError as bad:
                return error(400, str(bad), "input")
        else:
            texts = typing.cast(list[str], inputs)
        for i, text in enumerate(texts):
            if not text.strip():
                return error(400, f"input[{i}] is empty", "input")
            if len(text) > max_chars and not truncate:
                return error(400, f"input[{i}] has {len(text)} characters; at most {max_chars} "
                                  f"({MAX_CHARS_PER_TOKEN} per token of the {limit} tokens read)", "input")
            try:
                text.encode("utf-8")  # JSON's "\ud800" escapes decode to lone surrogates, which no tokenizer takes
            except UnicodeEncodeError as err:
                return error(400, f"input[{i}] is not valid Unicode text ({err.reason} at character {err.start})",
                             "input")
        if body.prompt_name is not None:
            if body.prompt_name not in model.prompts:
                return error(400, f"prompt_name {body.prompt_name!r} is not one of this model's prompts "
                                  f"({', '.join(model.prompts) or 'it has none'})", "prompt_name")
        if truncate:  # the model reads a text's first tokens only, far within its first max_chars characters:
            # cutting there first spares tokenizing the rest
            texts = [text[:max_chars] for text in texts]
        counts = await run_in_threadpool(count_tokens, texts, body.prompt_name)  # off the event loop
        for i, count in enumerate(counts):
            if count > limit and not truncate:
                return error(400, f"input[{i}] has {count} tokens; at most {limit}, the model's template and "
                                  f'special tokens included (send "truncate": true to embed its first {limit})',
                             "input")
        try:
            vectors = await batcher.embed(texts, body.prompt_name)
        except QueueFull as err:
            return error(429, str(err), kind="rate_limit_error")
        vectors = shape_vectors(vectors, body.dimensions, normalize)
        if body.embedding_type != "float":
            from sentence_transformers.util.quantization import quantize_embeddings

            reference = None if calibration is None else shape_vectors(calibration, body.dimensions, normalize)
            vectors = np.asarray(quantize_embeddings(vectors, body.embedding_type, calibration_embeddings=reference))
        else:
            vectors = vectors.astype(np.float32)
        data = []
        for i, vector in enumerate(vectors):
            payload = base64.b64encode(vector.tobytes()).decode() if body.encoding_format == "base64" \
                else vector.tolist()
            data.append({"object": "embedding", "index": i, "embedding": payload})
        tokens = sum(min(count, limit) for count in counts)  # what the model read
        metrics.texts.inc(len(texts))
        metrics.tokens.inc(tokens)
        return {"object": "list", "data": data, "model": model_name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    return app


def serve(model: SentenceTransformer, model_name: str, *, host: str = "127.0.0.1", port: int = 8000,
          **app_settings) -> None:
    import uvicorn

    app = create_app(model, model_name, **app_settings)
    log.info("serving %s on http://%s:%d/v1/embeddings%s", model_name, host, port,
             " (API key required)" if app_settings.get("api_key") else "")
    uvicorn.run(app, host=host, port=port, log_level="warning")
