"""Using an embedder: whole files (`cftune embed`), one pair (`cftune similarity`) and HTTP (`cftune serve`).

The HTTP endpoint speaks OpenAI's embeddings API (POST /v1/embeddings, GET /v1/models), so any OpenAI
client library works against it. Concurrent requests are gathered into shared batches: on a CPU one batch of
32 texts costs far less than 32 batches of one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from sentence_transformers import SentenceTransformer

from cftune.data import iter_texts
from cftune.errors import CftuneError
from cftune.models import encode

log = logging.getLogger(__name__)
API_KEY_ENV = "CFTUNE_API_KEY"
OUTPUT_FORMATS = (".npy", ".parquet")


# --------------------------------------------------------------------------------------------- files


def _chunks(rows: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class EmbedSummary:
    out: Path
    rows: int
    dimension: int
    skipped: list[str]
    seconds: float


def embed_file(model: SentenceTransformer, input_path: str | os.PathLike, out: str | os.PathLike, *,
               column: str = "text", id_column: str | None = None, batch_size: int = 32, normalize: bool = False,
               skip_bad_rows: bool = False, precision: str = "auto", chunk_rows: int = 4096,
               show_progress_bar: bool = True) -> EmbedSummary:
    """Embed every text of a file, streaming it chunk by chunk; the output appears only when complete.

    ``.npy`` gets the vectors (float32, one row per text) and ``<out>.ids.txt`` their ids, a line each;
    ``.parquet`` gets columns ``id`` and ``embedding``. Both are written to a temporary file and renamed.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    if out.suffix not in OUTPUT_FORMATS:
        raise CftuneError(f"{out}: output must end in {' or '.join(OUTPUT_FORMATS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    ids_path, ids_tmp = Path(f"{out}.ids.txt"), out.with_name(f".{out.name}.ids.tmp-{os.getpid()}")
    raw_tmp = out.with_name(f".{out.name}.raw-{os.getpid()}")
    skipped: list[str] = []
    rows, dimension, started = 0, 0, time.perf_counter()
    writer = None
    try:
        with contextlib.ExitStack() as stack:
            progress = stack.enter_context(tqdm(desc=f"embedding {Path(input_path).name}", unit=" texts",
                                                disable=not show_progress_bar))
            raw = stack.enter_context(raw_tmp.open("wb")) if out.suffix == ".npy" else None
            ids_file = stack.enter_context(ids_tmp.open("w", encoding="utf-8")) if raw else None
            texts = iter_texts(input_path, column=column, id_column=id_column, skip_bad_rows=skip_bad_rows,
                               skipped=skipped)
            for chunk in _chunks(texts, chunk_rows):
                vectors = encode(model, [r.text for r in chunk], batch_size=batch_size, precision=precision)
                if normalize:
                    vectors = torch.nn.functional.normalize(vectors, dim=-1)
                array = vectors.cpu().numpy().astype(np.float32)
                dimension = array.shape[1]
                if raw is not None:
                    raw.write(array.tobytes())
                    ids_file.writelines(r.id + "\n" for r in chunk)
                else:
                    writer = writer or _parquet_writer(tmp, dimension)
                    writer.write_table(_parquet_table(chunk, array))
                rows += len(chunk)
                progress.update(len(chunk))
        if rows == 0:
            raise CftuneError(f"{input_path}: no text to embed" + (f" ({len(skipped)} bad rows skipped)"
                                                                   if skipped else ""))
        if out.suffix == ".npy":
            _raw_to_npy(raw_tmp, tmp, rows, dimension)
            tmp.replace(out)
            ids_tmp.replace(ids_path)
        else:
            writer.close()
            writer = None
            tmp.replace(out)
    finally:
        if writer is not None:
            writer.close()
        for leftover in (tmp, ids_tmp, raw_tmp):
            leftover.unlink(missing_ok=True)
    return EmbedSummary(out, rows, dimension, skipped, time.perf_counter() - started)


def _raw_to_npy(raw: Path, npy: Path, rows: int, dimension: int) -> None:
    """Give the streamed float32 rows a .npy header (the row count is known only at the end)."""
    target = np.lib.format.open_memmap(npy, mode="w+", dtype=np.float32, shape=(rows, dimension))
    source = np.memmap(raw, dtype=np.float32, mode="r", shape=(rows, dimension))
    for start in range(0, rows, 65536):
        target[start:start + 65536] = source[start:start + 65536]
    target.flush()
    del target, source


def _parquet_writer(path: Path, dimension: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.string()), ("embedding", pa.list_(pa.float32(), dimension))])
    return pq.ParquetWriter(path, schema)


def _parquet_table(chunk, array: np.ndarray):
    import pyarrow as pa

    embeddings = pa.FixedSizeListArray.from_arrays(pa.array(array.reshape(-1)), array.shape[1])
    return pa.table({"id": pa.array([r.id for r in chunk], pa.string()), "embedding": embeddings})


def similarity(model: SentenceTransformer, a: str, b: str, *, precision: str = "auto") -> float:
    vectors = encode(model, [a, b], precision=precision)
    return float(torch.nn.functional.cosine_similarity(vectors[:1], vectors[1:]).item())


# --------------------------------------------------------------------------------------------- HTTP


