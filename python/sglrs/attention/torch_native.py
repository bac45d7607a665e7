"""Reference attention backend on `torch.nn.functional.scaled_dot_product_attention`.

Runs on CPU and GPU. Decode on the CPU (float32/bfloat16/float16 KV) is the Rust paged kernel
of `sglrs.attention.cpu_decode`, reading K/V in place. Elsewhere decode is one batched SDPA call
over K/V gathered into a padded `[B, max_seq_len]` layout (padding points at the pool's padding
slot and is masked), with the query heads of each KV head as its group of queries. Extend and
mixed steps loop over requests (one SDPA call each), except a CPU prefill of requests without
cached prefixes and of similar lengths: one causal call over them right-padded (2.6x faster
than 21 calls for 21 ~100-token prompts). No CUDA-graph support: the gathers and per-request
loop depend on host-side lengths.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sglrs.attention import cpu_decode, register_attention_backend
from sglrs.attention.base import AttentionBackend
from sglrs.kv_cache.pool import KVPool
from sglrs.model_loader.config import ModelConfig
from sglrs.runner.forward_batch import ForwardBatch


@register_attention_backend("torch_native")
class TorchNativeBackend(AttentionBackend):
    name = "torch_native"

    def __init__(self, config: ModelConfig, kv_pool: KVPool, device: torch.device) -> None:
        super().__init__(config, kv_pool, device)
        self._gqa = config.num_heads != config.num_kv_heads
        # Fixed by the pool's device and dtype: decided once, not every step.
        self._cpu_decode = cpu_decode.supports(self.device, kv_pool.dtype)

    def init_forward_metadata(self, forward_batch: ForwardBatch) -> None:
        fb = forward_batch
        if fb.batch_size == 0:
            return
        if fb.mode.is_decode and self._cpu_decode:
            # The kernel reads the table in place: only the rows, as a host array, once a step.
            self._decode_rows = fb.req_pool_indices.numpy()
            return
        if fb.mode.is_decode:
            max_len = int(fb.seq_lens_cpu.max())
            cols = torch.arange(max_len, device=self.device)[None, :]
            valid = cols < fb.seq_lens[:, None]
            if self.sliding_window is not None:
                valid &= cols > fb.seq_lens[:, None] - 1 - self.sliding_window
            index = fb.req_to_token[fb.req_pool_indices, :max_len].long()
            # Flat, for index_select on each layer's contiguous K and V (a plain row copy;
            # advanced indexing of the strided [K/V, slot] view is ~4x slower on the CPU).
            self._decode_index = torch.where(valid, index, self.kv_pool.padding_slot).view(-1)
            self._decode_shape = (fb.batch_size, max_len, self.config.num_kv_heads, -1)
            self._decode_mask = valid[:, None, None, :]  # [B, heads, queries, keys]
            return
        self._extend_masks: list[torch.Tensor | None] = []
        self._padded_rows: torch.Tensor | None = None
        for prefix, extend in zip(
            fb.prefix_lens_cpu.tolist(), fb.extend_lens_cpu.tolist(), strict=True
        ):
            window = self.sliding_window
            if prefix == 0 and (window is None or window >= extend):
                self._extend_masks.append(None)  # plain causal: SDPA's is_causal
                continue
            q_pos = torch.arange(prefix, prefix + extend, device=self.device)[:, None]
            k_pos = torch.arange(prefix + extend, device=self.device)[None, :]
            mask = k_pos <= q_pos
            if window is not None:
                mask &= q_pos - k_pos < window
            self._extend_masks.append(mask)
        if self.device.type == "cpu" and _pad_pays(fb.extend_lens_cpu, self._extend_masks):
            # Row of each new token in the right-padded [B * max_len] layout.
            lens, width = fb.extend_lens_cpu, int(fb.extend_lens_cpu.max())
            starts = np.repeat(np.arange(len(lens)) * width - fb.qo_indptr_cpu[:-1], lens)
            rows = starts + np.arange(int(fb.qo_indptr_cpu[-1]))
            self._padded_rows = torch.from_numpy(rows)
            self._padded_shape = (len(lens), width)

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        layer_id: int,
        forward_batch: ForwardBatch,
    ) -> torch.Tensor:
        fb = forward_batch
        k_buf, v_buf = self.kv_pool.k_buffer(layer_id), self.kv_pool.v_buffer(layer_id)
        if fb.mode.is_decode and self._cpu_decode:
            out = cpu_decode.paged_decode_attention(
                q.to(k_buf.dtype),
                k_buf,
                v_buf,
                fb.req_to_token,
                self._decode_rows,
                fb.seq_lens_cpu,
                self.scale,
                self.sliding_window,
                # Reading K/V is memory bound and one core streams only about half of what
                # two do (a bf16 batch-32 step: 44 vs 49 ms with 1 thread on 2 cores).
                num_threads=torch.get_num_threads(),
            )
            return out.to(q.dtype)
        if fb.mode.is_decode:
            # Each request's keys and values as [B, S, Hkv, D].
            keys = k_buf.index_select(0, self._decode_index).view(self._decode_shape)
            values = v_buf.index_select(0, self._decode_index).view(self._decode_shape)
            b, hkv = fb.batch_size, self.config.num_kv_heads
            # The query heads sharing a KV head act as that head's queries ([B, Hkv, G, D]):
            # no K/V expansion for GQA, and the one-position decode needs no causal mask.
            out = F.scaled_dot_product_attention(
                q.reshape(b, hkv, -1, q.shape[-1]).to(keys.dtype),
                keys.transpose(1, 2),  # [B, Hkv, S, D]
                values.transpose(1, 2),
                attn_mask=self._decode_mask,
                scale=self.scale,
            )
            return out.reshape(q.shape).to(q.dtype)
        if self._padded_rows is not None:
            return self._attend_padded(q, k, v, k_buf.dtype)
        out = torch.empty_like(q)
        qo, kv = fb.qo_indptr_cpu.tolist(), fb.kv_indptr_cpu.tolist()
        prefix_lens = fb.prefix_lens_cpu.tolist()
        for r, mask in enumerate(self._extend_masks):
            if prefix_lens[r] == 0:  # nothing cached: the new tokens' K/V are the whole KV
                keys, values = k[qo[r] : qo[r + 1]], v[qo[r] : qo[r + 1]]
            else:
                index = fb.kv_indices[kv[r] : kv[r + 1]]
                keys, values = k_buf[index], v_buf[index]
            o = F.scaled_dot_product_attention(
                q[qo[r] : qo[r + 1]].transpose(0, 1).to(k_buf.dtype),  # [Hq, E, D]
                keys.to(k_buf.dtype).transpose(0, 1),  # [Hkv, S, D]
                values.to(k_buf.dtype).transpose(0, 1),
                attn_mask=mask,
                is_causal=mask is None,
                scale=self.scale,
                enable_gqa=self._gqa,
            )
            out[qo[r] : qo[r + 1]] = o.transpose(0, 1).to(q.dtype)
        return out

    def _attend_padded(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor:
        """Causal attention of every request (no cached prefix) in one SDPA call over the
        requests right-padded to the longest: a valid query never sees a padded key (they
        come after it), and padded queries are dropped."""
        assert self._padded_rows is not None
        batch, width = self._padded_shape
        rows = self._padded_rows

        def pad(x: torch.Tensor) -> torch.Tensor:
            padded = x.new_zeros((batch * width, *x.shape[1:]), dtype=dtype)
            padded.index_copy_(0, rows, x.to(dtype))
            return padded.view(batch, width, *x.shape[1:]).transpose(1, 2)  # [B, H, S, D]

        o = F.scaled_dot_product_attention(
            pad(q), pad(k), pad(v), is_causal=True, scale=self.scale, enable_gqa=self._gqa
        )
        o = o.transpose(1, 2).reshape(batch * width, *q.shape[1:])
        return o.index_select(0, rows).to(q.dtype)


# Padding is worth it while the padded attention does at most this much more work than the
# per-request calls (one call per layer instead of one per request, and 2 threads share
# B x heads items rather than a request's few heads).
PAD_MAX_WORK = 1.5


def _pad_pays(extend_lens: np.ndarray, masks: list[torch.Tensor | None]) -> bool:
    """Whether a prefill of these requests runs as one padded causal call: every request is
    plain causal (no cached prefix, no window inside it) and padding adds little work."""
    if len(extend_lens) < 2 or any(m is not None for m in masks):
        return False
    lens = extend_lens.astype(np.int64)
    return len(lens) * int(lens.max()) ** 2 <= PAD_MAX_WORK * int((lens**2).sum())
