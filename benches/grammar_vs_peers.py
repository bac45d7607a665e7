"""sglrs.grammar vs xgrammar, llguidance and outlines-core on SmolLM2's tokenizer.

Per case and engine: cold compile, time to first mask (compile + first fill), first-walk step
(fill + advance along a fixed valid token path, states cold), steady-state step mean / p99
(the same path repeated, states warm) and the allowed-token count at step 0. Single-threaded.
Also: sglrs's batched fill of 256 rows in one call vs 256 single-row fills.

    python benches/grammar_vs_peers.py [--repeats 30] [--skip outlines]

Writes benches/results/grammar_vs_peers.{json,png}.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from sglrs.grammar import (  # noqa: E402
    Grammar,
    Matcher,
    TokenizerInfo,
    allocate_bitmask,
    bitmask_to_bool,
    fill_bitmasks,
)

RESULTS = Path(__file__).resolve().parent / "results"
EOS = 2  # <|im_end|>


def obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
        "additionalProperties": False,
    }


# (name, kind, source, a valid output)
CASES: list[tuple[str, str, Any, str]] = [
    ("long_string", "regex", r'"[^"]{0,200}"', '"' + "The quick brown fox jumps. " * 7 + '"'),
    (
        "email",
        "regex",
        r"[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}",
        "john.smith@mail.example.org",
    ),
    ("date", "regex", r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])", "2024-02-29"),
    ("choice", "regex", r"(apple|banana|cherry|durian|elderberry)", "elderberry"),
    (
        "ipv4",
        "regex",
        r"((25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])",
        "192.168.101.254",
    ),
    ("dotted_words", "regex", r"[a-z]+(\.[a-z]+)*", "com.example.service.api"),
    (
        "json_person",
        "json",
        obj({"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 150}}),
        '{"name":"Alice Johnson","age":42}',
    ),
    (
        "json_nested_enums",
        "json",
        obj(
            {
                "id": {"type": "integer", "minimum": 1000, "maximum": 99999},
                "status": {"enum": ["active", "inactive", "banned"]},
                "profile": obj(
                    {
                        "role": {"enum": ["admin", "editor", "viewer"]},
                        "level": {"type": "integer", "minimum": -5, "maximum": 250},
                        "address": obj({"city": {"type": "string"}, "zip": {"type": "string"}}),
                    }
                ),
                "verified": {"type": "boolean"},
            }
        ),
        '{"id":31337,"status":"active","profile":{"role":"editor","level":17,'
        '"address":{"city":"Paris","zip":"75001"}},"verified":true}',
    ),
    (
        "json_long_field",
        "json",
        obj({"title": {"type": "string", "maxLength": 200}, "score": {"type": "number"}}),
        '{"title":"' + "A long bounded text field. " * 6 + '","score":0.75}',
    ),
    (
        "json_array",
        "json",
        obj(
            {
                "items": {
                    "type": "array",
                    "items": obj({"sku": {"type": "string"}, "qty": {"type": "integer"}}),
                    "minItems": 1,
                    "maxItems": 4,
                }
            }
        ),
        '{"items":[{"sku":"A-1","qty":2},{"sku":"B-22","qty":10},{"sku":"C","qty":1}]}',
    ),
    (
        "json_formats",
        "json",
        obj(
            {
                "when": {"type": "string", "format": "date"},
                "contact": {"type": "string", "format": "email"},
                "uid": {"type": "string", "format": "uuid"},
            }
        ),
        '{"when":"2023-11-05","contact":"ops@example.com",'
        '"uid":"123e4567-e89b-12d3-a456-426614174000"}',
    ),
    (
        "json_anyof_optional",
        "json",
        obj(
            {
                "name": {"type": "string"},
                "value": {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
                "note": {"type": "string"},
                "flag": {"type": "boolean"},
            },
            required=["name", "value"],
        ),
        '{"name":"x","value":null,"flag":false}',
    ),
]


def load_tokenizer() -> tuple[Any, str]:
    """SmolLM2's tokenizer (transformers, from the default GGUF) and its tokenizer.json."""
    import transformers

    from sglrs.utils.default_model import cache_dir, default_model_path

    cached = cache_dir() / "tokenizers" / "SmolLM2-135M-Instruct.tokenizer.json"
    if cached.exists():
        tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(cached))
        tok.eos_token = "<|im_end|>"
        return tok, cached.read_text()
    gguf = default_model_path()
    tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    text = tok.backend_tokenizer.to_str()
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(text)
    return tok, text


