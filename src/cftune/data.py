"""Data: the STS task registry and validated loading of sentence pairs.

Every task has a hub dataset (for users with internet) and a local twin: ``<data_dir>/sts/<TASK>.jsonl``
with one ``{"sentence1": ..., "sentence2": ..., "score": ...}`` object per line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cftune.errors import ConfigError, DataFormatError

log = logging.getLogger(__name__)
DATA_DIR_ENV = "CFTUNE_DATA_DIR"


@dataclass(frozen=True)
class StsTask:
    name: str
    hub_id: str
    hub_subset: str | None = None
    split: str = "test"
    revision: str | None = None  # MTEB's pinned revision of the hub dataset (what MTEB's results are on)

    @property
    def local_file(self) -> str:
        return f"sts/{self.name}.jsonl"


# The 9 English STS tasks of the paper, in its table's order; hub copies are MTEB's.
STS_TASKS: dict[str, StsTask] = {
    task.name: task
    for task in [
        StsTask("STS12", "mteb/sts12-sts", revision="a0d554a64d88156834ff5ae9920b964011b16384"),
        StsTask("STS13", "mteb/sts13-sts", revision="7e90230a92c190f1bf69ae9002b8cea547a64cca"),
        StsTask("STS14", "mteb/sts14-sts", revision="6031580fec1f6af667f0bd2da0a551cf4f0b2375"),
        StsTask("STS15", "mteb/sts15-sts", revision="ae752c7c21bf194d8b67fd573edf7ae58183cbe3"),
        StsTask("STS16", "mteb/sts16-sts", revision="4d8694f8f0e0100860b497b999b3dbed754a0513"),
        StsTask("STS17", "mteb/sts17-crosslingual-sts", hub_subset="en-en",
                revision="faeb762787bd10488a50c8b5be4a3b82e411949c"),
        StsTask("STSBenchmark", "mteb/stsbenchmark-sts", revision="b0fddb56ed78048fa8b90373c8a3cfc37b684831"),
        StsTask("BIOSSES", "mteb/biosses-sts", revision="d3fb88f8f02e40887cd149695127462bbcf29b4a"),
        StsTask("SICK-R", "mteb/sickr-sts", revision="20a6d6f312dd54037fe07a32d58e5e168867909d"),
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
            raise ConfigError(f"unknown STS task {name!r}; known: {', '.join(STS_TASKS)}, {STSB_DEV.name}",
                              "tasks")
        tasks.append(by_lower[name.lower()])
    if not tasks:
        raise ConfigError("no STS task given", "tasks")
    return tasks


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """An explicit --data-dir, else $CFTUNE_DATA_DIR, else None (= the hub)."""
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    return Path(chosen).expanduser() if chosen else None


def existing_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """``resolve_data_dir``, refusing a folder that does not exist (a typo must not send cftune to the hub)."""
    root = resolve_data_dir(data_dir)
    if root is not None and not root.is_dir():
        raise DataFormatError(str(root), None, "data folder not found (`data_dir` or $CFTUNE_DATA_DIR)")
    return root


def check_sts_inputs(spec: str | list[str] | None, data_dir: str | os.PathLike | None) -> list[StsTask]:
    """The tasks named, with their files where a data folder is given: before any model loads."""
    tasks, root = parse_tasks(spec), existing_data_dir(data_dir)
    for task in tasks:
        if root is not None and not (root / task.local_file).is_file():
            raise DataFormatError(str(root / task.local_file), None, f"file not found (the {task.name} pairs)")
    return tasks


def _hub_failure(what: str, err: Exception, instead: str = "pass `data_dir` with a local copy (the layout of "
                                                            "../shared/data)") -> DataFormatError:
    """A one-line error for hub data that could not be fetched, saying what to do instead."""
    from huggingface_hub import constants

    why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else f"the hub answered: {str(err).splitlines()[0]}"
    return DataFormatError(f"hub:{what}", None, f"not in the local Hugging Face cache and {why}; {instead}, or "
                                                "go online once")


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
    try:
        dataset = datasets.load_dataset(task.hub_id, task.hub_subset, split=task.split, revision=task.revision)
    except (OSError, ConnectionError, datasets.exceptions.DatasetNotFoundError) as err:
        raise _hub_failure(source[4:], err) from None
    return _pairs(task.name, source, [_check_row(row, source, i) for i, row in enumerate(dataset, start=1)])


# --------------------------------------------------------------------------------------------- training data

# Header names accepted for each column: SimCSE's nli_for_simcse.csv uses sent0,sent1,hard_neg.
TRIPLET_HEADERS: dict[str, tuple[str, ...]] = {
    "anchor": ("anchor", "sent0"), "positive": ("positive", "sent1"), "negative": ("negative", "hard_neg")}
# scored pairs (for the CoSENT and AnGLE losses): the STS files' own names, and sentence-transformers'
SCORED_HEADERS: dict[str, tuple[str, ...]] = {
    "sentence1": ("sentence1", "sentence_1"), "sentence2": ("sentence2", "sentence_2"), "score": ("score", "label")}
# distillation from a teacher needs no labels: plain texts (a .txt line each, or a text column) as anchors, and
# positives and negatives where the file has them
TEXT_HEADERS: dict[str, tuple[str, ...]] = {**TRIPLET_HEADERS, "anchor": ("anchor", "sent0", "text", "sentence")}
TRIPLET_FORMATS = (".csv", ".jsonl", ".parquet")


@dataclass(frozen=True)
class TrainingFormat:
    """What the training rows hold: anchor/positive[/negative] texts, or scored pairs (``scored``:
    sentence1, sentence2, score); ``columns`` names the file's column for a role where its names are not ours
    (role -> column, e.g. {"anchor": "question"})."""

    columns: dict[str, str] = dataclasses.field(default_factory=dict)
    scored: bool = False
    texts: bool = False  # positives optional: plain texts, one a row, do (distillation from a teacher only)

    @property
    def required(self) -> tuple[str, ...]:
        return ("sentence1", "sentence2", "score") if self.scored else ("anchor",) if self.texts else \
            ("anchor", "positive")

    @property
    def headers(self) -> dict[str, tuple[str, ...]]:
        """The column names each role is found under."""
        return SCORED_HEADERS if self.scored else TEXT_HEADERS if self.texts else TRIPLET_HEADERS

    @property
    def formats(self) -> tuple[str, ...]:
        return (*TRIPLET_FORMATS, ".txt") if self.texts else TRIPLET_FORMATS


NLI_HUB = ("princeton-nlp/datasets-for-simcse", "nli_for_simcse.csv")
STSB_DEV = StsTask("STSBenchmark.dev", "mteb/stsbenchmark-sts", split="validation")


@dataclass
class Triplets:
    """Training rows by role: anchor, positive[, negative][, negative_1..n] texts, or sentence1, sentence2
    (texts) and score (floats)."""

    columns: dict[str, list]
    source: str
    skipped: list[str]  # "file:line: problem" of each row dropped by skip_bad_rows

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))


def _column_roles(header: list[str], source: str, form: TrainingFormat) -> dict[str, str]:
    """role -> the file's column: as ``form.columns`` says, else by cftune's names, else (a file with none of
    them) by position, as sentence-transformers takes a dataset's columns."""
    if form.columns:
        if missing := [column for column in form.columns.values() if column not in header]:
            raise DataFormatError(source, 1, f"columns: no column {missing[0]!r} here; found {header}")
        found = dict(form.columns)
    else:
        found = {role: match for role, names in form.headers.items()
                 if (match := next((h for h in header if h in names), None)) is not None}
        if not form.scored:  # several hard negatives: negative_1..n (as `cftune mine` writes them), in order
            numbered = [h for h in header if re.fullmatch(r"negative_[0-9]+", h)]
            found |= {name: name for name in sorted(numbered, key=lambda h: int(h.split("_")[1]))}
        if not found and len(header) >= len(form.required):
            roles = list(form.required) if form.scored else \
                ["anchor", "positive"] + [f"negative_{i}" for i in range(1, len(header) - 1)]
            found = dict(zip(roles, header, strict=False))
            log.info("%s: none of cftune's column names; read by position as %s", source,
                     ", ".join(f"{role}={column}" for role, column in found.items()))
    for role in form.required:
        if role not in found:
            names = form.headers[role]
            raise DataFormatError(source, 1, f"no {role} column: expected one of {names}, found {header} "
                                             f"(name it with columns: {role}=COLUMN)")
    return found


