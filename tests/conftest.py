import sys
from pathlib import Path

# Shared test helpers (tiny_model) live at the top of tests/.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Without a GPU, Triton kernels can only run interpreted; the variable must be set before
# triton is first imported (tests/kernels). Model code uses the kernels for CUDA tensors only.
try:
    import torch

    if not torch.cuda.is_available():
        import os

        os.environ.setdefault("TRITON_INTERPRET", "1")
except ImportError:
    pass
