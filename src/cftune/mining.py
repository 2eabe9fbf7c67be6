"""`cftune mine`: hard negatives for (anchor, positive) pairs, found with any model cftune loads.

The search and the guards against false negatives are sentence-transformers' ``mine_hard_negatives``: each
anchor's nearest texts among all positives, skipping the closest ``range_min`` (likely paraphrases, so
unmarked positives), looking no further than ``range_max``, and keeping only candidates at least
``margin`` below the anchor's own positive (NV-Retriever's TopK-PercPos when relative). A model with named
``query`` and ``document`` prompts embeds the anchors as queries and the candidates as documents, as it will be
used. The result is a ``anchor, positive, negative_1..n`` file that ``cftune train --data`` takes.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cftune.data import is_retrieval_folder, load_retrieval_set, read_triplets, retrieval_pairs
from cftune.errors import ConfigError
from cftune.io import atomic_file, check_output_file

if TYPE_CHECKING:  # the model is imported where it is used: checking --out needs none of it
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)
MINED_FORMATS = (".csv", ".jsonl")


@dataclass
class MiningSummary:
    out: Path
    rows: int  # rows written, each with all its negatives
    skipped: int  # pairs for which fewer than ``negatives`` candidates passed the guards
    negatives: int
    seconds: float
    prompts: tuple[str | None, str | None] = (None, None)  # the named prompts of anchors and candidates


def check_mined_output(out: str | os.PathLike) -> Path:
    out = Path(out)
    if out.suffix not in MINED_FORMATS:
        raise ConfigError(f"{out}: output must end in {' or '.join(MINED_FORMATS)}")
    return check_output_file(out)


def mine(model: SentenceTransformer, pairs_path: str | os.PathLike, out: str | os.PathLike, *, negatives: int = 3,
         range_min: int = 10, range_max: int = 50, margin: float = 0.05, relative: bool = True,
         sampling: Literal["top", "random"] = "top", batch_size: int = 32, precision: str = "auto") -> MiningSummary:
    """Add ``negatives`` hard negatives to each (anchor, positive) row of ``pairs_path``; write ``out``.

    ``margin``: a candidate must score below the positive by this much (a fraction of the positive's score
    when ``relative``, else in cosine). Rows without enough candidates are left out and counted.
    """
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    from cftune.encoding import autocast, effective_precision

    out = check_mined_output(out)
    if negatives < 1 or not 0 <= range_min < range_max or margin < 0 or sampling not in ("top", "random"):
        raise ConfigError(f"mine: needs negatives >= 1, 0 <= range_min < range_max, margin >= 0 and sampling "
                          f"top or random; got {negatives}, {range_min}, {range_max}, {margin}, {sampling!r}")
    # a retrieval folder: its training judgements are the pairs, and every document of its corpus a candidate
    search = load_retrieval_set(pairs_path, split="train") if is_retrieval_folder(pairs_path) else None
    pairs = retrieval_pairs(search) if search else read_triplets(pairs_path)
    corpus = list(search.corpus.values()) if search else None
    dataset = Dataset.from_dict({"anchor": pairs.columns["anchor"], "positive": pairs.columns["positive"]})
    # a search model's own prompts, as sentence-transformers' encode_query / encode_document would put them
    prompts = ("query" if "query" in model.prompts else None, "document" if "document" in model.prompts else None)
    started = time.perf_counter()
    with autocast(effective_precision(model, precision), model.device):
        mined = mine_hard_negatives(
            dataset, model, anchor_column_name="anchor", positive_column_name="positive", corpus=corpus,
            range_min=range_min,
            range_max=range_max, num_negatives=negatives, sampling_strategy=sampling,
            relative_margin=margin if relative else None, absolute_margin=None if relative else margin,
            query_prompt_name=prompts[0], corpus_prompt_name=prompts[1], output_format="n-tuple",
            batch_size=batch_size, verbose=False)
    rows = mined.to_list()
    with atomic_file(out) as tmp:
        _write_rows(tmp, out.suffix, ["anchor", "positive", *(f"negative_{i}" for i in range(1, negatives + 1))],
                    rows)
    summary = MiningSummary(out, len(rows), len(dataset) - len(rows), negatives, time.perf_counter() - started,
                            prompts)
    log.info("mined %d rows with %d negatives each into %s; %d pairs had too few candidates", summary.rows,
             negatives, out, summary.skipped)
    return summary


def _write_rows(path: Path, suffix: str, columns: list[str], rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        if suffix == ".csv":
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows([row[c] for c in columns] for row in rows)
        else:
            handle.writelines(json.dumps({c: row[c] for c in columns}, ensure_ascii=False) + "\n" for row in rows)
