"""A thread-safe LRU cache of compiled grammars for one tokenizer."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from sglrs._core import Grammar, TokenizerInfo


class GrammarCache:
    """Compiled grammars keyed by (kind, source, options) for one `TokenizerInfo`.

    Safe to call from a compile thread pool: compilation releases the GIL and runs outside the
    lock; two threads racing on one key both compile and the first result is kept.
    Compile errors (ValueError) are not cached.
    """

    def __init__(self, info: TokenizerInfo, max_entries: int = 1024) -> None:
        self.info = info
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, Grammar] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def regex(self, pattern: str) -> Grammar:
        return self._get(("regex", pattern), lambda: Grammar.from_regex(pattern, self.info))

    def json_schema(
        self,
        schema: str | dict[str, Any],
        whitespace: str = "compact",
        max_whitespace: int = 16,
        max_depth: int = 3,
    ) -> Grammar:
        # Normalized text (key order kept: it is the property order), so a dict and its JSON
        # text share an entry.
        text = json.dumps(json.loads(schema) if isinstance(schema, str) else schema)
        key = ("json_schema", text, whitespace, max_whitespace, max_depth)
        return self._get(
            key,
            lambda: Grammar.from_json_schema(
                text, self.info, whitespace, max_whitespace=max_whitespace, max_depth=max_depth
            ),
        )

    def json_object(
        self, whitespace: str = "compact", max_whitespace: int = 16, max_depth: int = 3
    ) -> Grammar:
        key = ("json_object", "", whitespace, max_whitespace, max_depth)
        return self._get(
            key,
            lambda: Grammar.json_object(
                self.info, whitespace, max_whitespace=max_whitespace, max_depth=max_depth
            ),
        )

    def _get(self, key: tuple, compile_fn: Any) -> Grammar:
        with self._lock:
            grammar = self._entries.get(key)
            if grammar is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return grammar
            self.misses += 1
        grammar = compile_fn()
        with self._lock:
            grammar = self._entries.setdefault(key, grammar)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return grammar
