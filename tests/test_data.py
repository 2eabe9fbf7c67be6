import json

import pytest

from cftune import ConfigError, DataFormatError
from cftune.data import STS_TASKS, load_sts_task, parse_tasks, read_sts_jsonl
from conftest import SHARED_DATA, write_jsonl

GOOD = {"sentence1": "A cat.", "sentence2": "A dog.", "score": 1.5}


def test_reads_pairs_and_skips_blank_lines(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [GOOD, "", {**GOOD, "score": 4}])
    pairs = read_sts_jsonl(path)
    assert pairs.scores == [1.5, 4.0] and pairs.sentence1 == ["A cat.", "A cat."] and len(pairs) == 2


@pytest.mark.parametrize(
    ("lines", "where", "problem"),
    [
        ([GOOD, "{not json"], ":2:", "invalid JSON"),
        ([GOOD, GOOD, {"sentence1": "a", "score": 1}], ":3:", "missing field 'sentence2'"),
        ([{**GOOD, "score": "high"}], ":1:", "'score' must be a finite number, got 'high'"),
        ([{**GOOD, "score": True}], ":1:", "'score' must be a finite number"),
        ([GOOD, {**GOOD, "sentence1": 7}], ":2:", "'sentence1' must be a non-empty string"),
        (["[1, 2]"], ":1:", "expected a JSON object"),
        ([], "", "no sentence pairs"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, lines, where, problem):
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    with pytest.raises(DataFormatError) as err:
        read_sts_jsonl(path)
    assert str(err.value).startswith(f"{path}{where}") and problem in str(err.value)


def test_invalid_utf8_names_its_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + '{"sentence1": "caf\xe9"}'.encode("latin-1") + b"\n")
    with pytest.raises(DataFormatError, match=r"latin1\.jsonl:2: not valid UTF-8"):
        read_sts_jsonl(path)


def test_missing_task_file_is_named(tmp_path):
    with pytest.raises(DataFormatError, match=r"sts/STS13\.jsonl: file not found"):
        load_sts_task(STS_TASKS["STS13"], tmp_path)


def test_task_selection():
    assert [t.name for t in parse_tasks("all")] == list(STS_TASKS)
    assert [t.name for t in parse_tasks("sick-r, STS12")] == ["SICK-R", "STS12"]
    with pytest.raises(ConfigError, match="unknown STS task 'STS99'"):
        parse_tasks("STS12,STS99")


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="real data lives in ../shared/data")
def test_real_sts_files_match_their_manifest():
    manifest = json.loads((SHARED_DATA / "manifest.json").read_text())
    for task in parse_tasks("all"):
        pairs = load_sts_task(task, SHARED_DATA)
        assert len(pairs) == manifest[task.name]["pairs"]
        assert min(pairs.scores) == manifest[task.name]["score_min"]
        assert max(pairs.scores) == manifest[task.name]["score_max"]
