"""Using an embedder offline: every text of a file (`cftune embed`) and one pair (`cftune similarity`).

Outputs are streamed to hidden temporary files (named by `cftune.io.temp_path`) and renamed in when
complete, so a killed run leaves the previous output as it was; the next run deletes what it left.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cftune.data import iter_texts
from cftune.errors import CftuneError, OutputPathError
from cftune.io import check_output_file, remove_stale_temp_files, temp_path

if TYPE_CHECKING:  # torch, numpy and the model are imported where they are used: checking --out needs none
    import numpy as np
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)
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


def ids_path(out: Path) -> Path:
    """Where the ids of a .npy output go: JSON Lines, one JSON string a line, so an id with a line break (or
    any other character) cannot shift the ids against the vectors."""
    return Path(f"{out}.ids.jsonl")


def read_ids(out: str | os.PathLike) -> list[str]:
    """The ids written beside a .npy output, in the order of its rows."""
    with ids_path(Path(out)).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def check_output_path(out: str | os.PathLike) -> Path:
    """The output path, if a file can be written there; else OutputPathError (cheap: call it before loading)."""
    out = Path(out)
    if out.suffix not in OUTPUT_FORMATS:
        raise OutputPathError(f"{out}: output must end in {' or '.join(OUTPUT_FORMATS)}")
    for target in (out, ids_path(out)) if out.suffix == ".npy" else (out,):
        check_output_file(target)
    return out


def embed_file(model: SentenceTransformer, input_path: str | os.PathLike, out: str | os.PathLike, *,
               column: str = "text", id_column: str | None = None, batch_size: int = 32, normalize: bool = False,
               skip_bad_rows: bool = False, precision: str = "auto", chunk_rows: int = 4096,
               show_progress_bar: bool = True, prompt_name: str | None = None) -> EmbedSummary:
    """Embed every text of a file, streaming it chunk by chunk; the output appears only when complete.

    ``.npy`` gets the vectors (float32, one row per text) and ``<out>.ids.jsonl`` their ids (`read_ids`);
    ``.parquet`` gets columns ``id`` and ``embedding``. Both are written to a temporary file and renamed.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from cftune.encoding import encode

    out = check_output_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_temp_files(out):
        log.info("removed %s, left by a run that was killed", stale)
    tmp, ids_tmp, raw_tmp = temp_path(out), temp_path(out, ".ids"), temp_path(out, ".raw")
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
                    ids_file.writelines(json.dumps(r.id) + "\n" for r in chunk)
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
            ids_tmp.replace(ids_path(out))
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
    import numpy as np

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
    import torch

    from cftune.encoding import encode

    first, second = (encode(model, [text], precision=precision, prompt_name=name)
                     for text, name in zip((a, b), prompt_names, strict=True))
    return float(torch.nn.functional.cosine_similarity(first, second).item())
