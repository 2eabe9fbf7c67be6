"""Data: the STS task registry and validated loading of sentence pairs.

Every task has a hub dataset (for users with internet) and a local twin: ``<data_dir>/sts/<TASK>.jsonl``
with one ``{"sentence1": ..., "sentence2": ..., "score": ...}`` object per line.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from cftune.errors import DataFormatError

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
    """'all', None, 'STS12,SICK-R' or a list of names -> tasks (names are case-insensitive)."""
    if spec is None or spec == "all":
        return list(STS_TASKS.values())
    names = spec.split(",") if isinstance(spec, str) else spec
    by_lower = {name.lower(): task for name, task in STS_TASKS.items()}
    tasks = []
    for name in (n.strip() for n in names if n.strip()):
        if name.lower() not in by_lower:
            raise ValueError(f"unknown STS task {name!r}; known: {', '.join(STS_TASKS)}")
        tasks.append(by_lower[name.lower()])
    if not tasks:
        raise ValueError("no STS task given")
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
    s1, s2, scores = (list(column) for column in zip(*rows))
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
