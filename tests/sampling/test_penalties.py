"""Penalties, logit bias and min_new_tokens: values on synthetic logits and their effect."""

from __future__ import annotations

import torch

from sglrs.sampling import sample


def penalized(batch, logits: torch.Tensor) -> torch.Tensor:
    out = logits.clone()
    batch.penalties.apply_(out)
    return out


def test_frequency_penalty_scales_with_count(req, batch_of) -> None:
    r = req(0, {"frequency_penalty": 0.5}, output_ids=[3, 3, 5])
    out = penalized(batch_of(8, [r]), torch.zeros(1, 8))
    want = torch.zeros(8)
    want[3], want[5] = -1.0, -0.5
    assert torch.equal(out[0], want)


def test_presence_penalty_once_per_token(req, batch_of) -> None:
    r = req(0, {"presence_penalty": 0.7}, output_ids=[3, 3, 5], prompt_ids=[1])
    out = penalized(batch_of(8, [r]), torch.zeros(1, 8))
    want = torch.zeros(8)
    want[3] = want[5] = -0.7
    assert torch.allclose(out[0], want)


def test_negative_penalties_encourage(req, batch_of) -> None:
    r = req(0, {"frequency_penalty": -1.0, "temperature": 0}, output_ids=[6])
    logits = torch.zeros(1, 8)
    logits[0, 2] = 0.5
    assert sample(logits, batch_of(8, [r])).next_token_ids.item() == 6


def test_repetition_penalty_prompt_and_output(req, batch_of) -> None:
    r = req(0, {"repetition_penalty": 2.0}, prompt_ids=[1, 2], output_ids=[4])
    logits = torch.tensor([[3.0, 3.0, -3.0, 3.0, 3.0, -3.0]])
    out = penalized(batch_of(6, [r]), logits)
    # Seen tokens 1, 2, 4: positive logits halved, negative doubled; others untouched.
    assert out[0].tolist() == [3.0, 1.5, -6.0, 3.0, 1.5, -3.0]


def test_penalties_only_touch_their_rows(req, batch_of) -> None:
    reqs = [
        req(0, {"frequency_penalty": 1.0}, output_ids=[1]),
        req(1, {}, output_ids=[1]),
        req(2, {"repetition_penalty": 1.5}, prompt_ids=[2]),
    ]
    out = penalized(batch_of(4, reqs), torch.ones(3, 4))
    assert out[0].tolist() == [1.0, 0.0, 1.0, 1.0]
    assert out[1].tolist() == [1.0] * 4
    assert torch.allclose(out[2], torch.tensor([1.0, 1.0, 1 / 1.5, 1.0]))


def test_counts_update_incrementally(req, batch_of) -> None:
    vocab = 16
    a = req("a", {"frequency_penalty": 0.1, "temperature": 0}, output_ids=[2])
    batch = batch_of(vocab, [a])
    history = [2]
    for step in range(5):
        logits = torch.zeros(1, vocab)
        logits[0, step + 3] = 1.0
        history.append(int(sample(logits, batch).next_token_ids[0]))
    assert batch.penalties.counts is not None
    assert torch.equal(
        batch.penalties.counts[0], torch.bincount(torch.tensor(history), minlength=vocab).int()
    )
    # A new request joins: "a" keeps its device counts although its output_ids list was never
    # updated by the engine (no recomputation from history); "b" is scanned once.
    b = req("b", {"presence_penalty": 0.2}, output_ids=[7, 7])
    batch.update([b, a])
    counts = batch.penalties.counts
    assert torch.equal(counts[1], torch.bincount(torch.tensor(history), minlength=vocab).int())
    assert counts[0, 7] == 2 and int(counts[0].sum()) == 2
    assert batch.num_generated.tolist() == [2, 6]


def test_logit_bias_effect(req, batch_of) -> None:
    logits = torch.zeros(2, 8)
    logits[:, 0] = 5.0
    reqs = [req(0, {"temperature": 0, "logit_bias": {"6": 6.0}}), req(1, {"temperature": 0})]
    assert sample(logits, batch_of(8, reqs)).next_token_ids.tolist() == [6, 0]
    # Sampled rows too: a -100 bias removes a token from the support.
    logits = torch.zeros(500, 4)
    reqs = [req(i, {"logit_bias": {1: -100.0, "2": -100}}) for i in range(500)]
    assert set(sample(logits, batch_of(4, reqs)).next_token_ids.tolist()) == {0, 3}


def test_min_new_tokens_masks_eos_and_stop_ids(req, batch_of) -> None:
    vocab, eos = 10, 9
    reqs = [
        req("m", {"temperature": 0, "min_new_tokens": 3, "stop_token_ids": [8]}),
        req("free", {"temperature": 0}),
    ]
    batch = batch_of(vocab, reqs, eos=[eos])
    produced = []
    for _ in range(4):
        logits = torch.zeros(2, vocab)
        logits[:, eos] = 10.0
        logits[:, 8] = 9.0
        produced.append(sample(logits, batch).next_token_ids.tolist())
    assert [p[0] for p in produced[:3]] == [0, 0, 0]  # EOS and stop id 8 masked
    assert produced[3][0] == eos
    assert all(p[1] == eos for p in produced)


def test_min_new_tokens_counts_tokens_generated_before_joining(req, batch_of) -> None:
    r = req("m", {"temperature": 0, "min_new_tokens": 2}, output_ids=[1, 1])
    logits = torch.zeros(1, 4)
    logits[0, 3] = 1.0
    assert sample(logits, batch_of(4, [r], eos=[3])).next_token_ids.item() == 3
