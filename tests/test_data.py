import json
from pathlib import Path

import pytest

from cftune import ConfigError, DataFormatError
from cftune.data import STS_TASKS, iter_texts, load_sts_task, parse_tasks, read_sts_jsonl, read_triplets
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


# --------------------------------------------------------------------------------------------- bad bytes

BAD_LINES = [2, 377, 600, 601, 998]  # file lines that hold an invalid UTF-8 byte (0xff), the header being line 1


def file_with_bad_bytes(path: Path, rows: int = 999) -> Path:
    """``rows`` text rows after a header line (none for .txt); the rows at BAD_LINES have a 0xff byte. A CSV row
    near the middle has a quoted field over two lines, so a row's first line is not its row number."""
    lines: list[bytes] = []
    for line_no in range(2, rows + 2):
        text = f"row {line_no} caf\xe9".encode()
        if line_no in BAD_LINES:
            text = text[:4] + b"\xff" + text[4:]
        if path.suffix == ".csv":
            two_lines = line_no == 300
            lines.append(b'"' + text + (b'\nmore' if two_lines else b"") + b'",' + str(line_no).encode())
        elif path.suffix == ".jsonl":
            lines.append(b'{"text": "' + text + b'", "id": ' + str(line_no).encode() + b"}")
        else:
            lines.append(text)
    header = {".csv": [b"text,id"], ".jsonl": [b'{"text": "header row", "id": 1}'], ".txt": [b"header row"]}
    path.write_bytes(b"\n".join(header[path.suffix] + lines) + b"\n")
    return path


def file_lines(path: Path, line_no: int) -> int:
    """Lines 300's quoted field adds one physical line to a CSV: later rows start a line further."""
    return line_no + (1 if path.suffix == ".csv" and line_no > 300 else 0)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".txt"])
def test_invalid_bytes_name_their_own_line_and_skipping_loses_no_other_row(tmp_path, suffix):
    path = file_with_bad_bytes(tmp_path / f"texts{suffix}")
    bad = [file_lines(path, n) for n in BAD_LINES]
    with pytest.raises(DataFormatError, match=rf"^{path}:{bad[0]}: not valid UTF-8 \(byte 0xff\)$"):
        list(iter_texts(path))
    skipped: list[str] = []
    rows = list(iter_texts(path, skip_bad_rows=True, skipped=skipped))
    assert skipped == [f"{path}:{n}: not valid UTF-8 (byte 0xff)" for n in bad]
    good = [n for n in range(2, 1001) if n not in BAD_LINES]
    expected = [f"row {n} caf\xe9" + ("\nmore" if suffix == ".csv" and n == 300 else "") for n in good]
    texts = [r.text for r in rows if r.text != "header row"]
    assert texts == expected  # every good row, in order, none twice
    if suffix == ".txt":
        assert [r.id for r in rows][1:4] == ["3", "4", "5"]  # a .txt row's id is its line
    else:
        assert [r.id for r in iter_texts(path, id_column="id", skip_bad_rows=True)][:3] == (
            ["3", "4", "5"] if suffix == ".csv" else ["1", "3", "4"])


def test_triplets_with_invalid_bytes_keep_every_good_row(tmp_path):
    path = tmp_path / "pairs.csv"
    rows = [f"anchor {n},positive {n}".encode() for n in range(2, 1001)]
    for n in BAD_LINES:
        rows[n - 2] = rows[n - 2].replace(b"positive", b"posit\xffive")
    path.write_bytes(b"anchor,positive\n" + b"\n".join(rows) + b"\n")
    with pytest.raises(DataFormatError, match=rf"^{path}:2: not valid UTF-8"):
        read_triplets(path)
    triplets = read_triplets(path, skip_bad_rows=True)
    assert triplets.skipped == [f"{path}:{n}: not valid UTF-8 (byte 0xff)" for n in BAD_LINES]
    assert triplets.columns["anchor"] == [f"anchor {n}" for n in range(2, 1001) if n not in BAD_LINES]


# --------------------------------------------------------------------------------------------- training rows


def test_columns_are_named_by_mapping_by_our_names_or_by_position(tmp_path):
    from cftune.config import load_config, training_format

    qa = write_jsonl(tmp_path / "qa.jsonl", [{"id": 1, "question": "q1", "answer": "a1", "wrong": "w1"},
                                             {"id": 2, "question": "q2", "answer": "a2", "wrong": "w2"}])
    form = training_format(load_config(None, ["columns=anchor=question,positive=answer,negative=wrong"]))
    assert read_triplets(qa, form=form).columns == {"anchor": ["q1", "q2"], "positive": ["a1", "a2"],
                                                    "negative": ["w1", "w2"]}
    with pytest.raises(DataFormatError, match=r"qa\.jsonl:1: columns: no column 'query' here"):
        read_triplets(qa, form=training_format(load_config(None, ["columns=anchor=query,positive=answer"])))
    # none of our names: by position, as sentence-transformers reads a dataset (first anchor, then positive,
    # then negatives)
    plain = tmp_path / "plain.csv"
    plain.write_text("question,answer,other,another\nq,a,o1,o2\n", encoding="utf-8")
    assert read_triplets(plain).columns == {"anchor": ["q"], "positive": ["a"], "negative_1": ["o1"],
                                            "negative_2": ["o2"]}
    for bad, problem in [("columns=anchor", "expected role=column items"),
                         ("columns=query=q,positive=a", "unknown role 'query'"),
                         ("columns=anchor=a,anchor=b", "anchor is given twice")]:
        with pytest.raises(ConfigError, match=problem):
            load_config(None, [bad])


