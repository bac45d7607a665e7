"""Token bitmask application against masks packed here (xgrammar's layout)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sglrs.sampling import apply_token_bitmask_, sample, unpack_bitmask


def pack(allowed: np.ndarray) -> torch.Tensor:
    """Bool [R, V] -> int32 [R, ceil(V/32)], bit i of word w = token 32*w + i."""
    rows, vocab = allowed.shape
    words = (vocab + 31) // 32
    padded = np.zeros((rows, words * 32), dtype=np.uint64)
    padded[:, :vocab] = allowed
    weights = np.left_shift(np.uint64(1), np.arange(32, dtype=np.uint64))
    packed = (padded.reshape(rows, words, 32) * weights).sum(axis=2).astype(np.uint32)
    return torch.from_numpy(packed.view(np.int32).copy())


def random_allowed(rows: int, vocab: int, seed: int) -> np.ndarray:
    allowed = np.random.default_rng(seed).random((rows, vocab)) < 0.3
    allowed[:, 31] = True  # bit 31 is the sign bit of the word
    return allowed


def test_unpack_round_trip() -> None:
    allowed = random_allowed(5, 70, 0)
    assert np.array_equal(unpack_bitmask(pack(allowed), 70).numpy(), allowed)


def test_masks_every_row() -> None:
    allowed = random_allowed(4, 70, 1)
    logits = torch.randn(4, 70)
    before = logits.clone()
    apply_token_bitmask_(logits, pack(allowed))
    keep = torch.from_numpy(allowed)
    assert torch.equal(logits[keep], before[keep])
    assert torch.isneginf(logits[~keep]).all()


def test_all_ones_row_untouched() -> None:
    allowed = random_allowed(2, 64, 2)
    allowed[1] = True
    logits = torch.randn(2, 64)
    before = logits.clone()
    apply_token_bitmask_(logits, pack(allowed))
    assert torch.equal(logits[1], before[1])


def test_indices_leave_other_rows() -> None:
    allowed = random_allowed(2, 40, 3)
    logits = torch.randn(5, 40)
    before = logits.clone()
    apply_token_bitmask_(logits, pack(allowed), indices=[3, 0])
    for r in (1, 2, 4):
        assert torch.equal(logits[r], before[r])
    for j, r in enumerate((3, 0)):
        keep = torch.from_numpy(allowed[j])
        assert torch.equal(logits[r][keep], before[r][keep])
        assert torch.isneginf(logits[r][~keep]).all()


def test_padded_model_vocab_is_masked() -> None:
    # Tokenizer vocab 70 (3 words = 96 bits); the model's logits are 128 wide.
    allowed = np.ones((1, 70), dtype=bool)
    logits = torch.zeros(1, 128)
    apply_token_bitmask_(logits, pack(allowed))
    assert not torch.isinf(logits[0, :70]).any()
    assert torch.isneginf(logits[0, 96:]).all()


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match="int32"):
        apply_token_bitmask_(torch.zeros(1, 32), torch.zeros(1, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="2 rows for 1 logits rows"):
        apply_token_bitmask_(torch.zeros(1, 32), torch.zeros(2, 1, dtype=torch.int32))


def test_sampler_respects_the_grammar(req, batch_of) -> None:
    vocab, n = 50, 300
    allowed = np.zeros((n, vocab), dtype=bool)
    allowed[:, [4, 17, 33]] = True
    batch = batch_of(vocab, [req(i, {"temperature": 0} if i == 0 else {}) for i in range(n)])
    out = sample(torch.randn(n, vocab), batch, grammar_bitmask=pack(allowed))
    assert set(out.next_token_ids.tolist()) <= {4, 17, 33}
    # Only some rows constrained.
    batch = batch_of(vocab, [req(i, {"temperature": 0}) for i in range(2)])
    logits = torch.zeros(2, vocab)
    logits[:, 0] = 1.0
    out = sample(logits, batch, grammar_bitmask=pack(allowed[:1]), grammar_rows=[1])
    assert out.next_token_ids.tolist() == [0, 4]
