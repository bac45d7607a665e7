"""A decode step of a Llama-family model on the CPU as one Rust call per layer
(`_core.decode_layer`, crates/cpu_attn/src/decode_layer.rs): bfloat16 on an AMX CPU, float32
on an AVX-512 CPU.

The op-by-op CPU path runs ~10 torch/Rust calls per layer with their argument checks, views and
allocations in between: ~5 ms of interpreter time in a 36 ms bfloat16 batch-32 step on SmolLM2,
plus ~2 ms for the K/V stores (`index_copy_`); in float32 at batch 1, ~15 of a ~40 ms step.
The fused call runs the same kernels in the same order (identical results) and writes the new
K/V rows itself.

It applies to decode batches of up to `AMX_MAX_ROWS` (bfloat16) or `F32_MAX_ROWS` (float32)
requests whose layers all have projections packed for that dtype's kernel, without biases or
q/k norms, on the torch_native backend's CPU decode kernel and without tensor parallelism;
anything else takes the op-by-op path.
`SGLRS_DISABLE_CPU_FUSED_DECODE=1` keeps the op-by-op path, to compare.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

from sglrs import _core
from sglrs.attention.torch_native import TorchNativeBackend
from sglrs.layers.amx_linear import AmxWeight
from sglrs.layers.f32_linear import F32Weight
from sglrs.layers.packed_linear import AMX_MAX_ROWS, F32_MAX_ROWS

if TYPE_CHECKING:
    from sglrs.models.llama import LlamaDecoderLayer, LlamaModel
    from sglrs.runner.forward_batch import ForwardBatch

DISABLE_ENV = "SGLRS_DISABLE_CPU_FUSED_DECODE"
# dtype -> (the `_core.decode_layer` dtype code, the packed weight type, most rows).
_KINDS: dict[torch.dtype, tuple[int, type, int]] = {
    torch.float32: (0, F32Weight, F32_MAX_ROWS),
    torch.bfloat16: (1, AmxWeight, AMX_MAX_ROWS),
}


def _layer_weights(layer: LlamaDecoderLayer, dtype: torch.dtype) -> tuple[int, ...] | None:
    """Addresses of (input norm, post norm, qkv, o, gate_up, down), or None where the layer
    does not fit the fused call. Cached on the layer while its packed weights are the same
    objects (reloading a weight drops its packed copy, prepacking makes a new one)."""
    attn, mlp = layer.self_attn, layer.mlp
    linears = (attn.qkv_proj, attn.o_proj, mlp.gate_up_proj, mlp.down_proj)
    packed = tuple(lin._packed for lin in linears)
    cached = layer.__dict__.get("_fused_decode_weights")
    fresh = cached is not None and cached[2] == dtype
    if fresh and all(a is b for a, b in zip(cached[0], packed, strict=True)):
        return cached[1]
    weights = None
    norms = (layer.input_layernorm.weight, layer.post_attention_layernorm.weight)
    if (
        not attn.qk_norm
        and all(lin.bias is None for lin in linears)
        and attn.o_proj.tp_size == 1
        and mlp.down_proj.tp_size == 1
        and all(isinstance(p, _KINDS[dtype][1]) for p in packed)
        and all(n.dtype == dtype and n.is_contiguous() for n in norms)
    ):
        weights = (*(n.data_ptr() for n in norms), *(p.data.data_ptr() for p in packed))  # type: ignore[union-attr]
    layer.__dict__["_fused_decode_weights"] = (packed, weights, dtype)
    return weights


def decode_layers(
    model: LlamaModel, hidden: torch.Tensor, positions: torch.Tensor, fb: ForwardBatch
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(hidden, residual) after every decoder layer of this decode step, or None where the
    fused call does not apply (nothing has run then)."""
    backend = fb.attn_backend
    batch, dtype = hidden.shape[0], hidden.dtype
    kind = _KINDS.get(dtype)
    if not (
        fb.mode.is_decode
        and hidden.device.type == "cpu"
        and kind is not None
        and 0 < batch <= kind[2]
        and isinstance(backend, TorchNativeBackend)
        and backend._cpu_decode
        and os.environ.get(DISABLE_ENV) != "1"
    ):
        return None
    weights = [_layer_weights(layer, dtype) for layer in model.layers]
    if any(w is None for w in weights):
        return None
    first = model.layers[0]
    attn = first.self_attn
    rotary = model.rotary
    cos, sin = rotary.cos_cache, rotary.sin_cache
    if cos.dtype != torch.float32 or not (cos.is_contiguous() and sin.is_contiguous()):
        return None
    positions = positions.to(torch.int64).contiguous()
    loc = fb.out_cache_loc.to(torch.int64).contiguous()
    table = fb.req_to_token
    if table.dtype != torch.int32 or not table.is_contiguous():
        return None
    pool = backend.kv_pool
    rows, lens = fb.req_pool_indices.numpy(), fb.seq_lens_cpu
    sizes = (hidden.shape[1], first.mlp.down_proj.in_features, attn.num_heads,
             attn.num_kv_heads, attn.head_dim)  # fmt: skip
    buffer = pool.buffer  # [K/V, layer, slot, head, dim], contiguous
    if buffer.dtype != dtype or not buffer.is_contiguous():
        return None
    num_layers, num_slots = buffer.shape[1], buffer.shape[2]
    layer_bytes = buffer[0, 0].numel() * buffer.element_size()
    k_base, v_base = buffer.data_ptr(), buffer.data_ptr() + num_layers * layer_bytes
    hidden = hidden.contiguous()
    residual: torch.Tensor | None = None
    threads = torch.get_num_threads()
    # Two output pairs used in turn: a layer's outputs must not overlap its inputs.
    pairs = [(torch.empty_like(hidden), torch.empty_like(hidden)) for _ in range(2)]
    eps = first.input_layernorm.eps
    code = kind[0]
    for i, w in enumerate(weights):
        out, res_out = pairs[i % 2]
        _core.decode_layer(
            dtype=code, hidden_ptr=hidden.data_ptr(), residual_ptr=None if residual is None else
            residual.data_ptr(), out_ptr=out.data_ptr(), res_out_ptr=res_out.data_ptr(),
            batch=batch, weights=w, sizes=sizes, eps=eps,
            positions_ptr=positions.data_ptr(), cos_ptr=cos.data_ptr(), sin_ptr=sin.data_ptr(),
            max_position=cos.shape[0], k_ptr=k_base + i * layer_bytes,
            v_ptr=v_base + i * layer_bytes, num_slots=num_slots, out_cache_loc_ptr=loc.data_ptr(),
            table_ptr=table.data_ptr(), table_shape=tuple(table.shape), req_pool_indices=rows,
            seq_lens=lens, scale=backend.scale, sliding_window=backend.sliding_window,
            num_threads=threads,
        )  # fmt: skip
        hidden, residual = out, res_out
    assert residual is not None
    return hidden, residual
