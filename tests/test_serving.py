import base64
import http.client
import json
import os
import re
import signal
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
import torch

from cftune import DataFormatError, encode, load_embedder
from cftune.cli import main
from cftune.design import EmbedderDesign
from cftune.embedding import OutputPathError, embed_file, read_ids
from cftune.models import prepare_for_inference
from conftest import CORPUS, write_jsonl

TEXTS = list(dict.fromkeys(CORPUS))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, *extra: str, max_tokens: str | None = "64"):
    """A real `cftune serve` process on loopback; yields its base URL once /health answers."""
    port = free_port()
    limit = ["--max-tokens", max_tokens] if max_tokens else []  # None: the model's own max_seq_length
    process = subprocess.Popen([sys.executable, "-m", "cftune.cli", "serve", "--model", model, "--port", str(port),
                                "--precision", "float32", "--max-batch", "8", "--max-inputs", "8", *limit,
                                *extra],
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
def served(tiny_models):
    process, url = start_server(str(tiny_models["gemma3_text"]), "--prompt", "eol", "--name", "tiny")
    yield process, url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(served):
    return served[1]


@pytest.fixture(scope="module")
def expected(tiny_models):
    model = load_embedder(str(tiny_models["gemma3_text"]), EmbedderDesign(prompt="eol"))
    return {text: v for text, v in zip(TEXTS, encode(model, TEXTS, precision="float32").numpy(), strict=True)}


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def test_embeddings_match_encode_as_floats_and_base64(server, expected):
    reply = httpx.post(f"{server}/v1/embeddings", json={"model": "tiny", "input": TEXTS[:3]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "list" and body["model"] == "tiny" and body["usage"]["prompt_tokens"] > 0
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    for d, text in zip(body["data"], TEXTS[:3], strict=True):  # unit length by default, as OpenAI's
        np.testing.assert_allclose(d["embedding"], unit(expected[text]), atol=1e-5)

    reply = httpx.post(f"{server}/v1/embeddings", json={"input": TEXTS[4], "encoding_format": "base64"})
    vector = np.frombuffer(base64.b64decode(reply.json()["data"][0]["embedding"]), dtype=np.float32)
    np.testing.assert_allclose(vector, unit(expected[TEXTS[4]]), atol=1e-5)

    # OpenAI's `dimensions`: the leading numbers, cut before normalizing (what a Matryoshka model is for)
    reply = httpx.post(f"{server}/v1/embeddings", json={"input": TEXTS[:2], "dimensions": 8})
    for d, text in zip(reply.json()["data"], TEXTS[:2], strict=True):
        assert len(d["embedding"]) == 8
        np.testing.assert_allclose(d["embedding"], unit(expected[text][:8]), atol=1e-5)

    listed = httpx.get(f"{server}/v1/models").json()["data"][0]
    assert listed["id"] == "tiny" and listed["object"] == "model" and abs(listed["created"] - time.time()) < 3600
    assert httpx.get(f"{server}/v1/models/tiny").json() == listed  # OpenAI's retrieve-a-model
    # clients hard-code OpenAI's model names: any name is answered by the one model served (--strict-model-name
    # says otherwise: test_strict_model_name_and_default_prompt_name)
    assert httpx.get(f"{server}/v1/models/text-embedding-3-small").json()["id"] == "tiny"
    reply = httpx.post(f"{server}/v1/embeddings", json={"model": "text-embedding-3-small", "input": TEXTS[:1]})
    assert reply.json()["model"] == "tiny"
    np.testing.assert_allclose(reply.json()["data"][0]["embedding"], unit(expected[TEXTS[0]]), atol=1e-5)
    assert httpx.get(f"{server}/health").json()["status"] == "ok"


@pytest.mark.parametrize("payload, status, message", [
    ({"input": []}, 400, "must not be empty"),
    ({"input": ""}, 400, r"input\[0\] is empty"),
    ({"input": ["ok", "  "]}, 400, r"input\[1\] is empty"),
    ({"input": 42}, 400, "a string, a list of strings, or token ids"),
    ({"input": [[1, 2], "a"]}, 400, "a string, a list of strings, or token ids"),
    ({"input": [1.5]}, 400, "a string, a list of strings, or token ids"),
    ({"input": [[5, 6], [7, 10**9]]}, 400, r"input\[1\] has token id 1000000000; this model's tokenizer has ids 0 "
                                          "to "),
    ({"input": [[5], []]}, 400, r"input\[1\] is empty"),
    ({"input": {"text": "a"}}, 400, "a string, a list of strings, or token ids"),
    ({}, 400, "input"),
    ({"input": ["a"] * 9}, 400, "9 items; at most 8"),
    ({"input": "word " * 60}, 400, r"input\[0\] has \d+ tokens; at most 64"),
    ({"input": "a", "encoding_format": "hex"}, 400, "encoding_format"),
    ({"input": "a", "dimensions": 0}, 400, "dimensions must be between 1 and this model's 32, got 0"),
    ({"input": "a", "dimensions": 33}, 400, "dimensions must be between 1 and this model's 32, got 33"),
    ({"input": "a", "embedding_type": "int4"}, 400, "embedding_type"),
    ({"input": "a", "embedding_type": "int8"}, 400, "int8 needs calibration ranges"),
    ({"input": "a", "prompt_name": "passage"}, 400, "prompt_name 'passage' is not one of this model's prompts"),
    ({"input": "a", "embedding_type": "binary", "dimensions": 12}, 400, "multiple of 8"),
    ("{not json", 400, "not valid JSON"),
    # JSON escapes of lone surrogates parse into Python strings that no tokenizer takes (they were 500s)
    ({"input": ["ok", "ok", "ok", "\ud800"]}, 400, r"input\[3\] is not valid Unicode"),
    ({"input": "a\udfffb"}, 400, r"input\[0\] is not valid Unicode"),
    (b'{"input": ["ok", "\xed\xa0\x80"]}', 400, r"input\[1\] is not valid Unicode"),  # raw surrogate bytes
    ({"input": "x" * (64 * 64 + 1)}, 400, r"input\[0\] has 4097 characters; at most 4096"),  # never tokenized
])
def test_bad_requests_get_a_clear_4xx_and_the_server_lives_on(server, payload, status, message):
    content = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)  # ASCII: \ud800 as an escape
    reply = httpx.post(f"{server}/v1/embeddings", content=content, headers={"content-type": "application/json"})
    assert reply.status_code == status
    assert re.search(message, reply.json()["error"]["message"]), reply.json()
    assert httpx.get(f"{server}/health").status_code == 200


def test_500_concurrent_requests_from_16_clients(server, expected):
    def one(i):
        texts = [TEXTS[i % len(TEXTS)], TEXTS[(i * 3 + 1) % len(TEXTS)]][: 1 + i % 2]
        reply = client.post(f"{server}/v1/embeddings", json={"input": texts})
        assert reply.status_code == 200, reply.text
        for d, text in zip(reply.json()["data"], texts, strict=True):
            np.testing.assert_allclose(d["embedding"], unit(expected[text]), atol=1e-5)
        return True

    with httpx.Client(limits=httpx.Limits(max_connections=16), timeout=60) as client, \
            ThreadPoolExecutor(16) as pool:
        assert all(pool.map(one, range(500)))


def test_api_key_is_required_on_every_request(tiny_models, monkeypatch):
    monkeypatch.setenv("CFTUNE_API_KEY", "s3cret")
    process, url = start_server(str(tiny_models["bert"]))
    try:
        assert httpx.get(f"{url}/health").status_code == 200  # open: a load balancer's probe has no key
        for method, path in [("get", "/v1/models"), ("get", "/v1/models/x"), ("post", "/v1/embeddings")]:
            reply = getattr(httpx, method)(f"{url}{path}", **({"json": {"input": "a"}} if method == "post" else {}))
            assert reply.status_code == 401 and "API key" in reply.json()["error"]["message"]
        wrong = httpx.post(f"{url}/v1/embeddings", json={"input": "a"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = httpx.post(f"{url}/v1/embeddings", json={"input": "a"}, headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200 and len(right.json()["data"][0]["embedding"]) == 32
        # The scheme name is case-insensitive; the key is not, and nothing but the scheme may replace "Bearer".
        for header, status in [("bearer s3cret", 200), ("BEARER s3cret", 200), ("Bearer S3CRET", 401),
                               ("Basic s3cret", 401), ("Bearer  s3cret", 401), ("s3cret", 401)]:
            assert httpx.get(f"{url}/v1/models", headers={"Authorization": header}).status_code == status, header
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize("design", [{"prompt": "eol"},  # the chat template puts the named prompt after its prefix
                                    {"prompt": "Represent: {text}", "include_prompt": False}])  # left out
def test_a_request_can_name_the_query_or_document_prompt(tiny_models, design):
    from fastapi.testclient import TestClient

    from cftune.prompts import set_named_prompts
    from cftune.serving import Batcher, Job, ServeSettings, create_app

    # mean pooling: a tiny random model's EOS state barely depends on the text, its token mean does
    model = load_embedder(str(tiny_models["gemma3_text"]), EmbedderDesign(pooling="mean", **design))
    set_named_prompts(model, {"query": "query: ", "document": "passage: "})
    want = {name: encode(model, TEXTS[:2], precision="float32", prompt_name=name).numpy()
            for name in (None, "query", "document")}
    with TestClient(create_app(model, "tiny", ServeSettings(precision="float32", normalize=False))) as client:
        for name, vectors in want.items():
            data = client.post("/v1/embeddings", json={"input": TEXTS[:2], "prompt_name": name}).json()["data"]
            np.testing.assert_allclose([d["embedding"] for d in data], vectors, atol=1e-5)
    assert not np.allclose(want["document"], want[None], atol=1e-3)
    # requests with different prompts that wait together are encoded per prompt, each getting its own vectors
    batcher = Batcher(model, max_batch=8, precision="float32")
    jobs = [Job(TEXTS[:1], "query", None), Job(TEXTS[:2], None, None), Job(TEXTS[1:2], "query", None)]
    got = batcher.encode_jobs(jobs)
    for (texts, name, _), vectors in zip(((j.texts, j.prompt_name, j.future) for j in jobs), got, strict=True):
        alone = encode(model, texts, precision="float32", prompt_name=name).numpy()
        np.testing.assert_allclose(vectors, alone, atol=1e-5, rtol=0)


def test_int8_output_scales_each_dimension_to_the_calibration_range(tiny_models):
    from fastapi.testclient import TestClient

    from cftune.serving import ServeSettings, create_app
    from conftest import CORPUS

    model = load_embedder(str(tiny_models["gemma3_text"]), EmbedderDesign(prompt="eol", pooling="mean"))
    calibration = encode(model, list(dict.fromkeys(CORPUS)), precision="float32").numpy()
    with TestClient(create_app(model, "tiny", ServeSettings(precision="float32"))) as client:
        refused = client.post("/v1/embeddings", json={"input": TEXTS[:2], "embedding_type": "int8"})
    assert refused.status_code == 400 and "--calibration" in refused.json()["error"]["message"]
    with TestClient(create_app(model, "tiny", ServeSettings(precision="float32"),
                               calibration=calibration)) as client:
        data = client.post("/v1/embeddings", json={"input": TEXTS[:2], "embedding_type": "int8",
                                                    "dimensions": 16}).json()["data"]
    # by hand: unit vectors of the leading 16 numbers; each dimension's calibration [min, max] cut into 256
    # steps (the step a value falls in, outside values clipped to the first or last), shifted to -128..127
    reference = calibration[:, :16] / np.linalg.norm(calibration[:, :16], axis=1, keepdims=True)
    low, high = reference.min(0), reference.max(0)
    vectors = encode(model, TEXTS[:2], precision="float32").numpy()[:, :16]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    want = (np.clip(np.floor((vectors - low) / ((high - low) / 255)), 0, 255) - 128).astype(np.int8)
    assert [d["embedding"] for d in data] == want.tolist()


def test_no_normalize_returns_the_model_s_own_vectors(tiny_models, expected):
    from fastapi.testclient import TestClient

    from cftune.serving import ServeSettings, create_app

    model = load_embedder(str(tiny_models["gemma3_text"]), EmbedderDesign(prompt="eol"))
    with TestClient(create_app(model, "tiny", ServeSettings(precision="float32", normalize=False))) as client:
        data = client.post("/v1/embeddings", json={"input": TEXTS[:2], "dimensions": 5}).json()["data"]
    assert abs(np.linalg.norm(expected[TEXTS[0]][:5]) - 1) > 0.01  # so unit length would be told apart
    for d, text in zip(data, TEXTS[:2], strict=True):
        np.testing.assert_allclose(d["embedding"], expected[text][:5], atol=1e-5)


def test_binary_embeddings_are_the_packed_signs(server, expected):
    reply = httpx.post(f"{server}/v1/embeddings", json={"input": TEXTS[:2], "embedding_type": "ubinary",
                                                         "dimensions": 16})
    signed = httpx.post(f"{server}/v1/embeddings", json={"input": TEXTS[:2], "embedding_type": "binary"})
    for d, s, text in zip(reply.json()["data"], signed.json()["data"], TEXTS[:2], strict=True):
        assert d["embedding"] == np.packbits(expected[text][:16] > 0).tolist()  # 2 bytes for 16 numbers
        assert s["embedding"] == (np.packbits(expected[text] > 0).astype(int) - 128).tolist()


def test_metrics_count_requests_texts_and_batches(tiny_models):
    from fastapi.testclient import TestClient

    from cftune.serving import ServeSettings, create_app

    model = load_embedder(str(tiny_models["gemma3_text"]), EmbedderDesign(prompt="eol"))
    with TestClient(create_app(model, "tiny", ServeSettings(precision="float32"))) as client:
        assert client.post("/v1/embeddings", json={"input": TEXTS[:2]}).status_code == 200
        assert client.post("/v1/embeddings", json={"input": TEXTS[3]}).status_code == 200
        assert client.post("/v1/embeddings", json={"input": ""}).status_code == 400
        reply = client.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
              for line in reply.text.splitlines() if line and not line.startswith("#")}
    assert values['cftune_requests_total{status="200"}'] == 2 and values['cftune_requests_total{status="400"}'] == 1
    assert values["cftune_texts_embedded_total"] == 3 and values["cftune_request_seconds_count"] == 3
    assert values["cftune_batch_texts_count"] == 2 and values["cftune_batch_texts_sum"] == 3
    assert values["cftune_tokens_total"] > 3


def rss_mib(pid: int) -> float:
    status = open(f"/proc/{pid}/status").read()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) / 1024


def test_a_body_over_the_limit_gets_413_without_being_read(served):
    process, url = served
    baseline = rss_mib(process.pid)
    port = int(url.rsplit(":", 1)[1])
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # announces 50 MB, sends none of it
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 52428800\r\n\r\n")
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        assert answer.status == 413 and time.perf_counter() - started < 5
        assert "over 8388608 bytes" in json.loads(answer.read())["error"]["message"]

    fifty_mb = b'{"input": "' + b"a" * 50_000_000 + b'"}'
    reply = httpx.post(f"{url}/v1/embeddings", content=fifty_mb, timeout=60)
    assert reply.status_code == 413 and "over 8388608 bytes" in reply.json()["error"]["message"]
    chunks = (fifty_mb[i:i + 2**20] for i in range(0, len(fifty_mb), 2**20))  # no Content-Length: chunked
    reply = httpx.post(f"{url}/v1/embeddings", content=chunks, timeout=60)
    assert reply.status_code == 413 and "over 8388608 bytes" in reply.json()["error"]["message"]
    assert rss_mib(process.pid) < baseline + 300
    assert httpx.post(f"{url}/v1/embeddings", json={"input": "a"}).status_code == 200


@pytest.fixture(scope="module")
def roomy(tiny_models):
    """A server that takes texts as long as the model reads (256 tokens) and many per request, with a short queue."""
    process, url = start_server(str(tiny_models["gemma3_text"]), "--max-batch", "160", "--max-inputs", "160",
                                "--max-queue", "16",
                                max_tokens=None)
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_health_answers_while_a_long_request_is_tokenized(roomy):
    texts = ["word " * 3200] * 160  # 2.5 MB: under the character bound, so it must be tokenized (about a second)
    with ThreadPoolExecutor(1) as pool, httpx.Client(timeout=60) as client:
        big = pool.submit(client.post, f"{roomy}/v1/embeddings", json={"input": texts})
        latencies = []
        while not big.done():
            started = time.perf_counter()
            assert client.get(f"{roomy}/health").status_code == 200
            latencies.append(time.perf_counter() - started)
        reply = big.result()
    assert reply.status_code == 400 and re.search(r"input\[0\] has \d+ tokens; at most 256", reply.text)
    assert len(latencies) > 10  # the loop kept answering during the whole request
    # A blocked event loop would hold one /health for the whole tokenization (seconds). Bounds that hold on a
    # loaded 2-core machine too: most answers are quick, and none waits anywhere near that long.
    assert sorted(latencies)[len(latencies) // 2] < 0.05 and max(latencies) < 0.5, sorted(latencies)[-5:]


def test_a_full_queue_answers_429_and_the_server_recovers(roomy):
    reply = httpx.post(f"{roomy}/v1/embeddings", json={"input": ["a"] * 17})  # more than --max-queue at once
    assert reply.status_code == 429 and "at most 16" in reply.json()["error"]["message"]

    def one(i):
        return client.post(f"{roomy}/v1/embeddings", json={"input": [f"text {i} {j}" for j in range(16)]})

    with httpx.Client(limits=httpx.Limits(max_connections=16), timeout=60) as client, \
            ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(one, range(64)))
    statuses = [r.status_code for r in replies]
    assert set(statuses) == {200, 429}, statuses  # while one batch encodes, at most 16 texts wait
    assert all(r.json()["error"]["type"] == "rate_limit_error" for r in replies if r.status_code == 429)
    assert httpx.post(f"{roomy}/v1/embeddings", json={"input": ["a"] * 16}).status_code == 200


@pytest.mark.parametrize("flag, value", [("--max-batch", "0"), ("--max-tokens", "0"), ("--max-queue", "0"),
                                         ("--max-request-bytes", "0"), ("--port", "65536"), ("--port", "-1"),
                                         ("--max-batch", "many")])
def test_serve_refuses_bad_settings_before_loading_the_model(flag, value, capsys):
    started = time.perf_counter()
    with pytest.raises(SystemExit) as exit_:  # argparse; a model load would fail later, on no-such-model
        main(["serve", "--model", "no-such-model", flag, value])
    assert exit_.value.code == 2 and time.perf_counter() - started < 5
    assert f"argument {flag}:" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- over-long texts

# Texts whose tokens merge across the template's seams (a quote or period before the eol template's closing quote),
# a literal special token, and text that is not ASCII: counting the text alone and adding the template's size
# gets some of them wrong.
TRICKY = TEXTS + ['"A quoted start', 'ends with a quote"', "ends with a period.", "  spaces around  ", "'s",
                  "émoji 🎉 ünïcode", "a literal <eos> and [SEP] in the text", "word " * 20]
# decoders that put BOS first (gemma, llama) or do not (qwen2), the eol template and named prompts through the
# chat template, a model that reads plain text with its prompt left out of the mean, and an encoder ([CLS] [SEP])
DESIGNS = {"gemma-eol": ("gemma", {"prompt": "eol"}), "llama-eol": ("llama", {"prompt": "eol"}),
           "qwen2-none": ("qwen2", {"prompt": "none"}),
           "gemma3-plain-text": ("gemma3_text", {"prompt": "Represent: {text}", "include_prompt": False,
                                                 "pooling": "mean"}),
           "bert": ("bert", {})}


def design_model(tiny_models, design: str):
    from cftune.prompts import set_named_prompts

    arch, settings = DESIGNS[design]
    model = load_embedder(str(tiny_models[arch]), EmbedderDesign(**settings))
    set_named_prompts(model, {"query": "query: ", "document": "passage:"})
    return model


def lengths_read(model, texts: list[str], prompt_name: str | None = None) -> list[int]:
    """How many tokens the model's transformer gets for each text when `encode` embeds it (one at a time)."""
    seen: list[int] = []
    hook = model[0].register_forward_pre_hook(lambda module, args: seen.append(int(args[0]["attention_mask"].sum())))
    try:
        for text in texts:
            encode(model, [text], precision="float32", prompt_name=prompt_name)
    finally:
        hook.remove()
    return seen


@pytest.mark.parametrize("design", DESIGNS)
def test_the_token_count_is_the_whole_sequence_the_model_reads(tiny_models, design):
    from cftune.serving import token_counter

    model = design_model(tiny_models, design)
    count = token_counter(model)
    for name in (None, "query", "document"):
        assert count(TRICKY, name) == lengths_read(model, TRICKY, name), name


@pytest.mark.parametrize("design", DESIGNS)
def test_a_text_exactly_at_the_limit_is_read_and_one_token_over_is_refused(tiny_models, design):
    from fastapi.testclient import TestClient

    from cftune.serving import ServeSettings, create_app

    model = design_model(tiny_models, design)
    text, name = TEXTS[1], "query"
    [length] = lengths_read(model, [text], name)
    for limit, status in [(length, 200), (length - 1, 400)]:
        model.max_seq_length = limit  # as training's max_length sets it; create_app serves up to it by default
        with TestClient(create_app(model, "tiny", ServeSettings(precision="float32"))) as client:
            reply = client.post("/v1/embeddings", json={"input": ["a", text], "prompt_name": name})
        assert reply.status_code == status, reply.text
        if status == 200:
            assert reply.json()["usage"]["prompt_tokens"] == lengths_read(model, ["a"], name)[0] + length
        else:
            error = reply.json()["error"]
            assert error["param"] == "input" and error["type"] == "invalid_request_error"
            assert f"input[1] has {length} tokens; at most {limit}" in error["message"]


def test_texts_longer_than_the_model_reads_are_refused_unless_truncated(tiny_models):
    from fastapi.testclient import TestClient

    from cftune.serving import ServeSettings, create_app

    # mean pooling: a tiny random model's EOS state barely depends on the text, its token mean does
    model = load_embedder(str(tiny_models["gemma3_text"]), EmbedderDesign(prompt="eol", pooling="mean"))
    shared = " ".join(TEXTS)  # over 64 tokens on its own; two texts that differ only after it
    texts = [shared + " The end.", shared + " Something else entirely happens after that, at length."]
    whole = lengths_read(model, texts)
    assert 64 < min(whole) and max(whole) < model.max_seq_length  # so far read whole
    apart = encode(model, texts, precision="float32").numpy()
    assert cosine(*apart) < 0.999  # read whole, they differ
    model.max_seq_length = 64  # as training's max_length=64 leaves it

    def post(client, **fields):
        return client.post("/v1/embeddings", json={"input": texts, **fields})

    with TestClient(create_app(model, "tiny", ServeSettings(precision="float32", normalize=False))) as client:
        refused = post(client)
        truncated = post(client, truncate=True)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "input"
    assert f"input[0] has {whole[0]} tokens; at most 64" in refused.json()["error"]["message"]
    assert truncated.status_code == 200, truncated.text
    vectors = np.array([d["embedding"] for d in truncated.json()["data"]])
    assert cosine(*vectors) > 0.99999  # the model read the same first 64 tokens of both
    np.testing.assert_allclose(vectors, encode(model, texts, precision="float32").numpy(), atol=1e-5)
    assert lengths_read(model, texts) == [64, 64]
    assert truncated.json()["usage"] == {"prompt_tokens": 128, "total_tokens": 128}  # what was read, not all

    model.max_seq_length = 256  # the model's own; a smaller max_tokens makes the server read (and cut at) fewer
    with TestClient(create_app(model, "tiny", ServeSettings(precision="float32", normalize=False, max_tokens=64,
                                                            auto_truncate=True))) as client:
        auto = post(client)
        asked_not_to = post(client, truncate=False)
        far_too_long = client.post("/v1/embeddings", json={"input": "x" * (64 * 64 + 1)})  # cut by characters
    assert auto.status_code == 200 and auto.json()["usage"]["prompt_tokens"] == 128
    np.testing.assert_allclose([d["embedding"] for d in auto.json()["data"]], vectors, atol=1e-6)
    assert asked_not_to.status_code == 400 and "at most 64" in asked_not_to.json()["error"]["message"]
    assert far_too_long.status_code == 200 and far_too_long.json()["usage"]["prompt_tokens"] == 64


def test_token_ids_are_read_as_the_model_s_own_tokens(tiny_models):
    from fastapi.testclient import TestClient

    from cftune.design import lm_module
    from cftune.serving import ServeSettings, create_app

    model = load_embedder(str(tiny_models["gemma3_text"]), EmbedderDesign(prompt="eol", pooling="mean"))
    tokenizer = lm_module(model).tokenizer
    ids = [tokenizer.encode(text, add_special_tokens=False) for text in TEXTS[:3]]
    with_bos = [tokenizer.encode(TEXTS[3])]  # a client's ids may carry the special tokens too: they are dropped
    assert with_bos[0][0] == tokenizer.bos_token_id
    want = encode(model, TEXTS[:4], precision="float32").numpy()
    with TestClient(create_app(model, "tiny", ServeSettings(precision="float32", normalize=False))) as client:
        lists = client.post("/v1/embeddings", json={"input": ids + with_bos}).json()
        one = client.post("/v1/embeddings", json={"input": ids[1]}).json()  # one text as a flat list of ints
        text = client.post("/v1/embeddings", json={"input": TEXTS[:4]}).json()
    np.testing.assert_allclose([d["embedding"] for d in lists["data"]], want, atol=1e-5)
    np.testing.assert_allclose(one["data"][0]["embedding"], want[1], atol=1e-5)
    assert lists["usage"] == text["usage"]  # counted as the texts they spell


def test_strict_model_name_and_default_prompt_name(tiny_models):
    from fastapi.testclient import TestClient

    from cftune.errors import ConfigError
    from cftune.prompts import set_named_prompts
    from cftune.serving import ServeSettings, create_app

    model = load_embedder(str(tiny_models["gemma3_text"]), EmbedderDesign(prompt="eol", pooling="mean"))
    set_named_prompts(model, {"query": "query: ", "document": "passage: "})
    query = encode(model, TEXTS[:2], precision="float32", prompt_name="query").numpy()
    document = encode(model, TEXTS[:2], precision="float32", prompt_name="document").numpy()
    with TestClient(create_app(model, "tiny", ServeSettings(precision="float32", normalize=False,
                                                            strict_model_name=True,
                                                            default_prompt_name="query"))) as client:
        other = client.post("/v1/embeddings", json={"input": "a", "model": "text-embedding-3-small"})
        listed = client.get("/v1/models/text-embedding-3-small")
        named = client.post("/v1/embeddings", json={"input": TEXTS[:2], "model": "tiny"}).json()
        asked = client.post("/v1/embeddings", json={"input": TEXTS[:2], "prompt_name": "document"}).json()
    for reply in (other, listed):
        assert reply.status_code == 404 and reply.json()["error"]["code"] == "model_not_found"
    assert "'text-embedding-3-small' is not served here; this server serves 'tiny'" in other.json()["error"]["message"]
    np.testing.assert_allclose([d["embedding"] for d in named["data"]], query, atol=1e-5)  # the default prompt
    np.testing.assert_allclose([d["embedding"] for d in asked["data"]], document, atol=1e-5)  # a request's own
    assert named["usage"]["prompt_tokens"] == sum(lengths_read(model, TEXTS[:2], "query"))
    with pytest.raises(ConfigError, match="default prompt name 'passage' is not one of this model's prompts"):
        create_app(model, "tiny", ServeSettings(default_prompt_name="passage"))


def test_a_request_of_2048_inputs_is_answered(tiny_models):
    from fastapi.testclient import TestClient

    from cftune.serving import ServeSettings, create_app

    model = load_embedder(str(tiny_models["bert"]))
    texts = [f"text number {i}" for i in range(2049)]
    with TestClient(create_app(model, "tiny", ServeSettings(precision="float32", max_batch=64))) as client:
        full = client.post("/v1/embeddings", json={"input": texts[:2048]})
        over = client.post("/v1/embeddings", json={"input": texts})
    assert full.status_code == 200 and [d["index"] for d in full.json()["data"]] == list(range(2048))
    np.testing.assert_allclose(full.json()["data"][2047]["embedding"],
                               unit(encode(model, texts[2047:2048], precision="float32").numpy()[0]), atol=1e-5)
    assert over.status_code == 400 and "input has 2049 items; at most 2048 per request" in over.text


def test_the_official_openai_client_against_a_real_server(tiny_models, expected):
    import openai

    from cftune.design import lm_module

    process, url = start_server(str(tiny_models["gemma3_text"]), "--prompt", "eol", "--name", "tiny",
                                "--max-inputs", "2048", "--max-batch", "256")
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        floats = client.embeddings.create(model="text-embedding-3-small", input=TEXTS[:3], encoding_format="float")
        packed = client.embeddings.create(model="tiny", input=TEXTS[:3])  # the client asks for base64 and decodes it
        short = client.embeddings.create(model="tiny", input=TEXTS[0], dimensions=8)
        many = client.embeddings.create(model="tiny", input=[TEXTS[i % len(TEXTS)] for i in range(2048)])
        tokenizer = lm_module(load_embedder(str(tiny_models["gemma3_text"]), EmbedderDesign(prompt="eol"))).tokenizer
        ids = client.embeddings.create(model="tiny", input=[tokenizer.encode(t, add_special_tokens=False)
                                                            for t in TEXTS[:2]])
        long_text = " ".join(TEXTS)  # over --max-tokens 64
        with pytest.raises(openai.BadRequestError) as refused:
            client.embeddings.create(model="tiny", input=[TEXTS[0], long_text])
        cut = client.embeddings.create(model="tiny", input=[long_text], extra_body={"truncate": True})
    finally:
        process.terminate()
        process.wait(timeout=30)
    for reply in (floats, packed):
        assert reply.model == "tiny" and reply.usage.prompt_tokens > 0
        np.testing.assert_allclose([d.embedding for d in reply.data], [unit(expected[t]) for t in TEXTS[:3]],
                                   atol=1e-5)
    np.testing.assert_allclose(short.data[0].embedding, unit(expected[TEXTS[0]][:8]), atol=1e-5)
    assert len(many.data) == 2048 and [d.index for d in many.data] == list(range(2048))
    np.testing.assert_allclose(many.data[2047].embedding, unit(expected[TEXTS[2047 % len(TEXTS)]]), atol=1e-5)
    np.testing.assert_allclose([d.embedding for d in ids.data], [unit(expected[t]) for t in TEXTS[:2]], atol=1e-5)
    assert refused.value.status_code == 400
    assert re.search(r"input\[1\] has \d+ tokens; at most 64", refused.value.message)
    assert cut.usage.prompt_tokens == 64 and len(cut.data[0].embedding) == 32


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_serve_refuses_more_max_tokens_than_the_model_reads(tiny_models):
    started = time.perf_counter()  # the model loads, then serve stops: it never listens
    done = subprocess.run([sys.executable, "-m", "cftune.cli", "serve", "--model", str(tiny_models["gemma3_text"]),
                           "--port", str(free_port()), "--max-tokens", "257"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith("cftune: error: --max-tokens: 257 is more than this model reads: its max_seq_length "
                                "is 256 tokens (leave it out to accept texts up to 256)\n"), done.stderr
    assert time.perf_counter() - started < 60


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
    model = load_embedder(str(tiny_models["gemma3_text"]), EmbedderDesign(prompt="eol"))
    id_column = None if source == "txt" else "id"
    out = tmp_path / f"vectors.{target}"
    summary = embed_file(model, tmp_path / f"in.{source}", out, id_column=id_column, precision="float32",
                         chunk_rows=3, show_progress_bar=False)  # chunks of 3: streaming is exercised
    assert summary.rows == len(TEXTS) and summary.dimension == 32
    if target == "npy":
        vectors, ids = np.load(out), read_ids(out)
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
    printed = capsys.readouterr()
    assert "2 vectors" in printed.out  # and every row left out, by its line:
    assert printed.err.endswith(f"skipped 2 bad rows:\n  {bad}:2: 'text' must be a non-empty text, got ''\n"
                           f"  {bad}:3: not valid UTF-8 (byte 0xff)\n")
    assert np.load(out).shape == (2, 32) and read_ids(out) == ["1", "4"]

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
    vectors = encode(prepare_for_inference(load_embedder(model), precision="auto"), TEXTS[:2])  # loaded as it loads
    cosine = float(np.dot(*vectors.numpy()) / np.prod(np.linalg.norm(vectors.numpy(), axis=1)))
    assert float(capsys.readouterr().out) == pytest.approx(cosine, abs=1e-4)


@pytest.mark.parametrize("out, problem", [("vectors.npy", "is a folder"), ("v.npy", "v.npy.ids.jsonl: is a folder"),
                                          ("afile/v.npy", "afile is a file, not a folder"),
                                          ("v.txt", "must end in .npy")])
def test_embed_refuses_a_bad_out_before_loading_the_model(tmp_path, capsys, out, problem):
    (tmp_path / "vectors.npy").mkdir()
    (tmp_path / "v.npy.ids.jsonl").mkdir()
    (tmp_path / "afile").write_text("x")
    texts = tmp_path / "in.txt"
    texts.write_text("one\n")
    started = time.perf_counter()  # "no-such-model" would fail to load, with another message, if it were tried
    assert main(["embed", "--model", "no-such-model", "--input", str(texts), "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cftune: error: ") and problem in err and err.count("\n") == 1, err
    assert time.perf_counter() - started < 5
    with pytest.raises(OutputPathError, match=problem):  # the library checks before it touches the model
        embed_file(None, texts, tmp_path / out, show_progress_bar=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "in.txt", "v.npy.ids.jsonl", "vectors.npy"]


def test_ids_of_any_text_read_back_equal_and_aligned(tiny_models, tmp_path):
    ids = ["a\nb", "line\r\nbreak", "tab\tand \"quotes\"", "\u2028 unicode \u00e9", "plain"]
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"id": key, "text": TEXTS[i]} for i, key in enumerate(ids)])
    model = load_embedder(str(tiny_models["bert"]))
    embed_file(model, rows, tmp_path / "v.npy", id_column="id", show_progress_bar=False)
    assert read_ids(tmp_path / "v.npy") == ids and np.load(tmp_path / "v.npy").shape[0] == len(ids)
    assert len((tmp_path / "v.npy.ids.jsonl").read_text(encoding="utf-8").splitlines()) == len(ids)


def test_embed_missing_or_null_id_is_a_row_error(tiny_models, tmp_path):
    model = load_embedder(str(tiny_models["bert"]))
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"id": "a", "text": "one"}, {"text": "two"},
                                                 {"id": None, "text": "three"}, {"id": "d", "text": "four"}])
    with pytest.raises(DataFormatError, match=r"rows\.jsonl:2: missing id in 'id'"):
        embed_file(model, rows, tmp_path / "v.parquet", id_column="id", show_progress_bar=False)
    summary = embed_file(model, rows, tmp_path / "v.parquet", id_column="id", skip_bad_rows=True,
                         show_progress_bar=False)
    assert summary.rows == 2 and [s.split(": ", 1)[0] for s in summary.skipped] == [f"{rows}:2", f"{rows}:3"]
    assert pq.read_table(tmp_path / "v.parquet")["id"].to_pylist() == ["a", "d"]


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_embed_removes_only_its_own_stale_temp_files(tiny_models, tmp_path):
    texts = tmp_path / "in.txt"
    texts.write_text("one\ntwo\n")
    dead = dead_pid()
    stale = [f".v.npy.cftune-tmp-{dead}", f".v.npy.cftune-tmp-{dead}.ids", f".v.npy.cftune-tmp-{dead}.raw"]
    kept = [".hidden", f".w.npy.cftune-tmp-{dead}",  # someone else's file; another output's temp file
            f".v.npy.cftune-tmp-{os.getppid()}", f".v.npy.cftune-tmp-{dead}.bak"]  # a live run's; not our name
    for name in stale + kept:
        (tmp_path / name).write_text("x")
    embed_file(load_embedder(str(tiny_models["bert"])), texts, tmp_path / "v.npy", show_progress_bar=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["in.txt", "v.npy", "v.npy.ids.jsonl"])


