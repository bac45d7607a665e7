"""Tensor-parallel ranks: joining the group, rank 0's plan broadcast, the follower processes.

Rank 0 runs the whole EngineCore (Rust scheduler, sampler, grammar, stop strings); before each
forward it broadcasts the step's plan as one compact byte buffer (`plan_wire`). Every other rank
runs `run_tp_worker_process`: receive a plan, run the same forward on its shard (the collectives
inside meet rank 0's), repeat until rank 0 broadcasts stop. Only rank 0 samples; sampled ids
reach the followers as the next plan's input ids, except the placeholders of a plan made ahead
(overlap scheduling): rank 0 then broadcasts the previous step's sampled ids on the device.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from typing import Any

import torch

from sglrs.distributed import Topology, broadcast_bytes, init_tensor_parallel
from sglrs.distributed.comm import broadcast_ids_from_first
from sglrs.distributed.plan_wire import (
    OP_HEARTBEAT,
    OP_STOP,
    decode_step,
    encode_heartbeat,
    encode_step,
    encode_stop,
)
from sglrs.distributed.topology import check_devices
from sglrs.server_args import ServerArgs

logger = logging.getLogger(__name__)


def rank_device(args: ServerArgs, tp_rank: int) -> torch.device:
    """The device of `tp_rank`: its GPU on its node, or the CPU."""
    from sglrs.engine.engine_core import resolve_device

    device = resolve_device(args.device)
    if device.type != "cuda" or args.tp_size == 1:
        return device
    return torch.device("cuda", Topology.from_args(args).local_index(tp_rank))


def init_rank(args: ServerArgs, tp_rank: int) -> torch.device:
    """Join the TP group as `tp_rank` (a no-op at tp 1); returns the rank's device."""
    device = rank_device(args, tp_rank)
    if args.tp_size == 1:
        return device
    topology = Topology.from_args(args)
    check_devices(device.type, topology)
    if topology.init_addr is None:
        raise ValueError("tensor parallelism needs dist_init_addr (set by the runtime)")
    if device.type == "cpu":
        # The ranks of a node share its cores: one share each instead of all of them each.
        cores = len(os.sched_getaffinity(0))
        torch.set_num_threads(max(1, cores // topology.ranks_per_node))
    init_tensor_parallel(tp_rank, args.tp_size, topology.init_addr, device)
    return device


class PlanBroadcastRunner:
    """Rank 0's model runner: broadcasts each plan to the other ranks, then runs it."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.stopped = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runner, name)

    def forward(self, plan: Any, all_logits_req_ids: Any = (), prev_tokens: Any = None) -> Any:
        ids = [int(r) for r in all_logits_req_ids]
        broadcast_bytes(encode_step(plan, ids))
        if plan.num_placeholders:
            prev_tokens = broadcast_ids_from_first(prev_tokens, prev_tokens.numel())
        return self.runner.forward(plan, ids, prev_tokens)

    def heartbeat(self) -> None:
        """While idle: fails (raises) if another rank has died."""
        broadcast_bytes(encode_heartbeat())

    def stop(self) -> None:
        """Release the followers (they exit their loop)."""
        if self.stopped:
            return
        self.stopped = True
        try:
            broadcast_bytes(encode_stop())
        except Exception:  # a rank already gone: nothing left to release
            logger.warning("could not tell the other TP ranks to stop", exc_info=True)


def follow_plans(runner: Any) -> int:
    """A follower's step loop; returns the number of forwards run."""
    steps, last_sampled = 0, 0
    while True:
        message = decode_step(broadcast_bytes(None))
        if message.op == OP_STOP:
            return steps
        if message.op == OP_HEARTBEAT:
            continue
        plan, prev = message.plan, None
        assert plan is not None
        with torch.inference_mode():
            if plan.num_placeholders:  # rank 0's sampled ids of the previous plan
                prev = broadcast_ids_from_first(None, last_sampled)
            runner.forward(plan, message.all_logits_req_ids, prev)
        last_sampled = plan.num_sampled
        steps += 1


def run_tp_worker_process(
    server_args_json: str, endpoints: dict[str, str] | None, tp_rank: int
) -> None:
    """Process entry of TP rank `tp_rank` > 0. `endpoints` (node 0 only) lets it report a
    failure to the TokenizerManager; elsewhere it logs and exits, which its launcher sees."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent owns Ctrl-C and shuts us down
    args = ServerArgs(**json.loads(server_args_json))
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s [tp{tp_rank}] %(levelname)s %(message)s",
    )
    where = "startup"
    try:
        from sglrs.engine.engine_core import build_model_runner

        device = init_rank(args, tp_rank)
        runner = build_model_runner(args, device)
        where = f"tp rank {tp_rank}"
        follow_plans(runner)
    except Exception as e:
        logger.exception("tp rank %d failed", tp_rank)
        _report(endpoints, where, f"tp rank {tp_rank}: {type(e).__name__}: {e}")
        raise SystemExit(1) from None
    from sglrs.distributed import destroy_tensor_parallel

    destroy_tensor_parallel()  # only after a clean stop: a failed group may hang in teardown


def _report(endpoints: dict[str, str] | None, where: str, message: str) -> None:
    if not endpoints:
        return
    import zmq

    from sglrs.ipc import messages as msg

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.connect(endpoints["tokenizer_input"])
    sock.send(msg.encode(msg.ErrorMsg(where=where, message=message)))
    time.sleep(0.2)  # let the message leave before the context closes
    ctx.destroy(linger=1000)
