"""Attention on our own Triton kernels (`sglrs.kernels`): split-K paged decode and prefill
over the cached prefix plus the new tokens.

Both kernels read K/V through the request-to-token table, so the only per-step metadata is
the decode split count (fixed per batch size, which keeps decode CUDA-graph safe) and the
longest new-token run of a prefill.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from sglrs.attention import register_attention_backend
from sglrs.attention.base import AttentionBackend
from sglrs.kernels.decode_attention import DecodeWorkspace, decode_attention, num_decode_splits
from sglrs.kernels.extend_attention import extend_attention
from sglrs.runner.forward_batch import ForwardBatch

if TYPE_CHECKING:
    from sglrs.kv_cache.pool import KVPool
    from sglrs.model_loader.config import ModelConfig

MAX_SPLITS = 16


@register_attention_backend("triton")
class TritonBackend(AttentionBackend):
    name = "triton"
    supports_cuda_graph = True

    def __init__(self, config: ModelConfig, kv_pool: KVPool, device: torch.device) -> None:
        super().__init__(config, kv_pool, device)
        self.num_sms = (
            torch.cuda.get_device_properties(self.device).multi_processor_count
            if self.device.type == "cuda"
            else 8
        )
        self._workspace: DecodeWorkspace | None = None
        self._num_splits = 1
        self._max_extend = 0
        self._prefix_lens: torch.Tensor | None = None

    def _ensure_workspace(self, batch_size: int) -> DecodeWorkspace:
        ws = self._workspace
        if ws is None or ws.max_batch < batch_size:
            ws = DecodeWorkspace(
                max(batch_size, 1), self.config.num_heads, self.config.head_dim, MAX_SPLITS,
                self.device,
            )  # fmt: skip
            self._workspace = ws
        return ws

    def init_forward_metadata(self, forward_batch: ForwardBatch) -> None:
        fb = forward_batch
        if fb.batch_size == 0:
            return
        if fb.mode.is_decode:
            self._ensure_workspace(fb.batch_size)
            self._num_splits = num_decode_splits(
                fb.batch_size, self.config.num_kv_heads, self.num_sms
            )
            return
        self._max_extend = int(fb.extend_lens_cpu.max())
        self._prefix_lens = fb.seq_lens - torch.diff(fb.qo_indptr)

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        layer_id: int,
        forward_batch: ForwardBatch,
    ) -> torch.Tensor:
        fb = forward_batch
        out = torch.empty(q.shape, dtype=self.kv_pool.dtype, device=q.device)
        q = q.to(self.kv_pool.dtype)
        k_buf, v_buf = self.kv_pool.k_buffer(layer_id), self.kv_pool.v_buffer(layer_id)
        if fb.mode.is_decode:
            assert self._workspace is not None
            return decode_attention(
                q, k_buf, v_buf, out, fb.req_to_token, fb.req_pool_indices, fb.seq_lens,
                self.scale, self._num_splits, self._workspace, self.sliding_window,
            )  # fmt: skip
        assert self._prefix_lens is not None
        return extend_attention(
            q, k_buf, v_buf, out, fb.req_to_token, fb.req_pool_indices, self._prefix_lens,
            fb.qo_indptr, self._max_extend, self.scale, self.sliding_window,
        )  # fmt: skip

    # ---- CUDA graphs (decode) ----------------------------------------------------------

    def init_cuda_graph_state(self, max_batch_size: int, max_context_len: int) -> None:
        self._ensure_workspace(max_batch_size)

    def init_forward_metadata_capture(self, forward_batch: ForwardBatch) -> None:
        self.init_forward_metadata(forward_batch)

    def init_forward_metadata_replay(self, forward_batch: ForwardBatch) -> None:
        self.init_forward_metadata(forward_batch)
