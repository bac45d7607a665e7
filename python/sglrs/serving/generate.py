"""Run a parsed /generate body: batches, `n > 1`, streaming or not.

Every prompt is validated before anything is sent, so a bad entry fails the whole body with a
400 and no work is wasted. For `n > 1` the prompt is first prefilled alone with
`max_new_tokens = 0`, so the n samples find it in the radix cache instead of each computing it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from sglrs.sampling.params import SamplingParams
from sglrs.serving.generate_request import ParsedGenerate, RequestError, SingleRequest
from sglrs.serving.tokenizer_manager import TokenizerManager

MAX_N = 64


@dataclasses.dataclass
class _Prepared:
    req: SingleRequest
    input_ids: list[int]
    params: SamplingParams
    n: int


def prepare_all(tm: TokenizerManager, parsed: ParsedGenerate) -> list[_Prepared]:
    prepared = []
    for req in parsed.requests:
        n = req.sampling_params.pop("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_N:
            raise RequestError(f"sampling_params.n must be an integer in 1..{MAX_N}")
        input_ids, params = tm.prepare(req)
        prepared.append(_Prepared(req, input_ids, params, n))
    return prepared


def _copies(p: _Prepared) -> list[tuple[SingleRequest, SamplingParams]]:
    if p.n == 1:
        return [(p.req, p.params)]
    return [
        (dataclasses.replace(p.req, rid=f"{p.req.rid}-{i}"), dataclasses.replace(p.params))
        for i in range(p.n)
    ]


async def _cache_prompt(tm: TokenizerManager, p: _Prepared) -> None:
    """Prefill the prompt once (max_new_tokens=0) so n samples share it through the tree."""
    warm_req = dataclasses.replace(
        p.req, rid=f"{p.req.rid}-prefix", stream=False, return_logprob=False
    )
    warm_params = dataclasses.replace(p.params, max_new_tokens=0, min_new_tokens=0)
    async for _ in tm.generate(warm_req, p.input_ids, warm_params):
        pass


async def _final(tm: TokenizerManager, req: SingleRequest, ids: list[int], params: Any) -> Any:
    result = None
    async for out in tm.generate(req, ids, params):
        result = out
    return result


async def generate_all(tm: TokenizerManager, parsed: ParsedGenerate) -> Any:
    """Non-streaming: one output dict, or a list for a batch or n > 1."""
    prepared = prepare_all(tm, parsed)
    await asyncio.gather(*(_cache_prompt(tm, p) for p in prepared if p.n > 1))
    jobs = [_final(tm, req, p.input_ids, params) for p in prepared for req, params in _copies(p)]
    outputs = list(await asyncio.gather(*jobs))
    if not parsed.is_batch and len(outputs) == 1:
        return outputs[0]
    return outputs


async def stream_all(tm: TokenizerManager, parsed: ParsedGenerate) -> AsyncIterator[dict[str, Any]]:
    """Streaming: cumulative chunks; with several outputs each chunk carries its `index`."""
    prepared = prepare_all(tm, parsed)
    await asyncio.gather(*(_cache_prompt(tm, p) for p in prepared if p.n > 1))
    streams = [
        tm.generate(req, p.input_ids, params) for p in prepared for req, params in _copies(p)
    ]
    if len(streams) == 1 and not parsed.is_batch:
        async for out in streams[0]:
            yield out
        return
    queue: asyncio.Queue[tuple[int, dict[str, Any] | None | BaseException]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[dict[str, Any]]) -> None:
        try:
            async for out in stream:
                await queue.put((index, out))
            await queue.put((index, None))
        except BaseException as e:  # forwarded to the consumer, which re-raises it
            await queue.put((index, e))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    remaining = len(tasks)
    try:
        while remaining:
            index, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield {**item, "index": index}
    finally:
        for task in tasks:
            task.cancel()
