"""Llama-family decoder (Llama 2/3/3.1, SmolLM, Mistral); Qwen2/Qwen3 reuse it (qwen.py)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from sglrs.attention.layer import Attention
from sglrs.distributed.parallel_state import get_tp_rank, get_tp_size
from sglrs.layers.activation import SiluAndMul
from sglrs.layers.cuda_fused import (
    linear_reduce_norm,
    linear_rope,
    norm_linear,
    norm_linear_rope,
    silu_mul_linear,
)
from sglrs.layers.embedding import LMHead, VocabEmbedding
from sglrs.layers.linear import MergedColumnLinear, QKVLinear, RowLinear, WeightLoadError
from sglrs.layers.norm import RMSNorm
from sglrs.layers.rotary import RotaryEmbedding
from sglrs.model_loader.config import ModelConfig
from sglrs.models import cpu_decode_step
from sglrs.runner.forward_batch import ForwardBatch

if TYPE_CHECKING:
    from sglrs.kernels.gemv import RopeStore


@dataclass(frozen=True)
class AttentionOptions:
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False  # Qwen3: RMSNorm over each head of q and k before rope


@dataclass(frozen=True)
class TP:
    """This process's tensor-parallel rank and size (0 and 1 without TP)."""

    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> TP:
        return cls(get_tp_rank(), get_tp_size())


class LlamaAttention(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        layer_id: int,
        opts: AttentionOptions,
        rotary: RotaryEmbedding,
        tp: TP = TP(),
    ) -> None:
        super().__init__()
        self.qkv_proj = QKVLinear(
            config.hidden_size,
            config.head_dim,
            config.num_heads,
            config.num_kv_heads,
            opts.qkv_bias,
            tp_rank=tp.rank,
            tp_size=tp.size,
        )
        # This rank's heads (all of them without TP).
        self.num_heads, self.num_kv_heads = self.qkv_proj.num_heads, self.qkv_proj.num_kv_heads
        self.head_dim = config.head_dim
        self.o_proj = RowLinear(
            config.q_size, config.hidden_size, opts.o_bias, tp_rank=tp.rank, tp_size=tp.size
        )
        if opts.qk_norm:
            self.q_norm = RMSNorm(config.head_dim, config.rms_norm_eps)
            self.k_norm = RMSNorm(config.head_dim, config.rms_norm_eps)
        self.qk_norm = opts.qk_norm
        self.rotary = [rotary]  # shared by every layer; a list keeps it out of the module tree
        self.attn = Attention(layer_id)

    def forward(
        self, positions: torch.Tensor, hidden: torch.Tensor, forward_batch: ForwardBatch
    ) -> torch.Tensor:
        return self.attend(positions, self.qkv_proj(hidden), forward_batch)

    def rope_epilogue(
        self, positions: torch.Tensor, forward_batch: ForwardBatch
    ) -> RopeStore | None:
        """What the QKV GEMV needs to rotate q and k and store k and v itself (its ROPE
        epilogue, for one row on a GPU; cuda_fused.norm_linear_rope decides whether it fits),
        or None where the layer rotates after the projection (qk-norm models, the CPU)."""
        if (
            self.qk_norm
            or not positions.is_cuda
            or positions.shape[0] != 1
            or os.environ.get("SGLRS_DISABLE_ROPE_EPILOGUE") == "1"
        ):
            return None
        from sglrs.kernels.gemv import RopeStore

        rotary, fb = self.rotary[0], forward_batch
        pool, layer = fb.attn_backend.kv_pool, self.attn.layer_id
        return RopeStore(
            positions, rotary.cos_cache, rotary.sin_cache, fb.out_cache_loc,
            pool.k_buffer(layer), pool.v_buffer(layer), self.num_heads, self.num_kv_heads,
            self.head_dim,
        )  # fmt: skip

    def attend(
        self,
        positions: torch.Tensor,
        qkv: torch.Tensor,
        forward_batch: ForwardBatch,
        project: bool = True,
        roped: bool = False,
    ) -> torch.Tensor:
        """Rope, attention and the output projection of the fused q/k/v rows; `project=False`:
        the attention output before o_proj (the layer projects it together with the sum over
        the ranks). `roped`: the QKV GEMV already rotated q and k and stored k and v
        (`rope_epilogue`)."""
        q, k, v = self.qkv_proj.split(qkv)
        t = qkv.shape[0]
        v = v.view(t, self.num_kv_heads, self.head_dim)
        kv_stored = roped
        if roped:
            q = q.view(t, self.num_heads, self.head_dim)
            k = k.view(t, self.num_kv_heads, self.head_dim)
        elif self.qk_norm:
            q = self.q_norm(q.view(t, self.num_heads, self.head_dim))
            k = self.k_norm(k.view(t, self.num_kv_heads, self.head_dim))
            q, k = self.rotary[0](positions, q, k)
        else:
            # q and k are adjacent in the fused output: one rope over all their heads, which
            # on a GPU also stores k and v in the KV pool.
            heads = self.num_heads + self.num_kv_heads
            qk = qkv[:, : heads * self.head_dim].view(t, heads, self.head_dim)
            fb = forward_batch
            kv_pool, layer = fb.attn_backend.kv_pool, self.attn.layer_id
            rotary = self.rotary[0]
            kv_stored = rotary.rotate_store(
                positions, qk, self.num_heads, v, kv_pool, layer, fb.out_cache_loc
            )
            if not kv_stored:
                qk = rotary.rotate(positions, qk)
            q, k = qk.split([self.num_heads, self.num_kv_heads], dim=1)
        o = self.attn(q, k, v, forward_batch, kv_stored).reshape(t, self.num_heads * self.head_dim)
        return self.o_proj(o) if project else o


