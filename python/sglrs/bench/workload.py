"""The flags both benchmarks share, and the requests and sampling parameters they make."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from sglrs.bench.datasets import (
    DATASETS,
    BenchRequest,
    check_fits,
    random_requests,
    shared_prefix_requests,
    sharegpt_requests,
    token_pool,
)

DEFAULT_NUM_PROMPTS = 1000
WARMUP_PROMPT_LEN = 32
WARMUP_OUTPUT_LEN = 8
RESERVED_SAMPLING_KEYS = ("max_new_tokens", "ignore_eos")


def add_workload_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("workload")
    g.add_argument("--dataset-name", choices=DATASETS, default="random", help="Workload kind.")
    g.add_argument(
        "--dataset-path", help="ShareGPT-format JSON file (for --dataset-name sharegpt)."
    )
    g.add_argument(
        "--num-prompts",
        type=int,
        help=f"Requests to send (default {DEFAULT_NUM_PROMPTS}; shared-prefix: groups x prompts).",
    )
    g.add_argument("--random-input-len", type=int, default=1024, help="Longest random prompt.")
    g.add_argument("--random-output-len", type=int, default=128, help="Longest random output.")
    g.add_argument(
        "--random-range-ratio",
        type=float,
        default=0.0,
        help="Random lengths are uniform in [len * ratio, len]; 1.0 makes them all len.",
    )
    for name, default, text in (
        ("num-groups", 16, "Groups of requests sharing a system prompt."),
        ("prompts-per-group", 16, "Requests in each group."),
        ("system-prompt-len", 2048, "Tokens of each group's shared system prompt."),
        ("question-len", 128, "Tokens of each request's own question."),
        ("output-len", 256, "Tokens each shared-prefix request generates."),
    ):
        g.add_argument(
            f"--shared-prefix-{name}",
            f"--gsp-{name}",
            type=int,
            default=default,
            metavar="N",
            help=f"{text} (default: {default})",
        )
    g.add_argument(
        "--sharegpt-output-len",
        type=int,
        help="Output tokens per ShareGPT request (default: reply's).",
    )
    g.add_argument("--seed", type=int, default=1, help="Seed of the workload and arrival times.")

    s = parser.add_argument_group("sampling")
    s.add_argument("--temperature", type=float, default=0.0, help="Sampling temperature.")
    s.add_argument(
        "--disable-ignore-eos", action="store_true", help="Stop at EOS (default: run to length)."
    )
    s.add_argument(
        "--sampling-params",
        type=json.loads,
        default={},
        help="JSON object merged into every request's sampling_params, e.g. a json_schema.",
    )

    o = parser.add_argument_group("output")
    o.add_argument("--warmup-requests", type=int, default=1, help="Untimed requests sent first.")
    o.add_argument("--output-file", help="Write the results as JSON here.")
    o.add_argument("--plot", help="Write a PNG plot of the latencies here.")
    o.add_argument("--disable-tqdm", action="store_true", help="No progress bar.")


def check_workload_args(args: argparse.Namespace) -> None:
    """Reject contradictory or out-of-range workload flags before any model is loaded."""
    name = args.dataset_name
    if name != "sharegpt" and args.dataset_path:
        raise ValueError(f"--dataset-path is only read by --dataset-name sharegpt, not {name}")
    if name == "sharegpt" and not args.dataset_path:
        raise ValueError("--dataset-name sharegpt needs --dataset-path FILE.json")
    if name == "shared-prefix":
        total = args.shared_prefix_num_groups * args.shared_prefix_prompts_per_group
        if args.num_prompts is not None and args.num_prompts != total:
            raise ValueError(
                f"--num-prompts {args.num_prompts} contradicts the shared-prefix shape: "
                f"{args.shared_prefix_num_groups} groups x {args.shared_prefix_prompts_per_group} "
                f"prompts = {total}"
            )
    elif args.num_prompts is not None and args.num_prompts < 1:
        raise ValueError(f"--num-prompts must be >= 1, got {args.num_prompts}")
    checks = [
        (args.random_input_len, "--random-input-len"),
        (args.random_output_len, "--random-output-len"),
        (args.shared_prefix_num_groups, "--shared-prefix-num-groups"),
        (args.shared_prefix_prompts_per_group, "--shared-prefix-prompts-per-group"),
        (args.shared_prefix_system_prompt_len, "--shared-prefix-system-prompt-len"),
        (args.shared_prefix_question_len, "--shared-prefix-question-len"),
        (args.shared_prefix_output_len, "--shared-prefix-output-len"),
    ]
    if args.sharegpt_output_len is not None:
        checks.append((args.sharegpt_output_len, "--sharegpt-output-len"))
    for value, flag in checks:
        if value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    if not 0.0 <= args.random_range_ratio <= 1.0:
        raise ValueError(f"--random-range-ratio must be in [0, 1], got {args.random_range_ratio}")
    if args.warmup_requests < 0:
        raise ValueError(f"--warmup-requests must be >= 0, got {args.warmup_requests}")
    extra = args.sampling_params
    if not isinstance(extra, dict):
        raise ValueError("--sampling-params must be a JSON object")
    reserved = [k for k in RESERVED_SAMPLING_KEYS if k in extra]
    if reserved:
        raise ValueError(
            f"--sampling-params may not set {reserved[0]}: the dataset sets output lengths "
            "(and --disable-ignore-eos controls ignore_eos)"
        )


def build_requests(
    args: argparse.Namespace,
    tokenizer: Any,
    vocab_size: int,
    context_length: int | None,
) -> list[BenchRequest]:
    """The workload the flags describe, checked against the context length."""
    check_workload_args(args)
    rng = np.random.default_rng(args.seed)
    name = args.dataset_name
    if name == "shared-prefix":
        requests = shared_prefix_requests(
            args.shared_prefix_num_groups,
            args.shared_prefix_prompts_per_group,
            args.shared_prefix_system_prompt_len,
            args.shared_prefix_question_len,
            args.shared_prefix_output_len,
            pool(tokenizer, vocab_size),
            rng,
        )
    else:
        num = DEFAULT_NUM_PROMPTS if args.num_prompts is None else args.num_prompts
        if name == "random":
            requests = random_requests(
                num,
                args.random_input_len,
                args.random_output_len,
                args.random_range_ratio,
                pool(tokenizer, vocab_size),
                rng,
            )
        else:
            requests = _sharegpt(args, num, tokenizer, context_length, rng)
    check_fits(requests, context_length)
    return requests


def _sharegpt(
    args: argparse.Namespace,
    num: int,
    tokenizer: Any,
    context_length: int | None,
    rng: np.random.Generator,
) -> list[BenchRequest]:
    if tokenizer is None:
        raise ValueError("--dataset-name sharegpt needs a tokenizer to measure its prompts")
    requests, skipped = sharegpt_requests(
        args.dataset_path, num, tokenizer, context_length, args.sharegpt_output_len, rng
    )
    if skipped:
        print(f"sharegpt: skipped {skipped} conversations (under 2 turns, too short or too long)")
    if not requests:
        raise ValueError(f"{args.dataset_path}: no usable conversation")
    if len(requests) < num:
        print(f"sharegpt: only {len(requests)} usable conversations of the {num} asked for")
    return requests


def pool(tokenizer: Any, vocab_size: int) -> np.ndarray:
    special = list(getattr(tokenizer, "all_special_ids", None) or [])
    return token_pool(vocab_size, special)


def warmup_requests(
    args: argparse.Namespace, tokenizer: Any, vocab_size: int
) -> list[BenchRequest]:
    """Short prompts outside the workload, so warming up leaves none of it in the cache."""
    check_workload_args(args)
    rng = np.random.default_rng(args.seed + 1_000_003)
    return random_requests(
        args.warmup_requests,
        WARMUP_PROMPT_LEN,
        WARMUP_OUTPUT_LEN,
        1.0,
        pool(tokenizer, vocab_size),
        rng,
    )


def sampling_params(request: BenchRequest, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "temperature": args.temperature,
        **args.sampling_params,
        "max_new_tokens": request.output_len,
        "ignore_eos": not args.disable_ignore_eos,
    }


def request_body(request: BenchRequest) -> dict[str, Any]:
    """The prompt part of a /generate body or of Engine.generate's arguments."""
    if request.input_ids is not None:
        return {"input_ids": request.input_ids}
    return {"text": request.text}
