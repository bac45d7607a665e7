"""Prometheus metrics: SGLang's names, a model_name label, one registry per app."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from sglrs.server.metrics import PrometheusMetrics

COUNTERS = [
    "sglang:prompt_tokens",
    "sglang:generation_tokens",
    "sglang:cached_tokens",
    "sglang:num_requests",
    "sglang:num_aborted_requests",
]
GAUGES = [
    "sglang:num_running_reqs",
    "sglang:num_queue_reqs",
    "sglang:token_usage",
    "sglang:cache_hit_rate",
]
HISTOGRAMS = [
    "sglang:time_to_first_token_seconds",
    "sglang:inter_token_latency_seconds",
    "sglang:e2e_request_latency_seconds",
]


def samples(text: str) -> dict[tuple[str, str], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, s.labels.get("model_name", ""))] = s.value
    return out


def test_every_metric_is_exposed_with_the_model_label():
    m = PrometheusMetrics("tiny")
    families = {f.name: f.type for f in text_string_to_metric_families(m.render().decode())}
    for name in COUNTERS:
        assert families[name] == "counter"
    for name in GAUGES:
        assert families[name] == "gauge"
    for name in HISTOGRAMS:
        assert families[name] == "histogram"
    values = samples(m.render().decode())
    assert ("sglang:prompt_tokens_total", "tiny") in values


def test_hooks_move_the_metrics():
    m = PrometheusMetrics("tiny")
    m.on_first_token(0.05)
    m.on_tokens(3, 0.01)
    m.on_finish(prompt_tokens=10, completion_tokens=4, cached=6, e2e=0.3, aborted=False)
    m.on_finish(prompt_tokens=2, completion_tokens=0, cached=0, e2e=0.1, aborted=True)
    v = samples(m.render().decode())
    assert v[("sglang:prompt_tokens_total", "tiny")] == 12
    assert v[("sglang:generation_tokens_total", "tiny")] == 4
    assert v[("sglang:cached_tokens_total", "tiny")] == 6
    assert v[("sglang:num_requests_total", "tiny")] == 2
    assert v[("sglang:num_aborted_requests_total", "tiny")] == 1
    assert v[("sglang:time_to_first_token_seconds_count", "tiny")] == 1
    assert v[("sglang:inter_token_latency_seconds_count", "tiny")] == 3
    assert v[("sglang:e2e_request_latency_seconds_count", "tiny")] == 2
    assert abs(v[("sglang:e2e_request_latency_seconds_sum", "tiny")] - 0.4) < 1e-9


def test_scheduler_stats_tolerate_missing_keys():
    m = PrometheusMetrics("tiny")
    m.set_scheduler_stats({"num_running_reqs": 3, "token_usage": 0.5, "other": "x"})
    m.set_scheduler_stats({"waiting": 2})  # the scheduler's own name for the queue length
    v = samples(m.render().decode())
    assert v[("sglang:num_running_reqs", "tiny")] == 3
    assert v[("sglang:num_queue_reqs", "tiny")] == 2
    assert v[("sglang:token_usage", "tiny")] == 0.5
    assert v[("sglang:cache_hit_rate", "tiny")] == 0


def test_registries_are_private():
    a, b = PrometheusMetrics("a"), PrometheusMetrics("b")
    a.on_finish(1, 1, 0, 0.1, False)
    assert samples(b.render().decode())[("sglang:num_requests_total", "b")] == 0


def test_endpoint(make_client):
    http, engine = make_client(enable_metrics=True, served_model_name="tiny")
    resp = http.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    v = samples(resp.text)
    assert v[("sglang:token_usage", "tiny")] == 0.25
    engine.tm.stats["num_running_reqs"] = 7
    assert samples(http.get("/metrics").text)[("sglang:num_running_reqs", "tiny")] == 7


def test_endpoint_is_404_when_disabled(client):
    http, _ = client
    resp = http.get("/metrics")
    assert resp.status_code == 404
    assert "--enable-metrics" in resp.json()["error"]["message"]
