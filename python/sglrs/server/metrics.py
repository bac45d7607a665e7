"""Prometheus metrics under SGLang's names, in a registry private to one app.

Per-request counters and latency histograms are fed by the TokenizerManager through
`MetricsHooks`; scheduler gauges are read from the scheduler's stats at scrape time.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sglrs.serving.tokenizer_manager import MetricsHooks

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Bucket bounds in seconds (SGLang's defaults: TTFT and e2e span seconds to minutes, ITL ms).
TTFT_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 120, 160)
ITL_BUCKETS = (
    0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.06, 0.08,
    0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0,
)  # fmt: skip
E2E_BUCKETS = (
    0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 150, 200, 250, 300,
    350, 500, 1000,
)  # fmt: skip

# Gauge -> (help, scheduler stats keys to read it from, first present wins).
SCHEDULER_GAUGES = {
    "sglang:num_running_reqs": ("Requests in the running batch.", ("num_running_reqs", "running")),
    "sglang:num_queue_reqs": ("Requests waiting to be scheduled.", ("num_queue_reqs", "waiting")),
    "sglang:token_usage": ("Fraction of KV cache slots in use.", ("token_usage",)),
    "sglang:cache_hit_rate": ("Prefix cache hit rate (tokens).", ("cache_hit_rate",)),
}


class PrometheusMetrics(MetricsHooks):
    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name"]

        def counter(name: str, doc: str) -> Any:
            return Counter(name, doc, labels, registry=self.registry).labels(model_name)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Any:
            metric = Histogram(name, doc, labels, buckets=buckets, registry=self.registry)
            return metric.labels(model_name)

        self.prompt_tokens = counter("sglang:prompt_tokens", "Prompt tokens processed.")
        self.generation_tokens = counter("sglang:generation_tokens", "Tokens generated.")
        self.cached_tokens = counter("sglang:cached_tokens", "Prompt tokens found in the cache.")
        self.num_requests = counter("sglang:num_requests", "Requests finished (any reason).")
        self.num_aborted = counter("sglang:num_aborted_requests", "Requests aborted.")
        self.ttft = histogram(
            "sglang:time_to_first_token_seconds", "Time to first token.", TTFT_BUCKETS
        )
        self.itl = histogram(
            "sglang:inter_token_latency_seconds", "Time between output tokens.", ITL_BUCKETS
        )
        self.e2e = histogram(
            "sglang:e2e_request_latency_seconds", "End-to-end request latency.", E2E_BUCKETS
        )
        self.gauges = [
            (keys, Gauge(name, doc, labels, registry=self.registry).labels(model_name))
            for name, (doc, keys) in SCHEDULER_GAUGES.items()
        ]

    # ---- MetricsHooks ------------------------------------------------------------------------

    def on_first_token(self, seconds: float) -> None:
        self.ttft.observe(seconds)

    def on_tokens(self, n: int, seconds_per_token: float) -> None:
        for _ in range(n):
            self.itl.observe(seconds_per_token)

    def on_finish(
        self, prompt_tokens: int, completion_tokens: int, cached: int, e2e: float, aborted: bool
    ) -> None:
        self.prompt_tokens.inc(prompt_tokens)
        self.generation_tokens.inc(completion_tokens)
        self.cached_tokens.inc(cached)
        self.num_requests.inc()
        if aborted:
            self.num_aborted.inc()
        self.e2e.observe(e2e)

    # ---- scraping ----------------------------------------------------------------------------

    def set_scheduler_stats(self, stats: dict[str, Any]) -> None:
        """Copy the scheduler's gauges; keys it does not report keep their last value."""
        for keys, gauge in self.gauges:
            for key in keys:
                value = stats.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    gauge.set(float(value))
                    break

    def render(self) -> bytes:
        return generate_latest(self.registry)
