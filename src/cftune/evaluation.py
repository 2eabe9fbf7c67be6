"""The STS suite: Spearman x100 of cosine similarity against gold scores, per task and on average."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from scipy.stats import spearmanr
from sentence_transformers import SentenceTransformer

from cftune.data import load_retrieval_set, load_sts_task, parse_tasks, resolve_data_dir
from cftune.encoding import autocast, check_dimension, effective_precision, encode
from cftune.io import format_duration
from cftune.prompts import prompt_of

log = logging.getLogger(__name__)


@dataclass
class StsResult:
    scores: dict[str, float]  # task -> Spearman x100
    pairs: dict[str, int]
    sources: dict[str, str]
    precision: str
    prompt: str | None
    sentences_encoded: int
    encode_seconds: float
    dimension: int | None = None  # length of the vectors scored (None: not recorded, in older results)
    meta: dict = field(default_factory=dict)  # model name, command, machine: filled in by the caller

    @property
    def average(self) -> float:
        return sum(self.scores.values()) / len(self.scores)

    def to_dict(self) -> dict:
        return {**asdict(self), "average": self.average}

    @classmethod
    def from_dict(cls, data: dict) -> StsResult:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def spearman_x100(predicted, gold) -> float:
    return float(spearmanr(predicted, gold).statistic) * 100


def log_encoding_estimate(model: SentenceTransformer, sentences: list[str], batch_size: int, precision: str,
                          sample_batches: int = 4) -> float | None:
    """Time a few batches as the pass will form them and log the whole pass's time.

    The pass encodes its sentences longest first in batches of neighbours in length, so each sampled batch is
    such a batch, from the middle of each of ``sample_batches`` equal slices of the length order, and stands for
    its slice (batches of sentences spread over the whole length range would pay for padding the pass does not,
    and overestimate it). A warm-up batch comes first (the first pass pays one-time setup). Costs a few percent
    of the pass."""
    if len(sentences) < 10 * sample_batches * batch_size:
        return None  # a short pass: the estimate would cost more than it tells
    by_length = sorted(sentences, key=len)
    encode(model, by_length[:batch_size], batch_size=batch_size, precision=precision)  # warm-up
    seconds_per_batch = []
    for part in range(sample_batches):
        middle = (2 * part + 1) * len(by_length) // (2 * sample_batches)
        batch = by_length[middle - batch_size // 2:][:batch_size]
        started = time.perf_counter()
        encode(model, batch, batch_size=batch_size, precision=precision)
        seconds_per_batch.append(time.perf_counter() - started)
    seconds = sum(seconds_per_batch) / sample_batches * math.ceil(len(sentences) / batch_size)
    log.info("estimated: %s for %d sentences (%.1f sentences/s on %d sampled)", format_duration(seconds),
             len(sentences), len(sentences) / seconds, sample_batches * batch_size)
    return seconds


def evaluate_sts(
    model: SentenceTransformer,
    tasks: str | list[str] | None = "all",
    *,
    data_dir: str | None = None,
    batch_size: int = 32,
    precision: str = "auto",
    show_progress_bar: bool = True,
) -> StsResult:
    """Score ``model`` on STS tasks; every distinct sentence of all tasks is encoded once, batched."""
    return evaluate_sts_dimensions(model, tasks, [None], data_dir=data_dir, batch_size=batch_size,
                                   precision=precision, show_progress_bar=show_progress_bar)[0]


def evaluate_sts_dimensions(
    model: SentenceTransformer,
    tasks: str | list[str] | None,
    dimensions: Sequence[int | None],
    *,
    data_dir: str | None = None,
    batch_size: int = 32,
    precision: str = "auto",
    show_progress_bar: bool = True,
) -> list[StsResult]:
    """Score ``model`` with its vectors cut to each of ``dimensions`` (None: as the model returns them), from
    one encoding pass: a Matryoshka model's leading dimensions are its shorter vectors."""
    size = model.get_embedding_dimension()
    for dimension in dimensions:  # checked before the long part
        check_dimension(dimension, size)
    data_root = resolve_data_dir(data_dir)
    task_pairs = [load_sts_task(task, data_root) for task in parse_tasks(tasks)]
    sentences = list(dict.fromkeys(s for p in task_pairs for s in (*p.sentence1, *p.sentence2)))
    index = {sentence: i for i, sentence in enumerate(sentences)}
    precision = effective_precision(model, precision)
    log.info("encoding %d distinct sentences of %d tasks (%s)", len(sentences), len(task_pairs), precision)
    if show_progress_bar:
        log_encoding_estimate(model, sentences, batch_size, precision)

    start = time.perf_counter()
    full = encode(model, sentences, batch_size=batch_size, precision=precision, show_progress_bar=show_progress_bar)
    seconds = time.perf_counter() - start
    results = []
    for dimension in dimensions:
        vectors = torch.nn.functional.normalize(full[:, :dimension], dim=-1)
        scores = {}
        for pairs in task_pairs:
            a = vectors[[index[s] for s in pairs.sentence1]]
            b = vectors[[index[s] for s in pairs.sentence2]]
            scores[pairs.task] = spearman_x100((a * b).sum(-1).cpu().numpy(), pairs.scores)
        results.append(StsResult(
            scores=scores,
            pairs={p.task: len(p) for p in task_pairs},
            sources={p.task: p.source for p in task_pairs},
            precision=precision,
            prompt=prompt_of(model) or model.prompts.get(model.default_prompt_name or ""),  # template or named
            sentences_encoded=len(sentences),
            encode_seconds=round(seconds, 2),
            dimension=vectors.shape[1],
        ))
    return results


