"""Parallel layers and collectives on a real gloo group of 2 spawned CPU ranks: more ranks than
KV heads (replicated) and a vocabulary that does not split evenly (padded). The even split of
the tiny model's heads at tp 2 runs end to end in test_multinode."""

from __future__ import annotations

import multiprocessing as mp

import tp_rank_checks

from sglrs.ipc.ports import free_tcp_port

TIMEOUT_S = 120


def test_parallel_layers_match_tp1():
    size = 2
    ctx = mp.get_context("spawn")
    addr = f"127.0.0.1:{free_tcp_port()}"
    procs = [
        ctx.Process(target=tp_rank_checks.run_rank, args=(rank, size, addr)) for rank in range(size)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(TIMEOUT_S)
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
    assert codes == [0] * size, f"rank exit codes {codes} (see the ranks' stderr)"