def popcount(row: np.ndarray, vocab: int) -> int:
    return int(bitmask_to_bool(row, vocab).sum())


class Engine:
    """One library behind a uniform interface: compile, new matcher, fill, advance."""

    name = ""

    def compile(self, kind: str, source: Any) -> Any: ...
    def matcher(self, compiled: Any) -> Any: ...
    def fill(self, m: Any) -> None: ...
    def advance(self, m: Any, token: int) -> None: ...
    def allowed(self, m: Any) -> int: ...


class Sglrs(Engine):
    name = "sglrs"

    def __init__(self, tok_json: str, vocab: int) -> None:
        self.info = TokenizerInfo.from_tokenizer_json(tok_json, [EOS], vocab_size=vocab)
        self.vocab = vocab
        self.row = allocate_bitmask(1, vocab)

    def compile(self, kind: str, source: Any) -> Any:
        if kind == "regex":
            return Grammar.from_regex(source, self.info)
        return Grammar.from_json_schema(source, self.info)

    def matcher(self, compiled: Any) -> Any:
        return Matcher(compiled)

    def fill(self, m: Any) -> None:
        m.fill_next_token_bitmask(self.row)

    def advance(self, m: Any, token: int) -> None:
        if not m.accept_token(token):
            raise AssertionError(f"sglrs rejected {token}")

    def allowed(self, m: Any) -> int:
        m.fill_next_token_bitmask(self.row)
        return popcount(self.row[0], self.vocab)


class XGrammar(Engine):
    name = "xgrammar"

    def __init__(self, tok: Any, vocab: int) -> None:
        import torch
        import xgrammar as xgr

        torch.set_num_threads(1)
        self.xgr = xgr
        info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=vocab, stop_token_ids=[EOS])
        self.info = info
        self.vocab = vocab
        self.bitmask = xgr.allocate_token_bitmask(1, vocab)

    def compile(self, kind: str, source: Any) -> Any:
        compiler = self.xgr.GrammarCompiler(self.info, max_threads=1, cache_enabled=False)
        if kind == "regex":
            return compiler.compile_regex(source)
        return compiler.compile_json_schema(
            json.dumps(source), any_whitespace=False, separators=(",", ":")
        )

    def matcher(self, compiled: Any) -> Any:
        return self.xgr.GrammarMatcher(compiled)

    def fill(self, m: Any) -> None:
        m.fill_next_token_bitmask(self.bitmask)

    def advance(self, m: Any, token: int) -> None:
        if not m.accept_token(token):
            raise AssertionError(f"xgrammar rejected {token}")

    def allowed(self, m: Any) -> int:
        m.fill_next_token_bitmask(self.bitmask)
        return popcount(self.bitmask.numpy()[0], self.vocab)


class LLGuidance(Engine):
    name = "llguidance"

    def __init__(self, tok_json: str, vocab: int) -> None:
        import llguidance
        import llguidance.numpy as lnp

        self.ll = llguidance
        self.lnp = lnp
        self.tok = llguidance.LLTokenizer(tok_json, n_vocab=vocab, eos_token=EOS)
        self.vocab = vocab
        self.bitmask = lnp.allocate_token_bitmask(1, vocab)

    def compile(self, kind: str, source: Any) -> Any:
        if kind == "regex":
            grammar = self.ll.LLMatcher.grammar_from_regex(source)
        else:
            grammar = self.ll.LLMatcher.grammar_from_json_schema(
                source, defaults={"whitespace_flexible": False}
            )
        # llguidance compiles inside the matcher constructor (lazily); the "compiled" grammar
        # is the text, and matcher() below is where the work happens.
        return grammar

    def matcher(self, compiled: Any) -> Any:
        m = self.ll.LLMatcher(self.tok, compiled, log_level=0)
        if m.is_error():
            raise AssertionError(m.get_error())
        return m

    def fill(self, m: Any) -> None:
        self.lnp.fill_next_token_bitmask(m, self.bitmask, 0)

    def advance(self, m: Any, token: int) -> None:
        if not m.consume_token(token):
            raise AssertionError(f"llguidance rejected {token}: {m.get_error()}")

    def allowed(self, m: Any) -> int:
        self.fill(m)
        return popcount(self.bitmask[0], self.vocab)