def _undecodable(*fields: str) -> str | None:
    """What a row read with errors="surrogateescape" says about an invalid UTF-8 byte in it, if it has one."""
    for field in fields:
        if bad := re.search("[\udc80-\udcff]", field):
            return f"not valid UTF-8 (byte 0x{ord(bad[0]) - 0xDC00:02x})"
    return None


def _records(path: Path, txt_field: str = "text"):
    """(line or row number, record dict, or the error that spoiled the row), streamed, never loaded whole.

    .jsonl: one JSON object a line; .csv: a header line, then rows; .txt: each line is ``{txt_field: line}``;
    .parquet: its rows. An undecodable byte spoils its own row only, which names its own line.
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
        # surrogateescape: a bad byte becomes one marked character of its own row, found below; a strict
        # decoder would fail on a whole 8 KiB block, and the rows around the byte would be lost or misnumbered
        with path.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
            reader = csv.reader(handle)
            try:
                header = next(reader)
            except StopIteration:
                return
            if problem := _undecodable(*header):
                raise DataFormatError(str(path), 1, problem)
            while True:
                line_no = reader.line_num + 1  # where the next row starts (a quoted field may span lines)
                try:
                    values = next(reader)
                except StopIteration:
                    return
                except csv.Error as err:
                    yield line_no, err
                    continue
                if problem := _undecodable(*values):
                    yield line_no, ValueError(problem)
                elif values and len(values) != len(header):
                    yield line_no, ValueError(f"expected {len(header)} fields ({','.join(header)}), "
                                              f"got {len(values)}")
                elif values:
                    yield line_no, dict(zip(header, values, strict=True))
        return
    with path.open("rb") as handle:  # line by line, so an error names its own line
        for line_no, raw in enumerate(handle, start=1):
            line = raw.decode("utf-8", errors="surrogateescape").rstrip("\r\n")
            if problem := _undecodable(line):
                yield line_no, ValueError(problem)
            elif path.suffix != ".jsonl":
                yield line_no, {txt_field: line}
            elif line.strip():
                yield line_no, _json_object(line)


def _json_object(line: str) -> dict | ValueError:
    try:
        record = json.loads(line)
    except ValueError as err:
        return ValueError(f"invalid JSON ({err})")
    return record if isinstance(record, dict) else ValueError(f"expected a JSON object, got {type(record).__name__}")


def _role_value(role: str, value: object) -> str | float:
    """A row's value for a role, checked: a non-empty text, or (score) a finite number."""
    if role == "score":
        try:
            number = float(value)  # type: ignore[arg-type]  # a CSV's text, or a JSON number
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, bool) or not math.isfinite(number):
            raise ValueError(f"score must be a number, got {value!r}")
        return number
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty text, got {value!r}")
    return value