class LlamaMLP(nn.Module):
    def __init__(self, config: ModelConfig, tp: TP = TP()) -> None:
        super().__init__()
        inter = config.intermediate_size
        self.gate_up_proj = MergedColumnLinear(
            config.hidden_size, [inter, inter], config.mlp_bias, tp_rank=tp.rank, tp_size=tp.size
        )
        self.down_proj = RowLinear(
            inter, config.hidden_size, config.mlp_bias, tp_rank=tp.rank, tp_size=tp.size
        )
        self.act = SiluAndMul()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act_down(self.gate_up_proj(x))

    def act_down(self, gate_up: torch.Tensor) -> torch.Tensor:
        """down_proj(silu(gate) * up), as one fused GEMV in decode on a GPU (cuda_fused)."""
        return silu_mul_linear(self.act, gate_up, self.down_proj)


class LlamaDecoderLayer(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        layer_id: int,
        opts: AttentionOptions,
        rotary: RotaryEmbedding,
        tp: TP = TP(),
    ) -> None:
        super().__init__()
        self.self_attn = LlamaAttention(config, layer_id, opts, rotary, tp)
        self.mlp = LlamaMLP(config, tp)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        # With TP, o_proj's and down_proj's sums over the ranks are taken together with the
        # norm after each (cuda_fused.linear_reduce_norm: in the projection's GEMV where it
        # fits); a bias, added after the sum, keeps them in RowLinear.
        self.defers_reduce = tp.size > 1 and not opts.o_bias and not config.mlp_bias

    def forward(
        self,
        positions: torch.Tensor,
        hidden: torch.Tensor,
        residual: torch.Tensor | None,
        forward_batch: ForwardBatch,
        normed: bool = False,
        next_norm: RMSNorm | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`normed`: `hidden` is already this layer's input_layernorm output and `residual` what
        it normalized (the previous layer's `defers_reduce`). A layer that defers its sums needs
        `next_norm` (the next layer's input_layernorm, or the model's final norm) and returns
        `(next_norm(s), s)` for its output `s`; otherwise `(hidden, residual)` as usual."""
        # Each norm goes to the projection after it: fused into its GEMV in decode on a GPU.
        attn, mlp = self.self_attn, self.mlp
        rope = attn.rope_epilogue(positions, forward_batch)
        if normed:
            qkv, roped = linear_rope(hidden, attn.qkv_proj, rope)
        else:
            qkv, residual, roped = norm_linear_rope(
                self.input_layernorm, hidden, residual, attn.qkv_proj, rope
            )
        if not self.defers_reduce:
            hidden = attn.attend(positions, qkv, forward_batch, roped=roped)
            gate_up, residual = norm_linear(
                self.post_attention_layernorm, hidden, residual, mlp.gate_up_proj
            )
            return mlp.act_down(gate_up), residual
        if next_norm is None or residual is None:
            raise ValueError("a layer that defers its sums needs the norm after it")
        o = attn.attend(positions, qkv, forward_batch, project=False, roped=roped)
        x, residual = linear_reduce_norm(o, attn.o_proj, self.post_attention_layernorm, residual)
        return linear_reduce_norm(mlp.gate_up_proj(x), mlp.down_proj, next_norm, residual, mlp.act)


class LlamaModel(nn.Module):
    def __init__(self, config: ModelConfig, opts: AttentionOptions, tp: TP = TP()) -> None:
        super().__init__()
        self.embed_tokens = VocabEmbedding(
            config.vocab_size, config.hidden_size, tp_rank=tp.rank, tp_size=tp.size
        )
        self.rotary = RotaryEmbedding(
            config.head_dim, config.max_position_embeddings, config.rope_theta, config.rope_scaling
        )
        self.layers = nn.ModuleList(
            LlamaDecoderLayer(config, i, opts, self.rotary, tp) for i in range(config.num_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, forward_batch: ForwardBatch
    ) -> torch.Tensor:
        hidden, residual = self.embed_tokens(input_ids), None
        # bf16 decode on an AMX CPU: one Rust call per layer where it applies.
        fused = cpu_decode_step.decode_layers(self, hidden, positions, forward_batch)
        if fused is not None:
            hidden, residual = fused
        else:
            normed, layers = False, self.layers
            for i, layer in enumerate(layers):
                after = layers[i + 1].input_layernorm if i + 1 < len(layers) else self.norm
                hidden, residual = layer(positions, hidden, residual, forward_batch, normed, after)
                normed = layer.defers_reduce
            if normed:  # the last layer applied the final norm
                return hidden
        hidden, _ = self.norm(hidden, residual)
        return hidden


# Checkpoint name fragment -> (our fused module, shard id).
STACKED_PARAMS = (
    (".q_proj.", ".qkv_proj.", "q"),
    (".k_proj.", ".qkv_proj.", "k"),
    (".v_proj.", ".qkv_proj.", "v"),
    (".gate_proj.", ".gate_up_proj.", 0),
    (".up_proj.", ".gate_up_proj.", 1),
)


class LlamaForCausalLM(nn.Module):
    def __init__(self, config: ModelConfig, tp: TP | None = None) -> None:
        """`tp`: this rank's share of the model; default: the process's TP group (if any)."""
        super().__init__()
        tp = TP.current() if tp is None else tp
        self.config = config
        self.model = LlamaModel(config, self.attention_options(config), tp)
        tied = self.model.embed_tokens if config.tie_word_embeddings else None
        self.lm_head = LMHead(
            config.vocab_size, config.hidden_size, tied_to=tied, tp_rank=tp.rank, tp_size=tp.size
        )

    @classmethod
    def attention_options(cls, config: ModelConfig) -> AttentionOptions:
        return AttentionOptions(qkv_bias=config.attention_bias, o_bias=config.attention_bias)

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, forward_batch: ForwardBatch
    ) -> torch.Tensor:
        """Final hidden states `[T, hidden]` of the step's new tokens."""
        return self.model(input_ids, positions, forward_batch)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """float32 logits `[N, vocab]` for the rows of `hidden` the caller chose."""
        return self.lm_head(hidden)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load HF-named tensors; raise on an unknown name, a bad shape, or a missing weight."""
        params = dict(self.named_parameters())
        loaded: set[tuple[str, object]] = set()
        for name, tensor in weights:
            if name.endswith("rotary_emb.inv_freq"):
                continue  # recomputed from the config
            if name == "lm_head.weight" and self.config.tie_word_embeddings:
                continue  # tied: the embedding is the head
            target, shard = name, None
            for part, fused, shard_id in STACKED_PARAMS:
                if part in name:
                    target, shard = name.replace(part, fused), shard_id
                    break
            param = params.get(target)
            if param is None:
                raise WeightLoadError(
                    f"checkpoint weight {name!r} has no place in {type(self).__name__}"
                )
            try:
                param.weight_loader(param, tensor, shard)
            except WeightLoadError as e:
                raise WeightLoadError(f"{name}: {e}") from None
            loaded.add((target, shard))
        missing = [
            f"{n}" + (f"[{s!r}]" if s is not None else "")
            for n, p in params.items()
            for s in (p.shard_ids or (None,))
            if (n, s) not in loaded
        ]
        if missing:
            shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
            raise WeightLoadError(f"checkpoint lacks {len(missing)} weights: {shown}")


class MistralForCausalLM(LlamaForCausalLM):
    """Llama with a sliding attention window (`config.sliding_window`, masked by the backend)."""
