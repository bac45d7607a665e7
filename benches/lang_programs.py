"""Frontend-language programs through `run_batch`: radix cache on vs `--disable-radix-cache`.

64 concurrent programs, each a shared few-shot prefix + its own question + 3 dependent gens
(greedy, up to 8 tokens each), run by `sglrs.lang` against `sglrs serve` (HTTP) or an
in-process Engine. Per configuration: programs/s (best of `--runs`, each after a cache flush)
and the cache hit rate (cached / prompt tokens over every gen request). The radix/no-radix
ratio is printed and written with the numbers to benches/results/lang_programs.{json,png}.

    python benches/lang_programs.py [--backend http|engine] [--runs 2] [--programs 64]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sglrs as sgl
from sglrs.ipc.ports import free_tcp_port

RESULTS = Path(__file__).resolve().parent / "results"
CONTEXT_LENGTH = 2048
EXAMPLES = [  # (question, thinking, answer)
    ("What is the capital of Italy?", "Italy is in Europe; its capital is Rome.", "Rome"),
    ("How many legs does a spider have?", "Spiders are arachnids with 8 legs.", "8"),
    ("What color is chlorophyll?", "Chlorophyll absorbs red and blue light.", "green"),
    ("Who wrote Hamlet?", "Hamlet is a tragedy by William Shakespeare.", "Shakespeare"),
    ("What is 15 times 4?", "15 times 4 is 60.", "60"),
    ("Which planet is largest?", "Jupiter is the largest planet of the solar system.", "Jupiter"),
    ("What gas do plants absorb?", "Plants take in carbon dioxide.", "carbon dioxide"),
    ("What is the boiling point of water in Celsius?", "At sea level it boils at 100.", "100"),
]
FEW_SHOT = "".join(
    f"Question: {q}\nThinking: {t}\nAnswer: {a}\nConfidence: high\n\n" for q, t, a in EXAMPLES
)
QUESTIONS = [
    "What is the capital of {}?",
    "What is the main language spoken in {}?",
    "On which continent is {}?",
    "What is the currency of {}?",
]
COUNTRIES = (
    "France Germany Spain Portugal Japan China India Brazil Canada Mexico Egypt Kenya Peru "
    "Chile Norway Sweden"
).split()


@sgl.function
def reasoned_answer(s, question):
    s += FEW_SHOT + "Question: " + question + "\nThinking:"
    s += sgl.gen("thinking", max_tokens=8, stop="\n")
    s += "\nAnswer:"
    s += sgl.gen("answer", max_tokens=8, stop="\n")
    s += "\nConfidence:"
    s += sgl.gen("confidence", max_tokens=8, stop="\n")


def questions(n: int) -> list[dict[str, str]]:
    return [
        {"question": QUESTIONS[i % len(QUESTIONS)].format(COUNTRIES[i // len(QUESTIONS) % 16])}
        for i in range(n)
    ]


@contextlib.contextmanager
def server_backend(disable_radix: bool) -> Iterator[Any]:
    port = free_tcp_port()
    cmd = [sys.executable, "-m", "sglrs.cli", "serve", "--port", str(port)]
    cmd += ["--context-length", str(CONTEXT_LENGTH), "--log-level", "warning"]
    if disable_radix:
        cmd.append("--disable-radix-cache")
    log = Path(tempfile.mkdtemp(prefix="sglrs-bench-")) / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sglrs serve did not start:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        yield sgl.RuntimeEndpoint(url)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def engine_backend(disable_radix: bool) -> Iterator[Any]:
    with sgl.EngineBackend(
        model_path=None,
        context_length=CONTEXT_LENGTH,
        disable_radix_cache=disable_radix,
        log_level="warning",
    ) as backend:
        yield backend


def measure(backend: Any, programs: int, runs: int) -> dict[str, Any]:
    reasoned_answer.run(backend=backend, temperature=0, question="What is 2 plus 2?")  # warm-up
    best: dict[str, Any] | None = None
    for _ in range(runs):
        backend.flush_cache()
        start = time.perf_counter()
        states = reasoned_answer.run_batch(
            questions(programs), backend=backend, num_threads=programs, temperature=0
        )
        seconds = time.perf_counter() - start
        metas = [s.get_meta_info(v) for s in states for v in ("thinking", "answer", "confidence")]
        prompt = sum(m["prompt_tokens"] for m in metas)
        cached = sum(m["cached_tokens"] for m in metas)
        run = {
            "seconds": seconds,
            "programs_per_s": programs / seconds,
            "cache_hit_rate": cached / prompt,
            "prompt_tokens": prompt,
            "cached_tokens": cached,
            "completion_tokens": sum(m["completion_tokens"] for m in metas),
            "sample_answer": states[0]["answer"],
        }
        if best is None or run["programs_per_s"] > best["programs_per_s"]:
            best = run
    assert best is not None
    return best


def plot(results: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    ax1.bar(names, [results[n]["programs_per_s"] for n in names], color=["tab:blue", "tab:gray"])
    ax1.set_ylabel("programs / s")
    ax2.bar(names, [results[n]["cache_hit_rate"] for n in names], color=["tab:blue", "tab:gray"])
    ax2.set_ylabel("cache hit rate")
    ax2.set_ylim(0, 1)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["http", "engine"], default="http")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--programs", type=int, default=64)
    args = parser.parse_args()
    open_backend = server_backend if args.backend == "http" else engine_backend
    results = {}
    for label, disable in (("radix", False), ("no radix", True)):
        with open_backend(disable) as backend:
            results[label] = measure(backend, args.programs, args.runs)
        r = results[label]
        print(
            f"{label:>9}: {r['programs_per_s']:.2f} programs/s ({r['seconds']:.1f} s), "
            f"cache hit rate {r['cache_hit_rate']:.3f}"
        )
    ratio = results["radix"]["programs_per_s"] / results["no radix"]["programs_per_s"]
    print(f"radix / no radix: {ratio:.2f}x programs/s")
    command = "python benches/lang_programs.py" + "".join(
        f" --{k} {v}" for k, v in vars(args).items()
    )
    record = {
        "benchmark": "sglrs.lang run_batch: few-shot prefix + 3 gens per program",
        "backend": args.backend,
        "programs": args.programs,
        "model": "SmolLM2-135M-Instruct (default GGUF), CPU",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
        "command": command,
        "results": results,
        "radix_over_no_radix": ratio,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lang_programs.json").write_text(json.dumps(record, indent=2) + "\n")
    title = f"{args.programs} programs, {args.backend}: radix {ratio:.2f}x programs/s"
    plot(results, RESULTS / "lang_programs.png", title)


if __name__ == "__main__":
    main()