def read_triplets(path: str | os.PathLike | list[Path], *, form: TrainingFormat | None = None,
                  skip_bad_rows: bool = False, max_rows: int | None = None) -> Triplets:
    """Read training rows (see ``TrainingFormat``) from CSV, JSONL or Parquet files (several: one after another,
    with the columns of the first).

    A bad row (undecodable, wrong field count, empty text, a score that is not a number) raises DataFormatError
    naming file and line, or, with ``skip_bad_rows``, is dropped and reported in ``Triplets.skipped``.
    """
    form = form or TrainingFormat()
    paths = [Path(p) for p in path] if isinstance(path, list) else [Path(path)]
    for file in paths:
        if file.suffix not in form.formats:
            raise DataFormatError(str(file), None, f"unknown training data format; expected {', '.join(form.formats)}"
                                  + ("" if form.texts else " (a .txt of plain texts trains only from a teacher, "
                                                           "with contrastive_weight 0)"))
        if not file.is_file():
            raise DataFormatError(str(file), None, "file not found")
    columns: dict[str, list] | None = None
    names: dict[str, str] = {}
    skipped = []
    for file in paths:
        for line_no, row in _records(file):
            if columns is None and isinstance(row, dict):
                names = _column_roles(list(row), str(file), form)
                columns = {role: [] for role in names}
            try:
                if isinstance(row, Exception):
                    raise ValueError(str(row))
                values = {}
                for role, header in names.items():
                    try:
                        values[role] = _role_value(role, row.get(header))
                    except ValueError as err:
                        raise ValueError(f"{role} ({header}) {err}") from None
            except ValueError as err:
                if not skip_bad_rows:
                    raise DataFormatError(str(file), line_no, str(err)) from None
                skipped.append(f"{file}:{line_no}: {err}")
                continue
            assert columns is not None  # made from the first row that is a record, as this one is
            for role, value in values.items():
                columns[role].append(value)
            if max_rows is not None and len(next(iter(columns.values()))) >= max_rows:
                break
        else:
            continue
        break  # max_rows reached
    source = str(paths[0]) if len(paths) == 1 else f"{paths[0].parent} ({len(paths)} files)"
    if not columns or not next(iter(columns.values())):
        raise DataFormatError(source, None, "no training rows")
    return Triplets(columns, source, skipped)


