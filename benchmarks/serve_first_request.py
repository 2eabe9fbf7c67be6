"""`cftune serve`'s start-up warm-up: time to the first answer, with and without it, in one process.

Loads the model twice (fresh modules each time, so nothing compiled is shared between the two), builds the app
with ``warm_up`` off and then on, and times entering the app (start-up) and its first three requests. With
``--quantize int8`` the first encode compiles kernels: without the warm-up the first client waits for it.

Usage: python benchmarks/serve_first_request.py --model runs/NAME [--quantize int8]
"""

from __future__ import annotations

import argparse
import json
import time

from fastapi.testclient import TestClient

from cftune.io import machine
from cftune.models import load_embedder, prepare_for_inference
from cftune.serving import ServeSettings, create_app

TEXTS = ["first request after start-up", "the second request, a little longer than the first one", "third"]


def measure(model_path: str, quantize: str | None, warm_up: bool) -> dict:
    model = prepare_for_inference(load_embedder(model_path), quantize=quantize)
    started = time.perf_counter()
    with TestClient(create_app(model, "bench", ServeSettings(warm_up=warm_up))) as client:
        ready = time.perf_counter() - started
        seconds = []
        for text in TEXTS:
            started = time.perf_counter()
            assert client.post("/v1/embeddings", json={"input": text}).status_code == 200
            seconds.append(round(time.perf_counter() - started, 3))
    return {"warm_up": warm_up, "start_up_s": round(ready, 2), "request_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--quantize", choices=["int8"])
    args = parser.parse_args()
    rows = [measure(args.model, args.quantize, warm_up) for warm_up in (False, True)]
    print(json.dumps({"model": args.model, "quantize": args.quantize, "machine": machine(), "runs": rows},
                     indent=2))


if __name__ == "__main__":
    main()