class Batcher:
    """Gathers the texts of concurrent requests into shared encode calls on one worker thread.

    With ``enabled=False`` every request is encoded on its own (the baseline `serve_load.py` compares with).
    """

    def __init__(self, model: SentenceTransformer, *, max_batch: int, precision: str, enabled: bool = True,
                 wait_ms: float = 2.0):
        self.model, self.max_batch, self.precision, self.enabled = model, max_batch, precision, enabled
        self.wait = wait_ms / 1000
        self.queue: asyncio.Queue | None = None
        self.lock = threading.Lock()  # one encode at a time: torch already uses every core

    def _encode(self, texts: list[str]) -> np.ndarray:
        with self.lock:
            return encode(self.model, texts, batch_size=32, precision=self.precision).cpu().numpy()

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.worker.cancel()

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not self.enabled:
            return await asyncio.to_thread(self._encode, texts)
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, future))
        return await future

    async def _run(self) -> None:
        while True:
            jobs = [await self.queue.get()]
            size = len(jobs[0][0])
            deadline = time.perf_counter() + self.wait
            # Take what else is waiting, up to max_batch texts; wait a moment for stragglers.
            while size < self.max_batch:
                timeout = deadline - time.perf_counter()
                try:
                    job = self.queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self.queue.get(),
                                                                                                timeout)
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                jobs.append(job)
                size += len(job[0])
            texts = [t for job_texts, _ in jobs for t in job_texts]
            try:
                vectors = await asyncio.to_thread(self._encode, texts)
            except Exception as err:  # noqa: BLE001 - every waiting request must hear of it
                for _, future in jobs:
                    if not future.done():
                        future.set_exception(err)
                continue
            start = 0
            for job_texts, future in jobs:
                if not future.done():  # a client that went away has a cancelled future
                    future.set_result(vectors[start:start + len(job_texts)])
                start += len(job_texts)


def token_counter(tokenizer):
    """texts -> token counts, on a tokenizer of its own.

    The model's fast tokenizer must not be shared: the encode thread switches its padding and truncation on
    and off, and a concurrent call from the request thread would see (and break) that state.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (pure Python) tokenizer keeps no such state
        return lambda texts: [len(tokenizer.encode(t, add_special_tokens=False)) for t in texts]
    from tokenizers import Tokenizer

    own = Tokenizer.from_str(backend.to_str())
    own.no_padding()
    own.no_truncation()
    return lambda texts: [len(e.ids) for e in own.encode_batch(texts, add_special_tokens=False)]


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request (token-id inputs are not accepted: cftune tokenizes itself)."""

    model_config = ConfigDict(extra="allow")  # OpenAI clients send fields such as `user`
    input: str | list[str]
    model: str | None = None
    encoding_format: str = "float"
    dimensions: int | None = None


def create_app(model: SentenceTransformer, model_name: str, *, max_batch: int = 256, max_tokens: int = 512,
               api_key: str | None = None, precision: str = "auto", batching: bool = True):
    """The FastAPI app: /v1/embeddings, /v1/models and /health, OpenAI's request and response shapes."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    batcher = Batcher(model, max_batch=max_batch, precision=precision, enabled=batching)
    count_tokens = token_counter(model.tokenizer)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="cftune embeddings", lifespan=lifespan)

    def error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        return JSONResponse(status_code=status,
                            content={"error": {"message": message, "type": kind, "param": param, "code": None}})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        if first.get("type") == "json_invalid":
            return error(400, "the request body is not valid JSON")
        hint = " (input must be a string or a list of strings)" if where.startswith("input") else ""
        return error(400, f"{where or 'body'}: {first.get('msg')}{hint}", where or None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.middleware("http")
    async def check_api_key(request: Request, call_next):
        if api_key is not None:
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                             kind="authentication_error")
        return await call_next(request)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_name}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "cftune"}]}

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest):
        texts = [body.input] if isinstance(body.input, str) else body.input
        if body.model not in (None, model_name):
            return error(404, f"model {body.model!r} is not served here; this server serves {model_name!r}",
                         "model", "model_not_found")
        if body.encoding_format not in ("float", "base64"):
            return error(400, f"encoding_format must be 'float' or 'base64', got {body.encoding_format!r}",
                         "encoding_format")
        if body.dimensions is not None:
            return error(400, "dimensions is not supported: this model has one output size", "dimensions")
        if not texts:
            return error(400, "input must not be empty", "input")
        if len(texts) > max_batch:
            return error(400, f"input has {len(texts)} items; at most {max_batch} per request", "input")
        counts = count_tokens(texts)
        for i, (text, count) in enumerate(zip(texts, counts)):
            if not text.strip():
                return error(400, f"input[{i}] is empty", "input")
            if count > max_tokens:
                return error(400, f"input[{i}] has {count} tokens; at most {max_tokens}", "input")
        vectors = await batcher.embed(texts)
        data = []
        for i, vector in enumerate(vectors):  # float32 already: encode returns float32
            payload = base64.b64encode(vector.tobytes()).decode() if body.encoding_format == "base64" \
                else vector.tolist()
            data.append({"object": "embedding", "index": i, "embedding": payload})
        tokens = sum(counts)
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