def test_scored_pairs_are_read_with_their_scores(tmp_path):
    from cftune.data import TrainingFormat

    scored = TrainingFormat(scored=True)
    path = tmp_path / "stsb.csv"  # scores from a CSV are text; JSON's are numbers
    path.write_text("sentence1,sentence2,score\nA man.,A person.,4.5\nA cat.,A car.,0\nx,y,high\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"stsb\.csv:4: score \(score\) score must be a number, got 'high'"):
        read_triplets(path, form=scored)
    rows = read_triplets(path, form=scored, skip_bad_rows=True)
    assert rows.columns == {"sentence1": ["A man.", "A cat."], "sentence2": ["A person.", "A car."],
                            "score": [4.5, 0.0]}
    sts = SHARED_DATA / "sts" / "STSBenchmark.dev.jsonl"  # the STS files' own layout trains as it is
    if sts.is_file():
        dev = read_triplets(sts, form=scored)
        assert len(dev) == len(read_sts_jsonl(sts)) and dev.columns["score"] == read_sts_jsonl(sts).scores
    with pytest.raises(DataFormatError, match="no sentence1 column"):
        read_triplets(tmp_path / "stsb.csv", form=TrainingFormat({"sentence2": "sentence2", "score": "score"},
                                                                  scored=True))


def test_a_dataset_folder_in_the_hub_layout_reads_its_training_split(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cftune.data import load_training_data

    folder = tmp_path / "all-nli"  # sentence-transformers/all-nli's layout: a folder per config, shards in it
    for config, split, shard, rows in [("triplet", "train", 0, 3), ("triplet", "train", 1, 2),
                                       ("triplet", "dev", 0, 4), ("pair", "train", 0, 5)]:
        (folder / config).mkdir(parents=True, exist_ok=True)
        table = pa.table({"anchor": [f"{config} {split} {shard} a{i}" for i in range(rows)],
                          "positive": [f"p{i}" for i in range(rows)], "negative": [f"n{i}" for i in range(rows)]})
        pq.write_table(table, folder / config / f"{split}-0000{shard}-of-00002.parquet")
    rows = load_training_data(f"{folder}/triplet")
    assert rows.columns["anchor"] == [f"triplet train {s} a{i}" for s, n in [(0, 3), (1, 2)] for i in range(n)]
    assert rows.source == f"{folder / 'triplet'} (2 files)"
    with pytest.raises(DataFormatError, match="no training split.*name a config with org/name:config"):
        (folder / "pair" / "train-00000-of-00002.parquet").rename(folder / "pair" / "other.parquet")
        (folder / "pair" / "extra.parquet").write_bytes((folder / "pair" / "other.parquet").read_bytes())
        load_training_data(str(folder / "pair"))


def test_a_hub_dataset_id_offline_and_not_cached_is_one_line(tmp_path, monkeypatch):
    import subprocess
    import sys

    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-m", "cftune.cli", "train", "--data", "some-org/nosuch-pairs:triplet",
                           "--out", str(tmp_path / "run"), "--model", "no-such-model"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert done.stderr == ("cftune: error: hub:some-org/nosuch-pairs: not in the local Hugging Face cache and "
                           "HF_HUB_OFFLINE is set; pass a local .csv/.jsonl/.parquet file or dataset folder "
                           "instead, or go online once\n")
    # once fetched, a hub dataset is read from the Hugging Face cache, offline (the cache's own layout)
    snapshot = tmp_path / "hf" / "hub" / "datasets--some-org--pairs" / "snapshots" / ("a" * 40)
    (snapshot / "triplet").mkdir(parents=True)
    write_jsonl(snapshot / "triplet" / "train.jsonl", [{"anchor": f"a{i}", "positive": f"p{i}"} for i in range(3)])
    write_jsonl(snapshot / "pair" / "train.jsonl", [{"anchor": "x", "positive": "y"}])
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("a" * 40)
    read = subprocess.run([sys.executable, "-c", "from cftune.data import load_training_data as l; "
                           "print(l('some-org/pairs:triplet').columns['anchor'])"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert read.stdout == "['a0', 'a1', 'a2']\n", read.stderr
