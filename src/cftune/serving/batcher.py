"""Shared encode batches: the texts of concurrent requests encoded together, on one worker thread. On a CPU one
batch of 32 texts costs far less than 32 batches of one."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import numpy as np
from sentence_transformers import SentenceTransformer

from cftune.encoding import encode
from cftune.serving.metrics import Metrics


class QueueFull(Exception):
    """More texts are waiting for the encoder than the server accepts (answered 429)."""


@dataclass
class Job:
    """One request's texts, waiting to be encoded with its named prompt; its vectors arrive in ``future``."""

    texts: list[str]
    prompt_name: str | None
    future: asyncio.Future


class Batcher:
    """Gathers the texts of concurrent requests into shared encode calls on one worker thread.

    At most ``max_queue`` texts wait for the encoder; beyond that ``embed`` raises QueueFull at once, so a
    flood of requests is refused instead of piling up memory and latency. With ``enabled=False`` every request
    is encoded on its own (the baseline `serve_load.py` compares with).
    """

    def __init__(self, model: SentenceTransformer, *, max_batch: int, precision: str, enabled: bool = True,
                 wait_ms: float = 2.0, max_queue: int = 4096, metrics: Metrics | None = None):
        self.model, self.max_batch, self.precision, self.enabled = model, max_batch, precision, enabled
        self.metrics = metrics
        self.wait, self.max_queue = wait_ms / 1000, max_queue
        self.queue: asyncio.Queue[Job] = asyncio.Queue()  # replaced by a fresh one on each start()
        self.waiting = 0  # texts in the queue; changed on the event loop only, so no lock
        self.lock = threading.Lock()  # one encode at a time: torch already uses every core

    def encode(self, texts: list[str], prompt_name: str | None = None) -> np.ndarray:
        with self.lock:
            return encode(self.model, texts, batch_size=32, precision=self.precision,
                          prompt_name=prompt_name).cpu().numpy()

    def encode_jobs(self, jobs: list[Job]) -> list[np.ndarray]:
        """One encode call per named prompt among the jobs (sentence-transformers takes one per call)."""
        vectors: list[np.ndarray] = [np.empty(0)] * len(jobs)
        for name in dict.fromkeys(job.prompt_name for job in jobs):
            mine = [i for i, job in enumerate(jobs) if job.prompt_name == name]
            together = self.encode([t for i in mine for t in jobs[i].texts], name)
            start = 0
            for i in mine:
                vectors[i] = together[start:start + len(jobs[i].texts)]
                start += len(jobs[i].texts)
        return vectors

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.worker.cancel()

    async def embed(self, texts: list[str], prompt_name: str | None = None) -> np.ndarray:
        if self.waiting + len(texts) > self.max_queue:
            raise QueueFull(f"{self.waiting} texts are waiting to be embedded (at most {self.max_queue}); "
                            "retry later")
        future = asyncio.get_running_loop().create_future()
        self.waiting += len(texts)
        self.queue.put_nowait(Job(texts, prompt_name, future))
        return await future

    def _take(self, job: Job) -> Job:
        self.waiting -= len(job.texts)
        return job

    async def _run(self) -> None:
        while True:
            jobs = [self._take(await self.queue.get())]
            size = len(jobs[0].texts)
            deadline = time.perf_counter() + self.wait
            # Take what else is waiting, up to max_batch texts; wait a moment for stragglers.
            while self.enabled and size < self.max_batch:
                timeout = deadline - time.perf_counter()
                try:
                    job = self.queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self.queue.get(),
                                                                                                timeout)
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                jobs.append(self._take(job))
                size += len(job.texts)
            jobs = [job for job in jobs if not job.future.done()]  # nobody waits for a cancelled request's vectors
            if not jobs:
                continue
            if self.metrics:
                self.metrics.batch.observe(sum(len(job.texts) for job in jobs))
            try:
                vectors = await asyncio.to_thread(self.encode_jobs, jobs)
            except Exception as err:  # noqa: BLE001 - every waiting request must hear of it
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(err)
                continue
            for job, job_vectors in zip(jobs, vectors, strict=True):
                if not job.future.done():  # a client that went away has a cancelled future
                    job.future.set_result(job_vectors)
