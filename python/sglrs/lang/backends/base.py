"""What the interpreter needs from a backend: SGLang's `/generate` body in, its output out."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

from sglrs.lang.chat_template import ChatTemplate
from sglrs.lang.errors import BackendRequestError


class Backend(ABC):
    """Runs `/generate` bodies (text or input_ids, sampling_params, logprob fields, stream)."""

    def __init__(self) -> None:
        self._template: ChatTemplate | None = None
        self._template_lock = threading.Lock()

    @abstractmethod
    def generate(self, body: dict[str, Any]) -> Any:
        """The output dict (one prompt) or list of dicts (a batch); errors are LangErrors."""

    @abstractmethod
    def generate_stream(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Cumulative output dicts of one streamed prompt, the last one final."""

    @abstractmethod
    def load_chat_template(self) -> ChatTemplate:
        """The model's chat template; ChatTemplateError says why there is none."""

    @abstractmethod
    def flush_cache(self) -> None: ...

    @abstractmethod
    def get_server_info(self) -> dict[str, Any]: ...

    def chat_template(self) -> ChatTemplate:
        """Loaded on first use: programs without roles never need a tokenizer."""
        with self._template_lock:
            if self._template is None:
                self._template = self.load_chat_template()
            return self._template

    def set_chat_template(self, template: ChatTemplate) -> None:
        with self._template_lock:
            self._template = template


def check_output(out: dict[str, Any]) -> dict[str, Any]:
    """Raise for an output the scheduler rejected or aborted (it is not a generation)."""
    reason = out.get("meta_info", {}).get("finish_reason")
    if isinstance(reason, dict) and reason.get("type") == "abort":
        status = reason.get("status_code") or 500
        raise BackendRequestError(str(reason.get("message") or "the request was aborted"), status)
    return out


_default: Backend | None = None


def set_default_backend(backend: Backend | None) -> None:
    """The backend programs use when `run(..., backend=...)` is not given."""
    global _default
    if backend is not None and not isinstance(backend, Backend):
        raise TypeError(f"a backend must be a sglrs.lang Backend, not {type(backend).__name__}")
    _default = backend


def get_default_backend() -> Backend | None:
    return _default
