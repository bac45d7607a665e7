"""`sglrs bench serve`: streamed /generate requests against a running server.

Requests arrive as a Poisson process at `--request-rate` (inf: all at once), at most
`--max-concurrency` in flight. Each is streamed, so TTFT and inter-token latency are measured as
the client sees them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import time
from typing import Any

import numpy as np
from tqdm import tqdm

from sglrs.bench.datasets import BenchRequest
from sglrs.bench.metrics import RequestResult, StreamTimer, compute_metrics, finish
from sglrs.bench.report import emit, record
from sglrs.bench.workload import (
    add_workload_args,
    build_requests,
    check_workload_args,
    request_body,
    sampling_params,
    warmup_requests,
)

INFO_TIMEOUT_S = 30.0


def add_serve_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("server")
    g.add_argument("--base-url", help="Server URL, e.g. http://127.0.0.1:30000 (else host:port).")
    g.add_argument("--host", default="127.0.0.1", help="Server host (default: 127.0.0.1).")
    g.add_argument("--port", type=int, default=30000, help="Server port (default: 30000).")
    g.add_argument(
        "--api-key",
        default=os.environ.get("SGLRS_API_KEY"),
        help="Bearer key the server was started with (default: $SGLRS_API_KEY).",
    )
    g.add_argument(
        "--tokenizer",
        help="Tokenizer to build prompts with (default: the server's, if present here).",
    )
    g.add_argument(
        "--request-rate",
        type=float,
        default=math.inf,
        help="Requests per second, Poisson arrivals (default: inf, all at once).",
    )
    g.add_argument("--max-concurrency", type=int, help="Most requests in flight at once.")
    g.add_argument(
        "--flush-cache", action="store_true", help="Flush the server's cache after the warmup."
    )
    add_workload_args(parser)


def run_serve(args: argparse.Namespace, command: list[str]) -> dict[str, Any]:
    if not args.request_rate > 0:
        raise ValueError(f"--request-rate must be > 0, got {args.request_rate}")
    if args.max_concurrency is not None and args.max_concurrency < 1:
        raise ValueError(f"--max-concurrency must be >= 1, got {args.max_concurrency}")
    check_workload_args(args)
    return asyncio.run(_bench(args, command))


def base_url(args: argparse.Namespace) -> str:
    return (args.base_url or f"http://{args.host}:{args.port}").rstrip("/")


def _headers(args: argparse.Namespace) -> dict[str, str]:
    return {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}


def _load_tokenizer(args: argparse.Namespace, info: dict[str, Any]) -> Any:
    path = args.tokenizer or info.get("tokenizer_path")
    if args.tokenizer is None and (path is None or not os.path.exists(path)):
        return None  # the server's tokenizer lives on another machine
    from sglrs.model_loader import load_tokenizer

    return load_tokenizer(path)


async def _bench(args: argparse.Namespace, command: list[str]) -> dict[str, Any]:
    try:
        import aiohttp
    except ImportError as e:
        raise RuntimeError("sglrs bench serve needs aiohttp: pip install aiohttp") from e
    url = base_url(args)
    info = await _get_json(aiohttp, args, url + "/get_model_info")
    server_info = await _get_json(aiohttp, args, url + "/get_server_info")
    tokenizer = _load_tokenizer(args, info)
    if tokenizer is None and args.dataset_name != "sharegpt":
        print("no tokenizer here: random prompts draw from the whole vocabulary")
    vocab_size = int(info["vocab_size"])
    requests = build_requests(args, tokenizer, vocab_size, info.get("context_length"))
    warmup = warmup_requests(args, tokenizer, vocab_size)
    # A fresh session after the blocking work above: a keep-alive connection that the server
    # closed while the loop was blocked would fail the first request written to it.
    connector = aiohttp.TCPConnector(limit=0)  # the default pool of 100 would cap concurrency
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=INFO_TIMEOUT_S)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=_headers(args)
    ) as session:
        if warmup:
            warm = await asyncio.gather(*(_send(session, url, r, args, 0.0) for r in warmup))
            failed = [r.error for r in warm if not r.success]
            if failed:
                raise RuntimeError(f"a warmup request failed: {failed[0]}")
        if args.flush_cache:
            async with session.post(url + "/flush_cache") as resp:
                if resp.status != 200:
                    raise RuntimeError(f"/flush_cache answered {resp.status}: {await resp.text()}")
        results, duration = await _run_all(session, url, requests, args)
    metrics = compute_metrics(results, duration)
    settings = {
        "Mode": "serve",
        "Server": url,
        "Dataset": args.dataset_name,
        "Model": info.get("model_path"),
        "Request rate (req/s)": args.request_rate,
        "Max concurrency": args.max_concurrency or "unlimited",
    }
    payload = record(
        "serve",
        command,
        vars(args),
        metrics,
        results,
        extra={"server_info": server_info},
    )
    emit("sglrs bench serve", settings, metrics, results, payload, args.output_file, args.plot)
    return payload


async def _get_json(aiohttp: Any, args: argparse.Namespace, url: str) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=INFO_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout, headers=_headers(args)) as session:
            async with session.get(url) as resp:
                body = await resp.text()
    except (OSError, asyncio.TimeoutError, aiohttp.ClientError) as e:
        raise RuntimeError(f"cannot reach the server at {url}: {e!r}") from e
    if resp.status != 200:
        raise RuntimeError(f"{url} answered {resp.status}: {body[:300]}")
    return json.loads(body)


def arrival_offsets(num: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Send times (s after the start) of a Poisson process at `rate`; all 0 when infinite."""
    if math.isinf(rate):
        return np.zeros(num)
    return np.cumsum(rng.exponential(1.0 / rate, size=num))


