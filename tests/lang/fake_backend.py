"""A deterministic in-memory Backend for the interpreter tests (no model, no server).

Tokens are characters. A vowel has logprob -0.1 and any other character -1.0, so `select`
prefers the choice with the most vowels per character. A gen answers `[n]` with n the
prompt's length in characters; streamed, one character per chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sglrs.lang.backends.base import Backend
from sglrs.lang.chat_template import ChatTemplate
from sglrs.lang.errors import BackendRequestError

CHATML = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
    "<|im_start|>system\nDefault.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def char_logprob(c: str) -> float:
    return -0.1 if c in "aeiou" else -1.0


class FakeBackend(Backend):
    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []

    def generate(self, body: dict[str, Any]) -> Any:
        self.bodies.append(body)
        prompts = body.get("text", body.get("input_ids"))
        if isinstance(prompts, list) and prompts and not isinstance(prompts[0], int):
            return [self._one(body, p) for p in prompts]
        return self._one(body, prompts)

    def generate_stream(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        final = self.generate(body)
        for i in range(1, len(final["text"]) + 1):
            yield {**final, "text": final["text"][:i]}

    def load_chat_template(self) -> ChatTemplate:
        return ChatTemplate(CHATML)

    def flush_cache(self) -> None:
        pass

    def get_server_info(self) -> dict[str, Any]:
        return {}

    def _one(self, body: dict[str, Any], prompt: Any) -> dict[str, Any]:
        chars = [chr(t) for t in prompt] if isinstance(prompt, list) else list(prompt)
        params = body.get("sampling_params", {})
        if params.get("max_new_tokens", 128) > 1000:
            raise BackendRequestError("max_new_tokens exceed the context length", 400)
        meta: dict[str, Any] = {"prompt_tokens": len(chars), "cached_tokens": 0}
        if body.get("return_logprob"):
            start = body.get("logprob_start_len", 0)
            meta["input_token_logprobs"] = [
                [None if p == 0 else char_logprob(c), ord(c), c]
                for p, c in enumerate(chars)
                if p >= start
            ]
        text = "" if params.get("max_new_tokens") == 0 else f"[{len(chars)}]"
        meta["finish_reason"] = {"type": "length", "length": len(text)}
        return {"text": text, "meta_info": meta}
