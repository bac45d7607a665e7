"""HTTP backend: SGLang's native `/generate` on `sglrs serve` (or any SGLang-compatible server)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from sglrs.lang.backends.base import Backend, check_output
from sglrs.lang.chat_template import ChatTemplate
from sglrs.lang.errors import BackendRequestError, BackendUnreachableError, ChatTemplateError


class RuntimeEndpoint(Backend):
    """`RuntimeEndpoint("http://127.0.0.1:30000", api_key=None, chat_template=None)`.

    The chat template is `chat_template` (Jinja text or a file) when given, else the tokenizer
    that `/get_model_info` names, when that path is readable on this machine.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        chat_template: str | None = None,
        timeout: float = 600.0,
    ) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.model_info: dict[str, Any] = self._request("GET", "/get_model_info")
        if chat_template is not None:
            self.set_chat_template(ChatTemplate(chat_template))

    # ---- Backend ---------------------------------------------------------------------------

    def generate(self, body: dict[str, Any]) -> Any:
        out = self._request("POST", "/generate", body)
        for item in out if isinstance(out, list) else [out]:
            check_output(item)
        return out

    def generate_stream(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        with self._open("POST", "/generate", {**body, "stream": True}) as resp:
            for raw in resp:
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    return
                chunk = json.loads(data)
                if "error" in chunk:
                    error = chunk["error"]
                    raise BackendRequestError(error.get("message", data), error.get("code", 500))
                yield check_output(chunk)

    def load_chat_template(self) -> ChatTemplate:
        served = self.model_info.get("chat_template")
        if isinstance(served, str):  # sglrs serve reports its template (and special tokens)
            info = self.model_info
            return ChatTemplate(served, info.get("bos_token"), info.get("eos_token"))
        path = self.model_info.get("tokenizer_path") or self.model_info.get("model_path")
        if not path or not os.path.exists(path):
            raise ChatTemplateError(
                f"roles need the model's chat template, and the server's tokenizer ({path!r}, "
                "from /get_model_info) is not readable here: pass "
                "RuntimeEndpoint(url, chat_template=<Jinja text or file>)"
            )
        from sglrs.model_loader import load_tokenizer

        return ChatTemplate.from_tokenizer(load_tokenizer(path), path)

    def flush_cache(self) -> None:
        self._request("POST", "/flush_cache", raw=True)

    def get_server_info(self) -> dict[str, Any]:
        return self._request("GET", "/get_server_info")

    def get_model_name(self) -> str:
        return str(self.model_info.get("model_path"))

    # ---- HTTP ------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None, raw: bool = False) -> Any:
        with self._open(method, path, body) as resp:
            payload = resp.read()
        return payload.decode() if raw else json.loads(payload)

    def _open(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data, headers, method=method)
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            raise BackendRequestError(_error_message(e.read()), e.code) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise BackendUnreachableError(
                f"cannot reach the server at {self.base_url} ({method} {path}): {reason}"
            ) from e


def _error_message(payload: bytes) -> str:
    """The message of SGLang's `{"error": {"message"}}` or OpenAI's `{"message"}` body."""
    text = payload.decode("utf-8", errors="replace")
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip() or "(empty body)"
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        if isinstance(error, str):
            return error
        if "message" in body:
            return str(body["message"])
    return text
