"""One backend for prefill steps and another for decode steps, over the same KV pool
(`--prefill-attention-backend` / `--decode-attention-backend`, as SGLang's flags): e.g.
FlashInfer's ragged prefill kernels with our Triton decode, which needs no per-step host plan.
"""

from __future__ import annotations

import torch

from sglrs.attention.base import AttentionBackend
from sglrs.runner.forward_batch import ForwardBatch


class HybridBackend(AttentionBackend):
    def __init__(self, prefill: AttentionBackend, decode: AttentionBackend) -> None:
        if prefill.kv_pool is not decode.kv_pool:
            raise ValueError("hybrid attention: both backends must share one KV pool")
        super().__init__(decode.config, decode.kv_pool, decode.device)
        self.prefill, self.decode = prefill, decode
        self.name = f"{prefill.name} prefill + {decode.name} decode"
        # CUDA graphs hold decode steps only.
        self.supports_cuda_graph = decode.supports_cuda_graph

    def _for(self, fb: ForwardBatch) -> AttentionBackend:
        return self.decode if fb.mode.is_decode else self.prefill

    def init_forward_metadata(self, forward_batch: ForwardBatch) -> None:
        self._for(forward_batch).init_forward_metadata(forward_batch)

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        layer_id: int,
        forward_batch: ForwardBatch,
    ) -> torch.Tensor:
        return self._for(forward_batch).attend(q, k, v, layer_id, forward_batch)

    def init_cuda_graph_state(self, max_batch_size: int, max_context_len: int) -> None:
        self.decode.init_cuda_graph_state(max_batch_size, max_context_len)

    def init_forward_metadata_capture(self, forward_batch: ForwardBatch) -> None:
        self.decode.init_forward_metadata_capture(forward_batch)

    def init_forward_metadata_replay(self, forward_batch: ForwardBatch) -> None:
        self.decode.init_forward_metadata_replay(forward_batch)
