"""Small host values to the device without waiting for it.

`torch.tensor(values, device="cuda")` copies from pageable memory and synchronizes the stream,
so with overlap scheduling (the next step's forward already queued) it would stall the host
until that forward ends. A pinned staging tensor makes the copy asynchronous; torch's caching
host allocator keeps the pinned block until the copy has run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def upload(
    values: Sequence[Any] | np.ndarray, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """`torch.tensor(values, dtype=dtype, device=device)`, asynchronous on CUDA."""
    host = torch.from_numpy(values) if isinstance(values, np.ndarray) else torch.tensor(values)
    host = host.to(dtype)
    if device.type != "cuda":
        return host
    return host.pin_memory().to(device, non_blocking=True)
