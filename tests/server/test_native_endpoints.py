"""Health, model and server info, cache flush, abort and the model list."""

from __future__ import annotations

from sglrs import __version__
from sglrs.ipc import messages as msg


def test_health(client):
    http, engine = client
    assert http.get("/health").status_code == 200
    engine.alive = False
    resp = http.get("/health")
    assert resp.status_code == 503 and resp.json()["error"]["code"] == 503
    assert http.get("/health_generate").status_code == 503


def test_health_after_engine_failure(client):
    http, engine = client
    engine.tm._fail("scheduler: boom")
    resp = http.get("/health")
    assert resp.status_code == 503 and "boom" in resp.json()["error"]["message"]
    # Requests now get a 503 in JSON too, not a traceback.
    resp = http.post("/generate", json={"text": "hi", "sampling_params": {"max_new_tokens": 1}})
    assert resp.status_code == 503 and "boom" in resp.json()["error"]["message"]


def test_model_info(client):
    http, _ = client
    for path in ("/get_model_info", "/model_info"):
        info = http.get(path).json()
        assert info["model_path"] == "/models/tiny"
        assert info["tokenizer_path"] == "/models/tiny"
        assert info["is_generation"] is True
        assert info["preferred_sampling_params"] is None
        assert info["weight_version"] == "default"
        assert info["architectures"] == ["LlamaForCausalLM"]
        assert info["context_length"] == 256
        # The frontend language renders roles from it without the tokenizer's files.
        assert "<|im_start|>" in info["chat_template"]
        assert info["eos_token"] == "<|endoftext|>"


def test_server_info(client):
    http, _ = client
    for path in ("/get_server_info", "/server_info"):
        info = http.get(path).json()
        assert info["port"] == 30000 and info["model_path"] == "/models/tiny"
        assert info["internal_states"][0]["integrity_ok"] is True
        assert info["version"] == __version__
    assert http.get("/version").json() == {"version": __version__}


def test_server_info_hides_the_api_key(make_client):
    http, _ = make_client(api_key="k")
    info = http.get("/server_info", headers={"Authorization": "Bearer k"}).json()
    assert info["api_key"] == "<redacted>"


def test_flush_cache(client):
    http, engine = client
    assert http.post("/flush_cache").status_code == 200
    assert http.get("/flush_cache").status_code == 200
    engine.tm.flush_ok = False
    resp = http.post("/flush_cache")
    assert resp.status_code == 400 and resp.json()["error"]["message"] == "busy"
    kinds = [m.kind for m in engine.tm.sent_of(msg.ControlReq)]
    assert kinds == ["flush_cache"] * 3


def test_abort_request(client):
    http, engine = client
    assert http.post("/abort_request", json={"rid": "abc"}).status_code == 200
    assert http.post("/abort_request", json={"abort_all": True}).status_code == 200
    aborts = engine.tm.sent_of(msg.AbortReq)
    assert [(a.rid, a.abort_all) for a in aborts] == [("abc", False), (None, True)]
    for bad in ({}, {"rid": 5}, {"rid": "a", "x": 1}, {"abort_all": "yes"}):
        resp = http.post("/abort_request", json=bad)
        assert resp.status_code == 400, bad
    assert len(engine.tm.sent_of(msg.AbortReq)) == 2


def test_models(make_client):
    http, _ = make_client(served_model_name="tiny-chat")
    models = http.get("/v1/models").json()
    assert models["object"] == "list"
    (card,) = models["data"]
    assert card["id"] == "tiny-chat" and card["object"] == "model"
    assert card["max_model_len"] == 256 and card["root"] == "/models/tiny"
    assert http.get("/v1/models/tiny-chat").json()["id"] == "tiny-chat"
    resp = http.get("/v1/models/other")
    assert resp.status_code == 404 and resp.json()["type"] == "NotFoundError"


def test_lifespan_shuts_the_engine_down(make_client):
    http, engine = make_client()
    http.__exit__(None, None, None)
    assert engine.shutdowns == 1
