"""Fixtures for the HTTP layer: a small tokenizer, and an app whose scheduler is recorded.

`RecordingTokenizerManager` is the real TokenizerManager (tokenization, validation, request
state) with its socket replaced by a list: tests see exactly what would reach the scheduler.
It answers control messages (stats, flush) but never generates tokens; generation is covered
by the end-to-end tests against a live `sglrs serve`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from sglrs.ipc import messages as msg
from sglrs.ipc.ports import PortArgs
from sglrs.server.app import create_app
from sglrs.server_args import ServerArgs
from sglrs.serving.tokenizer_manager import MetricsHooks, TokenizerManager

sys.path.insert(0, str(Path(__file__).resolve().parent))  # live_server.py, beside this file

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CONTEXT_LENGTH = 256
STATS = {"num_running_reqs": 0, "num_queue_reqs": 0, "token_usage": 0.25, "integrity_ok": True}


def make_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(
        ["Hello world, the quick brown fox. user assistant system"] * 5, trainer
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


class RecordingTokenizerManager(TokenizerManager):
    def __init__(self, tokenizer: Any, metrics: MetricsHooks | None) -> None:
        super().__init__(PortArgs.allocate(), tokenizer, metrics=metrics)
        self.sent: list[msg.Message] = []
        self.stats = dict(STATS)
        self.flush_ok = True
        # Unless a test holds generations open, one that reaches the scheduler fails the engine
        # at once (a 503) instead of waiting forever for tokens that never come.
        self.hold_generations = False
        self.context_length = CONTEXT_LENGTH
        self.vocab_size = len(tokenizer) if tokenizer is not None else 300

    def start(self) -> None:  # no sockets
        self._port_args.cleanup()

    def _send(self, message: msg.Message) -> None:
        self.sent.append(message)
        if isinstance(message, msg.ControlReq):
            ok = message.kind != "flush_cache" or self.flush_ok
            payload = self.stats if message.kind == "stats" else {}
            reply = msg.ControlResp(req_id=message.req_id, ok=ok, payload=payload, message="busy")
            asyncio.get_running_loop().call_soon(self._dispatch, reply)
        elif isinstance(message, msg.GenerateReq) and not self.hold_generations:
            asyncio.get_running_loop().call_soon(self._fail, "no scheduler in this test")

    def sent_of(self, kind: type) -> list[Any]:
        return [m for m in self.sent if isinstance(m, kind)]


class RecordingEngine:
    """The Runtime interface the app uses, around a RecordingTokenizerManager."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.model_info = {
            "context_length": CONTEXT_LENGTH,
            "vocab_size": 300,
            "architectures": ["LlamaForCausalLM"],
        }
        self.tm: RecordingTokenizerManager | None = None
        self.alive = True
        self.shutdowns = 0

    async def attach(self, metrics: MetricsHooks | None = None) -> TokenizerManager:
        self.tm = RecordingTokenizerManager(self.tokenizer, metrics)
        self.tm.start()
        return self.tm

    def processes_alive(self) -> bool:
        return self.alive

    def shutdown(self) -> None:
        self.shutdowns += 1


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    return make_tokenizer()


def server_args(**overrides: Any) -> ServerArgs:
    return ServerArgs.from_kwargs(model_path="/models/tiny", **overrides)


@pytest.fixture
def make_client(tokenizer: Any) -> Iterator[Any]:
    """make_client(**server_args) -> (TestClient, RecordingEngine); lifespan runs."""
    clients: list[TestClient] = []

    def make(tokenizer_override: Any = tokenizer, **overrides: Any) -> tuple[TestClient, Any]:
        engine = RecordingEngine(tokenizer_override)
        client = TestClient(create_app(server_args(**overrides), engine))
        client.__enter__()
        clients.append(client)
        return client, engine

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Any) -> tuple[TestClient, Any]:
    return make_client()


@pytest.fixture
def make_app(tokenizer: Any) -> Any:
    """make_app(**server_args) -> (ASGI app, RecordingEngine), lifespan not yet run."""

    def make(**overrides: Any) -> tuple[Any, RecordingEngine]:
        engine = RecordingEngine(tokenizer)
        return create_app(server_args(**overrides), engine), engine

    return make


@pytest.fixture(scope="session")
def live_server() -> Iterator[Any]:
    """One `sglrs serve` for the end-to-end tests; Ctrl-C must stop it and all its children."""
    import importlib.util

    if importlib.util.find_spec("sglrs.engine.engine_core") is None:
        pytest.skip("the engine core (sglrs.engine.engine_core) does not exist yet")
    from live_server import start_server, stop_server

    server = start_server()
    children = server.children()
    yield server
    code = stop_server(server)
    assert code == 0, f"sglrs serve exited with {code}:\n{server.log()}"
    deadline = time.monotonic() + 10  # orphaned children are reaped by init shortly after
    while (leftover := [pid for pid in children if _running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not leftover, f"processes left behind after Ctrl-C: {leftover}"


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
