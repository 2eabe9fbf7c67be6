"""Using an embedder offline: every text of a file (`cftune embed`) and one pair (`cftune similarity`).

Outputs are streamed to hidden temporary files (named by `cftune.io.temp_path`) and renamed in when
complete, so a killed run leaves the previous output as it was; the next run deletes what it left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from cftune.data import iter_texts
from cftune.errors import CftuneError
from cftune.io import remove_stale_temp_files, temp_path
from cftune.models import encode

log = logging.getLogger(__name__)
OUTPUT_FORMATS = (".npy", ".parquet")


class OutputPathError(CftuneError):
    """An --out that cannot receive the output; found before any model work."""


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


def check_output_path(out: str | os.PathLike) -> Path:
    """The output path, if a file can be written there; else OutputPathError (cheap: call it before loading)."""
    out = Path(out)
    if out.suffix not in OUTPUT_FORMATS:
        raise OutputPathError(f"{out}: output must end in {' or '.join(OUTPUT_FORMATS)}")
    for target in (out, Path(f"{out}.ids.txt")) if out.suffix == ".npy" else (out,):
        if target.is_dir():
            raise OutputPathError(f"{target}: is a folder; --out names the file to write")
    if not out.parent.is_dir():
        raise OutputPathError(f"{out}: folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{out}: folder {out.parent} is not writable")
    return out


def embed_file(model: SentenceTransformer, input_path: str | os.PathLike, out: str | os.PathLike, *,
               column: str = "text", id_column: str | None = None, batch_size: int = 32, normalize: bool = False,
               skip_bad_rows: bool = False, precision: str = "auto", chunk_rows: int = 4096,
               show_progress_bar: bool = True, prompt_name: str | None = None) -> EmbedSummary:
    """Embed every text of a file, streaming it chunk by chunk; the output appears only when complete.

    ``.npy`` gets the vectors (float32, one row per text) and ``<out>.ids.txt`` their ids, a line each;
    ``.parquet`` gets columns ``id`` and ``embedding``. Both are written to a temporary file and renamed.
    """
    from tqdm.auto import tqdm

    out = check_output_path(out)
    for stale in remove_stale_temp_files(out):
        log.info("removed %s, left by a run that was killed", stale)
    tmp, ids_tmp, raw_tmp = temp_path(out), temp_path(out, ".ids"), temp_path(out, ".raw")
    ids_path = Path(f"{out}.ids.txt")
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
                vectors = encode(model, [r.text for r in chunk], batch_size=batch_size, precision=precision,
                                 prompt_name=prompt_name)
                if normalize:
                    vectors = torch.nn.functional.normalize(vectors, dim=-1)
                array = vectors.cpu().numpy().astype(np.float32)
                dimension = array.shape[1]
                if raw is not None and ids_file is not None:
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
        elif writer is not None:
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


def similarity(model: SentenceTransformer, a: str, b: str, *, precision: str = "auto",
               prompt_names: tuple[str | None, str | None] = (None, None)) -> float:
    """Cosine of two texts; ``prompt_names`` embeds each with one of the model's named prompts (a search
    query against a document: ``("query", "document")``)."""
    first, second = (encode(model, [text], precision=precision, prompt_name=name)
                     for text, name in zip((a, b), prompt_names, strict=True))
    return float(torch.nn.functional.cosine_similarity(first, second).item())
