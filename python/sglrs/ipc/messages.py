"""Every message exchanged between sglrs processes, in one place.

Processes: the HTTP/tokenizer process (TokenizerManager), one scheduler/worker per rank, and
the detokenizer. Messages are msgspec Structs encoded as msgpack with a type tag: no pickle.

    TokenizerManager --GenerateReq/AbortReq/ControlReq--> Scheduler
    Scheduler --BatchTokenOut--> Detokenizer --BatchStrOut--> TokenizerManager
    Scheduler --ControlResp/ReadyMsg--> TokenizerManager
"""

from __future__ import annotations

from typing import Any

import msgspec


class GenerateReq(msgspec.Struct, tag=True):
    """A tokenized request; `sampling_params` is already validated (SamplingParams fields)."""

    rid: str
    input_ids: list[int]
    sampling_params: dict[str, Any]
    return_logprob: bool = False
    logprob_start_len: int = -1
    top_logprobs_num: int = 0
    stream: bool = False
    priority: int = 0


class AbortReq(msgspec.Struct, tag=True):
    rid: str | None = None
    abort_all: bool = False
    message: str = "aborted by request"


class ControlReq(msgspec.Struct, tag=True):
    """flush_cache | stats | shutdown; answered by a ControlResp with the same `req_id`."""

    req_id: int
    kind: str


class ControlResp(msgspec.Struct, tag=True):
    req_id: int
    ok: bool
    payload: dict[str, Any] = {}
    message: str = ""


class ReadyMsg(msgspec.Struct, tag=True):
    """Sent once by the scheduler when the model is loaded; describes what it serves."""

    info: dict[str, Any]


class ErrorMsg(msgspec.Struct, tag=True):
    """A fatal error in a worker process; the server reports it and exits."""

    where: str
    message: str


class TokenOut(msgspec.Struct, array_like=True):
    """What one request produced in one step (deltas since the previous TokenOut)."""

    rid: str
    new_token_ids: list[int]
    finish_reason: dict[str, Any] | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    num_retractions: int = 0
    # [[logprob, token_id], ...] for the new tokens; top: one list of pairs per new token.
    output_logprobs: list[list[float]] | None = None
    output_top_logprobs: list[list[list[float]]] | None = None
    # Sent once, with the first TokenOut of a request that asked for prompt logprobs.
    # The first prompt token has no logprob: its entry is [None, token_id].
    input_logprobs: list[list[float | None]] | None = None
    input_top_logprobs: list[list[list[float]] | None] | None = None
    # Detokenizer options copied from the sampling params on the first TokenOut.
    decode_options: dict[str, Any] | None = None


class BatchTokenOut(msgspec.Struct, tag=True):
    outs: list[TokenOut]


class StrOut(msgspec.Struct, array_like=True):
    """TokenOut plus the new text (stop strings trimmed, incomplete UTF-8 held back)."""

    rid: str
    text_delta: str
    token: TokenOut


class BatchStrOut(msgspec.Struct, tag=True):
    outs: list[StrOut]


Message = (
    GenerateReq
    | AbortReq
    | ControlReq
    | ControlResp
    | ReadyMsg
    | ErrorMsg
    | BatchTokenOut
    | BatchStrOut
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def encode(msg: Message) -> bytes:
    return _encoder.encode(msg)


def decode(data: bytes) -> Message:
    return _decoder.decode(data)
