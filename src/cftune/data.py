"""Data: the STS task registry and validated loading of sentence pairs.

Every task has a hub dataset (for users with internet) and a local twin: ``<data_dir>/sts/<TASK>.jsonl``
with one ``{"sentence1": ..., "sentence2": ..., "score": ...}`` object per line.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cftune.errors import ConfigError, DataFormatError

DATA_DIR_ENV = "CFTUNE_DATA_DIR"


@dataclass(frozen=True)
class StsTask:
    name: str
    hub_id: str
    hub_subset: str | None = None
    split: str = "test"

    @property
    def local_file(self) -> str:
        return f"sts/{self.name}.jsonl"


# The 9 English STS tasks of the paper, in its table's order; hub copies are MTEB's.
STS_TASKS: dict[str, StsTask] = {
    task.name: task
    for task in [
        StsTask("STS12", "mteb/sts12-sts"),
        StsTask("STS13", "mteb/sts13-sts"),
        StsTask("STS14", "mteb/sts14-sts"),
        StsTask("STS15", "mteb/sts15-sts"),
        StsTask("STS16", "mteb/sts16-sts"),
        StsTask("STS17", "mteb/sts17-crosslingual-sts", hub_subset="en-en"),
        StsTask("STSBenchmark", "mteb/stsbenchmark-sts"),
        StsTask("BIOSSES", "mteb/biosses-sts"),
        StsTask("SICK-R", "mteb/sickr-sts"),
    ]
}


@dataclass(frozen=True)
class StsPairs:
    task: str
    source: str  # the file or hub dataset the pairs came from
    sentence1: list[str]
    sentence2: list[str]
    scores: list[float]

    def __len__(self) -> int:
        return len(self.scores)


def parse_tasks(spec: str | list[str] | None) -> list[StsTask]:
    """'all', None, 'STS12,SICK-R' or a list of names -> tasks (names are case-insensitive).

    ``STSBenchmark.dev`` is selectable too (never part of 'all'): it is where designs are chosen.
    """
    if spec is None or spec == "all":
        return list(STS_TASKS.values())
    names = spec.split(",") if isinstance(spec, str) else spec
    by_lower = {name.lower(): task for name, task in {**STS_TASKS, STSB_DEV.name: STSB_DEV}.items()}
    tasks = []
    for name in (n.strip() for n in names if n.strip()):
        if name.lower() not in by_lower:
            raise ConfigError(f"--tasks: unknown STS task {name!r}; known: {', '.join(STS_TASKS)}, "
                              f"{STSB_DEV.name}")
        tasks.append(by_lower[name.lower()])
    if not tasks:
        raise ConfigError("--tasks: no STS task given")
    return tasks


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """An explicit --data-dir, else $CFTUNE_DATA_DIR, else None (= the hub)."""
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    return Path(chosen).expanduser() if chosen else None


def _check_row(row: object, source: str, line: int) -> tuple[str, str, float]:
    if not isinstance(row, dict):
        raise DataFormatError(source, line, f"expected a JSON object, got {type(row).__name__}")
    for field in ("sentence1", "sentence2", "score"):
        if field not in row:
            raise DataFormatError(source, line, f"missing field {field!r}")
    for field in ("sentence1", "sentence2"):
        if not isinstance(row[field], str) or not row[field].strip():
            raise DataFormatError(source, line, f"field {field!r} must be a non-empty string, got {row[field]!r}")
    score = row["score"]
    # bool is an int in Python, but `true` is no similarity score.
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise DataFormatError(source, line, f"field 'score' must be a finite number, got {score!r}")
    return row["sentence1"], row["sentence2"], float(score)


def _pairs(task: str, source: str, rows: list[tuple[str, str, float]]) -> StsPairs:
    if not rows:
        raise DataFormatError(source, None, "no sentence pairs")
    s1, s2, scores = (list(column) for column in zip(*rows, strict=True))
    return StsPairs(task, source, s1, s2, scores)


def read_sts_jsonl(path: str | os.PathLike, task: str | None = None) -> StsPairs:
    """Read one JSONL file of pairs; any bad line raises DataFormatError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(str(path), None, "file not found")
    rows = []
    with path.open("rb") as handle:  # decode line by line, so a bad byte is reported at its own line
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataFormatError(str(path), line_no, f"not valid UTF-8 ({err.reason})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(str(path), line_no, f"invalid JSON ({err.msg})") from None
            rows.append(_check_row(row, str(path), line_no))
    return _pairs(task or path.stem, str(path), rows)


def load_sts_task(task: StsTask, data_dir: Path | None) -> StsPairs:
    """The task's pairs from ``data_dir`` when given, else from the hub."""
    if data_dir is not None:
        return read_sts_jsonl(data_dir / task.local_file, task.name)
    import datasets

    source = f"hub:{task.hub_id}" + (f"/{task.hub_subset}" if task.hub_subset else "")
    dataset = datasets.load_dataset(task.hub_id, task.hub_subset, split=task.split)
    return _pairs(task.name, source, [_check_row(row, source, i) for i, row in enumerate(dataset, start=1)])


# --------------------------------------------------------------------------------------------- training data

# Header names accepted for each column: SimCSE's nli_for_simcse.csv uses sent0,sent1,hard_neg.
TRIPLET_HEADERS = {"anchor": ("anchor", "sent0"), "positive": ("positive", "sent1"),
                   "negative": ("negative", "hard_neg")}
NLI_HUB = ("princeton-nlp/datasets-for-simcse", "nli_for_simcse.csv")
STSB_DEV = StsTask("STSBenchmark.dev", "mteb/stsbenchmark-sts", split="validation")


@dataclass
class Triplets:
    columns: dict[str, list[str]]  # anchor, positive[, negative][, negative_1..n]
    source: str
    skipped: list[str]  # "file:line: problem" of each row dropped by skip_bad_rows

    def __len__(self) -> int:
        return len(self.columns["anchor"])


def _triplet_columns(header: list[str], source: str) -> dict[str, str]:
    found = {}
    for column, names in TRIPLET_HEADERS.items():
        match = next((h for h in header if h in names), None)
        if match is not None:
            found[column] = match
    # several hard negatives: negative_1..n (as `cftune mine` writes them), in their numeric order
    numbered = [h for h in header if re.fullmatch(r"negative_[0-9]+", h)]
    found |= {name: name for name in sorted(numbered, key=lambda h: int(h.split("_")[1]))}
    for required in ("anchor", "positive"):
        if required not in found:
            raise DataFormatError(source, 1, f"no {required} column: expected one of "
                                             f"{TRIPLET_HEADERS[required]}, found {header}")
    return found


def _records(path: Path, txt_field: str = "text"):
    """(line or row number, record dict, or the error that spoiled the row), streamed, never loaded whole.

    .jsonl: one JSON object a line; .csv: a header line, then rows; .txt: each line is ``{txt_field: line}``;
    .parquet: its rows. Errors are decoded line by line, so they name their own line.
    """
    import csv

    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            for record in batch.to_pylist():
                number += 1
                yield number, record
        return
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            try:
                header = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as err:
                raise DataFormatError(str(path), 1, f"not valid UTF-8 ({err.reason})") from None
            while True:
                line_no = reader.line_num + 1
                try:
                    values = next(reader)
                except StopIteration:
                    return
                except (UnicodeDecodeError, csv.Error) as err:
                    yield line_no, err
                    continue
                if values and len(values) != len(header):
                    yield line_no, ValueError(f"expected {len(header)} fields ({','.join(header)}), "
                                              f"got {len(values)}")
                elif values:
                    yield line_no, dict(zip(header, values, strict=True))
        return
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
                if path.suffix != ".jsonl":
                    yield line_no, {txt_field: line}
                    continue
                if not line.strip():
                    continue
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"expected a JSON object, got {type(record).__name__}")
                yield line_no, record
            except (UnicodeDecodeError, ValueError) as err:
                yield line_no, err


