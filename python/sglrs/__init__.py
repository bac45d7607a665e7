"""sglrs: a fast LLM serving engine with its hot CPU-side logic in Rust."""

from typing import Any

from sglrs._core import RadixCache, RadixNode, __version__

__all__ = ["RadixCache", "RadixNode", "__version__"]

# The frontend language (`sgl.function`, `sgl.gen`, ...) and the Engine load on first use, so
# `import sglrs` stays cheap.
_LAZY = {"Engine": "sglrs.engine.engine"}


def __getattr__(name: str) -> Any:
    import importlib

    if name == "lang":
        return importlib.import_module("sglrs.lang")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    lang = importlib.import_module("sglrs.lang")
    if name in lang.__all__:
        return getattr(lang, name)
    raise AttributeError(f"module 'sglrs' has no attribute {name!r}")
