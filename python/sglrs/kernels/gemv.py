"""y = x W^T (+ b) for a few rows of x (decode): a weight-streaming GEMV with optional split-K.

At 1-8 rows the product is bound by reading W once. Each program owns `block_n` rows of W and
walks K in `block_k` steps (16-byte loads along K); `split_k` > 1 also splits K over programs,
whose fp32 partials the last-arriving program of each column tile sums (a per-tile counter,
reset by that program, so no extra launch and CUDA-graph replays stay correct). Tile shapes
come from a static per-shape-class table (`TUNING`), never from autotuning, so capture never
compiles or benchmarks.

The table, from `python benches/gemv_h100.py --sweep` on an H100 80GB HBM3 (triton 3.6, torch
2.11; copy bandwidth 3.02 TB/s read+write; µs per call inside a CUDA graph, weights rotated
past L2; F.linear = cuBLAS):

    shape (N x K)          M=1: F.linear -> gemv    M=2..8: F.linear -> gemv
    qkv     6144 x  4096   21.0 -> 18.5 (1.13x)     21.0-21.2 -> 20.5-20.9 (1.01-1.02x)
    o       4096 x  4096   16.7 -> 13.2 (1.26x)     16.4-16.7 -> 14.3 (1.15-1.17x)
    gate_up 28672 x 4096   84.4 -> 76.1 (1.11x)     81.9-82.5, gemv best 80.6-81.3: F.linear
    down    4096 x 14336   44.5 -> 40.4 (1.10x)     44.5-45.0 -> 42.4-42.7 (1.05x)
    lm_head 128256 x 4096  371.7 -> 330.0 (1.13x)   372.9-381.4 -> 339.7-344.0 (1.10-1.11x)

One row runs on the FMA units (4 rows of W x 2048 of K per step: 3.1 TB/s on the large
weights); 2-8 rows pad to 16 for the tensor cores. Split-K never won on these shapes (at most
even), nor did FMA tiles for 2-8 rows. Where the gain is ~1% (gate_up at 2-8 rows) F.linear
stays.

Tensor-parallel shards: the smaller weights of Llama-3.1-8B's tp 2 / tp 4 shards take their
own one-row tiles (`ONE_ROW_BY_SHAPE`, from a sweep on an H200: e.g. a quarter o_proj, 4096 x
1024, 4.2 -> 3.5 µs with 1024-wide K steps on 2 warps; benches/results/gemv_h200_tp.json),
for plain GEMVs only: with the RMSNorm or SiLU prologue fused in they made the tp-4 batch-1
step slower (1.97 -> 2.12 ms, runner only), so prologue-fused launches keep the table's tile.

The ROPE epilogue (`RopeStore`, one-row FMA tiles) serves the fused q/k/v projection: each
program takes whole rope pairs of q or k rows (row d with row d + head_dim / 2), so it can
rotate its outputs and store k and v at the token's KV-pool slot itself, replacing the rope +
store kernel that would follow.

The REDUCE_NORM epilogue (`ReduceNorm`, one-row FMA tiles) serves the row-parallel o_proj and
down under tensor parallelism: the programs push their terms over NVLink
(kernels/push_all_reduce.py's protocol) and the last program of each column group sums them,
adds the residual and applies the next RMSNorm, so no all-reduce kernel runs between the two
projections.

Prologues fuse the op before the product into the K loop, saving its kernel and the round trip
of its output: `gemv_rmsnorm` (RMSNorm of `h (+ residual)`, before the QKV and gate_up
projections) and `gemv_silu_mul` (`silu(gate) * up` of the gate_up output, before down). RMSNorm's
per-row scale factors out of the dot products, so each program sums `x^2` in the same K loop and
scales its outputs at the end (x is 8-64 KB, read from L2; W dominates the bytes); with
`stats_first` a first pass over x computes the scale instead, so the activations get the unfused
norm's exact roundings (the default for fp16 on the tensor cores, where the unscaled `x * g`
could overflow fp16).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from sglrs.kernels.pdl import pdl_launch_dependents, pdl_wait, prefetch_l2, use_pdl
from sglrs.kernels.push_all_reduce import (
    EMPTY_BITS,
    MAX_NORM_WIDTH,
    push_values,
    store_norm,
    take_sum_residual,
)

# Split-K tile counters (int32, zero between launches). Allocated once per device and never
# freed or moved: captured graphs keep the address.
_COUNTER_SLOTS = 1 << 16
_counters: dict[torch.device, torch.Tensor] = {}


@dataclass(frozen=True)
class GemvConfig:
    """Tile shape of one launch. `use_dot` pads the rows to 16 and uses the tensor cores;
    otherwise rows are multiplied on the FMA units."""

    block_n: int
    block_k: int
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 1
    use_dot: bool = False


@triton.jit
def _finish(out, offs_m, cols, out_mask, b_ptr, y_ptr, N, stride_ym, HAS_BIAS: tl.constexpr):
    if HAS_BIAS:
        out += tl.load(b_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)
    tl.store(y_ptr + offs_m[:, None] * stride_ym + cols, out.to(y_ptr.dtype.element_ty), out_mask)


@triton.jit
def _finish_rope(
    out, offs_m, m_mask, n0, N, w_rows, b_ptr, y_ptr, stride_ym, pos_ptr, cos_ptr, sin_ptr,
    cache_stride, loc_ptr, k_buf_ptr, v_buf_ptr, num_q_heads, num_kv_heads,
    HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr,
):  # fmt: skip
    """The ROPE epilogue of a fused q/k/v product whose program took rope pairs of rows
    (`_rope_rows`): rounds the products to the activation dtype as the GEMV would store them,
    rotates the q and k pairs (kernels/rotary.py's roundings), stores q, k and v at their own
    columns of y and k and v at the rows' KV-pool slots."""
    half: tl.constexpr = HEAD_DIM // 2
    pe = n0 + 2 * tl.arange(0, BLOCK_N // 2)  # each pair's first (virtual) row
    qk_rows = (num_q_heads + num_kv_heads) * HEAD_DIM
    in_qk = pe < qk_rows
    w = pe % HEAD_DIM
    col_a = tl.where(in_qk, pe - w + w // 2, pe)
    col_b = tl.where(in_qk, col_a + half, pe + 1)
    if HAS_BIAS:
        out += tl.load(b_ptr + w_rows).to(tl.float32)[None, :]
    dtype = y_ptr.dtype.element_ty
    a, b = tl.split(tl.reshape(out.to(dtype), (BLOCK_M, BLOCK_N // 2, 2)))
    mask = m_mask[:, None] & (pe < N)[None, :]
    pos = tl.load(pos_ptr + offs_m, mask=m_mask, other=0).to(tl.int64)
    table = pos[:, None] * cache_stride + (w // 2)[None, :]
    cos = tl.load(cos_ptr + table, mask=mask & in_qk[None, :], other=1.0)
    sin = tl.load(sin_ptr + table, mask=mask & in_qk[None, :], other=0.0)
    af, bf = a.to(tl.float32), b.to(tl.float32)
    ya = tl.where(in_qk[None, :], (af * cos - bf * sin).to(dtype), a)
    yb = tl.where(in_qk[None, :], (bf * cos + af * sin).to(dtype), b)
    rows = offs_m[:, None] * stride_ym
    tl.store(y_ptr + rows + col_a[None, :], ya, mask=mask)
    tl.store(y_ptr + rows + col_b[None, :], yb, mask=mask)
    # The pool is [slots, kv heads, head_dim]: k's columns start after q's, v's after k's.
    slot = tl.load(loc_ptr + offs_m, mask=m_mask, other=0).to(tl.int64)
    kv = slot[:, None] * (num_kv_heads * HEAD_DIM)
    q_cols = num_q_heads * HEAD_DIM
    is_k = (in_qk & (pe >= q_cols))[None, :]
    ty = k_buf_ptr.dtype.element_ty
    tl.store(k_buf_ptr + kv + (col_a - q_cols)[None, :], ya.to(ty), mask=mask & is_k)
    tl.store(k_buf_ptr + kv + (col_b - q_cols)[None, :], yb.to(ty), mask=mask & is_k)
    is_v = (pe >= qk_rows)[None, :]
    tl.store(v_buf_ptr + kv + (pe - qk_rows)[None, :], a.to(ty), mask=mask & is_v)
    tl.store(v_buf_ptr + kv + (pe + 1 - qk_rows)[None, :], b.to(ty), mask=mask & is_v)


@triton.jit
def _finish_reduce_norm(
    out, cols, out_mask, N, buffers, counts_ptr, sq_ptr, r_ptr, g_ptr, r_out_ptr, norm_out_ptr,
    slot_numel, eps, RANK: tl.constexpr, WORLD: tl.constexpr, WORLD_P2: tl.constexpr,
    EMPTY: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_COLS: tl.constexpr,
    SQ_BLOCK: tl.constexpr, COUNTS: tl.constexpr,
):  # fmt: skip
    """The REDUCE_NORM epilogue (`ReduceNorm`) of a one-row product. Every program pushes its
    outputs (this rank's terms, rounded to the dtype) into every rank's buffer, its own
    included, and is done. The last program of each GROUP_COLS-wide column group waits for the
    group's terms from every rank (kernels/push_all_reduce.py's protocol and order: no counter,
    the values are their own flags), sums them, adds the residual, stores `s` and publishes the
    group's sum of squares stamped with the call count; once every group's carries this call's
    stamp, it normalizes its group with their total, summed in a fixed order (every rank gets
    the same bits). Earlier programs never wait on later ones, so the groups' last programs,
    dispatched after all the others of their group, always finish."""
    dtype = norm_out_ptr.dtype.element_ty
    offs = tl.reshape(cols, [BLOCK_N])
    mask = tl.reshape(out_mask, [BLOCK_N])
    y = tl.reshape(out.to(dtype), [BLOCK_N])
    count = tl.load(counts_ptr)  # the push kernels' call count (all of theirs are equal)
    half = (count % 2).to(tl.int64)
    bits = buffers[RANK].dtype.element_ty
    push_values(y.to(bits, bitcast=True), buffers, offs, mask, slot_numel, half, RANK, WORLD,
                EMPTY, True)  # fmt: skip
    per_group: tl.constexpr = GROUP_COLS // BLOCK_N
    pid = tl.program_id(0)
    group = pid // per_group
    if (pid % per_group == per_group - 1) | (pid == tl.num_programs(0) - 1):
        gcols = group * GROUP_COLS + tl.arange(0, GROUP_COLS)
        gmask = gcols < N
        # Every rank's term came through the slots (x unused: r_ptr stands in).
        sf = take_sum_residual(buffers[RANK], r_ptr, r_ptr, r_out_ptr, gcols, gmask, slot_numel,
                               half, dtype, RANK, WORLD, WORLD_P2, EMPTY, False)  # fmt: skip
        # The group's sum of squares in the low 32 bits, this call's stamp in the high ones:
        # one 8-byte store, so a reader sees both or neither.
        stamp = (count + 1).to(tl.int64) << 32
        sq_bits = tl.sum(sf * sf, axis=0).to(tl.int32, bitcast=True).to(tl.int64) & 0xFFFFFFFF
        tl.store(sq_ptr + group, stamp | sq_bits)
        groups = tl.cdiv(N, GROUP_COLS)
        idx = tl.arange(0, SQ_BLOCK)
        want = tl.where(idx < groups, stamp, 0)
        sq = tl.load(sq_ptr + idx, mask=idx < groups, other=0, volatile=True)
        while tl.sum(((sq & -(1 << 32)) != want).to(tl.int32), axis=0) > 0:
            sq = tl.load(sq_ptr + idx, mask=idx < groups, other=0, volatile=True)
        total = tl.sum((sq & 0xFFFFFFFF).to(tl.int32).to(tl.float32, bitcast=True), axis=0)
        rstd = tl.rsqrt(total / N + eps)
        store_norm(sf, rstd, g_ptr, norm_out_ptr, gcols, gcols, gmask)
        if group == groups - 1:
            # Every program pushed (read the count) before its group's stamp went out.
            tl.store(counts_ptr + tl.arange(0, COUNTS), count + 1)


@triton.jit
def _rope_rows(n0, BLOCK_N: tl.constexpr, qk_rows, HEAD_DIM: tl.constexpr):
    """Weight rows of a ROPE program's virtual rows `n0 + i`: within each q or k head, virtual
    rows 2j and 2j + 1 are rope's pair j and j + HEAD_DIM / 2 (so a program holds whole
    pairs); v's rows stay in order."""
    p = n0 + tl.arange(0, BLOCK_N)
    w = p % HEAD_DIM
    return tl.where(p < qk_rows, p - w + w // 2 + (w % 2) * (HEAD_DIM // 2), p)


@triton.jit
def _residual_sum(
    x_ptr, r_ptr, offs_m, cols, mask, stride_xm, stride_rm, HAS_RESIDUAL: tl.constexpr
):
    """Rows of `h (+ residual)` at `cols`, the sum rounded to the activation dtype as the
    unfused `h + residual` rounds it."""
    x = tl.load(x_ptr + offs_m[:, None] * stride_xm + cols[None, :], mask=mask, other=0.0)
    if HAS_RESIDUAL:
        r = tl.load(r_ptr + offs_m[:, None] * stride_rm + cols[None, :], mask=mask, other=0.0)
        x = (x.to(tl.float32) + r.to(tl.float32)).to(x.dtype)
    return x


@triton.jit
def _rms_rstd(
    x_ptr, r_ptr, offs_m, m_mask, offs_k, K, eps, stride_xm, stride_rm,
    HAS_RESIDUAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """`rsqrt(mean(x^2) + eps)` per row of `x = h (+ residual)`, in float32."""
    sumsq = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
    for k in range(0, K, BLOCK_K):
        cols = k + offs_k
        mask = m_mask[:, None] & (cols < K)[None, :]
        xf = _residual_sum(x_ptr, r_ptr, offs_m, cols, mask, stride_xm, stride_rm, HAS_RESIDUAL)
        xf = xf.to(tl.float32)
        sumsq += xf * xf
    return tl.rsqrt(tl.sum(sumsq, axis=1) / K + eps)


@triton.jit
def _silu_mul(x_ptr, offs_m, cols, mask, stride_xm, K):
    """`silu(gate) * up` of `[gate | up]` rows (each K wide), with the roundings of the unfused
    kernel (kernels/activation.py): silu rounded to the activation dtype, then the product."""
    ptrs = x_ptr + offs_m[:, None] * stride_xm + cols[None, :]
    gate = tl.load(ptrs, mask=mask, other=0.0)
    up = tl.load(ptrs + K, mask=mask, other=0.0)
    g = gate.to(tl.float32)
    act = (g / (1.0 + tl.exp(-g))).to(gate.dtype)
    return (act.to(tl.float32) * up.to(tl.float32)).to(gate.dtype)


@triton.jit
def _store_residual(
    x_ptr, r_ptr, r_out_ptr, offs_m, m_mask, offs_k, K, stride_xm, stride_rm, stride_om,
    BLOCK_K: tl.constexpr,
):  # fmt: skip
    """Write `h + residual` (the next residual) once: the programs take BLOCK_K-wide column
    chunks in turn, into a fresh buffer (other programs still read h and residual)."""
    for c in range(tl.program_id(0) * BLOCK_K, K, tl.num_programs(0) * BLOCK_K):
        cols = c + offs_k
        mask = m_mask[:, None] & (cols < K)[None, :]
        x = _residual_sum(x_ptr, r_ptr, offs_m, cols, mask, stride_xm, stride_rm, True)
        tl.store(r_out_ptr + offs_m[:, None] * stride_om + cols[None, :], x, mask=mask)


@triton.jit
def _gemv_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    y_ptr,
    part_ptr,
    count_ptr,
    r_ptr,
    g_ptr,
    r_out_ptr,
    pos_ptr,
    cos_ptr,
    sin_ptr,
    cache_stride,
    loc_ptr,
    k_buf_ptr,
    v_buf_ptr,
    num_q_heads,
    num_kv_heads,
    ar_buffers,
    ar_counts_ptr,
    sq_ptr,
    norm_out_ptr,
    slot_numel,
    M,
    N,
    K,
    k_split,
    split_k,
    stride_xm,
    stride_wn,
    stride_ym,
    stride_rm,
    stride_om,
    eps,
    HAS_BIAS: tl.constexpr,
    SPLIT: tl.constexpr,
    USE_DOT: tl.constexpr,
    EVEN_N: tl.constexpr,
    EVEN_K: tl.constexpr,
    PROLOGUE: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr,
    STATS_FIRST: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    USE_PDL: tl.constexpr,
    LINE_ELEMS: tl.constexpr,
    PREFETCH_BLOCKS: tl.constexpr,
    ROPE: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    REDUCE_NORM: tl.constexpr,
    RANK: tl.constexpr,
    WORLD: tl.constexpr,
    WORLD_P2: tl.constexpr,
    EMPTY: tl.constexpr,
    GROUP_COLS: tl.constexpr,
    SQ_BLOCK: tl.constexpr,
    COUNTS: tl.constexpr,
):
    """PROLOGUE "none": x is the activation. "norm": x is h, the activation is
    `g * rmsnorm(h (+ r))` (g at g_ptr; the sum also written to r_out when HAS_RESIDUAL).
    "silu_mul": x is `[gate | up]`, 2K wide. The prologues run without split-K (k0 == 0).
    USE_PDL: the first PREFETCH_BLOCKS x BLOCK_K columns of this program's weight rows go to L2
    (one prefetch per LINE_ELEMS = 128 bytes) while the previous kernel finishes
    (kernels/pdl.py). ROPE (whole K per program): the weight is a fused q/k/v projection
    whose rope pairs each program takes together (`_rope_rows`), and the epilogue rotates and
    stores them (`_finish_rope`). REDUCE_NORM (one row, whole K per program, no bias, not with
    the "norm" prologue): the product is this rank's term of a row-parallel sum; the epilogue
    sums it over the ranks and applies the RMSNorm that follows (`_finish_reduce_norm`; the
    residual at r_ptr, the norm weight at g_ptr, the sum written to r_out)."""
    pdl_launch_dependents(USE_PDL)
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    n0 = pid_n * BLOCK_N
    k0 = pid_k * k_split
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    m_mask = offs_m < M
    n_mask = (n0 + offs_n) < N
    if ROPE:
        qk_rows = (num_q_heads + num_kv_heads) * HEAD_DIM
        w_rows = _rope_rows(n0, BLOCK_N, qk_rows, HEAD_DIM)
        w_tile = w_ptr + w_rows.to(tl.int64)[:, None] * stride_wn + k0 + offs_k[None, :]
    else:
        # 64-bit tile base (the LM head's weight passes 2^31 elements at large vocab x hidden).
        w_rows = n0 + offs_n
        w_tile = (
            w_ptr + n0.to(tl.int64) * stride_wn + k0 + offs_n[:, None] * stride_wn + offs_k[None, :]
        )
    x_tile = x_ptr + k0 + offs_m[:, None] * stride_xm + offs_k[None, :]
    k_len = tl.minimum(k_split, K - k0)
    if USE_PDL:
        # Rows past N re-read the last row and columns past K clamp to it: no masks in asm.
        rows = tl.minimum(w_rows, N - 1).to(tl.int64)
        for b in tl.static_range(PREFETCH_BLOCKS):
            line_cols = k0 + b * BLOCK_K + tl.arange(0, BLOCK_K // LINE_ELEMS) * LINE_ELEMS
            line_cols = tl.minimum(line_cols, K - 1)
            prefetch_l2(w_ptr + rows[:, None] * stride_wn + line_cols[None, :])
    pdl_wait(USE_PDL)
    if USE_DOT or BLOCK_M > 1:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    else:
        # One row: accumulate elementwise, reduce across K once at the end.
        acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    if PROLOGUE == "norm":
        if STATS_FIRST:
            rstd = _rms_rstd(x_ptr, r_ptr, offs_m, m_mask, offs_k, K, eps, stride_xm, stride_rm,
                             HAS_RESIDUAL, BLOCK_M, BLOCK_K)  # fmt: skip
        else:
            sumsq = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
    for k in range(0, k_len, BLOCK_K):
        if EVEN_K:
            if EVEN_N:
                w = tl.load(w_tile)
            else:
                w = tl.load(w_tile, mask=n_mask[:, None], other=0.0)
        else:
            k_mask = offs_k < k_len - k
            w = tl.load(w_tile, mask=n_mask[:, None] & k_mask[None, :], other=0.0)
        if PROLOGUE == "none":
            if EVEN_K:
                x = tl.load(x_tile, mask=m_mask[:, None], other=0.0)
            else:
                x = tl.load(x_tile, mask=m_mask[:, None] & k_mask[None, :], other=0.0)
        else:
            cols = k + offs_k
            mask = m_mask[:, None] & (cols < K)[None, :]
            if PROLOGUE == "silu_mul":
                x = _silu_mul(x_ptr, offs_m, cols, mask, stride_xm, K)
            else:
                xs = _residual_sum(x_ptr, r_ptr, offs_m, cols, mask, stride_xm, stride_rm,
                                   HAS_RESIDUAL)  # fmt: skip
                xf = xs.to(tl.float32)
                g = tl.load(g_ptr + cols, mask=cols < K, other=0.0).to(tl.float32)
                if STATS_FIRST:
                    # The unfused norm's roundings: x * rstd, then times g, in the dtype.
                    x = ((xf * rstd[:, None]).to(xs.dtype).to(tl.float32) * g[None, :]).to(xs.dtype)
                else:
                    sumsq += xf * xf
                    x = xf * g[None, :]  # rstd scales the dot products at the end
        if USE_DOT:
            acc = tl.dot(x.to(w.dtype), tl.trans(w), acc)
        elif BLOCK_M == 1:
            acc += w.to(tl.float32) * x.to(tl.float32)
        else:
            prod = x.to(tl.float32)[:, None, :] * w.to(tl.float32)[None, :, :]
            acc += tl.sum(prod, axis=2)
        w_tile += BLOCK_K
        x_tile += BLOCK_K
    if USE_DOT or BLOCK_M > 1:
        out = acc
    else:
        out = tl.sum(acc, axis=1)[None, :]
    if PROLOGUE == "norm":
        if not STATS_FIRST:
            rstd = tl.rsqrt(tl.sum(sumsq, axis=1) / K + eps)
            out = out * rstd[:, None]
        if HAS_RESIDUAL:
            _store_residual(x_ptr, r_ptr, r_out_ptr, offs_m, m_mask, offs_k, K, stride_xm,
                            stride_rm, stride_om, BLOCK_K)  # fmt: skip
    cols = n0 + offs_n[None, :]
    out_mask = m_mask[:, None] & n_mask[None, :]
    if SPLIT:
        part = part_ptr + (pid_k * M + offs_m[:, None]) * N + cols
        tl.store(part, out, mask=out_mask)
        # Every thread's partial is stored before the (single-thread) release below.
        tl.debug_barrier()
        arrived = tl.atomic_add(count_ptr + pid_n, 1, sem="acq_rel", scope="gpu")
        if arrived == split_k - 1:
            # Last of this column tile: sum the partials in a fixed order (deterministic).
            total = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for s in range(0, split_k):
                src = part_ptr + (s * M + offs_m[:, None]) * N + cols
                total += tl.load(src, mask=out_mask, other=0.0, cache_modifier=".cg")
            tl.atomic_xchg(count_ptr + pid_n, 0)
            _finish(total, offs_m, cols, out_mask, b_ptr, y_ptr, N, stride_ym, HAS_BIAS)
    elif REDUCE_NORM:
        _finish_reduce_norm(out, cols, out_mask, N, ar_buffers, ar_counts_ptr, sq_ptr, r_ptr,
                            g_ptr, r_out_ptr, norm_out_ptr, slot_numel, eps, RANK, WORLD,
                            WORLD_P2, EMPTY, BLOCK_N, GROUP_COLS, SQ_BLOCK, COUNTS)  # fmt: skip
    elif ROPE:
        _finish_rope(out, offs_m, m_mask, n0, N, w_rows, b_ptr, y_ptr, stride_ym, pos_ptr, cos_ptr,
                     sin_ptr, cache_stride, loc_ptr, k_buf_ptr, v_buf_ptr, num_q_heads,
                     num_kv_heads, HAS_BIAS, BLOCK_M, BLOCK_N, HEAD_DIM)  # fmt: skip
    else:
        _finish(out, offs_m, cols, out_mask, b_ptr, y_ptr, N, stride_ym, HAS_BIAS)


def _counter_buffer(device: torch.device, tiles: int) -> torch.Tensor | None:
    """The device's split-K counters, or None where they cannot serve (too many tiles, or
    first needed while a graph is being captured, where a zero-fill would be captured too)."""
    buf = _counters.get(device)
    if buf is None:
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            return None
        buf = _counters[device] = torch.zeros(_COUNTER_SLOTS, dtype=torch.int32, device=device)
    return buf if tiles <= buf.numel() else None


def _pdl_args(weight: torch.Tensor, config: GemvConfig) -> dict:
    """Launch arguments for programmatic dependent launch (kernels/pdl.py). One weight tile is
    prefetched before the wait: on the H100, batch-1 Llama-3.1-8B steps took 5.42 ms with
    none, 5.39 with one, 5.54 with two and 5.62 with four (`SGLRS_GEMV_PREFETCH_BLOCKS`)."""
    pdl = use_pdl(weight, 1)  # a few rows, always
    line = min(max(128 // weight.element_size(), 1), config.block_k)
    blocks = int(os.environ.get("SGLRS_GEMV_PREFETCH_BLOCKS", "1"))
    return {"USE_PDL": pdl, "LINE_ELEMS": line, "PREFETCH_BLOCKS": blocks, "launch_pdl": pdl}


def _block_m(name: str, m: int, config: GemvConfig) -> int:
    if m > (16 if config.use_dot else 8):
        raise ValueError(f"{name}: {m} rows, more than the {'dot' if config.use_dot else 'FMA'} "
                         "path takes")  # fmt: skip
    return 16 if config.use_dot else triton.next_power_of_2(m)


def _check_operands(
    name: str, x: torch.Tensor, k: int, weight: torch.Tensor, bias: torch.Tensor | None
) -> None:
    """x `[M, *]` feeding K columns into `weight [N, K]`; unit strides along K; one dtype."""
    if x.dim() != 2 or weight.dim() != 2 or weight.shape[1] != k:
        raise ValueError(f"{name}: shapes x {tuple(x.shape)} and weight {tuple(weight.shape)}")
    if x.stride(1) != 1 or weight.stride(1) != 1:
        raise ValueError(f"{name}: x and weight need a unit stride along K")
    if x.dtype != weight.dtype or (bias is not None and bias.shape != (weight.shape[0],)):
        raise ValueError(f"{name}: x and weight dtypes differ, or the bias is not [N]")


@dataclass(frozen=True)
class RopeStore:
    """The ROPE epilogue of a fused q/k/v GEMV: rope (HF's half-split layout, float32 tables
    `[max_pos, head_dim]` whose first half holds every frequency) on the q and k heads at each
    row's position, and the rotated k and the v heads stored at each row's KV-pool slot
    (`[slots, kv heads, head_dim]` buffers), as kernels/rotary.py's `rope_store` does."""

    positions: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor
    loc: torch.Tensor
    k_buf: torch.Tensor
    v_buf: torch.Tensor
    num_q_heads: int
    num_kv_heads: int
    head_dim: int


def rope_fits(rope: RopeStore, weight: torch.Tensor, config: GemvConfig) -> bool:
    """Whether the ROPE epilogue takes this weight and tile: a `[(q + 2 kv heads) * head_dim,
    K]` weight, one FMA tile of whole K holding whole rope pairs, pool buffers of the
    weight's dtype and the pool's shape."""
    d, hkv = rope.head_dim, rope.num_kv_heads
    pool = (hkv, d)
    return (
        weight.shape[0] == (rope.num_q_heads + 2 * hkv) * d
        and not config.use_dot
        and config.split_k == 1
        and config.block_n % 2 == 0
        and d % config.block_n == 0
        and rope.k_buf.is_contiguous()
        and rope.v_buf.is_contiguous()
        and rope.k_buf.shape[1:] == pool
        and rope.v_buf.shape[1:] == pool
        and rope.k_buf.dtype == weight.dtype
        and rope.v_buf.dtype == weight.dtype
        and rope.cos.stride() == rope.sin.stride()
        and rope.cos.stride(-1) == 1
        and rope.cos.dtype == rope.sin.dtype == torch.float32
    )


def _rope_args(rope: RopeStore | None, y: torch.Tensor, m: int) -> tuple[tuple, dict]:
    """The kernel's ROPE arguments (placeholders without `rope`)."""
    if rope is None:
        return (y, y, y, 0, y, y, y, 0, 0), {"ROPE": False, "HEAD_DIM": 2}
    if rope.positions.shape != (m,) or rope.loc.shape != (m,):
        raise ValueError(f"rope epilogue: positions and slots must be [{m}]")
    args = (rope.positions, rope.cos, rope.sin, rope.cos.stride(0), rope.loc, rope.k_buf,
            rope.v_buf, rope.num_q_heads, rope.num_kv_heads)  # fmt: skip
    return args, {"ROPE": True, "HEAD_DIM": rope.head_dim}


@dataclass(frozen=True)
class ReduceNorm:
    """The REDUCE_NORM epilogue of a one-row, row-parallel GEMV (this rank's term of a sum over
    the ranks, no bias): `s = residual + the sum over the ranks`, then `weight * rmsnorm(s)`
    with the separate ops' roundings (the sum rounded to the dtype, the add, kernels/norm.py's
    norm), over the push all-reduce's state on this rank (distributed/custom_all_reduce.py's
    PushAllReduce: its buffers and call counts, so its kernels' calls and these interleave).
    `sq_stamps`: int64 scratch, one per column group (its sum of squares and call stamp),
    zeros at start."""

    residual: torch.Tensor
    weight: torch.Tensor
    eps: float
    buffers: tuple[torch.Tensor, ...]
    counts: torch.Tensor
    sq_stamps: torch.Tensor
    slot_numel: int
    rank: int


# Columns a REDUCE_NORM group sums: its last program polls them from every rank at once.
REDUCE_GROUP_COLS = 256


def _group_cols(n: int, device: torch.device) -> int:
    """REDUCE_NORM's column group width. Interpreted (the CPU), one group: the interpreter runs
    programs one after another, so a group waiting for another would never return."""
    whole = triton.next_power_of_2(n)
    return min(REDUCE_GROUP_COLS, whole) if device.type == "cuda" else whole


def reduce_norm_fits(
    rn: ReduceNorm, x: torch.Tensor, weight: torch.Tensor, config: GemvConfig
) -> bool:
    """Whether the REDUCE_NORM epilogue takes this product and tile: one row, one FMA tile of
    whole K per program, outputs within a push slot, a contiguous residual `[1, N]` and norm
    weight `[N]` of the activation dtype, and scratch for every column group."""
    m, n = x.shape[0], weight.shape[0]
    group = _group_cols(n, x.device)
    groups = triton.cdiv(n, group)
    return (
        m == 1
        and not config.use_dot
        and config.split_k == 1
        and group % config.block_n == 0
        and 0 < n <= min(rn.slot_numel, MAX_NORM_WIDTH)
        and rn.residual.shape == (m, n)
        and rn.residual.dtype == x.dtype
        and rn.residual.is_contiguous()
        and rn.weight.shape == (n,)
        and rn.weight.dtype == x.dtype
        and rn.weight.is_contiguous()
        and rn.buffers[rn.rank].element_size() == x.element_size()
        and groups <= rn.sq_stamps.numel()
        and rn.sq_stamps.dtype == torch.int64
    )


def _reduce_args(
    rn: ReduceNorm | None, y: torch.Tensor, norm_out: torch.Tensor | None
) -> tuple[tuple, dict]:
    """The kernel's REDUCE_NORM arguments (placeholders without `rn`)."""
    if rn is None or norm_out is None:
        consts = {"REDUCE_NORM": False, "RANK": 0, "WORLD": 1, "WORLD_P2": 1, "EMPTY": 0,
                  "GROUP_COLS": 1, "SQ_BLOCK": 1, "COUNTS": 1}  # fmt: skip
        return ((y,), y, y, y, 0), consts
    n = y.shape[1]
    world = len(rn.buffers)
    group = _group_cols(n, y.device)
    consts = {
        "REDUCE_NORM": True,
        "RANK": rn.rank,
        "WORLD": world,
        "WORLD_P2": triton.next_power_of_2(world),
        "EMPTY": EMPTY_BITS[y.element_size()],
        "GROUP_COLS": group,
        "SQ_BLOCK": triton.next_power_of_2(triton.cdiv(n, group)),
        "COUNTS": rn.counts.numel(),
    }
    args = (rn.buffers, rn.counts, rn.sq_stamps, norm_out, rn.slot_numel)
    return args, consts


def _launch(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    y: torch.Tensor,
    config: GemvConfig,
    *,
    block_m: int,
    split: int = 1,
    k_split: int | None = None,
    part: torch.Tensor | None = None,
    counters: torch.Tensor | None = None,
    prologue: str = "none",
    residual: torch.Tensor | None = None,
    norm_weight: torch.Tensor | None = None,
    r_out: torch.Tensor | None = None,
    eps: float = 0.0,
    stats_first: bool = False,
    rope: RopeStore | None = None,
    reduce: ReduceNorm | None = None,
    norm_out: torch.Tensor | None = None,
) -> None:
    """One `_gemv_kernel` launch over `y [M, N]` (unused pointers get `y` as a placeholder)."""
    (m, n), k = y.shape, weight.shape[1]
    rope_args, rope_consts = _rope_args(rope, y, m)
    reduce_args, reduce_consts = _reduce_args(reduce, y, norm_out)
    _gemv_kernel[(triton.cdiv(n, config.block_n), split)](
        x, weight, y if bias is None else bias, y, y if part is None else part,
        y if counters is None else counters, y if residual is None else residual,
        y if norm_weight is None else norm_weight, y if r_out is None else r_out, *rope_args,
        *reduce_args, m, n, k, k if k_split is None else k_split, split, x.stride(0),
        weight.stride(0), y.stride(0), 0 if residual is None else residual.stride(0),
        0 if r_out is None else r_out.stride(0), eps,
        HAS_BIAS=bias is not None, SPLIT=split > 1, USE_DOT=config.use_dot,
        EVEN_N=n % config.block_n == 0, EVEN_K=k % config.block_k == 0, PROLOGUE=prologue,
        HAS_RESIDUAL=prologue == "norm" and residual is not None, STATS_FIRST=stats_first,
        BLOCK_M=block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k, **rope_consts,
        **reduce_consts, **_pdl_args(weight, config), num_warps=config.num_warps,
        num_stages=config.num_stages,
    )  # fmt: skip


def _no_split(name: str, config: GemvConfig) -> None:
    if config.split_k != 1:
        raise ValueError(f"{name}: the prologue needs whole rows of K per program (split_k 1), "
                         f"got split_k {config.split_k}")  # fmt: skip


def gemv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    config: GemvConfig,
    rope: RopeStore | None = None,
) -> torch.Tensor:
    """`x [M, K] @ weight[N, K]^T (+ bias)` -> `[M, N]` in x's dtype, for M <= 16 (the dot
    path) or M <= 8 (the FMA path); x and weight need a unit stride along K. With `rope`
    (where `rope_fits`): the q and k columns come out rotated and k and v are also stored in
    the KV pool."""
    _check_operands("gemv", x, x.shape[-1], weight, bias)
    if rope is not None and not rope_fits(rope, weight, config):
        raise ValueError("gemv: the rope epilogue does not fit this weight or tile")
    m, k = x.shape
    n = weight.shape[0]
    block_m = _block_m("gemv", m, config)
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m == 0 or n == 0:
        return y
    tiles = triton.cdiv(n, config.block_n)
    split = config.split_k
    counters = _counter_buffer(x.device, tiles) if split > 1 else None
    if counters is None:
        split = 1
    # Each split gets whole BLOCK_K steps; the last may be shorter.
    k_split = triton.cdiv(triton.cdiv(k, split), config.block_k) * config.block_k
    split = triton.cdiv(k, k_split)
    part = torch.empty((split, m, n), dtype=torch.float32, device=x.device) if split > 1 else y
    _launch(x, weight, bias, y, config, block_m=block_m, split=split, k_split=k_split, part=part,
            counters=counters, rope=rope)  # fmt: skip
    return y


def gemv_rmsnorm(
    h: torch.Tensor,
    residual: torch.Tensor | None,
    norm_weight: torch.Tensor,
    eps: float,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    config: GemvConfig,
    stats_first: bool | None = None,
    rope: RopeStore | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(norm_weight * rmsnorm(x)) @ weight^T (+ bias)` and `x`, where `x = h + residual`
    (the next residual, in a new tensor) or `h` itself without a residual; `h [M, K]`.

    `stats_first` (default: on for fp16 on the tensor cores) computes rmsnorm's scale in a
    first pass, for the unfused roundings; otherwise the scale is applied to the dot products.
    `rope`: as `gemv`'s."""
    name = "gemv_rmsnorm"
    _check_operands(name, h, h.shape[-1], weight, bias)
    _no_split(name, config)
    if rope is not None and not rope_fits(rope, weight, config):
        raise ValueError(f"{name}: the rope epilogue does not fit this weight or tile")
    m, k = h.shape
    n = weight.shape[0]
    if residual is not None and (
        residual.shape != h.shape or residual.dtype != h.dtype or residual.stride(1) != 1
    ):
        raise ValueError(
            f"{name}: residual {tuple(residual.shape)} {residual.dtype} does not "
            f"match h {tuple(h.shape)} {h.dtype}, or its stride along K is not 1"
        )
    if norm_weight.shape != (k,) or norm_weight.dtype != h.dtype or norm_weight.stride(0) != 1:
        raise ValueError(f"{name}: norm weight {tuple(norm_weight.shape)} "
                         f"{norm_weight.dtype} is not a contiguous [{k}] {h.dtype}")  # fmt: skip
    block_m = _block_m(name, m, config)
    if stats_first is None:
        stats_first = config.use_dot and h.dtype == torch.float16
    y = torch.empty((m, n), dtype=h.dtype, device=h.device)
    if residual is None:
        r_out = h
    elif n == 0:  # no programs to write it
        return y, h + residual
    else:
        r_out = torch.empty_like(h)
    if m == 0 or n == 0:
        return y, r_out
    _launch(h, weight, bias, y, config, block_m=block_m, prologue="norm", residual=residual,
            norm_weight=norm_weight, r_out=r_out, eps=eps, stats_first=stats_first,
            rope=rope)  # fmt: skip
    return y, r_out


def _check_gate_up(name: str, gate_up: torch.Tensor, weight: torch.Tensor) -> None:
    k = weight.shape[-1]
    if gate_up.dim() != 2 or gate_up.shape[1] != 2 * k:
        raise ValueError(f"{name}: shapes gate_up {tuple(gate_up.shape)} and weight "
                         f"{tuple(weight.shape)} (gate_up must be [M, 2K])")  # fmt: skip


def gemv_silu_mul(
    gate_up: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    config: GemvConfig,
) -> torch.Tensor:
    """`(silu(gate) * up) @ weight[N, K]^T (+ bias)` for `gate_up = [gate | up]` `[M, 2K]`,
    without materializing the product."""
    name = "gemv_silu_mul"
    _check_gate_up(name, gate_up, weight)
    _check_operands(name, gate_up, weight.shape[-1], weight, bias)
    _no_split(name, config)
    m, n = gate_up.shape[0], weight.shape[0]
    block_m = _block_m(name, m, config)
    y = torch.empty((m, n), dtype=gate_up.dtype, device=gate_up.device)
    if m == 0 or n == 0:
        return y
    _launch(gate_up, weight, bias, y, config, block_m=block_m, prologue="silu_mul")
    return y


def gemv_reduce_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    config: GemvConfig,
    rn: ReduceNorm,
    silu_mul: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(rn.weight * rmsnorm(s), s)` for `s = rn.residual + the sum over the ranks of x @
    weight^T`: this rank's row `x [1, K]` and its shard `[N, K]` of a row-parallel, bias-free
    projection, reduced in the GEMV's epilogue (`ReduceNorm`; where `reduce_norm_fits`).
    `silu_mul`: x is `[gate | up]` `[1, 2K]` and the product takes `silu(gate) * up`, as
    `gemv_silu_mul`'s. Every rank must make the same calls (and push kernel calls) in order."""
    name = "gemv_reduce_norm"
    k = weight.shape[-1]
    if silu_mul:
        _check_gate_up(name, x, weight)
    _check_operands(name, x, k, weight, None)
    if not reduce_norm_fits(rn, x, weight, config):
        raise ValueError(f"{name}: the reduce-norm epilogue does not fit this product or tile")
    m, n = x.shape[0], weight.shape[0]
    block_m = _block_m(name, m, config)
    norm_out, r_out = (torch.empty((m, n), dtype=x.dtype, device=x.device) for _ in range(2))
    # norm_out also stands in for the plain output, which this epilogue does not write.
    _launch(x, weight, None, norm_out, config, block_m=block_m,
            prologue="silu_mul" if silu_mul else "none", residual=rn.residual,
            norm_weight=rn.weight, r_out=r_out, eps=rn.eps, reduce=rn,
            norm_out=norm_out)  # fmt: skip
    return norm_out, r_out


# Dispatch: the rows (rounded up to a power of two) and the weight's shape class pick a config;
# None keeps F.linear. Measured as in the module docstring.
MAX_ROWS = 8
_G = GemvConfig
_ONE_ROW = _G(4, 2048)  # best or within 1% of best for every class at M=1
TUNING: dict[tuple[str, int], GemvConfig | None] = {
    **{(cls, 1): _ONE_ROW for cls in ("square", "deep", "wide", "vocab")},
    **{("square", m): _G(32, 256, num_stages=4, use_dot=True) for m in (2, 4, 8)},
    **{("deep", m): _G(32, 512, num_stages=3, use_dot=True) for m in (2, 4, 8)},
    # Within ~1% of cuBLAS at 2-8 rows: not a clear win, so F.linear.
    **{("wide", m): None for m in (2, 4, 8)},
    **{("vocab", m): _G(16, 512, num_stages=4, use_dot=True) for m in (2, 4, 8)},
}


# One row of the smaller weights of tensor-parallel shards, where the table's tile leaves
# latency on the table (a quarter of an o_proj is 8 MB): Llama-3.1-8B's shards at tp 2 and 4,
# `python benches/gemv_h100.py --sweep --rows 1 --shapes ...` on an H200 (copy bandwidth 4.24
# TB/s; benches/results/gemv_h200_tp.json), µs per call: table tile -> this one. The other
# shards (gate_up at tp 2, the LM head) and the unsharded weights keep the table's tile, the
# best or within 1% there. Plain GEMVs only (pick_config); `SGLRS_DISABLE_GEMV_SHAPE_TUNING=1`
# turns it off (to measure it).
ONE_ROW_BY_SHAPE: dict[tuple[int, int], GemvConfig] = {
    (3072, 4096): _G(4, 2048, num_warps=8),  # qkv, tp 2: 8.5 -> 8.2
    (4096, 2048): _G(4, 1024, num_warps=2),  # o, tp 2: 6.0 -> 5.7
    (4096, 7168): _G(4, 1024, num_warps=2),  # down, tp 2: 16.5 -> 15.4
    (1536, 4096): _G(4, 2048, num_warps=8),  # qkv, tp 4: 5.7 -> 4.8
    (4096, 1024): _G(4, 1024, num_warps=2),  # o, tp 4: 4.2 -> 3.5
    (7168, 4096): _G(4, 512, num_warps=2),  # gate_up, tp 4: 16.3 -> 15.7
    (4096, 3584): _G(4, 1024, num_warps=2),  # down, tp 4: 9.5 -> 8.9
}


def shape_class(n: int, k: int) -> str:
    """`deep` (K well above N: down_proj), `vocab` (N >= 65536: the LM head), `wide`
    (N >= 16384: gate_up), or `square` (qkv, o_proj)."""
    if k >= 2 * n:
        return "deep"
    if n >= 65536:
        return "vocab"
    return "wide" if n >= 16384 else "square"


def pick_config(m: int, n: int, k: int) -> GemvConfig | None:
    """The measured-best config for `m` rows of `[n, k]`, or None to keep F.linear."""
    if not 1 <= m <= MAX_ROWS:
        return None
    if m == 1 and os.environ.get("SGLRS_DISABLE_GEMV_SHAPE_TUNING") != "1":
        config = ONE_ROW_BY_SHAPE.get((n, k))
        if config is not None:
            return config
    return TUNING.get((shape_class(n, k), triton.next_power_of_2(m)))


def pick_fused_config(m: int, n: int, k: int) -> GemvConfig | None:
    """The config for a prologue-fused GEMV of `m` rows of `[n, k]`, or None to run the ops
    separately. Only the FMA tiles (one row) fuse: on the H100 the fused `tl.dot` tiles took
    2-7x the time of the separate ops (benches/results/fused_gemv_h100.json)."""
    if not 1 <= m <= MAX_ROWS:
        return None
    config = TUNING.get((shape_class(n, k), triton.next_power_of_2(m)))
    if config is None or config.split_k != 1 or config.use_dot:
        return None
    return config
