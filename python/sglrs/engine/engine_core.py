"""EngineCore: the step loop inside the scheduler process.

One step: the Rust scheduler plans (`schedule`), the model runner runs the plan, the sampler
picks one token per sampling request (grammar masks for the whole batch filled in one Rust
call), Python-side finishes are decided (stop strings, grammar end), and the scheduler commits
the step (`update`). Each step crosses the Rust boundary twice, with flat arrays.

Overlap scheduling (GPU): step N+1 is planned (`schedule_ahead`) and launched while step N
still runs; N+1's input ids for requests that sampled in N are placeholders the runner fills
on the device from N's sampled tokens. Then the host reads N's tokens, decides N's finishes,
commits N (`update`) and sends its outputs, and queues N+1's sampling behind N+1's forward. A
request that finishes in N has a dead row in N+1 whose token is dropped.
"""

from __future__ import annotations

import itertools
import logging
import random
from typing import Any

import numpy as np
import torch

from sglrs.engine.grammar_manager import GrammarManager
from sglrs.engine.inflight import InflightStep, TokenReadback
from sglrs.engine.request_state import RequestState
from sglrs.engine.tokenizer_setup import load_server_tokenizer
from sglrs.ipc import messages as msg
from sglrs.sampling.params import SamplingParams
from sglrs.sampling.sampler import sample
from sglrs.sampling.upload import upload
from sglrs.server_args import ServerArgs

logger = logging.getLogger(__name__)

# Reason codes of sglrs._core.Scheduler.update.
_LENGTH, _STOP_TOKEN, _PYTHON_FINISH, _ABORT, _ABORT_KV = range(5)
PROMPT_TAIL_TOKENS = 8  # prompt context the detokenizer needs for its first token
CPU_DEFAULT_RUNNING_REQUESTS = 64
CPU_CHUNKED_PREFILL_SIZE = 4096
GPU_DEFAULT_RUNNING_REQUESTS = 512


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def eos_token_ids(tokenizer: Any, model_path: str) -> list[int]:
    """EOS ids from the generation config (if any) and the tokenizer."""
    ids: set[int] = set()
    try:
        from transformers import GenerationConfig

        gen = GenerationConfig.from_pretrained(model_path)
        eos = gen.eos_token_id
        ids.update([eos] if isinstance(eos, int) else list(eos or []))
    except Exception:  # no generation_config.json (GGUF, bare directories)
        pass
    if tokenizer is not None and tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return sorted(ids)


def build_model_runner(args: ServerArgs, device: torch.device) -> Any:
    """The ModelRunner of `args` on `device` (every TP rank builds the same one)."""
    from sglrs.attention import resolve_attention_backend
    from sglrs.kv_cache import KVBudget
    from sglrs.model_loader import LoadConfig, load_model_config
    from sglrs.runner.model_runner import ModelRunner

    assert args.model_path is not None
    # Decode steps take --decode-attention-backend, prefill steps --prefill-attention-backend,
    # each defaulting to --attention-backend.
    backend = resolve_attention_backend(
        args.decode_attention_backend or args.attention_backend, device
    )
    prefill_backend = resolve_attention_backend(
        args.prefill_attention_backend or args.attention_backend, device
    )
    runner = ModelRunner(
        load_model_config(args.model_path),
        LoadConfig(model_path=args.model_path, load_format=args.load_format),
        device=device,
        dtype=args.dtype,
        kv_budget=KVBudget(
            max_total_tokens=args.max_total_tokens,
            mem_fraction_static=args.mem_fraction_static,
        ),
        attention_backend=backend,
        prefill_attention_backend=prefill_backend,
        max_running_requests=max_running_requests(args, device),
        context_length=args.context_length,
        page_size=args.page_size,
        cuda_graph_max_bs=args.cuda_graph_max_bs,
        disable_cuda_graph=args.disable_cuda_graph,
        disable_custom_all_reduce=args.disable_custom_all_reduce,
    )
    if device.type == "cuda":  # the largest prefill step, before the first request pays for it
        runner.warm_up(largest_prefill_step(args, device))
    return runner


