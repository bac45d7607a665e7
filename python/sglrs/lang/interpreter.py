"""Runs a state's expressions in order, off the program's thread.

`s += expr` only queues: the program's Python keeps going (so the branches of a fork, or the
programs of a batch, generate concurrently) until it reads a result (`s["x"]`, `s.text()`),
which waits for what it needs. A drain thread exists only while expressions are queued.
After an error the rest of the queue is skipped, and every later read raises that error.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterator
from typing import Any

from sglrs.lang.backends.base import Backend
from sglrs.lang.choices import token_length_normalized
from sglrs.lang.errors import LangError, UnknownVariableError
from sglrs.lang.ir import Expr, Gen, RoleBegin, RoleEnd, Select, Text, flatten
from sglrs.lang.selection import select_choice


def _captured(expr: Expr) -> str | None:
    return expr.name if isinstance(expr, (Gen, Select)) else None


class StreamExecutor:
    def __init__(self, backend: Backend, defaults: dict[str, Any], stream: bool) -> None:
        self.backend = backend
        self.defaults = defaults  # run-level sampling_params; a gen's own values override
        self.stream = stream
        self.text_ = ""
        self.messages_: list[dict[str, str]] = []
        self.variables: dict[str, Any] = {}
        self.meta_info: dict[str, Any] = {}
        self.error_: BaseException | None = None
        self._cond = threading.Condition()
        self._ops: deque[Expr] = deque()
        self._pending: Counter[str] = Counter()
        self._draining = False
        self._finished = False
        self._role: str | None = None
        self._role_start = 0
        self._role_suffix = ""
        self._chunks: list[str] = []
        self._var_chunks: dict[str, list[str]] = {}
        self._var_done: set[str] = set()

    # ---- the program's side ----------------------------------------------------------------

    def submit(self, expr: Expr) -> None:
        leaves = flatten(expr)
        with self._cond:
            for leaf in leaves:
                if name := _captured(leaf):
                    self._pending[name] += 1
            self._ops.extend(leaves)
            if not self._draining:
                self._draining = True
                threading.Thread(target=self._drain, name="sglrs-lang", daemon=True).start()

    def sync(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._draining)
            if self.error_ is not None:
                raise self.error_

    def finish(self, error: BaseException | None = None) -> None:
        """The program returned (or raised `error`): streams end once the queue is drained."""
        with self._cond:
            if error is not None and self.error_ is None:
                self.error_ = error
            self._finished = True
            self._cond.notify_all()

    def get_var(self, name: str) -> Any:
        with self._cond:
            self._cond.wait_for(lambda: self._pending[name] == 0)
            if name in self.variables:
                return self.variables[name]
            if self.error_ is not None:
                raise self.error_
            pending = {n for n, count in self._pending.items() if count > 0}
            raise UnknownVariableError(name, sorted(set(self.variables) | pending))

    def set_var(self, name: str, value: Any) -> None:
        with self._cond:
            self.variables[name] = value

    def has_var(self, name: str) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: self._pending[name] == 0)
            return name in self.variables

    def get_meta_info(self, name: str) -> Any:
        self.get_var(name)
        with self._cond:
            return self.meta_info.get(name)

    def copy_for_fork(self) -> StreamExecutor:
        child = StreamExecutor(self.backend, self.defaults, self.stream)
        child.text_ = self.text_
        child.messages_ = list(self.messages_)
        child.variables = dict(self.variables)
        child.meta_info = dict(self.meta_info)
        child._role = self._role
        child._role_start = self._role_start
        child._role_suffix = self._role_suffix
        return child

    def text_iter(self, var_name: str | None = None) -> Iterator[str]:
        """Text as it is appended (the whole program, or one variable), until it is complete."""
        seen = 0
        while True:
            fresh, done, error = self._next_chunks(var_name, seen)
            seen += len(fresh)
            yield from fresh
            if done:
                if error is not None:
                    raise error
                return

    def _next_chunks(
        self, var_name: str | None, seen: int
    ) -> tuple[list[str], bool, BaseException | None]:
        """Wait for chunks past `seen` or the end; (new chunks, ended, error)."""

        def source() -> list[str]:
            if var_name is None:
                return self._chunks
            return self._var_chunks.get(var_name, [])

        def complete() -> bool:
            if self.error_ is not None:
                return True
            if var_name is not None and var_name in self._var_done:
                return True
            return self._finished and not self._draining

        with self._cond:
            self._cond.wait_for(lambda: len(source()) > seen or complete())
            fresh = source()[seen:]
            return fresh, complete() and len(source()) == seen + len(fresh), self.error_

    # ---- the drain thread ------------------------------------------------------------------

    def _drain(self) -> None:
        while True:
            with self._cond:
                if not self._ops:
                    self._draining = False
                    self._cond.notify_all()
                    return
                op = self._ops.popleft()
                skip = self.error_ is not None
            try:
                if not skip:
                    self._execute(op)
            except BaseException as e:  # kept for the program's next read
                with self._cond:
                    if self.error_ is None:
                        self.error_ = e
            finally:
                if name := _captured(op):
                    with self._cond:
                        self._pending[name] -= 1
                        self._var_done.add(name)
                        self._cond.notify_all()

    def _append(self, piece: str, var: str | None = None) -> None:
        if not piece:
            return
        with self._cond:
            self.text_ += piece
            self._chunks.append(piece)
            if var is not None:
                self._var_chunks.setdefault(var, []).append(piece)
            self._cond.notify_all()

    def _execute(self, op: Expr) -> None:
        if isinstance(op, Text):
            self._append(op.value)
        elif isinstance(op, Gen):
            self._gen(op)
        elif isinstance(op, Select):
            self._select(op)
        elif isinstance(op, RoleBegin):
            self._role_begin(op.role)
        elif isinstance(op, RoleEnd):
            self._role_end(op.role)
        else:
            raise TypeError(f"unknown expression {op!r}")

    def _gen(self, op: Gen) -> None:
        body = {"text": self.text_, "sampling_params": {**self.defaults, **op.params}}
        if not self.stream:
            out = self.backend.generate(body)
            self._append(out["text"], op.name)
            self.capture(op.name, out["text"], out["meta_info"])
            return
        shown = 0
        for chunk in self.backend.generate_stream(body):
            text = chunk["text"]
            self._append(text[shown:], op.name)
            shown = len(text)
            self.capture(op.name, text, chunk["meta_info"])

    def _select(self, op: Select) -> None:
        method = op.method or token_length_normalized
        decision, meta = select_choice(self.backend, self.text_, op.choices, method, op.temperature)
        self._append(decision, op.name)
        self.capture(op.name, decision, meta)

    def capture(self, name: str | None, value: Any, meta: Any) -> None:
        if name is None:
            return
        with self._cond:
            self.variables[name] = value
            self.meta_info[name] = meta
            self._cond.notify_all()

    def _role_begin(self, role: str) -> None:
        if self._role is not None:
            raise LangError(f"{role}_begin() inside the open {self._role} role: end it first")
        prefix, suffix = self.backend.chat_template().affixes(self.messages_, role)
        self._append(prefix)
        with self._cond:
            self._role = role
            self._role_start = len(self.text_)
            self._role_suffix = suffix

    def _role_end(self, role: str) -> None:
        if self._role != role:
            now = f"the open role is {self._role}" if self._role else "no role is open"
            raise LangError(f"{role}_end() without {role}_begin(): {now}")
        content = self.text_[self._role_start :]
        self._append(self._role_suffix)
        with self._cond:
            self.messages_.append({"role": role, "content": content})
            self._role = None
