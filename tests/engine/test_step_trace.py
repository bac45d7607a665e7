"""SGLRS_STEP_TRACE: the step loop's per-step records reach the file as JSON lines on flush."""

from __future__ import annotations

import json

from sglrs.engine.step_trace import TRACE_ENV, StepTrace


def test_trace_records_steps_and_appends_on_flush(tmp_path, monkeypatch):
    path = tmp_path / "trace.jsonl"
    monkeypatch.setenv(TRACE_ENV, str(path))
    trace = StepTrace.from_env()
    assert trace is not None and path.read_text() == ""
    trace.record(1.0, ("decode", 4, 4, 0.25))
    trace.record(2.0, None)  # a step that planned nothing is not recorded
    trace.flush()
    trace.record(3.0, ("prefill", 2, 300, 0.0))
    trace.flush()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["kind"], r["batch"], r["tokens"], r["waited"]) for r in rows] == [
        ("decode", 4, 4, 0.25),
        ("prefill", 2, 300, 0.0),
    ]
    assert rows[0]["start"] == 1.0 and rows[0]["end"] >= rows[0]["start"]


def test_no_trace_without_the_variable(monkeypatch):
    monkeypatch.delenv(TRACE_ENV, raising=False)
    assert StepTrace.from_env() is None
