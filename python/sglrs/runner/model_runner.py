"""ModelRunner: model + KV pool + request-to-token table + attention backend; one forward per plan.

The runner keeps no per-request state of its own: a request's KV lives in pool slots the
scheduler owns, and its table row is rewritten by the plans that reuse it. So the plan's
`finished_ids`/`aborted_ids`/`retracted_ids` need nothing here (the step loop drops the
sampler's per-request state).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sglrs.attention import create_attention_backends
from sglrs.distributed import all_reduce_min_int, enable_custom_all_reduce, get_tp_size
from sglrs.kv_cache import KVBudget, KVPool, kv_token_capacity
from sglrs.kv_cache.sizing import large_gpu
from sglrs.layers.packed_linear import prepack_model
from sglrs.model_loader import LoadConfig, ModelConfig, load_model, resolve_dtype
from sglrs.model_loader.sharding import rank_attention_config
from sglrs.runner.forward_batch import (
    ForwardBatch,
    ForwardMode,
    StagingBuffer,
    apply_table_writes,
)
from sglrs.runner.host_malloc import keep_freed_memory
from sglrs.runner.warmup import ODD_WARMUP_STEPS, WARMUP_REQUEST_TOKENS, warmup_plan


def default_cuda_graph_max_bs(device: torch.device) -> int:
    """Decode batches up to this size replay a CUDA graph. On a large GPU up to 512: eager
    launches of a 512-row step cost ~19 ms of host time on Llama-3.1-8B, more than its GPU time
    under tensor parallelism (offline throughput 8,217 -> 9,148 tok/s at tp 1 and 8,935 ->
    14,795 at tp 2 on H200, benches/results/tp_scaling.json)."""
    return 512 if large_gpu(device) else 160


@dataclass
class RunnerOutput:
    """`logits`: float32 `[num_sampled, vocab]`, one row per request whose `sample_mask` is set
    (plan order); for a small decode batch it is the CUDA graph's output buffer, valid until
    the next forward is queued (sample it before). `all_logits`: req_id ->
    `[extend_len, vocab]` for the requests asked for."""

    logits: torch.Tensor
    all_logits: dict[int, torch.Tensor] = field(default_factory=dict)


class ModelRunner:
    def __init__(
        self,
        model_config: ModelConfig,
        load_config: LoadConfig,
        device: torch.device | str = "cpu",
        dtype: str | torch.dtype = "auto",
        kv_budget: KVBudget | None = None,
        attention_backend: str = "torch_native",
        prefill_attention_backend: str | None = None,
        *,
        max_running_requests: int = 256,
        context_length: int | None = None,
        page_size: int = 1,
        cuda_graph_max_bs: int | None = None,
        disable_cuda_graph: bool = False,
        disable_custom_all_reduce: bool = False,
    ) -> None:
        self.config = model_config
        self.device = torch.device(device)
        self.dtype = resolve_dtype(dtype, model_config, self.device)
        self.context_length = context_length or model_config.max_position_embeddings
        if self.context_length > model_config.max_position_embeddings:
            raise ValueError(
                f"context_length {self.context_length} exceeds the model's "
                f"max_position_embeddings {model_config.max_position_embeddings}"
            )
        try:
            self.model = load_model(model_config, load_config, self.device, self.dtype)
        except torch.cuda.OutOfMemoryError as e:
            raise RuntimeError(
                f"the model's weights do not fit in GPU memory ({e}); use a smaller --dtype, "
                "a smaller model, or more GPUs (--tp-size)"
            ) from None
        prepack_model(self.model)  # CPU float32/bf16: oneDNN-layout weights, before KV sizing
        if self.device.type == "cpu":
            # From here on (the weights placed as before), reuse freed activations instead of
            # faulting them in anew every step.
            keep_freed_memory()
        # Under tensor parallelism attention and the KV pool see this rank's heads only.
        rank_config = rank_attention_config(model_config, get_tp_size())
        # Sized after the weights so a GPU memory fraction sees what they left free; every rank
        # takes the smallest capacity, the one rank 0's scheduler hands out.
        capacity = all_reduce_min_int(
            kv_token_capacity(
                rank_config, self.dtype, page_size, kv_budget or KVBudget(), self.device
            )
        )
        self.kv_pool = KVPool(
            model_config.num_layers,
            rank_config.num_kv_heads,
            model_config.head_dim,
            capacity,
            page_size,
            self.dtype,
            self.device,
        )
        # One spare last row, all padding slots: CUDA-graph padding rows read it.
        self.padding_row = max_running_requests
        self.req_to_token = torch.zeros(
            (max_running_requests + 1, self.context_length), dtype=torch.int32, device=self.device
        )
        self.req_to_token[self.padding_row] = self.kv_pool.padding_slot
        self.staging = StagingBuffer(self.device)
        self.attn_backend = create_attention_backends(
            prefill_attention_backend or attention_backend,
            attention_backend,
            rank_config,
            self.kv_pool,
            self.device,
        )
        if self.device.type == "cuda" and get_tp_size() > 1 and not disable_custom_all_reduce:
            # Before capture: the graphs record its kernels.
            enable_custom_all_reduce(self.dtype, vocab_size=model_config.vocab_size)
        self.graph_runner = None
        if (
            self.device.type == "cuda"
            and not disable_cuda_graph
            and self.attn_backend.supports_cuda_graph
        ):
            from sglrs.runner.cuda_graph_runner import CudaGraphRunner

            max_bs = cuda_graph_max_bs or default_cuda_graph_max_bs(self.device)
            max_bs = min(max_bs, max_running_requests)
            try:
                self.graph_runner = CudaGraphRunner(self, max_bs)
            except torch.cuda.OutOfMemoryError as e:
                raise RuntimeError(
                    f"out of GPU memory while capturing CUDA graphs ({e}); lower "
                    "--mem-fraction-static or --cuda-graph-max-bs, or pass --disable-cuda-graph"
                ) from None

    def warm_up(self, num_tokens: int) -> None:
        """Run one prefill of `num_tokens` new tokens, then the small odd-shaped ones, and
        wait for them (CUDA; every TP rank at once, its all-reduces pair up). See
        runner/warmup.py."""
        for total, per_request in ((num_tokens, WARMUP_REQUEST_TOKENS), *ODD_WARMUP_STEPS):
            plan = warmup_plan(
                total,
                self.context_length,
                self.padding_row,
                self.max_total_tokens,
                self.config.vocab_size,
                per_request,
            )
            if plan is not None:
                self.forward(plan)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @property
    def max_total_tokens(self) -> int:
        """KV slots the scheduler may hand out: `0 .. max_total_tokens - 1`."""
        return self.kv_pool.capacity

    @torch.inference_mode()
    def forward(
        self,
        plan: Any,
        all_logits_req_ids: Iterable[int] = (),
        prev_tokens: torch.Tensor | None = None,
    ) -> RunnerOutput:
        """Run one step. `all_logits_req_ids`: requests (by id) that also want the logits of
        every new position (prompt logprobs). `prev_tokens`: the sampled ids of the step
        planned before this one, where a plan made ahead reads its placeholder input ids."""
        vocab = self.config.vocab_size
        if plan.kind == ForwardMode.IDLE.value:
            apply_table_writes(plan, self.req_to_token)
            return RunnerOutput(torch.empty((0, vocab), device=self.device))
        fb = ForwardBatch.from_plan(plan, self.req_to_token, self.device, self.staging, prev_tokens)
        if getattr(plan, "kv_indices", None) is not None:
            fb.check_kv_indices(plan)
        fb.attn_backend = self.attn_backend
        wanted = {int(r) for r in all_logits_req_ids}
        if self.graph_runner is not None and not wanted and self.graph_runner.can_run(fb):
            hidden, logits = self.graph_runner.replay(fb)
            return RunnerOutput(self.model.compute_logits(hidden) if logits is None else logits)
        self.attn_backend.init_forward_metadata(fb)
        hidden = self.model(fb.input_ids, fb.positions, fb)
        logits = self.model.compute_logits(hidden[fb.sample_rows])
        unknown = wanted - {int(r) for r in fb.req_ids}
        if unknown:
            raise ValueError(f"all_logits_req_ids not in this plan: {sorted(unknown)}")
        all_logits = {}
        for r in np.flatnonzero(np.isin(fb.req_ids, np.array(sorted(wanted), dtype=np.uint64))):
            start, end = fb.qo_indptr_cpu[r], fb.qo_indptr_cpu[r + 1]
            all_logits[int(fb.req_ids[r])] = self.model.compute_logits(hidden[start:end])
        return RunnerOutput(logits, all_logits)
