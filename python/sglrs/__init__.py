"""sglrs: a fast LLM serving engine with its hot CPU-side logic in Rust."""

from sglrs._core import RadixCache, RadixNode, __version__

__all__ = ["RadixCache", "RadixNode", "__version__"]
