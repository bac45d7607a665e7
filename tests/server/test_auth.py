"""--api-key: every endpoint but health and metrics needs the bearer token."""

from __future__ import annotations

import pytest

from sglrs.server.auth import is_authorized

KEY = "s3cret"


@pytest.fixture
def locked(make_client):
    http, _ = make_client(api_key=KEY, enable_metrics=True)
    return http


def test_open_paths(locked):
    assert locked.get("/health").status_code == 200
    assert locked.get("/metrics").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}, {"X-Key": KEY}],
)
def test_rejected_in_each_shape(locked, headers):
    resp = locked.get("/get_model_info", headers=headers)
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"
    assert resp.headers["www-authenticate"] == "Bearer"
    resp = locked.get("/v1/models", headers=headers)
    assert resp.status_code == 401
    body = resp.json()
    assert body["object"] == "error" and body["type"] == "AuthenticationError"
    assert body["code"] == 401
    assert locked.post("/generate", json={"text": "hi"}, headers=headers).status_code == 401
    assert locked.post("/flush_cache", headers=headers).status_code == 401


def test_accepted_with_the_key(locked):
    auth = {"Authorization": f"Bearer {KEY}"}
    assert locked.get("/get_model_info", headers=auth).status_code == 200
    assert locked.get("/v1/models", headers=auth).status_code == 200
    # Authorized bad input is a 400, not a 401.
    assert locked.post("/generate", json={"x": 1}, headers=auth).status_code == 400


def test_no_key_configured_means_open(client):
    http, _ = client
    assert http.get("/get_model_info").status_code == 200


def test_is_authorized():
    assert is_authorized(b"Bearer s3cret", KEY)
    assert is_authorized(b"bearer s3cret", KEY)
    assert not is_authorized(b"Bearer s3cret2", KEY)
    assert not is_authorized(None, KEY)
    assert not is_authorized(b"s3cret", KEY)