def prompt_array(ids: list[int], vocab_size: int) -> np.ndarray:
    """The prompt as the scheduler takes it: uint16 when the vocabulary fits (half the bytes
    of the hand-off, widened to the scheduler's u32 storage in one vector pass), else int32
    (ids < vocab < 2^31)."""
    dtype = np.uint16 if vocab_size <= 1 << 16 else np.int32
    try:
        return np.asarray(ids, dtype=dtype)
    except OverflowError:
        msg = f"input_ids: a token id is outside the vocabulary of {vocab_size}"
        raise ValueError(msg) from None


def largest_prefill_step(args: ServerArgs, device: torch.device) -> int:
    """New tokens of the largest prefill step the scheduler will plan."""
    chunk = chunked_prefill_size(args, device)
    return args.max_prefill_tokens if chunk is None else min(chunk, args.max_prefill_tokens)


def chunked_prefill_size(args: ServerArgs, device: torch.device) -> int | None:
    """The scheduler's chunk size: the flag, else the device's default; None (<= 0) is off."""
    chunk = args.chunked_prefill_size
    if chunk is None:
        chunk = default_chunked_prefill_size(device)
    return chunk if chunk > 0 else None


def default_chunked_prefill_size(device: torch.device) -> int:
    """16k-token chunks on a large GPU (bigger GEMMs: the offline workload of
    benches/gpu_targets.py ran at 8,588 tok/s against 8,015 with 8k chunks on an H100), 8k on
    smaller ones, 4096 on the CPU (SGLang's value for 35-60 GB GPUs): the bf16 AMX matmuls run
    ~2x faster at 2048 rows than at 512 (32 ~100-token prompts: 1.72 s of CPU with 512-token
    chunks, 1.43 s at 1024, 1.36 s at 2048), and the same 32 prompts in one 3.2k-token step
    instead of 2048 + 1176 took the batch-32 workload of benches/cpu_engine.py from a median of
    ~500-550 to ~550-640 output tok/s (bf16, 2 cores, two interleaved runs of 4 and 6 pairs).
    The cost is a longer pause of running decodes while a chunk runs (~1 s at 4096 bf16 tokens
    on 2 cores); `--chunked-prefill-size 2048` halves it."""
    from sglrs.kv_cache.sizing import large_gpu

    if device.type != "cuda":
        return CPU_CHUNKED_PREFILL_SIZE
    return 16384 if large_gpu(device) else 8192


def max_running_requests(args: ServerArgs, device: torch.device) -> int:
    return args.max_running_requests or (
        GPU_DEFAULT_RUNNING_REQUESTS if device.type == "cuda" else CPU_DEFAULT_RUNNING_REQUESTS
    )


