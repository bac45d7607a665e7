"""Backends for the frontend-language tests: a live `sglrs serve` and an in-process Engine.

Both serve the default model (SmolLM2-135M-Instruct, or `$SGLRS_TEST_MODEL`), so programs
behave the same over HTTP and in process. Each is started once per session, on first use.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# live_server.py (the `sglrs serve` launcher of the server tests).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))

CONTEXT_LENGTH = 1024


@pytest.fixture(scope="session")
def lang_server() -> Iterator[Any]:
    from live_server import start_server, stop_server

    server = start_server()
    yield server
    code = stop_server(server)
    assert code == 0, f"sglrs serve exited with {code}:\n{server.log()}"


@pytest.fixture(scope="session")
def http_backend(lang_server: Any) -> Any:
    from live_server import API_KEY

    import sglrs as sgl

    return sgl.RuntimeEndpoint(lang_server.url, api_key=API_KEY)


@pytest.fixture(scope="session")
def engine_backend() -> Iterator[Any]:
    import sglrs as sgl

    with sgl.EngineBackend(
        model_path=os.environ.get("SGLRS_TEST_MODEL"),
        context_length=CONTEXT_LENGTH,
        log_level="warning",
        random_seed=0,
    ) as backend:
        yield backend


@pytest.fixture(params=["http", "engine"])
def backend(request: pytest.FixtureRequest) -> Any:
    """Each program test runs over HTTP and in process."""
    return request.getfixturevalue(f"{request.param}_backend")
