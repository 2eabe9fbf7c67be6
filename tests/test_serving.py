import base64
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cftune import DataFormatError, encode, load_embedder
from cftune.cli import main
from cftune.serving import embed_file
from conftest import CORPUS, write_jsonl

TEXTS = list(dict.fromkeys(CORPUS))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, *extra: str):
    """A real `cftune serve` process on loopback; yields its base URL once /health answers."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "cftune.cli", "serve", "--model", model, "--port", str(port),
                                "--precision", "float32", "--max-batch", "8", "--max-tokens", "40", *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stdout.read().decode()}")
        try:
            httpx.get(f"{url}/health", timeout=1, headers={"Authorization": "Bearer s3cret"})
            return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not start")


@pytest.fixture(scope="module")
def server(tiny_models):
    process, url = start_server(str(tiny_models["gemma3_text"]), "--prompt", "eol", "--name", "tiny")
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def expected(tiny_models):
    model = load_embedder(str(tiny_models["gemma3_text"]), prompt="eol")
    return {text: v for text, v in zip(TEXTS, encode(model, TEXTS, precision="float32").numpy())}


def test_embeddings_match_encode_as_floats_and_base64(server, expected):
    reply = httpx.post(f"{server}/v1/embeddings", json={"model": "tiny", "input": TEXTS[:3]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "list" and body["model"] == "tiny" and body["usage"]["prompt_tokens"] > 0
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    for d, text in zip(body["data"], TEXTS[:3]):
        np.testing.assert_allclose(d["embedding"], expected[text], atol=1e-5)

    reply = httpx.post(f"{server}/v1/embeddings", json={"input": TEXTS[4], "encoding_format": "base64"})
    vector = np.frombuffer(base64.b64decode(reply.json()["data"][0]["embedding"]), dtype=np.float32)
    np.testing.assert_allclose(vector, expected[TEXTS[4]], atol=1e-5)

    assert httpx.get(f"{server}/v1/models").json()["data"][0]["id"] == "tiny"
    assert httpx.get(f"{server}/health").json()["status"] == "ok"


@pytest.mark.parametrize("payload, status, message", [
    ({"input": []}, 400, "must not be empty"),
    ({"input": ""}, 400, r"input\[0\] is empty"),
    ({"input": ["ok", "  "]}, 400, r"input\[1\] is empty"),
    ({"input": 42}, 400, "string or a list of strings"),
    ({"input": [1, 2, 3]}, 400, "string or a list of strings"),
    ({"input": {"text": "a"}}, 400, "string or a list of strings"),
    ({}, 400, "input"),
    ({"input": ["a"] * 9}, 400, "9 items; at most 8"),
    ({"input": "word " * 60}, 400, r"input\[0\] has \d+ tokens; at most 40"),
    ({"input": "a", "encoding_format": "hex"}, 400, "encoding_format"),
    ({"input": "a", "dimensions": 8}, 400, "dimensions"),
    ({"input": "a", "model": "gpt-4"}, 404, "not served here"),
    ("{not json", 400, "not valid JSON"),
])
def test_bad_requests_get_a_clear_4xx_and_the_server_lives_on(server, payload, status, message):
    if isinstance(payload, str):
        reply = httpx.post(f"{server}/v1/embeddings", content=payload, headers={"content-type": "application/json"})
    else:
        reply = httpx.post(f"{server}/v1/embeddings", json=payload)
    assert reply.status_code == status
    assert re.search(message, reply.json()["error"]["message"]), reply.json()
    assert httpx.get(f"{server}/health").status_code == 200


def test_500_concurrent_requests_from_16_clients(server, expected):
    def one(i):
        texts = [TEXTS[i % len(TEXTS)], TEXTS[(i * 3 + 1) % len(TEXTS)]][: 1 + i % 2]
        reply = client.post(f"{server}/v1/embeddings", json={"input": texts})
        assert reply.status_code == 200, reply.text
        for d, text in zip(reply.json()["data"], texts):
            np.testing.assert_allclose(d["embedding"], expected[text], atol=1e-5)
        return True

    with httpx.Client(limits=httpx.Limits(max_connections=16), timeout=60) as client, \
            ThreadPoolExecutor(16) as pool:
        assert all(pool.map(one, range(500)))


def test_api_key_is_required_on_every_request(tiny_models, monkeypatch):
    monkeypatch.setenv("CFTUNE_API_KEY", "s3cret")
    process, url = start_server(str(tiny_models["bert"]))
    try:
        for method, path in [("get", "/health"), ("get", "/v1/models"), ("post", "/v1/embeddings")]:
            reply = getattr(httpx, method)(f"{url}{path}", **({"json": {"input": "a"}} if method == "post" else {}))
            assert reply.status_code == 401 and "API key" in reply.json()["error"]["message"]
        wrong = httpx.post(f"{url}/v1/embeddings", json={"input": "a"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = httpx.post(f"{url}/v1/embeddings", json={"input": "a"}, headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200 and len(right.json()["data"][0]["embedding"]) == 32
    finally:
        process.terminate()
        process.wait(timeout=30)


# --------------------------------------------------------------------------------------------- files


def write_inputs(folder):
    rows = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(TEXTS)]
    (folder / "in.txt").write_text("".join(t + "\n" for t in TEXTS), encoding="utf-8")
    write_jsonl(folder / "in.jsonl", rows)
    (folder / "in.csv").write_text("id,text\n" + "".join(f'{r["id"]},"{r["text"].replace(chr(34), 2 * chr(34))}"\n'
                                                         for r in rows), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(rows), folder / "in.parquet")


@pytest.mark.parametrize("source", ["txt", "jsonl", "csv", "parquet"])
@pytest.mark.parametrize("target", ["npy", "parquet"])
def test_embed_file_keeps_ids_aligned_with_vectors(tiny_models, tmp_path, expected, source, target):
    write_inputs(tmp_path)
    model = load_embedder(str(tiny_models["gemma3_text"]), prompt="eol")
    id_column = None if source == "txt" else "id"
    out = tmp_path / f"vectors.{target}"
    summary = embed_file(model, tmp_path / f"in.{source}", out, id_column=id_column, precision="float32",
                         chunk_rows=3, show_progress_bar=False)  # chunks of 3: streaming is exercised
    assert summary.rows == len(TEXTS) and summary.dimension == 32
    if target == "npy":
        vectors, ids = np.load(out), (tmp_path / "vectors.npy.ids.txt").read_text().split("\n")[:-1]
    else:
        table = pq.read_table(out)
        vectors, ids = np.array(table["embedding"].to_pylist()), table["id"].to_pylist()
    assert ids == ([str(i) for i in range(1, len(TEXTS) + 1)] if source == "txt" else
                   [f"doc-{i}" for i in range(len(TEXTS))])
    np.testing.assert_allclose(vectors, np.stack([expected[t] for t in TEXTS]), atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp file left


def test_embed_bad_input_is_named_or_skipped_and_nothing_half_written(tiny_models, tmp_path, capsys):
    model = str(tiny_models["bert"])
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"first line\n\nthird \xff line\nfourth line\n")
    out = tmp_path / "v.npy"
    assert main(["embed", "--model", model, "--input", str(bad), "--out", str(out)]) == 2
    assert f"{bad}:2: 'text' must be a non-empty text" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]

    assert main(["embed", "--model", model, "--input", str(bad), "--out", str(out), "--skip-bad-rows"]) == 0
    printed = capsys.readouterr().out
    assert "2 vectors" in printed and "skipped 2 bad rows" in printed
    assert np.load(out).shape == (2, 32) and (tmp_path / "v.npy.ids.txt").read_text() == "1\n4\n"

    jsonl = write_jsonl(tmp_path / "b.jsonl", [{"text": "fine"}, {"body": "no text field"}])
    with pytest.raises(DataFormatError, match=r"b\.jsonl:2: missing field 'text'"):
        embed_file(load_embedder(model), jsonl, tmp_path / "x.parquet", show_progress_bar=False)
    csv = tmp_path / "c.csv"
    csv.write_text("title\nhello\n")
    with pytest.raises(DataFormatError, match=r"c\.csv:1: no column 'text'"):
        embed_file(load_embedder(model), csv, tmp_path / "x.parquet", show_progress_bar=False)
    assert not (tmp_path / "x.parquet").exists()


def test_similarity_command_prints_the_cosine(tiny_models, capsys):
    model = str(tiny_models["bert"])
    assert main(["similarity", "--model", model, TEXTS[0], TEXTS[1]]) == 0
    vectors = encode(load_embedder(model), TEXTS[:2])
    cosine = float(np.dot(*vectors.numpy()) / np.prod(np.linalg.norm(vectors.numpy(), axis=1)))
    assert float(capsys.readouterr().out) == pytest.approx(cosine, abs=1e-4)
