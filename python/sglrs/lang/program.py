"""`@function` programs: `run` one (optionally streaming), or `run_batch` many concurrently."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sglrs.lang.backends.base import Backend, get_default_backend
from sglrs.lang.errors import NoBackendError, ProgramError
from sglrs.lang.interpreter import StreamExecutor
from sglrs.lang.ir import sampling_params
from sglrs.lang.state import ProgramState

DEFAULT_MAX_NEW_TOKENS = 128
AUTO_THREADS = 64

# run()/run_batch() keywords that set the default sampling of every gen (SGLang's names).
_RUN_DEFAULTS = {
    "max_new_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "stop": "stop",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "ignore_eos": "ignore_eos",
}


class SglFunction:
    """A program: `def prog(s, ...)` whose first parameter is the state."""

    def __init__(self, func: Callable[..., Any]) -> None:
        params = list(inspect.signature(func).parameters)
        if not params:
            raise TypeError(f"{func.__name__} must take the program state as its first argument")
        reserved = sorted(set(params[1:]) & (set(_RUN_DEFAULTS) | {"stream", "backend"}))
        if reserved:
            raise TypeError(
                f"{func.__name__}: parameter {reserved[0]!r} is reserved by run() "
                "(a default sampling parameter); rename it"
            )
        self.func = func
        self.__name__ = func.__name__
        self.__doc__ = func.__doc__

    def __call__(self, s: ProgramState, *args: Any, **kwargs: Any) -> Any:
        """Call a program from inside another: it appends to the caller's state."""
        return self.func(s, *args, **kwargs)

    def run(
        self, *args: Any, stream: bool = False, backend: Backend | None = None, **kwargs: Any
    ) -> ProgramState:
        """Run once; with `stream=True` return at once and read `state.text_iter()`."""
        defaults, arguments = _split_defaults(kwargs)
        state = _new_state(_backend(backend), defaults, stream)
        self._bind(args, arguments)
        if not stream:
            self._execute(state, args, arguments)
            state.sync()
            return state

        def run_in_background() -> None:
            try:
                self._execute(state, args, arguments)
            except BaseException as e:  # shown by text_iter() and every later read
                state._executor.finish(e)

        threading.Thread(target=run_in_background, name=f"sglrs-{self.__name__}").start()
        return state

    def run_batch(
        self,
        batch_kwargs: list[dict[str, Any]],
        *,
        num_threads: int | str = "auto",
        progress_bar: bool = False,
        backend: Backend | None = None,
        **defaults_kwargs: Any,
    ) -> list[ProgramState]:
        """Run the program once per kwargs dict, `num_threads` at a time; states in order.

        If any program fails, the others still finish, then a ProgramError names the first
        failed one (its cause chained)."""
        if not isinstance(batch_kwargs, list):
            raise TypeError("run_batch takes a list of keyword-argument dicts")
        defaults, extra = _split_defaults(defaults_kwargs)
        if extra:
            raise TypeError(f"run_batch got unexpected keyword {sorted(extra)[0]!r}")
        chosen = _backend(backend)
        for kwargs in batch_kwargs:
            if not isinstance(kwargs, dict):
                raise TypeError(f"run_batch items are dicts of arguments, not {type(kwargs)}")
            self._bind((), kwargs)
        if num_threads == "auto":
            num_threads = AUTO_THREADS
        if not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads must be a positive integer or 'auto': {num_threads!r}")
        threads = max(1, min(num_threads, len(batch_kwargs)))

        def one(kwargs: dict[str, Any]) -> ProgramState:
            state = _new_state(chosen, defaults, False)
            self._execute(state, (), kwargs)
            state.sync()
            return state

        with ThreadPoolExecutor(threads, thread_name_prefix=f"sglrs-{self.__name__}") as pool:
            futures = [pool.submit(one, kwargs) for kwargs in batch_kwargs]
            if progress_bar:
                from concurrent.futures import as_completed

                from tqdm import tqdm

                for _ in tqdm(as_completed(futures), total=len(futures), desc=self.__name__):
                    pass
            states = []
            for i, future in enumerate(futures):
                error = future.exception()
                if error is not None:
                    n = len(futures)
                    raise ProgramError(f"program {i} of {n} failed: {error}") from error
                states.append(future.result())
        return states

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Check the arguments before anything runs (a TypeError names the mismatch)."""
        try:
            inspect.signature(self.func).bind(None, *args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{self.__name__}: {e}") from None

    def _execute(self, state: ProgramState, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            state.ret_value = self.func(state, *args, **kwargs)
        except BaseException as e:
            state._executor.finish(e)
            raise
        state._executor.finish()


def _backend(backend: Backend | None) -> Backend:
    chosen = backend if backend is not None else get_default_backend()
    if chosen is None:
        raise NoBackendError(
            "no backend: pass run(..., backend=...) or call "
            "sglrs.set_default_backend(sglrs.RuntimeEndpoint(url))"
        )
    if not isinstance(chosen, Backend):
        raise TypeError(f"a backend must be a sglrs.lang Backend, not {type(chosen).__name__}")
    return chosen


def _split_defaults(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(default sampling_params, the program's own arguments)."""
    named = {_RUN_DEFAULTS[k]: v for k, v in kwargs.items() if k in _RUN_DEFAULTS}
    defaults = {"max_new_tokens": DEFAULT_MAX_NEW_TOKENS, **sampling_params(**named)}
    return defaults, {k: v for k, v in kwargs.items() if k not in _RUN_DEFAULTS}


def _new_state(backend: Backend, defaults: dict[str, Any], stream: bool) -> ProgramState:
    return ProgramState(StreamExecutor(backend, defaults, stream))
