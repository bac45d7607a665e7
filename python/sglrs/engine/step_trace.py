"""`SGLRS_STEP_TRACE=FILE`: the scheduler loop records every step (start and end time, kind,
batch size, new tokens, time spent waiting for the device's tokens) and appends them to FILE as
JSON lines whenever the engine goes idle (the process may be terminated at shutdown). For
finding where a workload's time goes (prefill vs decode, host vs device) without a profiler."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

TRACE_ENV = "SGLRS_STEP_TRACE"


class StepTrace:
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        self.rows: list[tuple[float, float, str, int, int, float]] = []

    @classmethod
    def from_env(cls) -> StepTrace | None:
        path = os.environ.get(TRACE_ENV)
        return cls(path) if path else None

    def record(self, start: float, shape: tuple[str, int, int, float] | None) -> None:
        if shape is not None:
            self.rows.append((start, time.perf_counter(), *shape))

    def flush(self) -> None:
        if not self.rows:
            return
        with self.path.open("a") as f:
            for start, end, kind, batch, tokens, waited in self.rows:
                row = {"start": start, "end": end, "kind": kind, "batch": batch}
                row |= {"tokens": tokens, "waited": waited}
                f.write(json.dumps(row) + "\n")
        self.rows.clear()
