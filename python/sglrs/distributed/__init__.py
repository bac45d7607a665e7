"""Tensor parallelism: process groups, collectives, rank layout and the step-plan broadcast."""

from sglrs.distributed.comm import (
    all_gather_last_dim,
    all_reduce,
    all_reduce_min_int,
    broadcast_bytes,
    disable_custom_all_reduce,
    enable_custom_all_reduce,
)
from sglrs.distributed.parallel_state import (
    NCCL_SAFETY_ENV,
    TPGroup,
    destroy_tensor_parallel,
    get_tp_group,
    get_tp_rank,
    get_tp_size,
    init_tensor_parallel,
)
from sglrs.distributed.topology import Topology, TopologyError

__all__ = [
    "NCCL_SAFETY_ENV",
    "TPGroup",
    "Topology",
    "TopologyError",
    "all_gather_last_dim",
    "all_reduce",
    "all_reduce_min_int",
    "broadcast_bytes",
    "destroy_tensor_parallel",
    "disable_custom_all_reduce",
    "enable_custom_all_reduce",
    "get_tp_group",
    "get_tp_rank",
    "get_tp_size",
    "init_tensor_parallel",
]
