"""The detokenizer process: token ids in, text deltas out, off the step loop and off HTTP.

The scheduler sends each request's decode options (its sampling params, the model's EOS ids
and the tail of its prompt) with the request's first TokenOut. Text is decoded incrementally
(never splitting a UTF-8 character), stop strings are trimmed and text that may still become a
stop string is held back. The scheduler has already decided every finish (it runs the same stop
checks), so its finish reason is passed through.
"""

from __future__ import annotations

import json
import logging
import signal
from typing import Any

import zmq

from sglrs.engine.tokenizer_setup import load_server_tokenizer
from sglrs.ipc import messages as msg
from sglrs.sampling.params import SamplingParams
from sglrs.server_args import ServerArgs

logger = logging.getLogger(__name__)


def run_detokenizer_process(server_args_json: str, endpoints: dict[str, str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent owns Ctrl-C and shuts us down
    args = ServerArgs(**json.loads(server_args_json))
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s [detokenizer] %(levelname)s %(message)s"
    )
    _single_thread_torch()
    ctx = zmq.Context()
    inbox = ctx.socket(zmq.PULL)
    inbox.bind(endpoints["detokenizer_input"])
    outbox = ctx.socket(zmq.PUSH)
    outbox.connect(endpoints["tokenizer_input"])
    try:
        detok = Detokenizer(load_server_tokenizer(args))
        while True:
            message = msg.decode(inbox.recv())
            if isinstance(message, msg.BatchTokenOut):
                outbox.send(msg.encode(detok.handle(message)), copy=False)
    except Exception as e:
        logger.exception("the detokenizer failed")
        outbox.send(msg.encode(msg.ErrorMsg(where="detokenizer", message=repr(e))))
    finally:
        ctx.destroy(linger=1000)


def _single_thread_torch() -> None:
    """Text work only: keep torch (imported with the sampling params) off the model's cores."""
    import torch

    torch.set_num_threads(1)


class Detokenizer:
    """Per-request decode streams; `handle` turns one BatchTokenOut into one BatchStrOut."""

    def __init__(self, tokenizer: Any | None) -> None:
        self.tokenizer = tokenizer
        self.streams: Any = None  # DecodeStreams, built once the EOS ids are known

    def handle(self, batch: msg.BatchTokenOut) -> msg.BatchStrOut:
        if self.tokenizer is None:  # --skip-tokenizer-init: ids only
            return msg.BatchStrOut(outs=[msg.StrOut(o.rid, "", o) for o in batch.outs])
        for out in batch.outs:
            if out.decode_options is not None:
                self._start(out.rid, out.decode_options)
        if self.streams is None:  # nothing started yet: e.g. the first request was rejected
            return msg.BatchStrOut(outs=[msg.StrOut(o.rid, "", o) for o in batch.outs])
        live = [o for o in batch.outs if o.rid in self.streams.streams]
        deltas = self.streams.step(
            [(o.rid, o.new_token_ids) for o in live], [o.finish_reason for o in live]
        )
        texts = {o.rid: d.text for o, d in zip(live, deltas, strict=True)}
        return msg.BatchStrOut(
            outs=[msg.StrOut(o.rid, texts.get(o.rid, ""), o) for o in batch.outs]
        )

    def _start(self, rid: str, options: dict[str, Any]) -> None:
        from sglrs.tokenizer.stop import DecodeStreams

        if self.streams is None:
            self.streams = DecodeStreams(self.tokenizer, options.get("eos_token_ids", ()))
        params = SamplingParams.from_dict(options["params"])
        self.streams.remove(rid)
        self.streams.add(rid, params, options.get("prompt_tail", ()))
