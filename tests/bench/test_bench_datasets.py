"""Benchmark workloads: lengths, shared prefixes, ShareGPT parsing and the flag checks."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from sglrs.bench.datasets import (
    check_fits,
    lengths,
    random_requests,
    shared_prefix_requests,
    sharegpt_requests,
    token_pool,
)
from sglrs.bench.workload import (
    add_workload_args,
    build_requests,
    check_workload_args,
    request_body,
    sampling_params,
    warmup_requests,
)


class CharTokenizer:
    """One token per character; ids 0 and 1 are special."""

    all_special_ids = [0, 1]

    def encode(self, text: str) -> list[int]:
        return [2 + ord(c) % 50 for c in text]


def workload_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_workload_args(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(("full", "ratio", "low"), [(100, 0.0, 1), (100, 0.5, 50), (7, 1.0, 7)])
def test_lengths_stay_in_their_range_and_cover_it(full, ratio, low):
    got = lengths(full, ratio, 4000, np.random.default_rng(0))
    assert got.min() == low and got.max() == full


def test_lengths_reject_bad_ratios_and_lengths():
    with pytest.raises(ValueError, match="--random-range-ratio"):
        lengths(10, 1.5, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match=">= 1"):
        lengths(0, 0.5, 3, np.random.default_rng(0))


def test_token_pool_leaves_out_special_tokens():
    pool = token_pool(10, [0, 9])
    assert pool.tolist() == list(range(1, 9))
    with pytest.raises(ValueError, match="no ordinary tokens"):
        token_pool(2, [0, 1])


def test_random_requests_have_the_drawn_lengths_and_pool_ids():
    pool = token_pool(50, [0])
    reqs = random_requests(200, 40, 12, 0.25, pool, np.random.default_rng(3))
    assert len(reqs) == 200
    for r in reqs:
        assert 10 <= r.prompt_len <= 40 and 3 <= r.output_len <= 12
        assert len(r.input_ids) == r.prompt_len and r.text is None
        assert all(1 <= t < 50 for t in r.input_ids)
    # The same seed gives the same workload.
    again = random_requests(200, 40, 12, 0.25, pool, np.random.default_rng(3))
    assert [r.input_ids for r in again] == [r.input_ids for r in reqs]


def test_shared_prefix_groups_share_exactly_their_system_prompt():
    pool = token_pool(1000)
    reqs = shared_prefix_requests(3, 5, 20, 4, 7, pool, np.random.default_rng(1))
    assert len(reqs) == 15
    assert all(r.prompt_len == 24 and r.output_len == 7 for r in reqs)
    prefixes = {tuple(r.input_ids[:20]) for r in reqs}
    assert len(prefixes) == 3
    for prefix in prefixes:
        assert sum(tuple(r.input_ids[:20]) == prefix for r in reqs) == 5
    assert len({tuple(r.input_ids) for r in reqs}) == 15
    with pytest.raises(ValueError, match="--shared-prefix-question-len"):
        shared_prefix_requests(1, 1, 4, 0, 1, pool, np.random.default_rng(1))


def sharegpt_file(tmp_path, entries):
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(entries))
    return path


def conv(*values: str, key: str = "conversations") -> dict:
    return {
        key: [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]
    }


def test_sharegpt_takes_first_two_turns_and_skips_unusable_ones(tmp_path):
    entries = [
        conv("hello there", "general kenobi", "more"),
        conv("only one turn"),
        conv("x", "too short prompt"),
        conv("a long prompt " * 20, "reply"),  # 280 + 5 tokens: over the context of 100
        conv("second prompt", "second reply", key="conversation"),
    ]
    path = sharegpt_file(tmp_path, entries)
    reqs, skipped = sharegpt_requests(
        path, 10, CharTokenizer(), 100, None, np.random.default_rng(0)
    )
    assert skipped == 3
    assert sorted((r.text, r.prompt_len, r.output_len) for r in reqs) == [
        ("hello there", 11, 14),
        ("second prompt", 13, 12),
    ]
    reqs, _ = sharegpt_requests(path, 1, CharTokenizer(), None, 5, np.random.default_rng(0))
    assert len(reqs) == 1 and reqs[0].output_len == 5


def test_sharegpt_rejects_files_of_another_shape(tmp_path):
    bad = sharegpt_file(tmp_path, {"conversations": []})
    with pytest.raises(ValueError, match="JSON list"):
        sharegpt_requests(bad, 1, CharTokenizer(), None, None, np.random.default_rng(0))
    bad = sharegpt_file(tmp_path, [{"conversations": [{"from": "human"}, {"value": "x"}]}])
    with pytest.raises(ValueError, match="string 'value'"):
        sharegpt_requests(bad, 1, CharTokenizer(), None, None, np.random.default_rng(0))


def test_build_requests_follows_the_flags(tmp_path):
    args = workload_args(
        "--num-prompts", "6", "--random-input-len", "30", "--random-output-len", "5"
    )
    reqs = build_requests(args, CharTokenizer(), 60, 2048)
    assert len(reqs) == 6 and all(r.prompt_len <= 30 and r.output_len <= 5 for r in reqs)
    assert all(0 not in r.input_ids and 1 not in r.input_ids for r in reqs)

    args = workload_args("--dataset-name", "shared-prefix", "--gsp-num-groups", "2",
                         "--gsp-prompts-per-group", "3", "--gsp-system-prompt-len", "8",
                         "--gsp-question-len", "2", "--gsp-output-len", "4")  # fmt: skip
    assert len(build_requests(args, None, 60, None)) == 6
    args.num_prompts = 5
    with pytest.raises(ValueError, match="contradicts"):
        build_requests(args, None, 60, None)

    path = sharegpt_file(tmp_path, [conv("a prompt", "a reply")])
    args = workload_args("--dataset-name", "sharegpt", "--dataset-path", str(path))
    assert [r.text for r in build_requests(args, CharTokenizer(), 60, None)] == ["a prompt"]
    with pytest.raises(ValueError, match="needs a tokenizer"):
        build_requests(args, None, 60, None)
    with pytest.raises(ValueError, match="needs --dataset-path"):
        build_requests(workload_args("--dataset-name", "sharegpt"), CharTokenizer(), 60, None)
    with pytest.raises(ValueError, match="only read by --dataset-name sharegpt"):
        build_requests(workload_args("--dataset-path", str(path)), CharTokenizer(), 60, None)


def test_requests_that_cannot_fit_the_context_fail_before_the_run():
    args = workload_args(
        "--num-prompts", "4", "--random-input-len", "100", "--random-range-ratio", "1"
    )
    with pytest.raises(ValueError, match="context length 64"):
        build_requests(args, None, 60, 64)
    check_fits([], 1)


def test_sampling_params_and_request_body():
    args = workload_args("--sampling-params", '{"top_k": 5, "temperature": 0.7}')
    req = random_requests(1, 8, 3, 1.0, token_pool(20), np.random.default_rng(0))[0]
    assert sampling_params(req, args) == {
        "temperature": 0.7,
        "top_k": 5,
        "max_new_tokens": 3,
        "ignore_eos": True,
    }
    assert request_body(req) == {"input_ids": req.input_ids}
    args = workload_args("--disable-ignore-eos")
    assert sampling_params(req, args)["ignore_eos"] is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sampling-params", '{"max_new_tokens": 5}'], "may not set max_new_tokens"),
        (["--sampling-params", "[1]"], "must be a JSON object"),
        (["--random-range-ratio", "1.5"], "--random-range-ratio must be in"),
        (["--random-output-len", "0"], "--random-output-len must be >= 1"),
        (["--num-prompts", "0"], "--num-prompts must be >= 1"),
        (["--gsp-question-len", "0"], "--shared-prefix-question-len must be >= 1"),
        (["--dataset-name", "sharegpt", "--dataset-path", "x", "--sharegpt-output-len", "0"],
         "--sharegpt-output-len must be >= 1"),
    ],
)  # fmt: skip
def test_workload_flags_are_checked_up_front(argv, message):
    with pytest.raises(ValueError, match=message):
        check_workload_args(workload_args(*argv))


def test_warmup_prompts_are_outside_the_workload():
    args = workload_args("--warmup-requests", "2", "--num-prompts", "3")
    warm = warmup_requests(args, None, 100)
    assert len(warm) == 2 and all(r.prompt_len == 32 for r in warm)
    assert warmup_requests(workload_args("--warmup-requests", "0"), None, 100) == []
    with pytest.raises(ValueError, match="--warmup-requests"):
        warmup_requests(workload_args("--warmup-requests", "-1"), None, 100)
