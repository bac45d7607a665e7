"""`ProgramState` (the `s` of a program) and the group of states `s.fork(n)` returns."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from sglrs.lang.interpreter import StreamExecutor
from sglrs.lang.ir import Expr, to_expr


class ProgramState:
    """Append with `s += ...`; read with `s["name"]`, `s.text()`, `s.messages()`."""

    def __init__(self, executor: StreamExecutor) -> None:
        self._executor = executor
        self.ret_value: Any = None

    def __iadd__(self, other: Any) -> ProgramState:
        self._executor.submit(to_expr(other))
        return self

    def __getitem__(self, name: str) -> Any:
        return self._executor.get_var(name)

    def __setitem__(self, name: str, value: Any) -> None:
        self._executor.set_var(name, value)

    def __contains__(self, name: str) -> bool:
        return self._executor.has_var(name)

    def get_var(self, name: str) -> Any:
        return self._executor.get_var(name)

    def set_var(self, name: str, value: Any) -> None:
        self._executor.set_var(name, value)

    def get_meta_info(self, name: str) -> Any:
        """The backend's meta_info of the request that produced `name` (select: its scores)."""
        return self._executor.get_meta_info(name)

    def text(self) -> str:
        self._executor.sync()
        return self._executor.text_

    def messages(self) -> list[dict[str, str]]:
        """The completed role messages, `[{"role": ..., "content": ...}]`."""
        self._executor.sync()
        return list(self._executor.messages_)

    def sync(self) -> None:
        """Wait for every appended expression; raise the first error."""
        self._executor.sync()

    def error(self) -> BaseException | None:
        try:
            self._executor.sync()
        except BaseException as e:
            return e
        return None

    def text_iter(self, var_name: str | None = None) -> Iterator[str]:
        """Pieces of text as they are generated (of the whole state or of one variable);
        joined, they equal `s.text()` (or `s[var_name]`)."""
        return self._executor.text_iter(var_name)

    def fork(self, size: int = 1) -> ProgramStateGroup:
        """`size` copies of this state; the shared text is cached once on the backend first."""
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"fork size must be a positive integer, not {size!r}")
        self._executor.sync()
        if size > 1 and self._executor.text_:
            self._executor.backend.generate(
                {"text": self._executor.text_, "sampling_params": {"max_new_tokens": 0}}
            )
        children = [ProgramState(self._executor.copy_for_fork()) for _ in range(size)]
        return ProgramStateGroup(children, self)

    def __repr__(self) -> str:
        return f"ProgramState({self.text()!r})"


class ProgramStateGroup:
    """The states of a fork: index them, `+=` to all (an expression, a list, or `lambda i:`),
    and `join()` their captured variables back into the parent as lists."""

    def __init__(self, states: list[ProgramState], parent: ProgramState) -> None:
        self.states = states
        self.parent = parent
        self._at_fork = dict(parent._executor.variables)

    def __getitem__(self, i: int) -> ProgramState:
        return self.states[i]

    def __len__(self) -> int:
        return len(self.states)

    def __iter__(self) -> Iterator[ProgramState]:
        return iter(self.states)

    def __iadd__(self, other: Any) -> ProgramStateGroup:
        if isinstance(other, (list, tuple)):
            if len(other) != len(self.states):
                raise ValueError(f"{len(other)} expressions for {len(self.states)} states")
            for state, expr in zip(self.states, other, strict=True):
                state += expr
        elif callable(other) and not isinstance(other, Expr):
            fn: Callable[[int], Any] = other
            for i, state in enumerate(self.states):
                state += fn(i)
        else:
            for state in self.states:
                state += other
        return self

    def join(self) -> None:
        """Wait for every branch; each variable a branch captured after the fork becomes, in the
        parent, the list of the branches' values (None for a branch that lacks it)."""
        executors = [state._executor for state in self.states]
        for ex in executors:
            ex.sync()
        names: list[str] = []
        for ex in executors:
            for name in ex.variables:
                fresh = name not in self._at_fork or ex.variables[name] is not self._at_fork[name]
                if fresh and name not in names:
                    names.append(name)
        for ex in executors:
            ex.finish()
        self.parent._executor.sync()
        for name in names:
            self.parent._executor.capture(
                name,
                [ex.variables.get(name) for ex in executors],
                [ex.meta_info.get(name) for ex in executors],
            )
