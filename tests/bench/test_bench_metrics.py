"""Benchmark arithmetic on synthetic timings."""

from __future__ import annotations

import pytest

from sglrs.bench.metrics import RequestResult, StreamTimer, Summary, compute_metrics, finish


def test_stream_timer_spreads_a_chunk_gap_over_its_tokens():
    timer = StreamTimer(sent_at=10.0)
    timer.chunk(10.5, 1)  # first token after 0.5 s
    timer.chunk(10.6, 2)
    timer.chunk(10.9, 5)  # 3 tokens in 0.3 s
    timer.chunk(11.0, 5)  # nothing new: the finish-reason chunk
    assert timer.ttft == pytest.approx(0.5)
    assert timer.itls == pytest.approx([0.1, 0.1, 0.1, 0.1])


def test_stream_timer_first_chunk_with_several_tokens():
    timer = StreamTimer(sent_at=0.0)
    timer.chunk(0.2, 3)
    timer.chunk(0.4, 4)
    assert timer.ttft == pytest.approx(0.2)
    assert timer.itls == pytest.approx([0.0, 0.0, 0.2])


def test_summary_in_milliseconds():
    s = Summary.of([0.001 * x for x in range(1, 101)])
    assert s.mean == pytest.approx(50.5)
    assert s.median == pytest.approx(50.5)
    assert s.p99 == pytest.approx(99.01)
    assert s.max == pytest.approx(100.0)
    assert Summary.of([]) is None


def done(start, e2e, ttft, prompt, output, cached, itls=()):
    return RequestResult(
        success=True,
        start=start,
        e2e=e2e,
        ttft=ttft,
        itls=list(itls),
        prompt_len=prompt,
        output_len=output,
        cached_tokens=cached,
    )


def test_compute_metrics_on_known_numbers():
    results = [
        done(0.0, 2.0, 0.5, prompt=100, output=4, cached=0, itls=[0.5, 0.5, 0.5]),
        done(0.5, 1.5, 0.25, prompt=300, output=6, cached=150, itls=[0.25] * 5),
        RequestResult(success=False, error="boom", prompt_len=999, output_len=999),
    ]
    m = compute_metrics(results, duration_s=4.0)
    assert (m.completed, m.failed) == (2, 1)
    assert (m.total_input_tokens, m.total_output_tokens, m.total_cached_tokens) == (400, 10, 150)
    assert m.request_throughput == pytest.approx(0.5)
    assert m.input_throughput == pytest.approx(100.0)
    assert m.output_throughput == pytest.approx(2.5)
    assert m.total_throughput == pytest.approx(102.5)
    assert m.cache_hit_rate == pytest.approx(150 / 400)
    assert m.mean_concurrency == pytest.approx(3.5 / 4.0)
    assert m.ttft_ms.mean == pytest.approx(375.0)
    assert m.e2e_ms.median == pytest.approx(1750.0)
    assert m.e2e_ms.max == pytest.approx(2000.0)
    # TPOT: (2.0 - 0.5) / 3 and (1.5 - 0.25) / 5 seconds.
    assert m.tpot_ms.mean == pytest.approx((500.0 + 250.0) / 2)
    assert m.itl_ms.mean == pytest.approx((3 * 500.0 + 5 * 250.0) / 8)
    assert m.to_dict()["ttft_ms"]["mean"] == pytest.approx(375.0)


def test_without_streaming_ttft_and_itl_are_not_measured():
    m = compute_metrics([done(0.0, 1.0, None, 10, 5, 0)], duration_s=1.0)
    assert m.ttft_ms is None and m.itl_ms is None and m.tpot_ms is None
    assert m.e2e_ms.mean == pytest.approx(1000.0)
    with pytest.raises(ValueError, match="duration"):
        compute_metrics([], duration_s=0.0)
    empty = compute_metrics([], duration_s=1.0)
    assert empty.cache_hit_rate == 0.0 and empty.e2e_ms is None


def meta(**extra):
    return {"meta_info": {"prompt_tokens": 7, "completion_tokens": 3, "cached_tokens": 2, **extra}}


def test_finish_reads_meta_info_and_fails_aborted_requests():
    ok = finish(RequestResult(success=False), meta(finish_reason={"type": "length", "length": 3}))
    assert ok.success and (ok.prompt_len, ok.output_len, ok.cached_tokens) == (7, 3, 2)
    aborted = finish(
        RequestResult(success=False), meta(finish_reason={"type": "abort", "message": "no memory"})
    )
    assert not aborted.success and aborted.error == "aborted: no memory"
