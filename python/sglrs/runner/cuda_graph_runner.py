"""CUDA graphs for decode steps: capture the model's forward (embedding to final norm) once
per batch size at startup, then replay with the step's inputs copied into static buffers in
one copy. Graphs of up to `LOGITS_IN_GRAPH_MAX_BS` rows also run the LM head (and its
tensor-parallel gather): a small batch's step is short enough that the head's eager launch
showed on the host (~0.25 ms of a 2.2 ms step at tp 4), and their `[batch, vocab]` float32
outputs are small (~150 MB for every size up to 64 at a 128k vocabulary). Larger batches run
the head after the replay, so no large graph keeps such a buffer.

A batch is padded up to the next captured size. Padded rows read the request table's spare
last row, which points at the KV pool's padding slot, and write their K/V there, so they
never touch a live request's cache.
"""

from __future__ import annotations

import bisect
import logging
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from sglrs.runner.forward_batch import ForwardBatch, ForwardMode

if TYPE_CHECKING:
    from sglrs.runner.model_runner import ModelRunner

logger = logging.getLogger(__name__)

LOGITS_IN_GRAPH_MAX_BS = 64


def capture_batch_sizes(max_bs: int) -> list[int]:
    """1, 2, 4, 8, then every 8 up to 256 and every 16 beyond, capped at `max_bs`."""
    sizes = [s for s in (1, 2, 4) if s < max_bs]
    sizes += list(range(8, min(max_bs, 256) + 1, 8))
    sizes += list(range(272, max_bs + 1, 16))
    if not sizes or sizes[-1] != max_bs:
        sizes.append(max_bs)
    return sorted(set(sizes))


class CudaGraphRunner:
    def __init__(self, runner: ModelRunner, max_bs: int) -> None:
        self.runner = runner
        self.device = runner.device
        self.batch_sizes = capture_batch_sizes(max_bs)
        self.max_bs = self.batch_sizes[-1]
        dev, n = self.device, self.max_bs
        # Rows: input_ids, positions, out_cache_loc, req_pool_indices, seq_lens (ForwardBatch's
        # decode_block order); `pad` holds what padded rows use: one token at the padding slot.
        pad = [0, 0, runner.kv_pool.padding_slot, runner.padding_row, 1]
        self.pad = torch.tensor(pad, dtype=torch.int64, device=dev)[:, None].repeat(1, n)
        self.inputs = self.pad.clone()
        self.input_ids, self.positions, self.out_cache_loc = self.inputs[:3]
        self.req_pool_indices, self.seq_lens = self.inputs[3:]
        self.qo_indptr = torch.arange(n + 1, dtype=torch.int64, device=dev)
        self.kv_indptr = torch.arange(n + 1, dtype=torch.int64, device=dev)
        self.sample_rows = torch.arange(n, dtype=torch.int64, device=dev)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.hidden: dict[int, torch.Tensor] = {}
        self.logits: dict[int, torch.Tensor] = {}  # graphs that run the LM head too
        runner.attn_backend.init_cuda_graph_state(n, runner.context_length)
        self._capture_all()

    def _batch(self, bs: int, seq_lens_cpu: np.ndarray) -> ForwardBatch:
        """A decode ForwardBatch over the static buffers' first `bs` rows."""
        ones = np.ones(bs, dtype=np.int64)
        return ForwardBatch(
            mode=ForwardMode.DECODE,
            batch_size=bs,
            req_ids=np.zeros(bs, dtype=np.uint64),
            sample_mask=np.ones(bs, dtype=bool),
            prefix_lens_cpu=seq_lens_cpu - 1,
            extend_lens_cpu=ones,
            seq_lens_cpu=seq_lens_cpu,
            qo_indptr_cpu=np.arange(bs + 1, dtype=np.int64),
            kv_indptr_cpu=np.concatenate([[0], np.cumsum(seq_lens_cpu)]),
            input_ids=self.input_ids[:bs],
            positions=self.positions[:bs],
            out_cache_loc=self.out_cache_loc[:bs],
            req_pool_indices=self.req_pool_indices[:bs],
            seq_lens=self.seq_lens[:bs],
            qo_indptr=self.qo_indptr[: bs + 1],
            kv_indptr=self.kv_indptr[: bs + 1],
            req_to_token=self.runner.req_to_token,
            sample_rows=self.sample_rows[:bs],
            attn_backend=self.runner.attn_backend,
        )

    def _run_model(self, fb: ForwardBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Final hidden states, and the logits of every row for small batches."""
        hidden = self.runner.model(fb.input_ids, fb.positions, fb)
        if fb.batch_size > LOGITS_IN_GRAPH_MAX_BS:
            return hidden, None
        return hidden, self.runner.model.compute_logits(hidden)

    def _capture_all(self) -> None:
        start = time.perf_counter()
        backend = self.runner.attn_backend
        pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream(self.device)
        # Largest first: smaller graphs reuse its memory from the shared pool.
        for i, bs in enumerate(reversed(self.batch_sizes)):
            fb = self._batch(bs, np.ones(bs, dtype=np.int64))
            backend.init_forward_metadata_capture(fb)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(2):  # warm-up: Triton autotuning and lazy allocations
                    self._run_model(fb)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool, stream=stream):
                self.hidden[bs], logits = self._run_model(fb)
            if logits is not None:
                self.logits[bs] = logits
            self.graphs[bs] = graph
            if (i + 1) % 8 == 0 or i + 1 == len(self.batch_sizes):
                logger.info(
                    "Capturing CUDA graphs: %d/%d batch sizes (%.1f s)",
                    i + 1,
                    len(self.batch_sizes),
                    time.perf_counter() - start,
                )
        torch.cuda.synchronize(self.device)

    def can_run(self, fb: ForwardBatch) -> bool:
        return fb.mode.is_decode and 0 < fb.batch_size <= self.max_bs and bool(fb.sample_mask.all())

    def replay(self, fb: ForwardBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Final hidden states `[fb.batch_size, hidden]` of a decode batch, and its float32
        logits `[fb.batch_size, vocab]` when the graph ran the LM head (else None). Both are
        the graph's buffers: the next replay overwrites them."""
        b = fb.batch_size
        bs = self.batch_sizes[bisect.bisect_left(self.batch_sizes, b)]
        if fb.decode_block is None:  # ForwardBatch.from_plan sets it for every decode step
            raise ValueError("a decode ForwardBatch without its decode_block")
        self.inputs[:, :b].copy_(fb.decode_block)
        if bs > b:  # earlier, larger batches left their rows there
            self.inputs[:, b:bs].copy_(self.pad[:, b:bs])
        seq_cpu = np.ones(bs, dtype=np.int64)
        seq_cpu[:b] = fb.seq_lens_cpu
        self.runner.attn_backend.init_forward_metadata_replay(self._batch(bs, seq_cpu))
        self.graphs[bs].replay()
        logits = self.logits.get(bs)
        return self.hidden[bs][:b], (logits[:b] if logits is not None else None)
