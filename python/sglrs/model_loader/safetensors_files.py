"""HF checkpoints: `*.safetensors`, single or sharded with `model.safetensors.index.json`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

INDEX_NAME = "model.safetensors.index.json"


def safetensors_files(model_dir: str | os.PathLike) -> list[Path]:
    """The shard files of a checkpoint directory (from the index when there is one)."""
    root = Path(model_dir)
    index = root / INDEX_NAME
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = [root / name for name in sorted(set(weight_map.values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{index} names missing shards: {', '.join(missing)}")
        return files
    files = sorted(root.glob("*.safetensors"))
    if not files:
        others = sorted(p.name for p in root.glob("*.bin")) + sorted(
            p.name for p in root.glob("*.pt")
        )
        hint = (
            f" (found {', '.join(others[:3])}: PyTorch pickles are not supported)" if others else ""
        )
        raise FileNotFoundError(f"{root}: no *.safetensors weights{hint}")
    return files


def iter_safetensors(
    model_dir: str | os.PathLike, progress: bool = True, lazy: bool = False
) -> Iterator[tuple[str, Any]]:
    """(name, CPU tensor) for every tensor of every shard. `lazy`: a safetensors slice instead,
    read only where the consumer indexes it (a tensor-parallel rank reads just its shard); it
    is valid until the next item is requested."""
    from safetensors import safe_open
    from tqdm import tqdm

    files = safetensors_files(model_dir)
    for path in tqdm(files, desc="loading safetensors", unit="shard", disable=not progress):
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                yield name, f.get_slice(name) if lazy else f.get_tensor(name)