# --------------------------------------------------------------------------------------------- retrieval

RETRIEVAL_METRICS = {"nDCG@10": "cosine_ndcg@10", "MRR@10": "cosine_mrr@10", "recall@100": "cosine_recall@100"}


@dataclass
class RetrievalResult:
    scores: dict[str, float]  # metric -> x100, as the STS scores
    queries: int
    documents: int
    source: str
    precision: str
    seconds: float
    meta: dict = field(default_factory=dict)
    max_length: int | None = None  # the most tokens of a text the model read

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_retrieval(model: SentenceTransformer, folder: str, *, batch_size: int = 32, precision: str = "auto",
                       show_progress_bar: bool = True) -> RetrievalResult:
    """nDCG@10, MRR@10 and recall@100 of cosine search over a user's corpus, by sentence-transformers'
    InformationRetrievalEvaluator. Queries get the model's "query" prompt and documents its "document" prompt
    when it has them (a model trained with query_prompt / document_prompt)."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    data = load_retrieval_set(folder)
    queries: dict[str, Any] = dict(data.queries)  # the evaluator's types take images and audio too
    corpus: dict[str, Any] = dict(data.corpus)
    evaluator = InformationRetrievalEvaluator(
        queries, corpus, data.relevant, mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1],
        precision_recall_at_k=[100], map_at_k=[100], batch_size=batch_size, show_progress_bar=show_progress_bar,
        write_csv=False, name="retrieval",
        query_prompt_name="query" if model.prompts.get("query") else None,
        corpus_prompt_name="document" if model.prompts.get("document") else None)
    precision = effective_precision(model, precision)
    log.info("retrieval: %d queries against %d documents of up to %s tokens (%s)", len(evaluator.queries),
             len(data.corpus), model.max_seq_length, precision)
    if show_progress_bar:  # documents are long: say how long encoding them will take before it starts
        log_encoding_estimate(model, list(data.corpus.values()), batch_size, precision)
    started = time.perf_counter()
    with autocast(precision, model.device):
        metrics = evaluator(model)
    return RetrievalResult(
        scores={name: 100 * float(metrics[f"retrieval_{key}"]) for name, key in RETRIEVAL_METRICS.items()},
        queries=len(evaluator.queries), documents=len(data.corpus), source=data.source, precision=precision,
        seconds=round(time.perf_counter() - started, 2), max_length=model.max_seq_length)
