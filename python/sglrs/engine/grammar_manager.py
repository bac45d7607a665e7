"""Grammar compilation off the step loop.

A constrained request waits here while its grammar compiles on a small thread pool (the Rust
compiler releases the GIL); the step loop polls `ready()` each step and admits the requests
whose grammar is done, so a slow compile never stalls other requests. Compiled grammars are
cached by (kind, source), and each request gets its own cheap Matcher.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sglrs.engine.request_state import RequestState

COMPILE_THREADS = 2


class GrammarManager:
    def __init__(self, tokenizer: Any, eos_token_ids: list[int]) -> None:
        from sglrs.grammar import GrammarCache, TokenizerInfo

        self.info = TokenizerInfo.from_huggingface(tokenizer, eos_token_ids)
        self.cache = GrammarCache(self.info)
        self._pool = ThreadPoolExecutor(COMPILE_THREADS, thread_name_prefix="sglrs-grammar")
        self._waiting: list[tuple[RequestState, Future[Any]]] = []

    def submit(self, req: RequestState) -> None:
        params = req.params
        if params.regex is not None:
            future = self._pool.submit(self.cache.regex, params.regex)
        else:
            future = self._pool.submit(self.cache.json_schema, params.json_schema)
        self._waiting.append((req, future))

    def num_waiting(self) -> int:
        return len(self._waiting)

    def ready(self) -> tuple[list[RequestState], list[tuple[RequestState, str]]]:
        """Requests whose grammar compiled (matcher attached), and those that failed."""
        from sglrs.grammar import Matcher

        done, failed, still = [], [], []
        for req, future in self._waiting:
            if not future.done():
                still.append((req, future))
                continue
            try:
                req.matcher = Matcher(future.result())
                done.append(req)
            except Exception as e:  # a bad grammar fails its own request only
                field = "regex" if req.params.regex is not None else "json_schema"
                failed.append((req, f"sampling_params.{field}: invalid grammar: {e}"))
        self._waiting = still
        return done, failed

    def drop(self, rid: str) -> bool:
        before = len(self._waiting)
        self._waiting = [(r, f) for r, f in self._waiting if r.rid != rid]
        return len(self._waiting) != before

    def drop_all(self) -> list[RequestState]:
        dropped = [r for r, _ in self._waiting]
        self._waiting = []
        return dropped

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
