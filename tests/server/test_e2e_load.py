"""A bounded load test on loopback: 200 concurrent streams, a fifth of the clients hang up.

Every client that stays must get a complete stream; afterwards the scheduler must be idle
with its KV accounting intact (nothing leaked by the aborted requests).
"""

from __future__ import annotations

import asyncio
import json
import random
import time

from live_server import API_KEY

CLIENTS = 200
DISCONNECT_FRACTION = 0.2
MAX_NEW_TOKENS = 4


async def _read_chunked(reader: asyncio.StreamReader) -> bytes | None:
    """One HTTP/1.1 chunk's payload, or None at the end of the body."""
    size = int((await reader.readline()).split(b";")[0], 16)
    if size == 0:
        await reader.readline()
        return None
    data = await reader.readexactly(size)
    await reader.readline()
    return data


async def stream_client(port: int, i: int, hang_up_after: int | None) -> dict:
    """POST a streaming /generate; hang up after `hang_up_after` events if given."""
    body = json.dumps(
        {
            "text": f"Tell me about {i}.",
            "stream": True,
            "sampling_params": {"max_new_tokens": MAX_NEW_TOKENS, "temperature": 0.7},
        }
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /generate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    while (await reader.readline()) not in (b"\r\n", b""):
        pass  # headers
    events: list[str] = []
    buffer = b""
    try:
        while status == 200:
            if hang_up_after is not None and len(events) >= hang_up_after:
                return {"status": status, "events": events, "hung_up": True}
            chunk = await _read_chunked(reader)
            if chunk is None:
                break
            buffer += chunk
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                events.append(event.decode().removeprefix("data: "))
        return {"status": status, "events": events, "hung_up": False}
    finally:
        writer.close()


async def run_load(port: int) -> list[dict]:
    rng = random.Random(0)
    plans = [
        rng.randrange(0, 4) if rng.random() < DISCONNECT_FRACTION else None for _ in range(CLIENTS)
    ]
    return await asyncio.gather(*(stream_client(port, i, p) for i, p in enumerate(plans)))


def test_200_streams_with_disconnects(live_server):
    start = time.monotonic()
    results = asyncio.run(asyncio.wait_for(run_load(live_server.port), 150))
    elapsed = time.monotonic() - start
    stayed = [r for r in results if not r["hung_up"]]
    assert len(results) - len(stayed) >= CLIENTS * DISCONNECT_FRACTION / 2
    for r in stayed:
        assert r["status"] == 200
        assert r["events"][-1] == "[DONE]", r["events"][-3:]
        final = json.loads(r["events"][-2])
        assert "error" not in final, final
        assert final["meta_info"]["finish_reason"]["type"] in ("length", "stop")
        assert final["meta_info"]["completion_tokens"] <= MAX_NEW_TOKENS
    # The scheduler drains the aborted requests; then nothing runs and the KV books balance.
    deadline = time.monotonic() + 30
    while True:
        stats = live_server.get("/get_server_info").json()["internal_states"][0]
        running = stats.get("num_running_reqs", stats.get("running"))
        waiting = stats.get("num_queue_reqs", stats.get("waiting"))
        if (running, waiting) == (0, 0) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (running, waiting) == (0, 0), stats
    assert stats["integrity_ok"] is True, stats
    assert stats.get("held_tokens", 0) == 0, stats
    assert live_server.get("/health_generate").status == 200
    print(f"{CLIENTS} streams in {elapsed:.1f} s")
