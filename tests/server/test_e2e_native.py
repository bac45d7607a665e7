"""End to end against a live `sglrs serve`: SGLang's native endpoints, errors and the API key."""

from __future__ import annotations

import json
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sglrs import __version__

GREEDY = {"temperature": 0, "max_new_tokens": 6}


def sse_events(body: bytes) -> list[str]:
    events = [e for e in body.decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events), events
    return [e[len("data: ") :] for e in events]


def test_startup_line(live_server):
    assert f"sglrs {__version__} serving" in live_server.log()
    assert f"http://127.0.0.1:{live_server.port}" in live_server.log()


def test_generate(live_server):
    resp = live_server.post(
        "/generate", {"text": "The capital of France is", "sampling_params": GREEDY}
    )
    assert resp.status == 200, resp.body
    out = resp.json()
    meta = out["meta_info"]
    assert isinstance(out["text"], str) and len(out["output_ids"]) == 6
    assert meta["finish_reason"] == {"type": "length", "length": 6}
    assert meta["prompt_tokens"] > 0 and meta["completion_tokens"] == 6
    assert meta["e2e_latency"] > 0 and "cached_tokens" in meta
    again = live_server.post(
        "/generate", {"text": "The capital of France is", "sampling_params": GREEDY}
    )
    assert again.json()["text"] == out["text"]  # greedy is deterministic
    assert again.json()["meta_info"]["cached_tokens"] > 0  # the prompt came from the cache


def test_generate_stream(live_server):
    body = {"text": "Once upon a time", "stream": True, "sampling_params": GREEDY}
    resp = live_server.post("/generate", body)
    assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    texts = [c["text"] for c in chunks]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))  # cumulative
    assert chunks[-1]["meta_info"]["finish_reason"]["type"] == "length"
    assert all(c["meta_info"]["finish_reason"] is None for c in chunks[:-1])
    plain = live_server.post("/generate", {"text": "Once upon a time", "sampling_params": GREEDY})
    assert plain.json()["text"] == texts[-1]


def test_generate_batch_n_and_logprobs(live_server):
    body = {
        "text": ["Hello", "Goodbye"],
        "sampling_params": {"max_new_tokens": 3, "n": 2, "temperature": 0.8},
        "return_logprob": True,
        "top_logprobs_num": 2,
        "return_text_in_logprobs": True,
    }
    outs = live_server.post("/generate", body).json()
    assert isinstance(outs, list) and len(outs) == 4
    for out in outs:
        meta = out["meta_info"]
        assert len(meta["output_token_logprobs"]) == 3
        logprob, token_id, text = meta["output_token_logprobs"][0]
        assert logprob <= 0 and isinstance(token_id, int) and isinstance(text, str)
        assert len(meta["output_top_logprobs"][0]) == 2


def test_input_ids_and_stop(live_server):
    ids = live_server.post("/generate", {"text": "1, 2, 3,", "sampling_params": GREEDY}).json()
    body = {"input_ids": [16, 28, 30, 28], "sampling_params": {**GREEDY, "stop": [","]}}
    out = live_server.post("/generate", body).json()
    assert out["meta_info"]["finish_reason"]["type"] in ("stop", "length")
    assert "," not in out["text"] or out["meta_info"]["finish_reason"]["type"] == "length"
    assert ids["output_ids"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"text": "hi", "sampling_params": {"regex": "(unclosed"}}, "invalid grammar"),
        ({"text": "hi", "sampling_params": {"json_schema": "{not json"}}, "invalid grammar"),
        ({"text": "hi", "sampling_params": {"bogus": 1}}, "sampling_params.bogus"),
        ({"text": "hi", "sampling_params": {"top_p": 5}}, "sampling_params.top_p"),
        ({"text": "hi", "sampling_params": {"n": 1000}}, "n"),
        ({"text": "hi", "unknown": 1}, "unknown"),
        ({"text": "word " * 2000}, "context length"),
        ({"text": "hi", "sampling_params": {"max_new_tokens": 5000}}, "max_new_tokens"),
    ],
)
def test_bad_input_is_a_400(live_server, body, needle):
    resp = live_server.post("/generate", body)
    assert resp.status == 400, resp.body
    error = resp.json()["error"]
    assert error["code"] == 400 and needle in error["message"].lower()
    stream = live_server.post("/generate", {**body, "stream": True})
    assert stream.status == 400 and needle in stream.json()["error"]["message"].lower()


def test_malformed_json_is_a_400(live_server):
    resp = live_server.post("/generate", raw=b'{"text": ')
    assert resp.status == 400 and "JSON" in resp.json()["error"]["message"]


def test_info_endpoints(live_server):
    for path in ("/get_model_info", "/model_info"):
        info = live_server.get(path).json()
        assert info["is_generation"] is True and info["model_path"]
        assert info["context_length"] == 1024 and info["architectures"]
    for path in ("/get_server_info", "/server_info"):
        info = live_server.get(path).json()
        assert info["version"] == __version__ and info["api_key"] == "<redacted>"
        assert info["internal_states"][0]["integrity_ok"] is True
    assert live_server.get("/health", key=None).status == 200
    assert live_server.get("/health_generate", key=None).status == 200
    models = live_server.get("/v1/models").json()
    assert models["data"][0]["max_model_len"] == 1024


def test_api_key(live_server):
    for key in (None, "wrong"):
        assert live_server.post("/generate", {"text": "hi"}, key=key).status == 401
        resp = live_server.get("/v1/models", key=key)
        assert resp.status == 401 and resp.json()["type"] == "AuthenticationError"
    assert live_server.get("/metrics", key=None).status == 200


def test_abort_request_ends_a_running_stream(live_server):
    rid = "abort-me"
    body = {
        "text": "Count forever:",
        "rid": rid,
        "stream": True,
        "sampling_params": {"max_new_tokens": 500, "ignore_eos": True, "temperature": 0},
    }
    result: dict = {}

    def run() -> None:
        result["resp"] = live_server.post("/generate", body)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(1.0)
    assert live_server.post("/abort_request", {"rid": rid}).status == 200
    thread.join(60)
    assert not thread.is_alive()
    events = sse_events(result["resp"].body)
    assert events[-1] == "[DONE]"
    last = json.loads(events[-2])
    assert last["meta_info"]["finish_reason"]["type"] == "abort"
    assert last["meta_info"]["completion_tokens"] < 500
    assert live_server.post("/abort_request", {"bogus": 1}).status == 400


def test_flush_cache(live_server):
    assert live_server.post("/flush_cache").status == 200
    assert live_server.get("/flush_cache").status == 200


def metric_values(text: str) -> dict[str, float]:
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("model_name")
    }


def test_metrics_move(live_server):
    before = metric_values(live_server.get("/metrics", key=None).body.decode())
    live_server.post("/generate", {"text": "Metrics please", "sampling_params": GREEDY})
    after = metric_values(live_server.get("/metrics", key=None).body.decode())
    assert after["sglang:num_requests_total"] >= before["sglang:num_requests_total"] + 1
    gen = "sglang:generation_tokens_total"
    assert after[gen] >= before[gen] + 6
    assert after["sglang:prompt_tokens_total"] > before["sglang:prompt_tokens_total"]
    ttft = "sglang:time_to_first_token_seconds_count"
    assert after[ttft] >= before[ttft] + 1
    assert "sglang:num_running_reqs" in after and "sglang:token_usage" in after
