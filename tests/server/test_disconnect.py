"""A client that goes away aborts its request in the scheduler (streaming or not)."""

from __future__ import annotations

import asyncio
import json

import pytest

from sglrs.ipc import messages as msg


async def call_then_disconnect(app, path: str, body: dict, engine) -> list:
    """POST `body`, disconnect once the scheduler has the request; return what was sent."""
    disconnect = asyncio.Event()
    messages: list[dict] = []
    sent_body = False

    async def receive():
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 30000),
        "state": {},
    }
    async with app.router.lifespan_context(app):
        engine.tm.hold_generations = True
        task = asyncio.create_task(app(scope, receive, send))
        for _ in range(200):
            if engine.tm.sent_of(msg.GenerateReq):
                break
            await asyncio.sleep(0.01)
        assert engine.tm.sent_of(msg.GenerateReq), "the request never reached the scheduler"
        disconnect.set()
        await asyncio.wait_for(task, 5)
        return engine.tm.sent


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/generate", {"text": "hi", "sampling_params": {"max_new_tokens": 4}}),
        ("/generate", {"text": "hi", "stream": True, "sampling_params": {"max_new_tokens": 4}}),
        ("/v1/completions", {"prompt": "hi", "max_tokens": 4}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": True}),
    ],
)
def test_disconnect_aborts(make_app, path, body):
    app, engine = make_app()
    sent = asyncio.run(call_then_disconnect(app, path, body, engine))
    (req,) = [m for m in sent if isinstance(m, msg.GenerateReq)]
    aborts = [m for m in sent if isinstance(m, msg.AbortReq)]
    assert [a.rid for a in aborts] == [req.rid]
    assert engine.tm.num_running() == 0


def test_disconnect_aborts_every_sample_of_n(make_app):
    app, engine = make_app()
    body = {"text": "hi", "sampling_params": {"max_new_tokens": 4, "n": 3}}
    sent = asyncio.run(call_then_disconnect(app, "/generate", body, engine))
    # Only the shared-prefix warm-up was sent before the disconnect; it is aborted.
    sent_rids = {m.rid for m in sent if isinstance(m, msg.GenerateReq)}
    aborted = {m.rid for m in sent if isinstance(m, msg.AbortReq)}
    assert sent_rids and sent_rids == aborted
