"""`sglrs bench offline`: an Engine in this process, every request submitted at once.

Takes every `sglrs serve` flag (the same ServerArgs), so a configuration can be measured before
it is served. Requests are not streamed unless `--stream` is given: streaming measures TTFT and
ITL but adds a message per token between the engine loop and this thread.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from tqdm import tqdm

from sglrs.bench.datasets import BenchRequest
from sglrs.bench.metrics import RequestResult, StreamTimer, compute_metrics, finish
from sglrs.bench.report import emit, record, redact
from sglrs.bench.workload import (
    add_workload_args,
    build_requests,
    check_workload_args,
    request_body,
    sampling_params,
    warmup_requests,
)
from sglrs.server_args import ServerArgs, add_cli_args


def add_offline_args(parser: argparse.ArgumentParser) -> None:
    add_cli_args(parser)
    add_workload_args(parser)
    parser.add_argument(
        "--stream",
        action="store_true",
        help="Stream every request to measure TTFT and ITL (costs some throughput).",
    )


def run_offline(args: argparse.Namespace, command: list[str]) -> dict[str, Any]:
    server_args = ServerArgs.from_cli_args(args)
    check_workload_args(args)
    from sglrs.engine.engine import Engine  # loads torch; only once the flags are known good

    with Engine(**server_args.to_dict()) as engine:
        return bench_engine(engine, args, command)


def bench_engine(engine: Any, args: argparse.Namespace, command: list[str]) -> dict[str, Any]:
    """Run the workload of `args` on a started Engine; print and write the results."""
    info = dict(engine.runtime.model_info)
    tokenizer = engine.tokenizer
    requests = build_requests(args, tokenizer, info["vocab_size"], info.get("context_length"))
    warmup = warmup_requests(args, tokenizer, info["vocab_size"])
    if warmup:
        warm_results, _ = asyncio.run(_run_all(engine, warmup, args, show=False))
        failed = [r.error for r in warm_results if not r.success]
        if failed:
            raise RuntimeError(f"a warmup request failed: {failed[0]}")
        if not engine.flush_cache():  # the timed run starts from an empty radix cache
            raise RuntimeError("could not flush the cache after the warmup")
    results, duration = asyncio.run(_run_all(engine, requests, args, show=not args.disable_tqdm))
    metrics = compute_metrics(results, duration)
    settings = {
        "Mode": "offline" + (" (streaming)" if args.stream else ""),
        "Dataset": args.dataset_name,
        "Model": info.get("model_path"),
        "Device / dtype": f"{info.get('device')} / {info.get('dtype')}",
        "Attention backend": engine.server_args.attention_backend,
        "Radix cache": "off" if engine.server_args.disable_radix_cache else "on",
    }
    payload = record(
        "offline",
        command,
        vars(args),
        metrics,
        results,
        extra={"server_args": redact(engine.server_args.to_dict()), "model_info": info},
    )
    emit("sglrs bench offline", settings, metrics, results, payload, args.output_file, args.plot)
    return payload


async def _run_all(
    engine: Any, requests: list[BenchRequest], args: argparse.Namespace, show: bool
) -> tuple[list[RequestResult], float]:
    bar = tqdm(total=len(requests), desc="requests", disable=not show)
    t0 = time.perf_counter()

    async def one(request: BenchRequest) -> RequestResult:
        result = await _run_one(engine, request, args, t0)
        bar.update(1)
        return result

    results = list(await asyncio.gather(*(one(r) for r in requests)))
    duration = time.perf_counter() - t0
    bar.close()
    return results, duration


async def _run_one(
    engine: Any, request: BenchRequest, args: argparse.Namespace, t0: float
) -> RequestResult:
    body = request_body(request)
    kwargs = {
        "prompt": body.get("text"),
        "input_ids": body.get("input_ids"),
        "sampling_params": sampling_params(request, args),
    }
    sent = time.perf_counter()
    result = RequestResult(success=False, start=sent - t0)
    try:
        if args.stream:
            timer = StreamTimer(sent)
            out = None
            async for out in await engine.async_generate(**kwargs, stream=True):
                timer.chunk(time.perf_counter(), out["meta_info"]["completion_tokens"])
            result.ttft, result.itls = timer.ttft, timer.itls
        else:
            out = await engine.async_generate(**kwargs)
        result.e2e = time.perf_counter() - sent
        if out is None:
            raise RuntimeError("the engine returned no output")
    except Exception as e:  # one failed request is reported, not fatal to the run
        result.error = f"{type(e).__name__}: {e}"
        return result
    return finish(result, out)
