"""How `select` turns each choice's token logprobs into a decision.

Every method sees, per choice, the logprobs of the tokens that spell the choice after the
prefix (`[logprob, token_id, text]` entries, SGLang's shape). Ties go to the earliest choice.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

Entry = list[Any]  # [logprob | None, token_id, text | None]


def mean_logprob(entries: list[Entry]) -> float:
    """Mean of the known logprobs (a token with no context has None); -inf if none is known."""
    values = [e[0] for e in entries if e[0] is not None]
    return sum(values) / len(values) if values else -math.inf


class ChoicesMethod(ABC):
    """A scoring rule; `needs_unconditional` asks for the choices' logprobs without the prefix."""

    name: str = ""
    needs_unconditional: bool = False

    @abstractmethod
    def keys(
        self, conditional: list[list[Entry]], unconditional: list[list[Entry]] | None
    ) -> list[Any]:
        """One comparable key per choice; the largest wins."""

    def scalar(self) -> bool:
        """Whether the keys are plain numbers (needed to sample with temperature > 0)."""
        return True

    def __repr__(self) -> str:
        return self.name


class TokenLengthNormalized(ChoicesMethod):
    """Mean token logprob of the choice given the prefix (SGLang's default)."""

    name = "token_length_normalized"

    def keys(
        self, conditional: list[list[Entry]], unconditional: list[list[Entry]] | None
    ) -> list[Any]:
        return [mean_logprob(entries) for entries in conditional]


class GreedyTokenSelection(ChoicesMethod):
    """Compare token by token: the best first token wins, later tokens break ties.

    A shorter choice is padded with its own mean logprob, so a choice that is a prefix of
    another competes on equal length.
    """

    name = "greedy_token_selection"

    def keys(
        self, conditional: list[list[Entry]], unconditional: list[list[Entry]] | None
    ) -> list[Any]:
        width = max(len(entries) for entries in conditional)
        keys = []
        for entries in conditional:
            values = [e[0] if e[0] is not None else 0.0 for e in entries]
            pad = sum(values) / len(values) if values else 0.0
            keys.append(tuple(values + [pad] * (width - len(values))))
        return keys

    def scalar(self) -> bool:
        return False


class UnconditionalLikelihoodNormalized(ChoicesMethod):
    """Mean of (logprob given the prefix - logprob of the choice alone), per token.

    Favours choices the prefix makes likelier than they are a priori. The choice's first token
    has no unconditional context; it counts with an unconditional logprob of 0.
    """

    name = "unconditional_likelihood_normalized"
    needs_unconditional = True

    def keys(
        self, conditional: list[list[Entry]], unconditional: list[list[Entry]] | None
    ) -> list[Any]:
        if unconditional is None:
            raise ValueError(f"{self.name} needs the unconditional logprobs")
        keys = []
        for cond, uncond in zip(conditional, unconditional, strict=True):
            diffs = [
                (c[0] if c[0] is not None else 0.0) - (u[0] if u[0] is not None else 0.0)
                for c, u in zip(cond, uncond, strict=True)
            ]
            keys.append(sum(diffs) / len(diffs) if diffs else -math.inf)
        return keys


token_length_normalized = TokenLengthNormalized()
greedy_token_selection = GreedyTokenSelection()
unconditional_likelihood_normalized = UnconditionalLikelihoodNormalized()


def best_index(keys: list[Any]) -> int:
    """The first index holding the largest key (ties go to the earliest choice)."""
    best = 0
    for i, key in enumerate(keys):
        if key > keys[best]:
            best = i
    return best
