"""Attention on our own Triton kernels (`sglrs.kernels`): split-K paged decode and prefill
over the cached prefix plus the new tokens.

Both kernels read cached K/V through the request-to-token table (prefill reads the step's
new K/V from its own tensors), so the only per-step metadata is
the decode split count (fixed per batch size, which keeps decode CUDA-graph safe), the
decode order (longest request first, computed on the device) and the longest new-token run
of a prefill.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from sglrs.attention import register_attention_backend
from sglrs.attention.base import AttentionBackend
from sglrs.kernels.decode_attention import (
    DecodeWorkspace,
    decode_attention,
    longest_first,
    num_decode_splits,
)
from sglrs.kernels.extend_attention import extend_attention
from sglrs.runner.forward_batch import ForwardBatch

if TYPE_CHECKING:
    from sglrs.kv_cache.pool import KVPool
    from sglrs.model_loader.config import ModelConfig

MAX_SPLITS = 16
# Decode programs take requests longest first from this many program waves (8 KV heads:
# batches of 66+ on an H100).
LONGEST_FIRST_MIN_WAVES = 4


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
        # Eager steps and CUDA graphs keep separate scratch: a graph replays into the buffers
        # it was captured with, so an eager batch larger than any graph must not replace them.
        self._eager_ws: DecodeWorkspace | None = None
        self._graph_ws: DecodeWorkspace | None = None
        self._graph_order: torch.Tensor | None = None
        self._graph_identity: torch.Tensor | None = None
        self._ws: DecodeWorkspace | None = None
        self._order: torch.Tensor | None = None  # the decode programs' request order
        self._num_splits = 1
        self._max_extend = 0
        self._prefix_lens: torch.Tensor | None = None

    def _new_workspace(self, batch_size: int) -> DecodeWorkspace:
        return DecodeWorkspace(
            max(batch_size, 1), self.config.num_heads, self.config.head_dim, MAX_SPLITS,
            self.device,
        )  # fmt: skip

    def _workspace(self, batch_size: int) -> DecodeWorkspace:
        ws = self._eager_ws
        if ws is None or ws.max_batch < batch_size:
            ws = self._eager_ws = self._new_workspace(batch_size)
        return ws

    def _decode_metadata(
        self, fb: ForwardBatch, ws: DecodeWorkspace, order_buf: torch.Tensor | None
    ) -> None:
        self._ws = ws
        hkv = self.config.num_kv_heads
        self._num_splits = num_decode_splits(fb.batch_size, hkv, self.num_sms)
        # Order matters only when the programs take several waves; a small batch (batch-1
        # latency) skips the sort's kernels.
        if fb.batch_size * hkv * self._num_splits >= LONGEST_FIRST_MIN_WAVES * self.num_sms:
            self._order = longest_first(fb.seq_lens, order_buf)
        elif order_buf is not None:
            assert self._graph_identity is not None
            self._order = self._graph_identity[: fb.batch_size]
        else:  # once per step, not in each layer's kernel call
            self._order = torch.arange(fb.batch_size, device=self.device)

    def init_forward_metadata(self, forward_batch: ForwardBatch) -> None:
        fb = forward_batch
        if fb.batch_size == 0:
            return
        if fb.mode.is_decode:
            self._decode_metadata(fb, self._workspace(fb.batch_size), None)
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
            assert self._ws is not None
            return decode_attention(
                q, k_buf, v_buf, out, fb.req_to_token, fb.req_pool_indices, fb.seq_lens,
                self.scale, self._num_splits, self._ws, self.sliding_window, self._order,
            )  # fmt: skip
        assert self._prefix_lens is not None
        return extend_attention(
            q, k.to(k_buf.dtype), v.to(v_buf.dtype), k_buf, v_buf, out, fb.req_to_token,
            fb.req_pool_indices, self._prefix_lens, fb.qo_indptr, self._max_extend, self.scale,
            self.sliding_window,
        )  # fmt: skip

    # ---- CUDA graphs (decode) ----------------------------------------------------------

    def init_cuda_graph_state(self, max_batch_size: int, max_context_len: int) -> None:
        self._graph_ws = self._new_workspace(max_batch_size)
        self._graph_order = torch.zeros(max_batch_size, dtype=torch.int64, device=self.device)
        self._graph_identity = torch.arange(max_batch_size, device=self.device)

    def init_forward_metadata_capture(self, forward_batch: ForwardBatch) -> None:
        self.init_forward_metadata_replay(forward_batch)

    def init_forward_metadata_replay(self, forward_batch: ForwardBatch) -> None:
        assert self._graph_ws is not None, "init_cuda_graph_state first"
        self._decode_metadata(forward_batch, self._graph_ws, self._graph_order)
