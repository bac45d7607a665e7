"""Where the ranks run: `tp_size` ranks over `nnodes` nodes, `tp_size / nnodes` per node.

Node `n` runs ranks `n * per_node .. (n + 1) * per_node - 1`; a rank's GPU is its index on its
node. Rank 0 (node 0) rendezvouses at `--dist-init-addr` (a free loopback port on one node).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class TopologyError(ValueError):
    """The parallelism flags do not describe a runnable layout (the message names the flag)."""


@dataclass(frozen=True)
class Topology:
    tp_size: int
    nnodes: int
    node_rank: int
    init_addr: str | None

    @property
    def ranks_per_node(self) -> int:
        return self.tp_size // self.nnodes

    @property
    def node_ranks(self) -> range:
        start = self.node_rank * self.ranks_per_node
        return range(start, start + self.ranks_per_node)

    def local_index(self, rank: int) -> int:
        return rank % self.ranks_per_node

    @classmethod
    def from_args(cls, args: Any) -> Topology:
        """From ServerArgs (`tp_size`, `nnodes`, `node_rank`, `dist_init_addr`)."""
        tp, nnodes = int(args.tp_size), int(args.nnodes)
        if tp < 1 or nnodes < 1:
            raise TopologyError("--tp-size and --nnodes must be >= 1")
        if tp % nnodes:
            raise TopologyError(
                f"--tp-size {tp} must be a multiple of --nnodes {nnodes} (ranks per node)"
            )
        if not 0 <= args.node_rank < nnodes:
            raise TopologyError(f"--node-rank {args.node_rank} outside 0..{nnodes - 1}")
        addr = args.dist_init_addr
        if nnodes > 1 and not addr:
            raise TopologyError("--nnodes > 1 needs --dist-init-addr host:port (node 0's)")
        if addr:
            parse_addr(addr)
        return cls(tp, nnodes, int(args.node_rank), addr)


def parse_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise TopologyError(f"--dist-init-addr {addr!r} must be host:port")
    return host.strip("[]"), int(port)


def check_devices(device_type: str, topology: Topology) -> None:
    """On CUDA every rank of this node needs its own GPU."""
    if device_type != "cuda":
        return
    import torch

    have = torch.cuda.device_count()
    if have < topology.ranks_per_node:
        raise TopologyError(
            f"--tp-size {topology.tp_size} over {topology.nnodes} node(s) needs "
            f"{topology.ranks_per_node} GPUs on this node, found {have}"
        )
