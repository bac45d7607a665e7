import sys
from pathlib import Path

# Shared test helpers (tiny_model, hf_reference) live at the top of tests/.
sys.path.insert(0, str(Path(__file__).resolve().parent))
