"""Backends of the frontend language: HTTP to a `/generate` server, or an in-process Engine."""

from sglrs.lang.backends.base import Backend, get_default_backend, set_default_backend

__all__ = ["Backend", "get_default_backend", "set_default_backend"]
