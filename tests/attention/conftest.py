import sys
from pathlib import Path

# The StepPlan test fixture lives beside the runner tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
