"""Random weights from the config alone, initialised in place on the model's device."""

from __future__ import annotations

import torch
from torch import nn

DUMMY_STD = 0.02


@torch.no_grad()
def init_dummy_weights(model: nn.Module, seed: int = 0, std: float = DUMMY_STD) -> None:
    """Normal(0, std) for matrices and biases, 1 for norm weights; deterministic per seed."""
    for name, param in model.named_parameters():
        gen = torch.Generator(device=param.device).manual_seed(seed)
        seed += 1
        if name.endswith("norm.weight"):
            param.fill_(1.0)
        else:
            param.normal_(0.0, std, generator=gen)
