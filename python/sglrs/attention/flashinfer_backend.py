"""FlashInfer attention: paged decode, and prefill as ragged attention over the new tokens
merged with paged attention over the cached prefix.

One plan per step serves every layer. The new tokens' K/V are stored in the pool first, so a
step whose requests have no cached prefix needs only the ragged kernel, and a sliding-window
model attends over the whole paged KV (prefix and new tokens) in one causal call, where
FlashInfer's window positions line up with the query positions. Decode runs in CUDA graphs:
one wrapper per captured batch size over fixed index buffers, re-planned before each replay.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import torch

from sglrs.attention import register_attention_backend
from sglrs.attention.base import AttentionBackend
from sglrs.kernels.page_table import build_page_table
from sglrs.runner.forward_batch import ForwardBatch

if TYPE_CHECKING:
    from sglrs.kv_cache.pool import KVPool
    from sglrs.model_loader.config import ModelConfig

WORKSPACE_BYTES = 256 << 20
# Prefill with a cached prefix: "merge" (ragged new + paged prefix, merged by LSE) or "paged"
# (one causal paged call over everything). Sliding windows always use "paged".
PREFILL_MODE = os.environ.get("SGLRS_FLASHINFER_PREFILL", "merge")


def _i32(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int32))


@register_attention_backend("flashinfer")
class FlashInferBackend(AttentionBackend):
    name = "flashinfer"
    supports_cuda_graph = True

    def __init__(self, config: ModelConfig, kv_pool: KVPool, device: torch.device) -> None:
        super().__init__(config, kv_pool, device)
        import flashinfer

        if self.device.type != "cuda":
            raise ValueError("the flashinfer attention backend needs a CUDA device")
        if kv_pool.dtype not in (torch.float16, torch.bfloat16):
            raise ValueError(
                f"the flashinfer attention backend needs --dtype bfloat16 or float16, not "
                f"{str(kv_pool.dtype).removeprefix('torch.')}; use --attention-backend triton"
            )
        self._fi = flashinfer
        self.page_size = kv_pool.page_size
        self.hq, self.hkv, self.d = config.num_heads, config.num_kv_heads, config.head_dim
        self.window_left = self.sliding_window - 1 if self.sliding_window else -1
        self.workspace = torch.zeros(WORKSPACE_BYTES, dtype=torch.uint8, device=self.device)
        # Tensor-core decode pays off when several query heads share a KV head.
        self.decode_tensor_cores = self.hq // self.hkv >= 4
        self.decode = flashinfer.BatchDecodeWithPagedKVCacheWrapper(
            self.workspace, "NHD", use_tensor_cores=self.decode_tensor_cores
        )
        self.ragged = flashinfer.BatchPrefillWithRaggedKVCacheWrapper(self.workspace, "NHD")
        self.paged = flashinfer.BatchPrefillWithPagedKVCacheWrapper(self.workspace, "NHD")
        self._graph_decode: dict[int, object] = {}
        self._use_ragged = self._use_paged = False
        self._active_decode = self.decode

    # ---- per-step metadata -------------------------------------------------------------

    def _page_table(
        self,
        fb: ForwardBatch,
        lens: np.ndarray,
        out: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(indptr, page ids, last page lengths) for the first `lens[b]` tokens of each
        request; indptr and last lengths on the host, page ids on the device."""
        p = self.page_size
        pages = (lens + p - 1) // p
        indptr = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(pages, out=indptr[1:])
        last = np.where(pages > 0, lens - (pages - 1) * p, 0)
        total = int(indptr[-1])
        if out is None:
            out = torch.empty(max(total, 1), dtype=torch.int32, device=self.device)
        pages_dev = _i32(pages).to(self.device, non_blocking=True)
        indptr_dev = _i32(indptr).to(self.device, non_blocking=True)
        build_page_table(fb.req_to_token, fb.req_pool_indices, pages_dev, indptr_dev, out, p)
        return _i32(indptr), out[:total], _i32(last)

    def _plan_decode(self, wrapper: object, fb: ForwardBatch, out: torch.Tensor | None) -> None:
        indptr, indices, last = self._page_table(fb, fb.seq_lens_cpu, out)
        wrapper.plan(  # type: ignore[attr-defined]
            indptr, indices, last, self.hq, self.hkv, self.d, self.page_size,
            window_left=self.window_left, q_data_type=self.kv_pool.dtype,
            kv_data_type=self.kv_pool.dtype, sm_scale=self.scale,
        )  # fmt: skip

    def init_forward_metadata(self, forward_batch: ForwardBatch) -> None:
        fb = forward_batch
        if fb.batch_size == 0:
            return
        if fb.mode.is_decode:
            self._active_decode = self.decode
            self._plan_decode(self.decode, fb, None)
            return
        dtype = self.kv_pool.dtype
        has_prefix = bool(fb.prefix_lens_cpu.any())
        paged_only = has_prefix and (PREFILL_MODE == "paged" or self.sliding_window is not None)
        self._use_ragged = not paged_only
        self._use_paged = has_prefix
        qo = _i32(fb.qo_indptr_cpu)
        if self._use_ragged:
            self.ragged.plan(
                qo, qo, self.hq, self.hkv, self.d, causal=True, window_left=self.window_left,
                q_data_type=dtype, kv_data_type=dtype, sm_scale=self.scale,
            )  # fmt: skip
        if self._use_paged:
            lens = fb.seq_lens_cpu if paged_only else fb.prefix_lens_cpu
            indptr, indices, last = self._page_table(fb, lens)
            self.paged.plan(
                qo, indptr, indices, last, self.hq, self.hkv, self.d, self.page_size,
                causal=paged_only, window_left=self.window_left if paged_only else -1,
                q_data_type=dtype, kv_data_type=dtype, sm_scale=self.scale,
            )  # fmt: skip

    # ---- the layer call ----------------------------------------------------------------

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        layer_id: int,
        forward_batch: ForwardBatch,
    ) -> torch.Tensor:
        fb = forward_batch
        dtype = self.kv_pool.dtype
        q = q.to(dtype).contiguous()
        cache = self.kv_pool.kv_pages(layer_id)
        if fb.mode.is_decode:
            return self._active_decode.run(q, cache)  # type: ignore[attr-defined]
        if not self._use_ragged:
            return self.paged.run(q, cache)
        # k/v are strided views into the fused QKV output; the ragged kernel wants them packed.
        k, v = k.to(dtype).contiguous(), v.to(dtype).contiguous()
        o, lse = self.ragged.run(q, k, v, return_lse=True)
        if not self._use_paged:
            return o
        o_prefix, lse_prefix = self.paged.run(q, cache, return_lse=True)
        merged, _ = self._fi.merge_state(o_prefix, lse_prefix, o, lse)
        return merged

    # ---- CUDA graphs (decode) ------------------------------------------------------------

    def init_cuda_graph_state(self, max_batch_size: int, max_context_len: int) -> None:
        p = self.page_size
        self._graph_indptr = torch.zeros(max_batch_size + 1, dtype=torch.int32, device=self.device)
        self._graph_last = torch.zeros(max_batch_size, dtype=torch.int32, device=self.device)
        self._graph_indices = torch.zeros(
            max_batch_size * ((max_context_len + p - 1) // p), dtype=torch.int32, device=self.device
        )

    def _graph_wrapper(self, bs: int) -> object:
        if bs not in self._graph_decode:
            self._graph_decode[bs] = self._fi.BatchDecodeWithPagedKVCacheWrapper(
                self.workspace,
                "NHD",
                use_cuda_graph=True,
                use_tensor_cores=self.decode_tensor_cores,
                paged_kv_indptr_buffer=self._graph_indptr[: bs + 1],
                paged_kv_indices_buffer=self._graph_indices,
                paged_kv_last_page_len_buffer=self._graph_last[:bs],
            )
        return self._graph_decode[bs]

    def init_forward_metadata_capture(self, forward_batch: ForwardBatch) -> None:
        self.init_forward_metadata_replay(forward_batch)

    def init_forward_metadata_replay(self, forward_batch: ForwardBatch) -> None:
        wrapper = self._graph_wrapper(forward_batch.batch_size)
        self._active_decode = wrapper
        self._plan_decode(wrapper, forward_batch, self._graph_indices)