def load_training_data(spec: str, data_dir: str | None = None, *, form: TrainingFormat | None = None,
                       skip_bad_rows: bool = False, max_rows: int | None = None) -> Triplets:
    """'nli' -> the SimCSE NLI triplets (local <data_dir>/nli/*.csv, else the hub file); a file; a BEIR
    folder (``retrieval_pairs``); a dataset folder or hub dataset id (``training_files``)."""
    if is_retrieval_folder(spec):
        if form is not None and (form.scored or form.columns):
            raise DataFormatError(spec, None, "a retrieval folder gives (query, document) pairs: it takes loss "
                                              "infonce and no columns setting")
        pairs = retrieval_pairs(load_retrieval_set(spec, split="train"))
        return pairs if max_rows is None else \
            Triplets({name: texts[:max_rows] for name, texts in pairs.columns.items()}, pairs.source, [])
    return read_triplets(training_files(spec, data_dir), form=form, skip_bad_rows=skip_bad_rows,
                         max_rows=max_rows)


LOCAL_DATA = "pass a local .csv/.jsonl/.parquet file or dataset folder instead"
HUB_DATASET = re.compile(r"[\w.-]+/[\w.-]+(:[\w.-]+)?")  # org/name, or org/name:config


def training_files(spec: str, data_dir: str | None = None, *, download: bool = True) -> list[Path]:
    """The files ``load_training_data`` reads: a file; the training split of a dataset folder laid out as on
    the hub (``dataset_split_files``); a hub dataset id (``org/name`` or ``org/name:config``: its files, fetched
    once into the Hugging Face cache); or 'nli' (``training_file``)."""
    path = Path(spec)
    if spec == "nli" or path.is_file() or path.suffix in (*TRIPLET_FORMATS, ".txt"):
        return [training_file(spec, data_dir, download=download)]
    if path.is_dir():
        return dataset_split_files(path, spec)
    if not HUB_DATASET.fullmatch(spec):
        raise DataFormatError(spec, None, "not found: expected nli, a .csv/.jsonl/.parquet file, a dataset folder "
                                          "or a hub dataset id (org/name or org/name:config)")
    repo, _, config = spec.partition(":")
    return dataset_split_files(hub_dataset_folder(repo, config, download=download), spec, config)