class EngineCore:
    def __init__(self, args: ServerArgs, device: torch.device | None = None) -> None:
        """`device`: this rank's device (TP rank 0 joins its group first); default from args."""
        from sglrs._core import Scheduler
        from sglrs.distributed import get_tp_size
        from sglrs.engine.tp_worker import PlanBroadcastRunner
        from sglrs.model_loader import load_model_config
        from sglrs.sampling.batch import SamplingBatch

        assert args.model_path is not None
        self.args = args
        seed = args.random_seed if args.random_seed is not None else random.getrandbits(31)
        torch.manual_seed(seed)
        self.device = resolve_device(args.device) if device is None else device
        self.model_config = load_model_config(args.model_path)
        max_running = max_running_requests(args, self.device)
        runner = build_model_runner(args, self.device)
        self.runner = PlanBroadcastRunner(runner) if get_tp_size() > 1 else runner
        # Overlap: plan and launch step N+1 before reading step N's tokens (GPU only: on the
        # CPU every forward is synchronous, so there is nothing to overlap).
        self.overlap = self.device.type == "cuda" and not args.disable_overlap_schedule
        self._inflight: InflightStep | None = None
        self._readback = TokenReadback()
        self.context_length = self.runner.context_length
        self.tokenizer = load_server_tokenizer(args)
        self.eos_token_ids = eos_token_ids(self.tokenizer, args.model_path)
        self.scheduler = Scheduler(
            capacity_tokens=self.runner.max_total_tokens,
            page_size=args.page_size,
            max_running_requests=max_running,
            max_prefill_tokens=args.max_prefill_tokens,
            chunked_prefill_size=chunked_prefill_size(args, self.device),
            schedule_policy=args.schedule_policy,
            schedule_conservativeness=args.schedule_conservativeness,
            context_length=self.context_length,
            enable_mixed_chunk=args.enable_mixed_chunk,
            disable_radix_cache=args.disable_radix_cache,
        )
        self.vocab_size = self.model_config.vocab_size
        self.sampling = SamplingBatch(self.vocab_size, self.device, self.eos_token_ids, seed)
        self.grammar: GrammarManager | None = None
        if args.grammar_backend != "none" and self.tokenizer is not None:
            self.grammar = GrammarManager(self.tokenizer, self.eos_token_ids)
        self.stops: Any = None
        if self.tokenizer is not None:
            from sglrs.tokenizer.stop import DecodeStreams

            self.stops = DecodeStreams(self.tokenizer, self.eos_token_ids)
        self.requests: dict[int, RequestState] = {}
        self.by_rid: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._abort_messages: dict[int, str] = {}
        self._matched_stop: dict[int, str] = {}  # stop string that finished a request
        # (kind, batch, new tokens, seconds waiting for the device) of the last step, for
        # SGLRS_STEP_TRACE.
        self.last_step: tuple[str, int, int, float] | None = None

    # ---- facts -----------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        cfg = self.model_config
        return {
            "model_path": self.args.model_path,
            "tokenizer_path": self.args.tokenizer_path or self.args.model_path,
            "served_model_name": self.args.served_model_name or self.args.model_path,
            "architectures": [cfg.architecture],
            "context_length": self.context_length,
            "vocab_size": self.vocab_size,
            "max_total_tokens": self.runner.max_total_tokens,
            "max_running_requests": self.scheduler.config["max_running_requests"],
            "eos_token_ids": self.eos_token_ids,
            "device": str(self.device),
            "dtype": str(self.runner.dtype).removeprefix("torch."),
            "page_size": self.args.page_size,
            "attention_backend": self.runner.attn_backend.name,
            "cuda_graph_max_bs": (
                self.runner.graph_runner.max_bs if self.runner.graph_runner is not None else None
            ),
            "overlap_schedule": self.overlap,
            "is_generation": True,
        }

    def has_work(self) -> bool:
        return bool(self.requests) or self._inflight is not None

    def stats(self) -> dict[str, Any]:
        s = dict(self.scheduler.stats())
        s["num_grammar_queue_reqs"] = self.grammar.num_waiting() if self.grammar else 0
        try:
            self.scheduler.check_integrity()
            s["integrity_ok"] = True
        except RuntimeError as e:
            s["integrity_ok"] = False
            s["integrity_error"] = str(e)
        return s

    def check_integrity(self) -> None:
        self.scheduler.check_integrity()

    def flush_cache(self) -> bool:
        if self.requests or self._inflight is not None:
            return False
        return bool(self.scheduler.flush_cache())

    def heartbeat(self) -> None:
        """Tensor parallel, while idle: raise if another rank has died."""
        beat = getattr(self.runner, "heartbeat", None)
        if callable(beat):
            beat()

    def shutdown(self) -> None:
        if self.grammar is not None:
            self.grammar.shutdown()
        stop = getattr(self.runner, "stop", None)
        if callable(stop):  # tensor parallel: release the other ranks
            stop()

    # ---- requests --------------------------------------------------------------------------

    def add_request(self, req: msg.GenerateReq) -> list[msg.TokenOut]:
        state: RequestState | None = None
        try:
            if req.rid in self.by_rid:
                raise ValueError(f"rid {req.rid!r} is already running")
            params = SamplingParams.from_dict(req.sampling_params)
            params.verify(self.vocab_size)
            if params.has_grammar and self.grammar is None:
                raise ValueError("constrained decoding is disabled (--grammar-backend none)")
            state = RequestState(
                id=next(self._ids),
                rid=req.rid,
                prompt_ids=list(req.input_ids),
                params=params,
                return_logprob=req.return_logprob,
                logprob_start_len=req.logprob_start_len,
                top_logprobs_num=req.top_logprobs_num,
                has_stop_strings=bool(params.stop),
                stream=req.stream,
            )
            state.prompt_logprobs_pending = state.wants_prompt_logprobs
            if self.grammar is not None and params.has_grammar:
                self._track(state)
                self.grammar.submit(state)
            else:
                self._admit(state)
        except ValueError as e:
            if state is not None and self.requests.get(state.id) is state:
                self._release(state.id)
            return [self._abort_out(req.rid, len(req.input_ids), str(e), 400)]
        return []

    def _track(self, state: RequestState) -> None:
        self.requests[state.id] = state
        self.by_rid[state.rid] = state.id

    def _admit(self, state: RequestState) -> None:
        p = state.params
        # max_new_tokens == 0 (prefill only, to cache a prefix) runs one step whose token is
        # dropped: the scheduler needs a sampled token to finish a request.
        self.scheduler.add_request(
            state.id,
            prompt_array(state.prompt_ids, self.vocab_size),
            max(p.max_new_tokens, 1),
            ignore_eos=p.ignore_eos,
            stop_token_ids=p.stop_token_ids,
            eos_token_ids=self.eos_token_ids,
            # Prompt logprobs from position L need the logits of L-1: compute it, don't reuse.
            max_cached_prefix=(
                max(state.logprob_start_len - 1, 0) if state.wants_prompt_logprobs else None
            ),
        )
        self._track(state)
        if state.has_stop_strings and self.stops is not None:
            self.stops.add(state.id, p, state.prompt_ids[-PROMPT_TAIL_TOKENS:])

    def abort(self, rid: str | None, abort_all: bool, message: str) -> list[msg.TokenOut]:
        outs: list[msg.TokenOut] = []
        targets = list(self.requests.values()) if abort_all else []
        if rid is not None and rid in self.by_rid:
            targets.append(self.requests[self.by_rid[rid]])
        for state in targets:
            if self.grammar is not None and self.grammar.drop(state.rid):
                outs.append(self._abort_out(state.rid, len(state.prompt_ids), message, None))
                self._release(state.id)
            else:
                # Reported by the next update; a token of a step in flight is dropped.
                self.scheduler.abort(state.id)
                self._abort_messages[state.id] = message
        return outs

    # ---- the step --------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> list[msg.TokenOut]:
        outs = self._admit_grammar_ready()
        ahead, plan = self._inflight, None
        if ahead is not None:
            plan = self.scheduler.schedule_ahead()
            if plan is None:  # nothing to plan before the step in flight is known
                self._inflight = None
                outs.extend(self._resolve(ahead))
                ahead = None
        if plan is None:
            plan = self.scheduler.schedule()
        self._note_plan(plan)
        if plan.kind == "idle":
            outs.extend(self._commit(self.scheduler.update(np.empty(0, np.int64)), {}))
            return outs
        prompt_lp = [
            int(i)
            for i in plan.req_ids.tolist()
            if i in self.requests and self.requests[i].prompt_logprobs_pending
        ]
        sampled = [self.requests[i] for i in plan.req_ids[plan.sample_mask].tolist()]
        if sampled:  # before the forward: its host-to-device copies must not wait for the GPU
            self.sampling.update(sampled)
        prev = ahead.tokens if ahead is not None and plan.num_placeholders else None
        result = self.runner.forward(plan, prompt_lp, prev)
        self._collect_prompt_logprobs(plan, result.all_logits)
        if ahead is not None:  # the GPU runs this step's forward meanwhile
            self._inflight = None
            outs.extend(self._resolve(ahead))
        tokens = logprobs = None
        if sampled:
            # Grammar masks after the step before was resolved: they need its tokens.
            bitmask, rows = self._grammar_masks(sampled)
            out = sample(result.logits, self.sampling, bitmask, rows)
            tokens, logprobs = out.next_token_ids, out.logprobs
        step = InflightStep.launch(sampled, tokens, logprobs, self._readback)
        if self.overlap:
            self._inflight = step
        else:
            outs.extend(self._resolve(step))
        return outs

    def _admit_grammar_ready(self) -> list[msg.TokenOut]:
        """Requests whose grammar finished compiling enter the scheduler (or fail)."""
        outs: list[msg.TokenOut] = []
        if self.grammar is None:
            return outs
        done, failed = self.grammar.ready()
        for state, reason in failed:
            self._release(state.id)
            outs.append(self._abort_out(state.rid, len(state.prompt_ids), reason, 400))
        for state in done:
            try:
                self._admit(state)
            except ValueError as e:
                self._release(state.id)
                outs.append(self._abort_out(state.rid, len(state.prompt_ids), str(e), 400))
        return outs

    def _note_plan(self, plan: Any) -> None:
        self.last_step = (plan.kind, len(plan.req_ids), len(plan.input_ids), 0.0)
        for rid, prefix in zip(plan.req_ids.tolist(), plan.prefix_lens.tolist(), strict=True):
            state = self.requests.get(rid)
            if state is not None and state.cached_tokens < 0:
                state.cached_tokens = prefix  # the prefix matched at admission
        for rid in plan.retracted_ids.tolist():
            if rid in self.requests:
                self.requests[rid].num_retractions += 1

    def _live(self, state: RequestState) -> bool:
        """Still running: not finished nor aborted since a step that holds it was launched."""
        return self.requests.get(state.id) is state and state.id not in self._abort_messages

    def _resolve(self, step: InflightStep) -> list[msg.TokenOut]:
        """Read a launched step's tokens, decide the finishes Python owns, commit it."""
        tokens = step.host_tokens()
        if self.last_step is not None:
            kind, batch, num_tokens, waited = self.last_step
            self.last_step = (kind, batch, num_tokens, waited + step.waited_s)
        new_tokens: dict[int, Any] = {}
        finished_mask = np.zeros(len(tokens), dtype=bool)
        live: list[int] = []
        for j, (state, token) in enumerate(zip(step.sampled, tokens, strict=True)):
            if not self._live(state):
                continue  # a dead row: the scheduler drops its token too
            lp = step.logprobs[j] if step.logprobs is not None else None
            new_tokens[state.id] = (token, lp)
            state.output_ids.append(token)
            finished_mask[j] = self._grammar_or_prefill_finish(state, token)
            live.append(j)
        self._stop_string_finishes(step.sampled, tokens, live, finished_mask)
        finished = self.scheduler.update(np.asarray(tokens, dtype=np.int64), finished_mask)
        return self._commit(finished, new_tokens)

    def _grammar_masks(self, sampled: list[RequestState]) -> tuple[Any, Any]:
        rows = [j for j, s in enumerate(sampled) if s.matcher is not None and self._live(s)]
        if not rows:
            return None, None
        from sglrs.grammar import allocate_bitmask, fill_bitmasks

        bitmask = allocate_bitmask(len(rows), self.vocab_size)
        fill_bitmasks([sampled[j].matcher for j in rows], bitmask)
        return upload(bitmask, torch.int32, self.device), rows  # queues behind the forward

    def _grammar_or_prefill_finish(self, state: RequestState, token: int) -> bool:
        """Finishes the Rust scheduler cannot see: grammar end, max_new_tokens=0."""
        if state.params.max_new_tokens == 0:
            return True
        if state.matcher is None:
            return False
        if not state.matcher.accept_token(token):
            raise RuntimeError(f"sampled token {token} violates the grammar of {state.rid}")
        return bool(state.matcher.is_terminated())

    def _stop_string_finishes(
        self,
        sampled: list[RequestState],
        tokens: list[int],
        live: list[int],
        finished_mask: np.ndarray,
    ) -> None:
        """Stop strings for the step's live rows in one batched decode (DecodeStreams.step)."""
        if self.stops is None:
            return
        rows = [
            j
            for j in live
            if (state := sampled[j]).has_stop_strings
            and state.params.max_new_tokens != 0
            and state.id in self.stops.streams
        ]
        if not rows:
            return
        deltas = self.stops.step([(sampled[j].id, [tokens[j]]) for j in rows])
        for j, delta in zip(rows, deltas, strict=True):
            reason = delta.finish_reason
            if reason is not None and isinstance(reason.get("matched"), str):
                self._matched_stop[sampled[j].id] = reason["matched"]
                finished_mask[j] = True

    def _collect_prompt_logprobs(self, plan: Any, all_logits: dict[int, torch.Tensor]) -> None:
        if not all_logits:
            return
        from sglrs.sampling.logprobs import prompt_logprobs

        index = {int(r): j for j, r in enumerate(plan.req_ids.tolist())}
        for rid, logits in all_logits.items():
            state = self.requests[rid]
            j = index[rid]
            chunk_start = int(plan.prefix_lens[j])
            lp = prompt_logprobs(
                logits,
                state.prompt_ids,
                chunk_start,
                state.logprob_start_len,
                state.top_logprobs_num,
            )
            state.input_logprobs.extend([[v, t] for v, t in lp.token_logprobs])
            state.input_top_logprobs.extend(
                [[[v, t] for v, t in top] if top else None for top in lp.top_logprobs]
            )
            if chunk_start + int(plan.extend_lens[j]) >= len(state.prompt_ids):
                state.prompt_logprobs_pending = False

    def _commit(
        self, finished: tuple[np.ndarray, np.ndarray, np.ndarray], new_tokens: dict[int, Any]
    ) -> list[msg.TokenOut]:
        ids, reasons, matched = (a.tolist() for a in finished)
        finish = {i: (r, m) for i, r, m in zip(ids, reasons, matched, strict=True)}
        outs = []
        for rid_int, (token, lp) in new_tokens.items():
            state = self.requests[rid_int]
            reason = self._reason(state, *finish.pop(rid_int)) if rid_int in finish else None
            if state.params.max_new_tokens != 0:
                state.held_ids.append(token)
                state.held_logprobs.append(lp)
            # A non-streamed request sends its first token (time to first token) and then
            # everything at its finish: no per-token message through the detokenizer.
            if reason is None and not state.stream and state.sent_first_token:
                continue
            outs.append(self._token_out(state, reason))
            if reason is not None:
                self._release(rid_int)
        for rid_int, (code, m) in finish.items():  # finished without a token (aborts)
            state = self.requests.get(rid_int)
            if state is not None:
                outs.append(self._token_out(state, self._reason(state, code, m)))
                self._release(rid_int)
        return outs

    def _reason(self, state: RequestState, code: int, matched: int) -> dict[str, Any]:
        if code == _LENGTH or state.params.max_new_tokens == 0:
            return {"type": "length", "length": state.params.max_new_tokens}
        if code == _STOP_TOKEN:
            return {"type": "stop", "matched": int(matched)}
        if code == _PYTHON_FINISH:
            stop = self._matched_stop.pop(state.id, None)
            if stop is not None:
                return {"type": "stop", "matched": stop}
            return {"type": "stop", "matched": state.output_ids[-1]}  # the grammar ended
        if code == _ABORT_KV:
            return _abort_reason("the request does not fit the KV cache", 400)
        return _abort_reason(self._abort_messages.pop(state.id, "aborted"), None)

    def _token_out(self, state: RequestState, reason: dict[str, Any] | None) -> msg.TokenOut:
        """The request's tokens held since its last TokenOut (and their logprobs), sent now."""
        tokens, lps = state.held_ids, state.held_logprobs
        state.held_ids, state.held_logprobs = [], []
        state.sent_first_token = state.sent_first_token or bool(tokens)
        out = msg.TokenOut(
            rid=state.rid,
            new_token_ids=tokens,
            finish_reason=reason,
            prompt_tokens=len(state.prompt_ids),
            completion_tokens=len(state.output_ids) if state.params.max_new_tokens else 0,
            cached_tokens=max(state.cached_tokens, 0),
            num_retractions=state.num_retractions,
        )
        if state.return_logprob and tokens and all(lp is not None for lp in lps):
            out.output_logprobs = [[lp.logprob, lp.token_id] for lp in lps]
            if state.top_logprobs_num > 0:
                out.output_top_logprobs = [[[v, t] for v, t in lp.top] for lp in lps]
        if state.return_logprob and not state.prompt_logprobs_pending and state.input_logprobs:
            out.input_logprobs, state.input_logprobs = state.input_logprobs, []
            if state.top_logprobs_num > 0:
                out.input_top_logprobs = state.input_top_logprobs
        if not state.sent_decode_options:
            state.sent_decode_options = True
            out.decode_options = {
                "params": state.params.to_dict(),
                "eos_token_ids": self.eos_token_ids,
                "prompt_tail": state.prompt_ids[-PROMPT_TAIL_TOKENS:],
            }
        return out

    def _abort_out(
        self, rid: str, prompt_tokens: int, message: str, status: int | None
    ) -> msg.TokenOut:
        return msg.TokenOut(
            rid=rid,
            new_token_ids=[],
            finish_reason=_abort_reason(message, status),
            prompt_tokens=prompt_tokens,
            completion_tokens=0,
            cached_tokens=0,
        )

    def _release(self, rid_int: int) -> None:
        state = self.requests.pop(rid_int, None)
        if state is not None:
            self.by_rid.pop(state.rid, None)
        if self.stops is not None:
            self.stops.remove(rid_int)
        self._matched_stop.pop(rid_int, None)
        self._abort_messages.pop(rid_int, None)


def _abort_reason(message: str, status: int | None) -> dict[str, Any]:
    return {"type": "abort", "message": message, "status_code": status, "err_type": None}
