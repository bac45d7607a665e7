"""Rank layout over nodes and the parallelism flag checks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sglrs.distributed.topology import Topology, TopologyError, check_devices, parse_addr


def _args(tp=1, nnodes=1, node_rank=0, addr=None):
    return SimpleNamespace(tp_size=tp, nnodes=nnodes, node_rank=node_rank, dist_init_addr=addr)


def test_ranks_per_node_and_local_indices():
    t = Topology.from_args(_args(tp=4, nnodes=2, node_rank=1, addr="10.0.0.1:5000"))
    assert t.ranks_per_node == 2 and list(t.node_ranks) == [2, 3]
    assert [t.local_index(r) for r in t.node_ranks] == [0, 1]
    assert list(Topology.from_args(_args(tp=2)).node_ranks) == [0, 1]
    assert parse_addr("[::1]:29500") == ("::1", 29500)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (_args(tp=3, nnodes=2, addr="h:1"), "multiple of --nnodes"),
        (_args(tp=2, nnodes=2), "--dist-init-addr"),
        (_args(tp=2, addr="h:0"), "host:port"),
        (_args(tp=2, nnodes=2, node_rank=2, addr="h:1"), "--node-rank 2"),
    ],
)
def test_bad_layouts(args, message):
    with pytest.raises(TopologyError, match=message):
        Topology.from_args(args)


def test_cpu_needs_no_gpus():
    check_devices("cpu", Topology.from_args(_args(tp=8)))