def hub_dataset_folder(repo: str, config: str = "", *, download: bool = True) -> Path:
    """A hub dataset's data files, from the local cache or (``download``, online) fetched into it; a repo the
    hub does not have, or one that cannot be fetched, is a one-line error."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    patterns = [f"{config + '/' if config else ''}**{suffix}" for suffix in TRIPLET_FORMATS] + \
        [f"*{suffix}" for suffix in TRIPLET_FORMATS]
    try:
        return Path(snapshot_download(repo, repo_type="dataset", allow_patterns=patterns,
                                      local_files_only=not download or constants.HF_HUB_OFFLINE))
    except GatedRepoError:
        raise DataFormatError(f"hub:{repo}", None, "gated on the Hugging Face hub: accept its terms on its page, "
                                                   "then log in (`hf auth login` or $HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise DataFormatError(f"hub:{repo}", None, "no such dataset on the Hugging Face hub (check the spelling; a "
                                                   "private one needs `hf auth login` or $HF_TOKEN)") from None
    except LocalEntryNotFoundError as err:  # offline, or not asked to download, and not in the cache
        if not download and not constants.HF_HUB_OFFLINE:
            return Path(repo)  # fetched when training starts
        raise _hub_failure(repo, err, LOCAL_DATA) from None
    except (HfHubHTTPError, OSError) as err:  # a refusal, or no connection
        raise _hub_failure(repo, err, LOCAL_DATA) from None


def dataset_split_files(folder: Path, spec: str, config: str = "") -> list[Path]:
    """A dataset folder's training files, as the hub lays them out: under ``config/`` if given; those named
    train* (or in a train/ folder: ``data/train-00000-of-00002.parquet``, ``train.jsonl``), else the folder's
    only data file."""
    if not folder.is_dir():  # not fetched yet (checked before training, online)
        return [folder]
    root = folder / config if config else folder
    files = sorted(f for f in root.rglob("*") if f.suffix in TRIPLET_FORMATS and f.is_file()
                   and not any(part.startswith(".") for part in f.relative_to(folder).parts))
    train = [f for f in files if re.match(r"train\b|train[-_.]", f.name) or "train" in f.relative_to(root).parts]
    if train:
        return train
    if len(files) == 1:
        return files
    found = ", ".join(str(f.relative_to(folder)) for f in files[:5]) or "no .csv/.jsonl/.parquet files"
    raise DataFormatError(spec, None, f"no training split: expected train*.parquet/.jsonl/.csv files (found {found})"
                                      + ("; name a config with org/name:config" if not config else ""))


def training_file(spec: str, data_dir: str | None = None, *, download: bool = True) -> Path:
    """'nli' -> the SimCSE NLI file (local, else the hub's); any other spec is a path. Without ``download``, a
    hub file must be in the local cache already when the hub is offline (a cheap check), and is not fetched."""
    if spec != "nli":
        return Path(spec)
    root = existing_data_dir(data_dir)
    if root is not None:
        files = sorted((root / "nli").glob("*.csv"))
        if not files:
            raise DataFormatError(str(root / "nli"), None, "no *.csv triplet file (sent0,sent1,hard_neg)")
        return files[0]
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(NLI_HUB[0], NLI_HUB[1], repo_type="dataset")
    if isinstance(cached, str):
        return Path(cached)
    if not download and not constants.HF_HUB_OFFLINE:
        return Path(NLI_HUB[1])  # fetched when training starts
    try:
        return Path(hf_hub_download(NLI_HUB[0], NLI_HUB[1], repo_type="dataset"))
    except OSError as err:  # offline, no connection, or a refusal
        raise _hub_failure(f"{NLI_HUB[0]}/{NLI_HUB[1]}", err) from None


def check_training_inputs(spec: str, data_dir: str | None, *, form: TrainingFormat | None = None,
                          skip_bad_rows: bool, dev_set: bool) -> None:
    """The training files' existence, format and columns (the first row), and the dev set's file, cheaply:
    before torch is imported or a model loads."""
    if is_retrieval_folder(spec):
        load_training_data(spec, form=form)  # reads the judgements and both files: a second or two
    else:
        paths = training_files(spec, data_dir, download=False)
        if all(path.is_file() for path in paths):
            read_triplets(paths[:1], form=form, skip_bad_rows=skip_bad_rows, max_rows=1)
        elif spec != "nli" and not HUB_DATASET.fullmatch(spec):
            raise DataFormatError(spec, None, "file not found")
    root = existing_data_dir(data_dir)
    if dev_set and root is not None and not (root / "sts" / "STSBenchmark.dev.jsonl").is_file():
        raise DataFormatError(str(root / "sts" / "STSBenchmark.dev.jsonl"), None, "file not found (STS-B dev, the "
                              "set the best checkpoint is chosen on; eval_steps=0 trains without it)")


def load_sts_dev(data_dir: str | None = None) -> StsPairs:
    """STS-B dev, the paper's model-selection set (never a test set)."""
    root = existing_data_dir(data_dir)
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


def check_text_input(path: str | os.PathLike, *, column: str = "text", id_column: str | None = None,
                     skip_bad_rows: bool = False) -> None:
    """The input's format, existence and columns, and that it has a text to embed: read up to its first good
    row, before any model loads."""
    if next(iter_texts(path, column=column, id_column=id_column, skip_bad_rows=skip_bad_rows), None) is None:
        raise DataFormatError(str(path), None, "no text to embed" + (" (every row is bad)" if skip_bad_rows else ""))


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


def retrieval_folder(spec: str | os.PathLike, split: str = "test") -> tuple[Path, Path]:
    """A BEIR folder, or one of its judgement files -> (folder, judgements file). A folder's judgements are
    qrels.jsonl, else qrels/<split>.tsv, else its only qrels/*.tsv; naming a file (``DIR/qrels/dev.tsv``)
    picks that split."""
    path = Path(spec)
    if path.is_file() and path.suffix in (".tsv", ".jsonl"):
        return (path.parent.parent if path.parent.name == "qrels" else path.parent), path
    if not path.is_dir():
        raise DataFormatError(str(path), None, "not a folder (expected corpus.jsonl, queries.jsonl, qrels)")
    candidates = [path / "qrels.jsonl", path / "qrels" / f"{split}.tsv"]
    found = next((c for c in candidates if c.is_file()), None)
    tsvs = sorted((path / "qrels").glob("*.tsv"))
    if found is None and len(tsvs) == 1:
        found = tsvs[0]
    if found is None:
        names = ", ".join(t.name for t in tsvs)
        raise DataFormatError(str(path), None, f"no relevance judgements: qrels.jsonl or qrels/{split}.tsv"
                                               + (f" (found qrels/{{{names}}}: name one, e.g. {tsvs[0]})" if tsvs
                                                  else ""))
    return path, found


def is_retrieval_folder(path: str | os.PathLike) -> bool:
    """A BEIR folder (or one of its qrels files) rather than a table of training rows."""
    path = Path(path)
    folder = path.parent.parent if path.is_file() and path.parent.name == "qrels" else path
    return (folder / "corpus.jsonl").is_file() and (folder / "queries.jsonl").is_file()


def _judgements(path: Path) -> list[tuple[int, str, str, float]]:
    """qrels.jsonl ({"query-id", "corpus-id", "score"} a line) or BEIR's qrels/<split>.tsv (the same,
    tab-separated, under a header line) -> [(line, query id, document id, score)]."""
    import csv

    rows = []
    if path.suffix == ".jsonl":
        for line_no, record in _records(path):
            if isinstance(record, Exception):
                raise DataFormatError(str(path), line_no, str(record))
            rows.append((line_no, record.get("query-id"), record.get("corpus-id"), record.get("score", 1)))
    else:
        with path.open(encoding="utf-8", newline="") as handle:
            for line_no, values in enumerate(csv.reader(handle, delimiter="\t"), start=1):
                if line_no == 1 or not values:
                    continue  # the header: query-id, corpus-id, score
                if len(values) != 3:
                    raise DataFormatError(str(path), line_no, f"expected 3 tab-separated fields, got {len(values)}")
                rows.append((line_no, values[0], values[1], values[2]))
    parsed = []
    for line_no, query, document, score in rows:
        if query is None or document is None:
            raise DataFormatError(str(path), line_no, "needs query-id and corpus-id")
        try:
            parsed.append((line_no, str(query), str(document), float(score)))
        except (TypeError, ValueError):
            raise DataFormatError(str(path), line_no, f"score must be a number, got {score!r}") from None
    return parsed


def load_retrieval_set(spec: str | os.PathLike, split: str = "test") -> RetrievalSet:
    """A folder in the BEIR layout: corpus.jsonl, queries.jsonl, and judgements (``retrieval_folder``: a
    folder's qrels/<split>.tsv or qrels.jsonl, or the judgements file named)."""
    folder, path = retrieval_folder(spec, split)
    corpus, queries = _id_text_file(folder / "corpus.jsonl"), _id_text_file(folder / "queries.jsonl")
    judgements = _judgements(path)
    relevant: dict[str, set[str]] = {}
    for line_no, query, document, score in judgements:
        for kind, key, known in (("query", query, queries), ("document", document, corpus)):
            if key not in known:
                raise DataFormatError(str(path), line_no, f"{kind} id {key!r} is not in the {kind} file")
        if score > 0:
            relevant.setdefault(query, set()).add(document)
    if not relevant:
        raise DataFormatError(str(path), None, "no judgement with a score above 0")
    return RetrievalSet(queries, corpus, relevant, str(spec))


def retrieval_pairs(data: RetrievalSet) -> Triplets:
    """A search set's judgements as (query, relevant document) rows: anchor = the query's text, positive = the
    document's title and text, a row per relevant pair. (Training reads a BEIR folder's qrels/train.tsv:
    ``load_retrieval_set(spec, split="train")``.)"""
    pairs = [(query, document) for query, documents in data.relevant.items() for document in sorted(documents)]
    return Triplets({"anchor": [data.queries[q] for q, _ in pairs], "positive": [data.corpus[d] for _, d in pairs]},
                    data.source, [])


SPLIT_MARK = "cftune_split.json"  # marks a folder `cftune split-queries` wrote (it may replace its own)


def split_queries(spec: str | os.PathLike, out: str | os.PathLike, *, dev: int, seed: int = 0) -> Path:
    """Hold out ``dev`` of a BEIR folder's judged queries: a new BEIR folder ``out`` with the same corpus and
    queries, and the judgements (qrels/train.tsv, or the file named) split into qrels/train.tsv and
    qrels/dev.tsv by query, at random (``seed``). A query's judgements all go to one side, so no dev query is
    trained on. Written beside ``out`` and renamed in: a kill leaves nothing half-written."""
    import random
    import shutil

    from cftune.io import replace_folder_atomically, write_atomic, write_marker

    folder, path = retrieval_folder(spec, split="train")
    judgements = _judgements(path)
    queries = sorted({query for _, query, _, score in judgements if score > 0})
    if not 0 < dev < len(queries):
        raise ConfigError(f"must be between 1 and {len(queries) - 1} (the judged queries of {path}), got {dev}",
                          "dev")
    held = set(random.Random(seed).sample(queries, dev))

    def tsv(rows: list[tuple[int, str, str, float]]) -> str:
        return "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s:g}\n" for _, q, d, s in rows)

    def write(tmp: Path) -> None:
        for name in ("corpus.jsonl", "queries.jsonl"):
            shutil.copyfile(folder / name, tmp / name)
        (tmp / "qrels").mkdir()
        write_atomic(tmp / "qrels" / "train.tsv", tsv([row for row in judgements if row[1] not in held]))
        write_atomic(tmp / "qrels" / "dev.tsv", tsv([row for row in judgements if row[1] in held]))
        write_marker(tmp, SPLIT_MARK, {"source": str(path), "dev_queries": dev, "seed": seed})

    return replace_folder_atomically(Path(out), write)
