"""The effect of each sampling parameter, measured over many samples of synthetic logits."""

from __future__ import annotations

import math

import pytest
import torch

from sglrs.sampling import sample

N = 4000  # rows sampled at once: each row is an independent draw


def frequencies(tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    return torch.bincount(tokens, minlength=vocab).double() / tokens.numel()


def draw(req, batch_of, params: dict, logits_row: list[float], n: int = N, seed: int = 1):
    vocab = len(logits_row)
    batch = batch_of(vocab, [req(i, params) for i in range(n)], seed=seed)
    logits = torch.tensor([logits_row] * n, dtype=torch.float32)
    return sample(logits, batch).next_token_ids


def probs_of(weights: list[float]) -> list[float]:
    return [math.log(w) for w in weights]


def test_greedy_is_argmax(req, batch_of) -> None:
    logits = torch.randn(16, 50, generator=torch.Generator().manual_seed(0))
    batch = batch_of(50, [req(i, {"temperature": 0}) for i in range(16)])
    assert batch.all_greedy
    assert torch.equal(sample(logits.clone(), batch).next_token_ids, logits.argmax(-1))


def test_greedy_rows_in_a_sampled_batch(req, batch_of) -> None:
    logits = torch.randn(8, 50, generator=torch.Generator().manual_seed(1))
    params = [{"temperature": 0} if i % 2 else {"temperature": 5.0} for i in range(8)]
    batch = batch_of(50, [req(i, p) for i, p in enumerate(params)])
    out = sample(logits.clone(), batch).next_token_ids
    assert torch.equal(out[1::2], logits.argmax(-1)[1::2])


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_matches_scaled_softmax(req, batch_of, temperature: float) -> None:
    row = [2.0, 1.0, 0.0, -1.0]
    got = frequencies(draw(req, batch_of, {"temperature": temperature}, row), 4)
    want = torch.softmax(torch.tensor(row, dtype=torch.float64) / temperature, -1)
    assert torch.allclose(got, want, atol=0.03), (got, want)


def test_temperature_sharpens_and_flattens(req, batch_of) -> None:
    row = [1.0, 0.5, 0.0, 0.0, -0.5]
    top = [frequencies(draw(req, batch_of, {"temperature": t}, row), 5)[0] for t in (0.3, 1, 3)]
    assert top[0] > top[1] + 0.15 and top[1] > top[2] + 0.1


def test_top_k_support(req, batch_of) -> None:
    row = [0.3, 0.2, 0.1, 0.0, -0.1, -0.2, -0.3, -0.4]
    out = draw(req, batch_of, {"top_k": 3}, row)
    assert set(out.tolist()) == {0, 1, 2}


def test_large_top_k_sorts_whole_rows(req, batch_of) -> None:
    vocab = 2000
    row = (-torch.arange(vocab, dtype=torch.float32) * 1e-3).tolist()
    out = draw(req, batch_of, {"top_k": 1100}, row)
    assert 1000 < int(out.max()) < 1100


def test_top_p_nucleus(req, batch_of) -> None:
    out = draw(req, batch_of, {"top_p": 0.7}, probs_of([0.5, 0.3, 0.15, 0.05]))
    assert set(out.tolist()) == {0, 1}
    freq = frequencies(out, 4)
    assert abs(freq[0] - 0.5 / 0.8) < 0.03


def test_top_p_after_top_k_renormalizes(req, batch_of) -> None:
    # top_k=2 leaves (0.57, 0.43); top_p=0.5 of that keeps only the first token. Without the
    # renormalization the second token (0.4 ahead of it < 0.5) would have been kept.
    out = draw(req, batch_of, {"top_k": 2, "top_p": 0.5}, probs_of([0.4, 0.3, 0.2, 0.1]))
    assert set(out.tolist()) == {0}


def test_min_p(req, batch_of) -> None:
    out = draw(req, batch_of, {"min_p": 0.25}, probs_of([0.5, 0.3, 0.15, 0.05]))
    assert set(out.tolist()) == {0, 1, 2}
    freq = frequencies(out, 4)
    assert abs(freq[2] - 0.15 / 0.95) < 0.03


def test_filters_only_touch_their_rows(req, batch_of) -> None:
    row = probs_of([0.4, 0.3, 0.2, 0.1])
    batch = batch_of(4, [req(i, {"top_k": 1} if i % 2 else {}) for i in range(N)])
    out = sample(torch.tensor([row] * N), batch).next_token_ids
    assert set(out[1::2].tolist()) == {0}
    assert torch.allclose(
        frequencies(out[0::2], 4), torch.tensor([0.4, 0.3, 0.2, 0.1]).double(), atol=0.04
    )


def _steps(logits_for, batch, steps: int) -> list[list[int]]:
    rows = []
    for step in range(steps):
        rows.append(sample(logits_for(step), batch).next_token_ids.tolist())
    return rows


@pytest.mark.parametrize("own", [{}, {"top_k": 6}, {"top_p": 0.9, "min_p": 0.02}])
def test_seeded_request_reproducible_alone_and_batched(req, batch_of, own: dict) -> None:
    vocab, steps = 64, 12
    gen = torch.Generator().manual_seed(3)
    table = torch.randn(steps, vocab, generator=gen)  # the seeded request's logits per step
    others = torch.randn(steps, 5, vocab, generator=gen)
    seeded = {"sampling_seed": 1234, "temperature": 1.5, **own}

    alone = batch_of(vocab, [req("s", seeded)], seed=7)
    alone_ids = [r[0] for r in _steps(lambda s: table[s : s + 1].clone(), alone, steps)]

    # Batched at row 3 with unseeded rows, a top-k row (forces the sorting path) and a greedy
    # row, under a different server seed.
    mates = [{}, {"top_k": 5}, {"temperature": 0}, {"sampling_seed": 99}, {"min_p": 0.1}]
    reqs = [req(f"o{i}", p) for i, p in enumerate(mates)]
    reqs.insert(3, req("s", seeded))
    batched = batch_of(vocab, reqs, seed=8)

    def batched_logits(s: int) -> torch.Tensor:
        rows = [others[s, i] for i in range(5)]
        rows.insert(3, table[s])
        return torch.stack(rows)

    batched_ids = [r[3] for r in _steps(batched_logits, batched, steps)]
    assert alone_ids == batched_ids
    again = batch_of(vocab, [req("s", seeded)], seed=1)
    assert [r[0] for r in _steps(lambda s: table[s : s + 1].clone(), again, steps)] == alone_ids
    other_seed = batch_of(vocab, [req("s", {**seeded, "sampling_seed": 4321})])
    assert [
        r[0] for r in _steps(lambda s: table[s : s + 1].clone(), other_seed, steps)
    ] != alone_ids


def test_seeded_rows_follow_the_distribution(req, batch_of) -> None:
    want = [0.5, 0.25, 0.15, 0.1]
    reqs = [req(i, {"sampling_seed": i}) for i in range(N)]
    batch = batch_of(4, reqs)
    out = sample(torch.tensor([probs_of(want)] * N), batch).next_token_ids
    assert torch.allclose(frequencies(out, 4), torch.tensor(want).double(), atol=0.03)
    # And across steps of one seeded request (the step counter changes the noise).
    one = batch_of(4, [req("x", {"sampling_seed": 5})])
    seq = torch.tensor(
        [sample(torch.tensor([probs_of(want)]), one).next_token_ids.item() for _ in range(2000)]
    )
    assert torch.allclose(frequencies(seq, 4), torch.tensor(want).double(), atol=0.04)


def test_unseeded_rows_follow_the_server_seed(req, batch_of) -> None:
    row = probs_of([0.3, 0.3, 0.2, 0.2])
    a = draw(req, batch_of, {}, row, n=256, seed=11)
    b = draw(req, batch_of, {}, row, n=256, seed=11)
    c = draw(req, batch_of, {}, row, n=256, seed=12)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bf16_logits_and_padded_vocab(req, batch_of) -> None:
    vocab = 10
    logits = torch.zeros(64, 16, dtype=torch.bfloat16)
    logits[:, vocab:] = 100.0  # padded columns must never be chosen
    batch = batch_of(vocab, [req(i, {"temperature": 0} if i % 2 else {}) for i in range(64)])
    out = sample(logits, batch).next_token_ids
    assert int(out.max()) < vocab


def test_logprobs_after_temperature_before_filters(req, batch_of) -> None:
    vocab = 6
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -2.0]] * 3)
    reqs = [
        req("t", {"temperature": 2.0, "top_k": 2}, return_logprob=True, top_logprobs_num=3),
        req("none", {}),
        req("g", {"temperature": 0, "logit_bias": {"5": 10.0}}, return_logprob=True),
    ]
    batch = batch_of(vocab, reqs)
    out = sample(logits.clone(), batch)
    assert out.logprobs is not None and out.logprobs[1] is None
    t, g = out.logprobs[0], out.logprobs[2]
    ref_t = torch.log_softmax(logits[0] / 2.0, -1)  # top-k does not renormalize logprobs
    assert t.token_id == int(out.next_token_ids[0]) and t.token_id in (0, 1)
    assert math.isclose(t.logprob, float(ref_t[t.token_id]), rel_tol=1e-5)
    assert [i for _, i in t.top] == [0, 1, 2]
    assert all(math.isclose(v, float(ref_t[i]), rel_tol=1e-5) for v, i in t.top)
    biased = logits[2].clone()
    biased[5] += 10.0  # greedy: temperature 1, logit bias included
    assert g.token_id == 5 and g.top == []
    assert math.isclose(g.logprob, float(torch.log_softmax(biased, -1)[5]), rel_tol=1e-5)


def test_all_greedy_logprobs(req, batch_of) -> None:
    logits = torch.randn(2, 9, generator=torch.Generator().manual_seed(2))
    reqs = [req(i, {"temperature": 0}, return_logprob=True, top_logprobs_num=2) for i in range(2)]
    out = sample(logits.clone(), batch_of(9, reqs))
    ref = torch.log_softmax(logits, -1)
    for i, lp in enumerate(out.logprobs or []):
        assert lp is not None and lp.token_id == int(logits[i].argmax())
        assert math.isclose(lp.logprob, float(ref[i].max()), rel_tol=1e-5)
        assert lp.top[0] == (pytest.approx(lp.logprob), lp.token_id) and len(lp.top) == 2


def test_shape_errors(req, batch_of) -> None:
    batch = batch_of(8, [req(0)])
    with pytest.raises(ValueError, match="batch_size=1"):
        sample(torch.zeros(2, 8), batch)
    with pytest.raises(ValueError, match="vocab size 8"):
        sample(torch.zeros(1, 4), batch)
