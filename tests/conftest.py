import sys
from pathlib import Path

# Shared test helpers (tiny_model) live at the top of tests/.
sys.path.insert(0, str(Path(__file__).resolve().parent))
