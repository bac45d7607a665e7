"""SGLang's own frontend language (`sglang.RuntimeEndpoint`) as a client of `sglrs serve`.

Needs `pip install sglang --no-deps` plus what `sglang.lang` imports.
"""

from __future__ import annotations

import re

import pytest
from live_server import API_KEY

sgl = pytest.importorskip("sglang")


def test_gen_and_regex(live_server):
    backend = sgl.RuntimeEndpoint(live_server.url, api_key=API_KEY)

    @sgl.function
    def quiz(s):
        s += "Question: What is the capital of France?\nAnswer:"
        s += sgl.gen("answer", max_tokens=8, stop="\n", temperature=0)
        s += "\nA number between 10 and 99: "
        s += sgl.gen("number", regex=r"[1-9][0-9]", max_tokens=4, temperature=0)

    state = quiz.run(backend=backend)
    assert isinstance(state["answer"], str) and "\n" not in state["answer"]
    assert re.fullmatch(r"[1-9][0-9]", state["number"]), state["number"]
    backend.flush_cache()
    assert backend.get_server_info()["version"]


def test_select(live_server):
    """`select` scores each choice by its prompt logprobs (after caching the shared prefix)."""
    backend = sgl.RuntimeEndpoint(live_server.url, api_key=API_KEY)

    @sgl.function
    def pick(s):
        s += "Is Paris in Europe? Answer yes or no: "
        s += sgl.select("yes_no", choices=["yes", "no"])
        s += "\nThe color of the sky is " + sgl.select("color", choices=["blue", "green", "red"])

    state = pick.run(backend=backend)
    assert state["yes_no"] in ("yes", "no")
    assert state["color"] in ("blue", "green", "red")


def test_batch_and_stream(live_server):
    backend = sgl.RuntimeEndpoint(live_server.url, api_key=API_KEY)

    @sgl.function
    def complete(s, prompt):
        s += prompt + sgl.gen("out", max_tokens=5, temperature=0)

    states = complete.run_batch(
        [{"prompt": "Red, green,"}, {"prompt": "Monday, Tuesday,"}], backend=backend
    )
    assert all(st["out"] for st in states)
    state = complete.run(prompt="Red, green,", stream=True, backend=backend)
    streamed = "".join(state.text_iter(var_name="out"))
    assert streamed == states[0]["out"]
