"""The benchmark's outputs: a table on stdout, a JSON record and a PNG plot."""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

from sglrs.bench.metrics import BenchMetrics, RequestResult, Summary

WIDTH = 62
REDACTED = "<redacted>"
PLOT_SETTINGS = ("Dataset", "Model", "Request rate (req/s)", "Max concurrency")


def environment() -> dict[str, Any]:
    """Versions and the device of this process, for the record."""
    from sglrs import __version__

    env: dict[str, Any] = {
        "sglrs": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        import torch
    except ImportError:
        return env
    env["torch"] = torch.__version__
    if torch.cuda.is_available():
        env["device"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    else:
        env["device"] = "cpu"
    return env


def redact(values: dict[str, Any]) -> dict[str, Any]:
    """A copy of a settings dict without the API key, for records that get shared."""
    out = {k: _finite(v) for k, v in values.items() if k not in ("subparser",)}
    if out.get("api_key"):
        out["api_key"] = REDACTED
    return out


def _finite(value: Any) -> Any:
    """JSON has no infinity: write e.g. `--request-rate inf` as the string "inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def redact_command(argv: list[str]) -> list[str]:
    """The command line with the value of --api-key hidden."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--api-key" and i + 1 < len(out):
            out[i + 1] = REDACTED
        elif arg.startswith("--api-key="):
            out[i] = f"--api-key={REDACTED}"
    return out


def format_table(title: str, metrics: BenchMetrics, settings: dict[str, Any]) -> str:
    m = metrics
    rows: list[tuple[str, str]] = [(k, str(v)) for k, v in settings.items()]
    rows += [
        ("Successful requests", f"{m.completed}"),
        ("Failed requests", f"{m.failed}"),
        ("Benchmark duration (s)", f"{m.duration_s:.2f}"),
        ("Total input tokens", f"{m.total_input_tokens}"),
        ("Total output tokens", f"{m.total_output_tokens}"),
        ("Request throughput (req/s)", f"{m.request_throughput:.2f}"),
        ("Input token throughput (tok/s)", f"{m.input_throughput:.2f}"),
        ("Output token throughput (tok/s)", f"{m.output_throughput:.2f}"),
        ("Total token throughput (tok/s)", f"{m.total_throughput:.2f}"),
        ("Cache hit rate", f"{m.cache_hit_rate:.2%}"),
        ("Mean concurrency", f"{m.mean_concurrency:.2f}"),
    ]
    lines = [f" {title} ".center(WIDTH, "=")]
    lines += [_row(k, v) for k, v in rows]
    lines.append(f"{'Latency (ms)':<18}{'mean':>11}{'median':>11}{'p99':>11}{'max':>11}")
    for name, summary in (
        ("TTFT", m.ttft_ms),
        ("ITL", m.itl_ms),
        ("TPOT", m.tpot_ms),
        ("E2E", m.e2e_ms),
    ):
        lines.append(_latency_row(name, summary))
    lines.append("=" * WIDTH)
    return "\n".join(lines)


def _row(label: str, value: str) -> str:
    """`label:` then the value right-aligned to the table's width (or after a space)."""
    head = f"{label}:"
    return head + value.rjust(max(WIDTH - len(head), len(value) + 1))


def _latency_row(name: str, s: Summary | None) -> str:
    if s is None:
        return f"{name:<18}{'not measured (no streaming)':>44}"
    return f"{name:<18}{s.mean:>11.2f}{s.median:>11.2f}{s.p99:>11.2f}{s.max:>11.2f}"


def record(
    mode: str,
    command: list[str],
    args: dict[str, Any],
    metrics: BenchMetrics,
    results: list[RequestResult],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything worth keeping about a run: the command, settings, environment and numbers."""
    errors = sorted({r.error for r in results if not r.success})
    return {
        "mode": mode,
        "command": " ".join(redact_command(command)),
        "args": redact(args),
        "environment": environment(),
        **(extra or {}),
        "metrics": metrics.to_dict(),
        "errors": errors,
        "requests": [
            {
                "start_s": r.start,
                "prompt_len": r.prompt_len,
                "output_len": r.output_len,
                "cached_tokens": r.cached_tokens,
                "ttft_s": r.ttft,
                "e2e_s": r.e2e,
                "success": r.success,
            }
            for r in results
        ],
    }


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")


def plot(path: str | Path, title: str, results: list[RequestResult]) -> None:
    """Three panels: output tokens completed over time, latency CDFs, and the ITL histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ok = [r for r in results if r.success]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    done = sorted((r.start + r.e2e, r.output_len) for r in ok)
    times = [0.0] + [t for t, _ in done]
    axes[0].step(times, np.cumsum([0] + [n for _, n in done]), where="post")
    axes[0].set(xlabel="time since start (s)", ylabel="output tokens done", title="Progress")
    for name, values in (
        ("TTFT", [r.ttft for r in ok if r.ttft is not None]),
        ("E2E", [r.e2e for r in ok]),
    ):
        if values:
            ms = np.sort(np.asarray(values)) * 1000.0
            axes[1].plot(ms, np.arange(1, len(ms) + 1) / len(ms), label=name)
    axes[1].set(xlabel="latency (ms)", ylabel="fraction of requests", title="Latency CDF")
    axes[1].legend()
    itls = [x * 1000.0 for r in ok for x in r.itls]
    if itls:
        axes[2].hist(itls, bins=50)
        axes[2].set(xlabel="inter-token latency (ms)", ylabel="tokens", title="ITL")
    else:
        axes[2].text(0.5, 0.5, "ITL not measured\n(no streaming)", ha="center", va="center")
        axes[2].set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def emit(
    title: str,
    settings: dict[str, Any],
    metrics: BenchMetrics,
    results: list[RequestResult],
    payload: dict[str, Any],
    output_file: str | None,
    plot_file: str | None,
) -> None:
    """Print the table and write the files that were asked for."""
    print(format_table(title, metrics, settings))
    errors = payload["errors"]
    if errors:
        print(f"{metrics.failed} requests failed; first error: {errors[0]}", file=sys.stderr)
    if output_file:
        write_json(output_file, payload)
        print(f"wrote {output_file}")
    if plot_file:
        subtitle = ", ".join(f"{k}: {v}" for k, v in settings.items() if k in PLOT_SETTINGS)
        plot(plot_file, f"{title} ({subtitle})", results)
        print(f"wrote {plot_file}")
