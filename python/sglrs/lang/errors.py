"""The exceptions of the frontend language: each names what went wrong and where."""

from __future__ import annotations


class LangError(Exception):
    """Base class of the frontend language's errors."""


class UnknownVariableError(LangError, KeyError):
    """`s[name]` for a name no expression of the program captures."""

    def __init__(self, name: str, known: list[str]) -> None:
        listed = ", ".join(repr(k) for k in known) if known else "none yet"
        super().__init__(f"unknown variable {name!r}; the program captures: {listed}")
        self.name = name

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


class NoBackendError(LangError):
    """A program ran without `backend=` and no `set_default_backend(...)`."""


class BackendUnreachableError(LangError):
    """The server could not be reached (refused, DNS, timeout)."""


class BackendRequestError(LangError):
    """The backend refused a request; `status` is its HTTP status (400: a client error)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(f"the backend answered {status}: {message}")
        self.message = message
        self.status = status


class ChatTemplateError(LangError):
    """A role was used but the model's chat template is missing or cannot be split into roles."""


class ProgramError(LangError):
    """One program of `run_batch` failed; the cause is chained."""
