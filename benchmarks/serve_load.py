"""Load on `cftune serve` over loopback: requests/s and latency, shared batches on vs off.

Starts a real server process for each mode (same model, same port kind, same requests), then fires
--requests POSTs of one STS sentence each from --clients concurrent clients, and prints requests/s with
p50/p99 latency, and the ratio. The clients run in this process, on the same 2 cores as the server.

Usage: python benchmarks/serve_load.py [--model minilm-l6] [--requests 400] [--clients 16]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from cftune.data import load_sts_task, parse_tasks, resolve_data_dir
from cftune.io import machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: str, batching: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "cftune.cli", "serve", "--model", model, "--port", str(port)]
    process = subprocess.Popen(command + ([] if batching else ["--no-batching"]), stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(f"{url}/health", timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not start")


def load(url: str, texts: list[str], clients: int) -> dict:
    latencies = []

    def one(text: str) -> None:
        started = time.perf_counter()
        reply = client.post(f"{url}/v1/embeddings", json={"input": text})
        reply.raise_for_status()
        latencies.append(time.perf_counter() - started)

    with httpx.Client(limits=httpx.Limits(max_connections=clients), timeout=300) as client, \
            ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, texts[: 2 * clients]))  # warm-up
        latencies.clear()
        started = time.perf_counter()
        list(pool.map(one, texts))
        seconds = time.perf_counter() - started
    cut = statistics.quantiles(latencies, n=100)
    return {"rps": len(texts) / seconds, "p50_ms": 1000 * cut[49], "p99_ms": 1000 * cut[98]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--data-dir", default="../shared/data")
    args = parser.parse_args()

    pairs = load_sts_task(parse_tasks("STSBenchmark")[0], resolve_data_dir(args.data_dir))
    texts = (pairs.sentence1 * 10)[: args.requests]
    print(f"model {args.model}, {args.requests} requests of one STS-B sentence, {args.clients} clients, "
          f"{machine()}", flush=True)
    results = {}
    for batching in (False, True):
        process, url = start(args.model, batching)
        try:
            results[batching] = load(url, texts, args.clients)
        finally:
            process.terminate()
            process.wait()
    print("\n| mode | requests/s | p50 latency (ms) | p99 latency (ms) |\n|---|---:|---:|---:|")
    for batching, label in [(False, "one request per encode"), (True, "shared batches (default)")]:
        r = results[batching]
        print(f"| {label} | {r['rps']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} |")
    print(f"\nshared batches: {results[True]['rps'] / results[False]['rps']:.1f}x requests/s")


if __name__ == "__main__":
    main()
