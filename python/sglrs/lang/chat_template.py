"""Role prefixes and suffixes taken from the model's own Jinja chat template.

A role's text is what the template adds when one more message of that role follows the
conversation so far: render `history + [marker message]`, drop the rendering of `history`, and
split at the marker. So the first message gets the template's preamble (BOS, a default system
prompt), and later messages get exactly what the template writes between turns.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from functools import cached_property
from typing import Any

from sglrs.lang.errors import ChatTemplateError

_MARKER = "SGLRSROLECONTENTMARKER"


class ChatTemplate:
    """A chat template (Jinja source) with the special tokens it may reference."""

    def __init__(self, source: str, bos_token: str | None = None, eos_token: str | None = None):
        if os.path.isfile(source):
            with open(source, encoding="utf-8") as f:
                source = f.read()
        if "{%" not in source and "{{" not in source:
            raise ChatTemplateError(f"{source[:80]!r} is neither a file nor a Jinja template")
        self.source = source
        self.bos_token = bos_token or ""
        self.eos_token = eos_token or ""

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, origin: str) -> ChatTemplate:
        source = getattr(tokenizer, "chat_template", None)
        if not isinstance(source, str) or not source:
            raise ChatTemplateError(f"the tokenizer of {origin} has no chat template")
        return cls(source, tokenizer.bos_token, tokenizer.eos_token)

    @cached_property
    def _compiled(self) -> Any:
        from jinja2.exceptions import TemplateError
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        # The same environment options as transformers' apply_chat_template.
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
        )

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        env.filters["tojson"] = lambda v, indent=None: json.dumps(v, indent=indent)
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            return env.from_string(self.source)
        except TemplateError as e:
            raise ChatTemplateError(f"the chat template does not compile: {e}") from e

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
        try:
            return self._compiled.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except Exception as e:
            roles = [m["role"] for m in messages]
            raise ChatTemplateError(f"the chat template rejects roles {roles}: {e}") from e

    def affixes(self, history: list[dict[str, str]], role: str) -> tuple[str, str]:
        """(prefix, suffix) of a `role` message that follows `history`."""
        before = self.render(history) if history else ""
        after = self.render([*history, {"role": role, "content": _MARKER}])
        if not after.startswith(before):
            raise ChatTemplateError(
                f"the chat template rewrites earlier turns when a {role} message follows, so "
                "a program's text cannot grow turn by turn"
            )
        added = after[len(before) :]
        if added.count(_MARKER) != 1:
            raise ChatTemplateError(
                f"the chat template does not write a {role} message's content exactly once"
            )
        prefix, suffix = added.split(_MARKER)
        return prefix, suffix