def test_a_killed_embed_run_is_cleaned_up_by_the_next(tiny_models, tmp_path):
    texts = tmp_path / "in.txt"
    texts.write_text("".join(f"text number {i}\n" for i in range(50_000)))
    temp_files = lambda: sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".v.npy"))  # noqa: E731
    process = subprocess.Popen([sys.executable, "-m", "cftune.cli", "embed", "--model", str(tiny_models["bert"]),
                                "--input", str(texts), "--out", str(tmp_path / "v.npy")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not temp_files() and process.poll() is None and time.time() < deadline:
            time.sleep(0.02)
    finally:
        process.kill()  # SIGKILL: no finally block of the run gets to clean up
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL and temp_files()  # killed mid-run: its temp files are left
    small = tmp_path / "small.txt"
    small.write_text("one\n")
    embed_file(load_embedder(str(tiny_models["bert"])), small, tmp_path / "v.npy", show_progress_bar=False)
    assert temp_files() == [] and np.load(tmp_path / "v.npy").shape == (1, 32)


def test_embed_dim_keeps_the_leading_numbers_then_normalizes(tiny_models, tmp_path, expected, capsys):
    write_inputs(tmp_path)
    out = tmp_path / "v.npy"
    assert main(["embed", "--model", str(tiny_models["gemma3_text"]), "--prompt", "eol", "--precision", "float32",
                 "--input", str(tmp_path / "in.txt"), "--out", str(out), "--dim", "8", "--normalize"]) == 0
    np.testing.assert_allclose(np.load(out), np.stack([unit(expected[t][:8]) for t in TEXTS]), atol=1e-5)
    assert main(["embed", "--model", str(tiny_models["gemma3_text"]), "--input", str(tmp_path / "in.txt"),
                 "--out", str(out), "--dim", "33"]) == 2  # --dim 0 is refused by the parser, at once
    assert "dimension must be between 1 and this model's 32, got 33" in capsys.readouterr().err


def test_embed_prompt_name_uses_the_saved_models_prompt(tiny_models, tmp_path, capsys):
    model = load_embedder(str(tiny_models["gemma3_text"]), EmbedderDesign(prompt="eol", pooling="mean"))
    model.prompts = {"query": "query: ", "document": "passage: "}
    model.save(str(tmp_path / "model"))
    write_inputs(tmp_path)
    out = tmp_path / "q.npy"
    assert main(["embed", "--model", str(tmp_path / "model"), "--input", str(tmp_path / "in.txt"), "--out", str(out),
                 "--prompt-name", "query", "--precision", "float32"]) == 0
    np.testing.assert_allclose(np.load(out), encode(model, TEXTS, precision="float32", prompt_name="query").numpy(),
                               atol=1e-5)
    assert main(["embed", "--model", str(tmp_path / "model"), "--input", str(tmp_path / "in.txt"), "--out",
                 str(out), "--prompt-name", "passage"]) == 2
    err = capsys.readouterr().err  # before the model loads: what its folder declares
    assert "--prompt-name: " in err and err.endswith("has no prompt 'passage'; its prompts: document, query\n")

    assert main(["similarity", "--model", str(tmp_path / "model"), TEXTS[0], TEXTS[1], "--prompt-name-a", "query",
                 "--prompt-name-b", "document", "--precision", "float32"]) == 0
    query = encode(model, TEXTS[:1], precision="float32", prompt_name="query")
    document = encode(model, TEXTS[1:2], precision="float32", prompt_name="document")
    cosine = float(torch.nn.functional.cosine_similarity(query, document))
    assert float(capsys.readouterr().out) == pytest.approx(cosine, abs=1e-4)
