"""Knowledge distillation: a teacher's vectors, cached on disk once, and the losses that teach them.

The teacher is any sentence-transformers model (EmbeddingGemma, all-mpnet-base-v2, ...). Its vectors of the
training texts are computed once and kept in the cache (``$CFTUNE_CACHE/teacher-vectors/KEY/``), keyed by the
teacher's weights (sha256), its prompt and precision, and each text (sha1), so every later run and every
student reuses them. The cache is three files:

    meta.json     what the vectors are: teacher, prompt, precision, dimension
    index.txt     one sha1 of a text per row, 41 bytes a line (a cut last line is recognised by its length)
    vectors.f32   the vectors, float32, one row per line of index.txt, read memory-mapped

A batch's vectors are appended before its index lines, so a kill loses at most that batch: on the next open,
both files are cut back to the rows they both hold complete.

The losses (sentence-transformers' where it has them):
    cosine / mse  EmbedDistillLoss: each column's student vector against the teacher's vector of that text
                  (Kim et al. 2023, EmbedDistill, arXiv 2301.12005). A student of another size gets a linear
                  map to the teacher's space, a sentence-transformers Dense module saved with the model and
                  fitted by ridge regression before training (a random map would pull a good student apart).
    kl            the student's in-batch similarity distribution (each anchor against every candidate of the
                  batch) matched to the teacher's, KL at InfoNCE's temperature (DistillKLDivLoss does it per row).
    similarity    the student's cosine of every pair of texts in the batch against the teacher's, squared
                  difference on InfoNCE's logit scale (relational distillation; no map needed either).
Either is added to the InfoNCE loss on the labelled columns: contrastive_weight * InfoNCE + distill_weight *
distillation, from one forward pass.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from cftune.aliases import cache_dir
from cftune.config import TrainConfig
from cftune.errors import ConfigError
from cftune.io import FolderLock, file_sha256, format_duration, write_atomic
from cftune.sources import check_teacher, named_prompts_of

log = logging.getLogger(__name__)
ROW = 41  # bytes of one index.txt line: a sha1 in hex and a line break
VECTOR_LOSSES = ("cosine", "mse")  # the distill_loss values that match vectors (across sizes: through a map)


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


# --------------------------------------------------------------------------------------------- the teacher


def teacher_folder(name: str) -> Path:
    """The local folder of a teacher: an alias's or a folder as it is, a hub id's downloaded snapshot."""
    from cftune.sources import resolve_source

    source, _ = resolve_source(name)
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(source))


def weights_digest(folder: Path) -> str:
    """sha256 over the teacher's weight files, remembered by (path, size, mtime) so it is computed once."""
    memo_path = cache_dir() / "teacher-vectors" / "weights-sha256.json"
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt") and p.is_file())
    if not files:
        raise ConfigError(f"teacher {folder}: no weight files (*.safetensors, *.bin)")
    for path in files:
        stat = path.stat()
        key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        if key not in memo:
            memo[key] = file_sha256(path)
        digest.update(f"{path.relative_to(folder)}:{memo[key]}\n".encode())
    write_atomic(memo_path, json.dumps(memo, indent=1) + "\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class Teacher:
    """What the cached vectors are of: the teacher's folder, its prompt and the precision it ran in."""

    name: str
    folder: Path
    prompt_name: str | None
    precision: str

    @classmethod
    def of(cls, name: str, prompt_name: str | None, precision: str = "auto") -> Teacher:
        """Checked before any work: the teacher exists and has the prompt asked for."""
        from cftune.encoding import resolve_precision

        check_teacher(name, prompt_name)
        folder = teacher_folder(name)
        return cls(name, folder, prompt_name, resolve_precision(precision, "cuda" if torch.cuda.is_available()
                                                                else "cpu"))

    @functools.cached_property
    def prompt(self) -> str:
        return named_prompts_of(self.folder).get(self.prompt_name or "", "")

    @functools.cached_property
    def key(self) -> str:
        """One per weights, prompt and precision (the weights hashed once per Teacher)."""
        return hashlib.sha256(f"{weights_digest(self.folder)}|{self.prompt}|{self.precision}".encode()).hexdigest()[:20]

    @property
    def cache_folder(self) -> Path:
        """Where this teacher's vectors are kept ($CFTUNE_CACHE as it is now)."""
        return cache_dir() / "teacher-vectors" / self.key

    def cache(self) -> TeacherCache:
        """The cache as it is on disk now."""
        return TeacherCache(self.cache_folder, {"teacher": self.name, "prompt_name": self.prompt_name,
                                                "prompt": self.prompt, "precision": self.precision})

    def load(self) -> SentenceTransformer:
        from cftune.models import load_embedder, prepare_for_inference

        return prepare_for_inference(load_embedder(str(self.folder)), precision=self.precision)


# --------------------------------------------------------------------------------------------- the cache


class TeacherCache:
    """The vectors of one teacher, prompt and precision, by text; appended batch by batch, read memory-mapped."""

    def __init__(self, folder: Path, meta: dict):
        self.folder, self.meta = folder, meta
        self.rows: dict[str, int] = {}
        self.dimension: int | None = None
        self.appended = 0  # rows this object added (the texts the teacher embedded since it was opened)
        self._open()

    @property
    def index_path(self) -> Path:
        return self.folder / "index.txt"

    @property
    def vectors_path(self) -> Path:
        return self.folder / "vectors.f32"

    def _open(self) -> None:
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            return
        self.dimension = int(json.loads(meta_path.read_text(encoding="utf-8"))["dimension"])
        index = self.index_path.read_bytes() if self.index_path.is_file() else b""
        vector_bytes = self.vectors_path.stat().st_size if self.vectors_path.is_file() else 0
        rows = min(len(index) // ROW, vector_bytes // (4 * self.dimension))
        if len(index) != rows * ROW or vector_bytes != rows * 4 * self.dimension:  # a kill mid-batch
            log.info("teacher cache %s: keeping the %d complete rows of a run that was stopped", self.folder, rows)
            with self.index_path.open("r+b") as handle:
                handle.truncate(rows * ROW)
            with self.vectors_path.open("r+b") as handle:
                handle.truncate(rows * 4 * self.dimension)
        self.rows = {index[i * ROW:i * ROW + 40].decode(): i for i in range(rows)}

    def missing(self, texts: list[str]) -> list[str]:
        """The distinct texts that have no vector yet, in their first order."""
        return [t for t in dict.fromkeys(texts) if text_key(t) not in self.rows]

    def append(self, texts: list[str], vectors: np.ndarray) -> None:
        """Add one batch: vectors first, then their index lines (so a kill between leaves no index line
        without its vector)."""
        if self.dimension is None:
            self.dimension = int(vectors.shape[1])
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomic(self.folder / "meta.json", json.dumps({**self.meta, "dimension": self.dimension},
                                                               indent=2) + "\n")
        with self.vectors_path.open("ab") as handle:
            handle.write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        keys = [text_key(t) for t in texts]
        with self.index_path.open("ab") as handle:
            handle.write("".join(k + "\n" for k in keys).encode())
        start = len(self.rows)
        self.rows.update({key: start + i for i, key in enumerate(keys)})
        self.appended += len(keys)

    def matrix(self) -> np.ndarray:
        """Every cached vector, memory-mapped (rows x dimension): nothing is read until it is used."""
        assert self.dimension is not None, "empty cache"
        return np.memmap(self.vectors_path, dtype=np.float32, mode="r", shape=(len(self.rows), self.dimension))

    def row_of(self, texts: list[str]) -> np.ndarray:
        return np.array([self.rows[text_key(t)] for t in texts], dtype=np.int64)


def fill_cache(teacher: Teacher, texts: list[str], *, batch_size: int = 32, chunk: int = 256,
               load=None) -> TeacherCache:
    """Teacher vectors of every text not cached yet, longest first in chunks (similar lengths pad little),
    each chunk appended as it is done; the teacher is loaded only if something is missing. Logs progress
    with an estimate of the time left. ``load``: makes the teacher model (tests count its calls)."""
    from tqdm.auto import tqdm

    from cftune.encoding import encode

    with FolderLock(teacher.cache_folder, "teacher cache"):
        cache = teacher.cache()  # opened under the lock: another process may have filled it meanwhile
        todo = sorted(cache.missing(texts), key=len, reverse=True)
        if not todo:
            log.info("teacher vectors: all %d texts cached in %s", len(set(texts)), cache.folder)
            return cache
        model = (load or teacher.load)()
        log.info("teacher vectors: %d of %d texts to encode with %s into %s", len(todo), len(set(texts)),
                 teacher.name, cache.folder)
        started, done = time.perf_counter(), 0
        with tqdm(total=len(todo), desc="teacher vectors", unit=" texts") as progress:
            for start in range(0, len(todo), chunk):
                part = todo[start:start + chunk]
                vectors = encode(model, part, batch_size=batch_size, precision=teacher.precision,
                                 prompt_name=teacher.prompt_name).numpy()
                cache.append(part, vectors)
                done += len(part)
                progress.update(len(part))
                if start == 0 or (start // chunk) % 20 == 0:
                    seconds = time.perf_counter() - started
                    log.info("teacher vectors: %d/%d in %s, about %s to go", done, len(todo),
                             format_duration(seconds), format_duration(seconds / done * (len(todo) - done)))
    return cache


# --------------------------------------------------------------------------------------------- losses


def in_batch_kl(student: list[torch.Tensor], teacher: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """KL(teacher || student) of each anchor's similarity distribution over every candidate in the batch
    (all positives and negatives), cosine / temperature: on the logits InfoNCE uses, so of its size.

    Not scaled by temperature^2 (Hinton et al. 2015; DistillKLDivLoss): that keeps a soft (T > 1) target's
    gradient in size; at InfoNCE's T = 0.05 it shrank the term 400-fold, and training was the same as
    without a teacher (results/distill)."""
    def scores(columns: list[torch.Tensor]) -> torch.Tensor:
        anchors = torch.nn.functional.normalize(columns[0], dim=-1)
        if len(columns) == 1:  # plain texts: each against the batch's other texts (itself would always win)
            others = ~torch.eye(len(anchors), dtype=torch.bool, device=anchors.device)
            return (anchors @ anchors.T / temperature)[others].view(len(anchors), -1)
        candidates = torch.nn.functional.normalize(torch.cat(columns[1:]), dim=-1)
        return anchors @ candidates.T / temperature

    target = torch.softmax(scores(teacher).float(), dim=1)
    log_probs = torch.log_softmax(scores(student).float(), dim=1)
    return torch.nn.functional.kl_div(log_probs, target, reduction="batchmean")


def in_batch_similarity_mse(student: list[torch.Tensor], teacher: list[torch.Tensor],
                             temperature: float) -> torch.Tensor:
    """Mean squared difference between the student's and the teacher's cosine similarity of every pair of
    distinct texts in the batch (all columns), on InfoNCE's logit scale (cosine / temperature).

    What STS scores is the cosine of a pair, so this teaches it directly, for all B x B pairs a batch holds, not
    only each anchor's ranking (kl) or the vectors (cosine/mse, which need a map across sizes). Relational
    knowledge distillation (Park et al. 2019, arXiv 1904.05068) in its simplest form; sentence-transformers'
    CosineSimilarityLoss is the same regression for one given pair at a time."""
    def logits(columns: list[torch.Tensor]) -> torch.Tensor:
        texts = torch.nn.functional.normalize(torch.cat(columns).float(), dim=-1)
        return texts @ texts.T / temperature

    student_logits, teacher_logits = logits(student), logits(teacher)
    pairs = ~torch.eye(len(student_logits), dtype=torch.bool, device=student_logits.device)
    return torch.nn.functional.mse_loss(student_logits[pairs], teacher_logits[pairs])


class DistillationLoss(torch.nn.Module):
    """contrastive_weight * InfoNCE (the labelled columns) + distill_weight * distillation (the teacher's
    vectors of the same texts), from one forward pass.

    The dataset's ``label`` column holds each row's number; ``teacher_rows[row]`` are the cache rows of its
    texts, one per column, looked up in the memory-mapped cache as each batch comes.
    """

    def __init__(self, model: SentenceTransformer, contrastive: torch.nn.Module | None, config: TrainConfig,
                 vectors: np.ndarray, teacher_rows: np.ndarray):
        from sentence_transformers.sentence_transformer.losses import EmbedDistillLoss

        super().__init__()
        self.model, self.config = model, config
        self.contrastive: typing.Any = contrastive  # MultipleNegativesRankingLoss (its compute_loss_from_embeddings)
        self.vectors, self.teacher_rows = vectors, torch.from_numpy(teacher_rows)
        metric = typing.cast(typing.Literal["cosine", "mse"], config.distill_loss)
        self.embedding = EmbedDistillLoss(model, distance_metric=metric) \
            if config.distill_loss in VECTOR_LOSSES else None
        self.relational = in_batch_similarity_mse if config.distill_loss == "similarity" else in_batch_kl

    def teacher_vectors(self, labels: torch.Tensor) -> list[torch.Tensor]:
        rows = self.teacher_rows[labels.cpu()]  # batch x columns
        block = torch.from_numpy(np.asarray(self.vectors[rows.numpy().reshape(-1)]))
        block = block.view(*rows.shape, -1).to(self.model.device)
        return [block[:, i] for i in range(rows.shape[1])]

    def forward(self, sentence_features, labels: torch.Tensor) -> torch.Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels)

    def compute_loss_from_embeddings(self, embeddings: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        teacher = self.teacher_vectors(labels)
        if self.embedding is not None:
            distill = self.embedding.compute_loss_from_embeddings(embeddings, teacher)
        else:
            distill = self.relational(embeddings, teacher, self.config.distill_temperature)
        loss = self.config.distill_weight * distill
        if self.contrastive is not None and self.config.contrastive_weight:
            loss = loss + self.config.contrastive_weight * self.contrastive.compute_loss_from_embeddings(
                embeddings, None)
        return loss


# --------------------------------------------------------------------------------------------- projection


def fit_projection(student: SentenceTransformer, texts: list[str], targets: np.ndarray, *, ridge: float = 1e-2,
                   precision: str = "auto") -> torch.nn.Module:
    """A Dense module mapping the student's vectors onto the teacher's, fitted by ridge regression on
    ``texts`` (the body as it is, before training): W = (S'S + lambda I)^-1 S'T, with a bias.

    lambda is ``ridge`` times S'S's mean eigenvalue, so the shrinkage is the same whatever the student's scale:
    a fixed ridge * n shrank a normalized student's map (MiniLM, entries ~0.05) so hard that it lost 12 points
    of STS-B dev before training began (results/distill)."""
    from sentence_transformers.base.modules import Dense

    from cftune.encoding import encode

    features = encode(student, texts, precision=precision).double()
    features = torch.cat([features, torch.ones(len(texts), 1, dtype=torch.float64)], dim=1)  # the bias column
    target = torch.from_numpy(np.asarray(targets, dtype=np.float64))
    gram = features.T @ features
    gram += ridge * torch.trace(gram) / len(gram) * torch.eye(len(gram), dtype=torch.float64)
    solution = torch.linalg.solve(gram, features.T @ target).float()  # (student + 1) x teacher
    cosine = torch.nn.functional.cosine_similarity(features.float() @ solution, target.float()).mean()
    log.info("projection %d -> %d fitted on %d texts: mean cosine to the teacher %.3f",
             features.shape[1] - 1, target.shape[1], len(texts), float(cosine))
    dense = Dense(features.shape[1] - 1, target.shape[1], activation_function=torch.nn.Identity(),
                  init_weight=solution[:-1].T.contiguous(), init_bias=solution[-1].contiguous())
    return typing.cast(torch.nn.Module, dense.to(student.device))


# --------------------------------------------------------------------------------------------- training


@dataclass
class Distillation:
    """The teacher's side of a run: its cached vectors and, for each training row, the rows of its texts."""

    vectors: np.ndarray  # memory-mapped: cache rows x teacher dimension
    teacher_rows: np.ndarray  # training rows x columns
    texts: int = 0  # distinct training texts
    encoded: int = 0  # of them, those the teacher embedded for this run (the others were cached)

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1])


def prepare(config: TrainConfig, columns: dict[str, list[str]]) -> Distillation:
    """Teacher vectors of every training text (computed where the cache lacks them)."""
    teacher = Teacher.of(typing.cast(str, config.teacher), config.teacher_prompt, config.precision)
    texts = [t for column in columns.values() for t in column]
    cache = fill_cache(teacher, texts)
    rows = np.stack([cache.row_of(column) for column in columns.values()], axis=1)
    return Distillation(cache.matrix(), rows, len(set(texts)), cache.appended)


def add_projection(model: SentenceTransformer, distillation: Distillation, columns: dict[str, list[str]],
                   config: TrainConfig, sample: int = 2048) -> bool:
    """For embedding distillation into a teacher of another size: append a fitted Dense map to the student
    (saved with it, so the saved model embeds in the teacher's space). Returns whether one was added."""
    if config.distill_loss not in VECTOR_LOSSES or model.get_embedding_dimension() == distillation.dimension:
        return False
    anchors = columns["anchor"][:sample]
    targets = distillation.vectors[distillation.teacher_rows[:len(anchors), 0]]
    model.add_module(str(len(model)), fit_projection(model, anchors, targets, precision=config.precision))
    return True