class OutlinesCore(Engine):
    name = "outlines-core"

    def __init__(self, info: TokenizerInfo, vocab: int) -> None:
        from outlines_core import Guide, Index, Vocabulary
        from outlines_core.json_schema import build_regex_from_schema

        self.Guide, self.Index, self.build = Guide, Index, build_regex_from_schema
        by_bytes: dict[bytes, list[int]] = {}
        for i in range(info.vocab_size):
            b = info.token_bytes(i)
            if b:
                by_bytes.setdefault(b, []).append(i)
        self.vocabulary = Vocabulary(EOS, by_bytes)
        self.vocab = vocab
        self.bitmask = np.zeros((1, (vocab + 31) // 32), dtype=np.int32)

    def compile(self, kind: str, source: Any) -> Any:
        regex = source if kind == "regex" else self.build(json.dumps(source), "")
        return self.Index(regex, self.vocabulary)

    def matcher(self, compiled: Any) -> Any:
        return self.Guide(compiled)

    def fill(self, m: Any) -> None:
        m.write_mask_into(self.bitmask.ctypes.data, self.bitmask.size, 4)

    def advance(self, m: Any, token: int) -> None:
        # outlines-core has no transition on EOS: its mask allowing EOS is the end.
        if token != EOS:
            m.advance(token, return_tokens=False)

    def allowed(self, m: Any) -> int:
        self.fill(m)
        return popcount(self.bitmask[0], self.vocab)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run_case(engine: Engine, kind: str, source: Any, path: list[int], repeats: int) -> dict:
    """Cold compile and time to first mask: median of up to 5 fresh compiles (fewer when one
    takes seconds); then the first walk on a fresh grammar and the warm repeats."""
    compiles: list[float] = []
    first_masks: list[float] = []
    while len(compiles) < 5 and (sum(first_masks) < 3.0 or not compiles):
        # Free the previous round's grammar and matcher outside the timed window.
        compiled = m = None
        gc.collect()
        compiled, t_compile = timed(lambda: engine.compile(kind, source))
        t0 = time.perf_counter()
        m = engine.matcher(compiled)
        engine.fill(m)
        first_masks.append(time.perf_counter() - t0 + t_compile)
        compiles.append(t_compile)
    t_compile = statistics.median(compiles)
    t_first_mask = statistics.median(first_masks)
    allowed0 = engine.allowed(m)
    # First walk: states visited for the first time (step 0's mask is already computed).
    first: list[float] = []
    engine.advance(m, path[0])
    for tok in path[1:]:
        t = time.perf_counter_ns()
        engine.fill(m)
        engine.advance(m, tok)
        first.append(time.perf_counter_ns() - t)
    steady: list[float] = []
    for _ in range(repeats):
        m = engine.matcher(compiled)
        for tok in path:
            t = time.perf_counter_ns()
            engine.fill(m)
            engine.advance(m, tok)
            steady.append(time.perf_counter_ns() - t)
    steady_sorted = sorted(steady)
    return {
        "compile_ms": t_compile * 1e3,
        "first_mask_ms": t_first_mask * 1e3,
        "first_walk_step_us": statistics.fmean(first) / 1e3 if first else 0.0,
        "steady_step_mean_us": statistics.fmean(steady) / 1e3,
        "steady_step_p99_us": steady_sorted[int(0.99 * (len(steady) - 1))] / 1e3,
        "allowed_step0": allowed0,
    }


def batched_fill(engine: Sglrs, tok: Any, rows: int = 256, repeats: int = 50) -> dict:
    """256 matchers at different warm positions of several cases, filled in one call."""
    matchers = []
    for i in range(rows):
        name, kind, source, text = CASES[i % len(CASES)]
        g = engine.compile(kind, source)
        path = tok.encode(text, add_special_tokens=False)
        m = Matcher(g)
        for t in path[: i % max(1, len(path))]:
            assert m.accept_token(t)
        matchers.append(m)
    out = allocate_bitmask(rows, engine.vocab)
    fill_bitmasks(matchers, out)  # warm every state's mask
    t_batch = []
    t_single = []
    for _ in range(repeats):
        t = time.perf_counter_ns()
        fill_bitmasks(matchers, out)
        t_batch.append(time.perf_counter_ns() - t)
        t = time.perf_counter_ns()
        for r, m in enumerate(matchers):
            m.fill_next_token_bitmask(out, r)
        t_single.append(time.perf_counter_ns() - t)
    batch = statistics.median(t_batch) / 1e3
    single = statistics.median(t_single) / 1e3
    return {"rows": rows, "batched_us": batch, "single_rows_total_us": single}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [c[0] for c in CASES]
    engines = list(results["engines"])
    metrics = [
        ("first_mask_ms", "time to first mask (ms)"),
        ("steady_step_mean_us", "steady step mean (µs)"),
        ("steady_step_p99_us", "steady step p99 (µs)"),
    ]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(13, 11))
    width = 0.8 / len(engines)
    for ax, (key, label) in zip(axes, metrics, strict=True):
        for j, e in enumerate(engines):
            vals = [results["cases"][c].get(e, {}).get(key, np.nan) for c in cases]
            ax.bar(np.arange(len(cases)) + j * width, vals, width, label=e)
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.set_xticks(np.arange(len(cases)) + width * (len(engines) - 1) / 2)
        ax.set_xticklabels(cases, rotation=20, fontsize=8)
    axes[0].legend()
    fig.suptitle("sglrs.grammar vs peers, SmolLM2 tokenizer (V=49152), single thread")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--skip", nargs="*", default=[], help="engines to leave out")
    args = ap.parse_args()

    tok, tok_json = load_tokenizer()
    vocab = 49152
    sg = Sglrs(tok_json, vocab)
    engines: list[Engine] = [sg]
    versions = {"sglrs": "local"}
    makers = {
        "xgrammar": lambda: XGrammar(tok, vocab),
        "llguidance": lambda: LLGuidance(tok_json, vocab),
        "outlines-core": lambda: OutlinesCore(sg.info, vocab),
    }
    for name, make in makers.items():
        if name in args.skip:
            continue
        try:
            engines.append(make())
            from importlib.metadata import version

            versions[name] = version(name.replace("-", "_") if name == "outlines-core" else name)
        except ImportError as e:
            print(f"{name}: not installed ({e}); skipped")

    results: dict[str, Any] = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "engines": versions,
        "vocab_size": vocab,
        "repeats": args.repeats,
        "cases": {},
    }
    for name, kind, source, text in CASES:
        path = tok.encode(text, add_special_tokens=False) + [EOS]
        results["cases"][name] = {"path_len": len(path)}
        for e in engines:
            try:
                r = run_case(e, kind, source, path, args.repeats)
            except Exception as exc:  # a peer that cannot run a case is reported, not fatal
                r = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            results["cases"][name][e.name] = r

    results["batched_fill"] = batched_fill(sg, tok)

    cols = [
        ("compile_ms", "compile ms"),
        ("first_mask_ms", "TTFM ms"),
        ("first_walk_step_us", "1st walk µs"),
        ("steady_step_mean_us", "step µs"),
        ("steady_step_p99_us", "p99 µs"),
        ("allowed_step0", "allowed@0"),
    ]
    head = f"{'case':22s}{'engine':15s}" + "".join(f"{c[1]:>13s}" for c in cols)
    print(head)
    print("-" * len(head))
    for name, per in results["cases"].items():
        for e in engines:
            r = per[e.name]
            if "error" in r:
                print(f"{name:22s}{e.name:15s}  error: {r['error'][:90]}")
                continue
            cells = "".join(
                f"{r[k]:13d}" if isinstance(r[k], int) else f"{r[k]:13.3f}" for k, _ in cols
            )
            print(f"{name:22s}{e.name:15s}{cells}")
        ours = per["sglrs"]
        for e in engines[1:]:
            r = per[e.name]
            if "error" in r:
                continue
            print(
                f"{'':22s}{'ratio vs ' + e.name:28s}"
                f"TTFM x{r['first_mask_ms'] / ours['first_mask_ms']:.1f} faster, "
                f"step x{r['steady_step_mean_us'] / ours['steady_step_mean_us']:.2f}, "
                f"p99 x{r['steady_step_p99_us'] / ours['steady_step_p99_us']:.2f}"
            )
    b = results["batched_fill"]
    print(
        f"\nbatched fill of {b['rows']} rows: {b['batched_us']:.1f} µs in one call vs "
        f"{b['single_rows_total_us']:.1f} µs as {b['rows']} single-row calls "
        f"(x{b['single_rows_total_us'] / b['batched_us']:.2f})"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "grammar_vs_peers.json").write_text(json.dumps(results, indent=1))
    plot(results, RESULTS / "grammar_vs_peers.png")
    print(f"wrote {RESULTS / 'grammar_vs_peers.json'} and .png")


if __name__ == "__main__":
    main()
