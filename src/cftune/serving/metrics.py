"""What /metrics tells Prometheus."""

from __future__ import annotations


class Metrics:
    """Counters and histograms on a registry of the app's own (prometheus_client)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("cftune_requests", "embedding requests answered, by HTTP status", ["status"],
                                registry=self.registry)
        self.seconds = Histogram("cftune_request_seconds", "time to answer an embedding request",
                                 registry=self.registry)
        self.texts = Counter("cftune_texts_embedded", "texts embedded", registry=self.registry)
        self.tokens = Counter("cftune_tokens", "tokens in the texts embedded", registry=self.registry)
        self.batch = Histogram("cftune_batch_texts", "texts per shared encode batch", registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
        self.waiting = Gauge("cftune_queue_texts", "texts waiting for the encoder", registry=self.registry)
