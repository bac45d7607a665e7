"""In-process backend over `sglrs.Engine`: the same `/generate` bodies, no HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sglrs.lang.backends.base import Backend, check_output
from sglrs.lang.chat_template import ChatTemplate
from sglrs.lang.errors import BackendRequestError, ChatTemplateError

# /generate body field -> Engine.generate keyword.
_KEYWORDS = {
    "text": "prompt",
    "input_ids": "input_ids",
    "sampling_params": "sampling_params",
    "return_logprob": "return_logprob",
    "logprob_start_len": "logprob_start_len",
    "top_logprobs_num": "top_logprobs_num",
    "return_text_in_logprobs": "return_text_in_logprobs",
    "stream": "stream",
}


class EngineBackend(Backend):
    """`EngineBackend(engine)` over a running Engine, or `EngineBackend(model_path=..., **args)`
    to start one that `shutdown()` (or `with`) stops."""

    def __init__(self, engine: Any = None, **engine_args: Any) -> None:
        super().__init__()
        if engine is None:
            from sglrs.engine.engine import Engine

            engine = Engine(**engine_args)
            self._owned = True
        elif engine_args:
            raise TypeError("give either a running engine or the arguments to start one")
        else:
            self._owned = False
        self.engine = engine

    def generate(self, body: dict[str, Any]) -> Any:
        out = self._call(body)
        for item in out if isinstance(out, list) else [out]:
            check_output(item)
        return out

    def generate_stream(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        chunks = self._call({**body, "stream": True})
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except ValueError as e:  # RequestError: what the server answers with a 400
                raise BackendRequestError(str(e), 400) from e
            yield check_output(chunk)

    def load_chat_template(self) -> ChatTemplate:
        tokenizer = self.engine.tokenizer
        if tokenizer is None:
            raise ChatTemplateError("the engine runs without a tokenizer (skip_tokenizer_init)")
        return ChatTemplate.from_tokenizer(tokenizer, str(self.engine.server_args.model_path))

    def flush_cache(self) -> None:
        if not self.engine.flush_cache():
            raise BackendRequestError("the cache could not be flushed (requests are running)")

    def get_server_info(self) -> dict[str, Any]:
        return self.engine.get_server_info()

    def shutdown(self) -> None:
        if self._owned:
            self.engine.shutdown()

    def __enter__(self) -> EngineBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _call(self, body: dict[str, Any]) -> Any:
        unknown = set(body) - set(_KEYWORDS)
        if unknown:
            raise BackendRequestError(f"unknown field: {sorted(unknown)[0]}", 400)
        kwargs = {_KEYWORDS[k]: v for k, v in body.items()}
        try:
            return self.engine.generate(**kwargs)
        except ValueError as e:  # RequestError: what the server answers with a 400
            raise BackendRequestError(str(e), 400) from e
