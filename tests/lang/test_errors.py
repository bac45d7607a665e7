"""Clear errors: server 400 reasons surfaced, unknown variables, an unreachable server."""

from __future__ import annotations

import pytest
from live_server import API_KEY

import sglrs as sgl
from sglrs.ipc.ports import free_tcp_port


@sgl.function
def too_long(s):
    s += "Hello"
    s += sgl.gen("x", max_tokens=100_000)


@sgl.function
def bad_regex(s):
    s += "Hello"
    s += sgl.gen("x", max_tokens=4, regex="(unclosed")


@sgl.function
def reads_unknown(s):
    s += "Hello" + sgl.gen("greeting", max_tokens=2)
    s += s["greting"]


def test_server_400_reason_is_surfaced(backend):
    with pytest.raises(sgl.BackendRequestError, match="context length") as info:
        too_long.run(backend=backend)
    assert info.value.status == 400


def test_invalid_regex_is_a_400_naming_the_regex(backend):
    with pytest.raises(sgl.BackendRequestError, match="regex") as info:
        bad_regex.run(backend=backend)
    assert info.value.status == 400


def test_unknown_variable_names_it_and_the_known_ones(backend):
    with pytest.raises(sgl.UnknownVariableError, match="'greting'.*'greeting'"):
        reads_unknown.run(backend=backend)


def test_run_batch_names_the_failing_program(backend):
    @sgl.function
    def maybe(s, n):
        s += "Count:" + sgl.gen("x", max_tokens=n)

    with pytest.raises(sgl.ProgramError, match="program 1 of 3") as info:
        maybe.run_batch([{"n": 1}, {"n": 100_000}, {"n": 1}], backend=backend)
    assert isinstance(info.value.__cause__, sgl.BackendRequestError)


def test_stream_surfaces_a_400(backend):
    state = too_long.run(backend=backend, stream=True)
    with pytest.raises(sgl.BackendRequestError, match="context length"):
        "".join(state.text_iter())


def test_unreachable_server():
    port = free_tcp_port()
    with pytest.raises(sgl.BackendUnreachableError, match=f"127.0.0.1:{port}"):
        sgl.RuntimeEndpoint(f"http://127.0.0.1:{port}")


def test_wrong_api_key_is_a_401(lang_server):
    with pytest.raises(sgl.BackendRequestError) as info:
        sgl.RuntimeEndpoint(lang_server.url, api_key="wrong")
    assert info.value.status == 401


def test_server_info_and_flush(http_backend):
    assert http_backend.get_server_info()["version"]
    http_backend.flush_cache()
    assert API_KEY == http_backend.api_key