async def _run_all(
    session: Any, url: str, requests: list[BenchRequest], args: argparse.Namespace
) -> tuple[list[RequestResult], float]:
    offsets = arrival_offsets(len(requests), args.request_rate, np.random.default_rng(args.seed))
    limit = asyncio.Semaphore(args.max_concurrency) if args.max_concurrency else None
    bar = tqdm(total=len(requests), desc="requests", disable=args.disable_tqdm)
    t0 = time.perf_counter()

    async def one(request: BenchRequest, offset: float) -> RequestResult:
        delay = t0 + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if limit is None:
            result = await _send(session, url, request, args, t0)
        else:
            async with limit:
                result = await _send(session, url, request, args, t0)
        bar.update(1)
        return result

    jobs = (one(r, o) for r, o in zip(requests, offsets, strict=True))
    results = list(await asyncio.gather(*jobs))
    duration = time.perf_counter() - t0
    bar.close()
    return results, duration


async def _send(
    session: Any, url: str, request: BenchRequest, args: argparse.Namespace, t0: float
) -> RequestResult:
    body = {**request_body(request), "sampling_params": sampling_params(request, args)}
    body["stream"] = True
    sent = time.perf_counter()
    result = RequestResult(success=False, start=sent - t0)
    timer = StreamTimer(sent)
    last: dict[str, Any] | None = None
    try:
        async with session.post(url + "/generate", json=body) as resp:
            if resp.status != 200:
                result.error = f"HTTP {resp.status}: {(await resp.text())[:300]}"
                return result
            async for event in _sse_events(resp):
                if "error" in event:
                    result.error = f"server error: {event['error'].get('message')}"
                    return result
                timer.chunk(time.perf_counter(), event["meta_info"]["completion_tokens"])
                last = event
        result.e2e = time.perf_counter() - sent
    except Exception as e:  # one failed request is reported, not fatal to the run
        result.error = f"{type(e).__name__}: {e}"
        return result
    if last is None:
        result.error = "the stream ended without output"
        return result
    result.ttft, result.itls = timer.ttft, timer.itls
    return finish(result, last)


async def _sse_events(resp: Any) -> Any:
    """The JSON payloads of an SSE stream, up to `data: [DONE]`."""
    buffer = b""
    async for piece in resp.content.iter_any():
        buffer += piece
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            for line in event.splitlines():
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                yield json.loads(data)