def read_triplets(path: str | os.PathLike, *, skip_bad_rows: bool = False, max_rows: int | None = None) -> Triplets:
    """Read (anchor, positive[, negative]) rows from CSV or JSONL.

    A bad row (undecodable, wrong field count, empty text) raises DataFormatError naming file and line, or,
    with ``skip_bad_rows``, is dropped and reported in ``Triplets.skipped``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(str(path), None, "file not found")
    columns: dict[str, list[str]] | None = None
    names: dict[str, str] = {}
    skipped = []
    for line_no, row in _records(path):
        if columns is None and isinstance(row, dict):
            names = _triplet_columns(list(row), str(path))
            columns = {column: [] for column in names}
        try:
            if isinstance(row, Exception):
                raise ValueError(str(row))
            texts = {column: row.get(header) for column, header in names.items()}
            for column, text in texts.items():
                if not isinstance(text, str) or not text.strip():
                    raise ValueError(f"{column} ({names[column]}) must be a non-empty text, got {text!r}")
        except ValueError as err:
            if not skip_bad_rows:
                raise DataFormatError(str(path), line_no, str(err)) from None
            skipped.append(f"{path}:{line_no}: {err}")
            continue
        assert columns is not None  # made from the first row that is a record, as this one is
        for column, text in texts.items():
            columns[column].append(text)
        if max_rows is not None and len(columns["anchor"]) >= max_rows:
            break
    if not columns or not columns["anchor"]:
        raise DataFormatError(str(path), None, "no training rows")
    return Triplets(columns, str(path), skipped)


def load_training_data(spec: str, data_dir: str | None = None, *, skip_bad_rows: bool = False,
                       max_rows: int | None = None) -> Triplets:
    """'nli' -> the SimCSE NLI triplets (local <data_dir>/nli/*.csv, else the hub file); else a file path."""
    if spec != "nli":
        return read_triplets(spec, skip_bad_rows=skip_bad_rows, max_rows=max_rows)
    root = resolve_data_dir(data_dir)
    path: str | Path
    if root is not None:
        files = sorted((root / "nli").glob("*.csv"))
        if not files:
            raise DataFormatError(str(root / "nli"), None, "no *.csv triplet file (sent0,sent1,hard_neg)")
        path = files[0]
    else:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(NLI_HUB[0], NLI_HUB[1], repo_type="dataset")
    return read_triplets(path, skip_bad_rows=skip_bad_rows, max_rows=max_rows)


def load_sts_dev(data_dir: str | None = None) -> StsPairs:
    """STS-B dev, the paper's model-selection set (never a test set)."""
    root = resolve_data_dir(data_dir)
    if root is not None:
        return read_sts_jsonl(root / "sts" / "STSBenchmark.dev.jsonl", STSB_DEV.name)
    return load_sts_task(STSB_DEV, None)


# --------------------------------------------------------------------------------------------- texts to embed

TEXT_FORMATS = (".txt", ".jsonl", ".csv", ".parquet")


@dataclass
class TextRow:
    id: str
    text: str


def iter_texts(path: str | os.PathLike, *, column: str = "text", id_column: str | None = None,
               skip_bad_rows: bool = False, skipped: list[str] | None = None):
    """Stream TextRow(id, text) from .txt (a line each), .jsonl, .csv or .parquet.

    The id is ``id_column``'s value, else the line (row) number. A bad row (undecodable, missing column,
    empty text) raises DataFormatError naming file and line, or, with ``skip_bad_rows``, is appended to
    ``skipped`` as "file:line: problem" and left out.
    """
    path = Path(path)
    if path.suffix not in TEXT_FORMATS:
        raise DataFormatError(str(path), None, f"unknown input format; expected one of {', '.join(TEXT_FORMATS)}")
    if not path.is_file():
        raise DataFormatError(str(path), None, "file not found")
    first = True
    for number, record in _records(path, txt_field=column):
        if first and isinstance(record, dict) and path.suffix in (".csv", ".parquet"):
            for needed in (column, id_column):  # a table without the column: say so once, at its header
                if needed is not None and needed not in record:
                    raise DataFormatError(str(path), 1, f"no column {needed!r}; columns: {list(record)}")
            first = False
        try:
            if isinstance(record, Exception):
                raise ValueError(str(record))
            if column not in record:
                raise ValueError(f"missing field {column!r}")
            text = record[column]
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{column!r} must be a non-empty text, got {text!r}")
            row_id = str(record.get(id_column)) if id_column else str(number)
            if id_column and (record.get(id_column) is None or not row_id.strip()):
                raise ValueError(f"missing id in {id_column!r}")
        except ValueError as err:
            if not skip_bad_rows:
                raise DataFormatError(str(path), number, str(err)) from None
            if skipped is not None:
                skipped.append(f"{path}:{number}: {err}")
            continue
        yield TextRow(row_id, text)


# --------------------------------------------------------------------------------------------- retrieval


@dataclass
class RetrievalSet:
    """A user's search benchmark: queries, a corpus and which documents answer which query."""

    queries: dict[str, str]
    corpus: dict[str, str]
    relevant: dict[str, set[str]]  # query id -> ids of the documents judged relevant (score > 0)
    source: str


def _id_text_file(path: Path) -> dict[str, str]:
    """BEIR's corpus.jsonl / queries.jsonl: {"_id", "text"[, "title"]} a line; a title is put before the text."""
    if not path.is_file():
        raise DataFormatError(str(path), None, "file not found")
    texts: dict[str, str] = {}
    for line_no, record in _records(path):
        if isinstance(record, Exception):
            raise DataFormatError(str(path), line_no, str(record))
        key, text = record.get("_id"), record.get("text")
        if not isinstance(key, (str, int)) or not isinstance(text, str) or not text.strip():
            raise DataFormatError(str(path), line_no, 'expected {"_id": ..., "text": "..."} with a non-empty text')
        title = record.get("title")
        texts[str(key)] = f"{title} {text}" if isinstance(title, str) and title.strip() else text
    if not texts:
        raise DataFormatError(str(path), None, "no records")
    return texts


def _judgements(folder: Path) -> tuple[Path, list[tuple[int, str, str, float]]]:
    """qrels.jsonl ({"query-id", "corpus-id", "score"} a line) or BEIR's qrels/test.tsv (the same, tab-separated,
    under a header line) -> (file, [(line, query id, document id, score)])."""
    import csv

    rows = []
    if (folder / "qrels.jsonl").is_file():
        path = folder / "qrels.jsonl"
        for line_no, record in _records(path):
            if isinstance(record, Exception):
                raise DataFormatError(str(path), line_no, str(record))
            rows.append((line_no, record.get("query-id"), record.get("corpus-id"), record.get("score", 1)))
    elif (folder / "qrels" / "test.tsv").is_file():
        path = folder / "qrels" / "test.tsv"
        with path.open(encoding="utf-8", newline="") as handle:
            for line_no, values in enumerate(csv.reader(handle, delimiter="\t"), start=1):
                if line_no == 1 or not values:
                    continue  # the header: query-id, corpus-id, score
                if len(values) != 3:
                    raise DataFormatError(str(path), line_no, f"expected 3 tab-separated fields, got {len(values)}")
                rows.append((line_no, values[0], values[1], values[2]))
    else:
        raise DataFormatError(str(folder), None, "no relevance judgements: qrels.jsonl or qrels/test.tsv")
    parsed = []
    for line_no, query, document, score in rows:
        if query is None or document is None:
            raise DataFormatError(str(path), line_no, "needs query-id and corpus-id")
        try:
            parsed.append((line_no, str(query), str(document), float(score)))
        except (TypeError, ValueError):
            raise DataFormatError(str(path), line_no, f"score must be a number, got {score!r}") from None
    return path, parsed


def load_retrieval_set(folder: str | os.PathLike) -> RetrievalSet:
    """A folder in the BEIR layout: corpus.jsonl, queries.jsonl, and qrels/test.tsv or qrels.jsonl."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(str(folder), None, "not a folder (expected corpus.jsonl, queries.jsonl, qrels)")
    corpus, queries = _id_text_file(folder / "corpus.jsonl"), _id_text_file(folder / "queries.jsonl")
    path, judgements = _judgements(folder)
    relevant: dict[str, set[str]] = {}
    for line_no, query, document, score in judgements:
        for kind, key, known in (("query", query, queries), ("document", document, corpus)):
            if key not in known:
                raise DataFormatError(str(path), line_no, f"{kind} id {key!r} is not in the {kind} file")
        if score > 0:
            relevant.setdefault(query, set()).add(document)
    if not relevant:
        raise DataFormatError(str(path), None, "no judgement with a score above 0")
    return RetrievalSet(queries, corpus, relevant, str(folder))
