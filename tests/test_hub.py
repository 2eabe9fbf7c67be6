"""`cftune push` against a local stand-in of the hub's HTTP API (never the network)."""

import base64
import json
import socket
import threading
import time

import httpx
import pytest

from cftune import load_embedder
from cftune.cli import main
from cftune.design import EmbedderDesign


def hub_stand_in():
    """The three hub endpoints an upload uses (create repo, preupload, commit), keeping what they receive.
    Files are answered as "regular" (inline base64 in the commit), so no LFS or Xet storage is involved."""
    from fastapi import FastAPI, Request

    app = FastAPI()
    app.state.repos, app.state.files, app.state.calls, app.state.cards = [], {}, [], []

    @app.middleware("http")
    async def record(request: Request, call_next):
        app.state.calls.append((request.method, request.url.path, request.headers.get("authorization")))
        return await call_next(request)

    @app.post("/api/repos/create")
    async def create(request: Request):
        body = await request.json()
        app.state.repos.append(body)
        return {"url": f"{request.base_url}{body['organization']}/{body['name']}"}

    @app.post("/api/validate-yaml")  # the client checks README.md's metadata before uploading it
    async def validate_yaml(request: Request):
        app.state.cards.append((await request.json())["content"])
        return {"errors": [], "warnings": []}

    @app.post("/api/models/{owner}/{name}/preupload/{revision}")
    async def preupload(owner: str, name: str, revision: str, request: Request):
        files = (await request.json())["files"]
        return {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}

    @app.post("/api/models/{owner}/{name}/commit/{revision}")
    async def commit(owner: str, name: str, revision: str, request: Request):
        for line in (await request.body()).splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                app.state.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
        return {"commitUrl": f"{request.base_url}{owner}/{name}/commit/0123abc", "commitOid": "0123abc"}

    return app


def serve_app(app):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    return url, server


@pytest.fixture
def hub():
    app = hub_stand_in()
    url, server = serve_app(app)
    yield url, app.state
    server.should_exit = True


def test_push_uploads_the_model_but_not_the_checkpoints(tiny_models, tmp_path, hub, monkeypatch, capsys):
    url, state = hub
    run = tmp_path / "run"
    load_embedder(str(tiny_models["gemma3_text"]), EmbedderDesign(prompt="eol")).save(str(run))
    (run / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint-4" / "optimizer.pt").write_bytes(b"state")
    (run / ".train_summary.json.cftune-tmp-1").write_text("half")
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", url)  # the stand-in, as $HF_ENDPOINT would
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)  # the tests run with it set
    assert main(["push", str(run), "--repo", "me/tiny-embedder", "--private", "--token", "hf_test"]) == 0
    assert f"pushed: {url}/me/tiny-embedder/commit/0123abc" in capsys.readouterr().out
    assert state.repos == [{"name": "tiny-embedder", "organization": "me", "visibility": "private"}]
    assert state.cards and state.cards[0].startswith("---")  # README.md's metadata was checked first
    sent = {path: data for path, data in state.files.items()}
    on_disk = {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*")
               if p.is_file() and "checkpoints" not in p.parts and not p.name.startswith(".")}
    assert sent == on_disk and "modules.json" in sent  # every model file, byte for byte, and nothing else
    assert all(auth == "Bearer hf_test" for method, _, auth in state.calls if method == "POST")


def test_push_refuses_a_folder_that_is_not_a_model(tmp_path, capsys):
    assert main(["push", str(tmp_path), "--repo", "me/x"]) == 2
    assert "is not a saved model (no modules.json)" in capsys.readouterr().err
    (tmp_path / "modules.json").write_text("[]")
    assert main(["push", str(tmp_path), "--repo", "nobody"]) == 2
    assert "--repo: must be owner/name" in capsys.readouterr().err


def hub_with_models(models: dict[str, dict]):
    """A stand-in of the hub's file endpoint: each model's config.json, and the hub's own 404 for any other
    repository (X-Error-Code: RepoNotFound, which huggingface_hub turns into RepositoryNotFoundError)."""
    from fastapi import FastAPI, Request, Response

    app = FastAPI()
    app.state.calls = []

    @app.api_route("/{owner}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
    async def resolve(owner: str, name: str, revision: str, path: str, request: Request):
        app.state.calls.append((request.method, f"{owner}/{name}", path))
        repo = models.get(f"{owner}/{name}")
        if repo is None:
            return Response(status_code=404, headers={"X-Error-Code": "RepoNotFound",
                                                      "X-Error-Message": "Repository not found"})
        if path not in repo:
            return Response(status_code=404, headers={"X-Error-Code": "EntryNotFound"})
        body = json.dumps(repo[path]).encode()
        headers = {"X-Repo-Commit": "a" * 40, "ETag": f'"{len(body)}"', "Content-Length": str(len(body))}
        return Response(b"" if request.method == "HEAD" else body, headers=headers)

    return app


def test_a_mistyped_hub_id_is_one_line_at_once_and_a_real_one_passes(tmp_path):
    import os
    import subprocess
    import sys

    app = hub_with_models({"some-org/real-model": {"config.json": {"model_type": "llama"}}})
    url, server = serve_app(app)
    env = {**os.environ, "HF_ENDPOINT": url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
    check = "import sys; from cftune.sources import check_source; print(check_source(sys.argv[1]))"
    try:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "cftune.cli", "eval", "--model", "some-org/reel-model"],
                              capture_output=True, text=True, env=env, timeout=60)
        seconds = time.perf_counter() - started
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "no model 'some-org/reel-model' on the Hugging Face hub: check the spelling" in done.stderr
        assert seconds < 10 and "torch" not in done.stdout  # answered before any model work
        done = subprocess.run([sys.executable, "-c", check, "some-org/real-model"], capture_output=True, text=True,
                              env=env, timeout=60)
        assert done.returncode == 0 and done.stdout.strip() == "('some-org/real-model', False)", done.stderr
        assert ("GET", "some-org/real-model", "config.json") in app.state.calls  # fetched, so cached for the load
    finally:
        server.should_exit = True
