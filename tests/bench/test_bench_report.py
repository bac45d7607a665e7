"""The table, the JSON record and the plot."""

from __future__ import annotations

import json

from sglrs.bench.metrics import RequestResult, compute_metrics
from sglrs.bench.report import emit, format_table, plot, record, redact, redact_command

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def results(stream: bool) -> list[RequestResult]:
    return [
        RequestResult(
            success=True,
            start=0.1 * i,
            e2e=1.0 + 0.1 * i,
            ttft=0.2 if stream else None,
            itls=[0.05] * 9 if stream else [],
            prompt_len=50,
            output_len=10,
            cached_tokens=10 * i,
        )
        for i in range(5)
    ] + [RequestResult(success=False, error="HTTP 500: oops")]


def test_table_shows_throughput_cache_and_latencies():
    m = compute_metrics(results(stream=True), duration_s=2.0)
    table = format_table("sglrs bench test", m, {"Dataset": "random"})
    lines = table.splitlines()
    assert "sglrs bench test" in lines[0]
    assert any(line.startswith("Dataset:") and line.endswith("random") for line in lines)
    assert any(
        line.startswith("Output token throughput (tok/s):") and "25.00" in line for line in lines
    )
    assert any(line.startswith("Cache hit rate:") and "40.00%" in line for line in lines)
    assert any(line.startswith("Failed requests:") and line.endswith("1") for line in lines)
    assert any(line.startswith("TTFT") and "200.00" in line for line in lines)
    assert any(line.startswith("ITL") and "50.00" in line for line in lines)
    no_stream = format_table("t", compute_metrics(results(stream=False), 2.0), {})
    assert "not measured (no streaming)" in no_stream


def test_record_and_files(tmp_path, capsys):
    rs = results(stream=True)
    m = compute_metrics(rs, duration_s=2.0)
    payload = record("offline", ["sglrs", "bench", "offline"], {"seed": 1}, m, rs, {"x": 1})
    out, png = tmp_path / "r" / "run.json", tmp_path / "r" / "run.png"
    emit("sglrs bench test", {"Dataset": "random"}, m, rs, payload, str(out), str(png))
    saved = json.loads(out.read_text())
    assert saved["command"] == "sglrs bench offline" and saved["x"] == 1
    assert saved["errors"] == ["HTTP 500: oops"]
    assert saved["metrics"]["completed"] == 5 and len(saved["requests"]) == 6
    assert {"sglrs", "python", "platform"} <= set(saved["environment"])
    assert png.read_bytes().startswith(PNG_MAGIC)
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "1 requests failed" in captured.err


def test_plot_without_streaming(tmp_path):
    path = tmp_path / "plain.png"
    plot(path, "no stream", results(stream=False))
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_the_api_key_and_infinities_stay_out_of_records():
    argv = ["sglrs", "bench", "serve", "--api-key", "s3cret", "--api-key=s3cret", "--port", "1"]
    assert "s3cret" not in " ".join(redact_command(argv))
    assert redact_command(argv)[-2:] == ["--port", "1"]
    assert redact({"api_key": "s3cret", "request_rate": float("inf"), "port": 1}) == {
        "api_key": "<redacted>",
        "request_rate": "inf",
        "port": 1,
    }
    assert redact({"api_key": None}) == {"api_key": None}
