"""The programs SGLang users know, over HTTP (`sglrs serve`) and in process (`sglrs.Engine`)."""

from __future__ import annotations

import re

import sglrs as sgl

# Bounded fields: every output completes within the gen's 48 tokens whatever the weights'
# dtype makes the model prefer (unbounded digits ran into the token limit in bf16).
JSON_REGEX = r'\{"result": "[^"]{1,16}", "confidence": [0-9]{1,3}\}'
FEW_SHOT = (
    "You answer questions about geography.\n"
    "Q: What is the capital of Italy?\nA: Rome.\n"
    "Q: What is the capital of Spain?\nA: Madrid.\n"
    "Q: What is the capital of Japan?\nA: Tokyo.\n"
)


@sgl.function
def conversation(s, question):
    s += sgl.system("You are a helpful assistant. Answer briefly.")
    s += sgl.user(question)
    s += sgl.assistant(sgl.gen("first", max_tokens=12))
    s += sgl.user_begin() + "Now say it in one word." + sgl.user_end()
    s += sgl.assistant_begin() + sgl.gen("second", max_tokens=6) + sgl.assistant_end()


def test_multi_turn_conversation_uses_the_chat_template(backend):
    state = conversation.run(question="What is the capital of France?", backend=backend)
    messages = state.messages()
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[2]["content"] == state["first"]
    assert messages[4]["content"] == state["second"]
    template = backend.chat_template()
    # The text is exactly the model's own template applied to the conversation.
    assert state.text() == template.render(messages)


@sgl.function
def json_answer(s, question):
    s += "Answer in JSON.\nQuestion: " + question + "\nAnswer: "
    s += sgl.gen("answer", max_tokens=48, regex=JSON_REGEX)


def test_regex_json_output_always_matches(backend):
    questions = ["Is the sky blue?", "Is fire cold?", "Do fish swim?", "Is 7 a prime?"]
    states = json_answer.run_batch(
        [{"question": q} for q in questions], backend=backend, temperature=0
    )
    for state in states:
        assert re.fullmatch(JSON_REGEX, state["answer"]), state["answer"]
        assert state.get_meta_info("answer")["finish_reason"]["type"] == "stop"


@sgl.function
def agent(s, request):
    s += "Tools: calculator (arithmetic), search (facts).\n"
    s += "Request: " + request + "\nTool: "
    s += sgl.select("tool", choices=["calculator", "search"])
    if s["tool"] == "calculator":
        s += "\nExpression: " + sgl.gen("expression", regex=r"[0-9]+ ?[+*/-] ?[0-9]+")
    else:
        s += "\nQuery: " + sgl.gen("query", max_tokens=8, stop="\n")


def test_agent_selects_an_intent_and_branches(backend):
    state = agent.run(request="What is 12 times 7?", backend=backend, temperature=0)
    meta = state.get_meta_info("tool")
    assert state["tool"] in ("calculator", "search")
    assert len(meta["scores"]) == 2
    assert meta["scores"][["calculator", "search"].index(state["tool"])] == max(meta["scores"])
    if state["tool"] == "calculator":
        assert re.fullmatch(r"[0-9]+ ?[+*/-] ?[0-9]+", state["expression"])
        assert "query" not in state
    else:
        assert "\n" not in state["query"] and "expression" not in state
    # Every choice request found the prefix in the radix cache (all but the last token).
    prefix_tokens = meta["cached_tokens"]
    assert all(c is not None and c > 10 for c in prefix_tokens), prefix_tokens


@sgl.function
def tips(s, topic):
    s += "Here are three short tips about " + topic + ".\n"
    forks = s.fork(3)
    forks += lambda i: f"Tip {i + 1}:" + sgl.gen("tip", max_tokens=8, stop="\n")
    forks.join()
    for i, tip in enumerate(s["tip"]):
        s += f"Tip {i + 1}:{tip}\n"
    s += "In summary:" + sgl.gen("summary", max_tokens=8, stop="\n")


def test_fork_of_three_joined_back(backend):
    state = tips.run(topic="staying healthy", backend=backend, temperature=0)
    assert isinstance(state["tip"], list) and len(state["tip"]) == 3
    assert all(isinstance(t, str) for t in state["tip"])
    metas = state.get_meta_info("tip")
    assert len(metas) == 3
    for i, tip in enumerate(state["tip"]):
        assert f"Tip {i + 1}:{tip}\n" in state.text()
    # The fork cached the shared prefix once; every branch reused it.
    assert all(m["cached_tokens"] >= 8 for m in metas), [m["cached_tokens"] for m in metas]
    assert isinstance(state["summary"], str)


@sgl.function
def two_steps(s):
    s += FEW_SHOT + "Q: What is the capital of France?\nA:"
    s += sgl.gen("first", max_tokens=6, stop="\n")
    s += "\nQ: What is the capital of Germany?\nA:"
    s += sgl.gen("second", max_tokens=6, stop="\n")


def test_second_gen_reuses_the_first_part(backend):
    state = two_steps.run(backend=backend, temperature=0)
    first = state.get_meta_info("first")
    second = state.get_meta_info("second")
    assert second["cached_tokens"] >= first["prompt_tokens"], (first, second)


@sgl.function
def story(s):
    s += "Once upon a time, in a small village,"
    s += sgl.gen("story", max_tokens=16)
    s += " The end."


def test_streaming_yields_increasing_text_ending_at_the_final_state(backend):
    state = story.run(backend=backend, stream=True, temperature=0)
    snapshots = []
    text = ""
    for piece in state.text_iter():
        text += piece
        snapshots.append(text)
    assert len(snapshots) > 3  # prefix, several generated pieces, suffix
    pairs = zip(snapshots, snapshots[1:], strict=False)
    assert all(b.startswith(a) and len(b) > len(a) for a, b in pairs)
    assert snapshots[-1] == state.text()
    assert "".join(state.text_iter("story")) == state["story"]
    # The same program without streaming gives the same text (greedy).
    assert story.run(backend=backend, temperature=0).text() == state.text()


@sgl.function
def capital(s, country):
    s += FEW_SHOT + "Q: What is the capital of " + country + "?\nA:"
    s += sgl.gen("answer", max_tokens=4, stop="\n")


def test_run_batch_of_64_programs(backend):
    countries = [f"country number {i}" for i in range(64)]
    states = capital.run_batch(
        [{"country": c} for c in countries], backend=backend, num_threads=64, temperature=0
    )
    assert len(states) == 64
    for country, state in zip(countries, states, strict=True):
        assert f"capital of {country}?" in state.text()
        assert isinstance(state["answer"], str)
        assert state.get_meta_info("answer")["completion_tokens"] <= 4
    # All 64 share the few-shot prefix through the radix cache.
    cached = [s.get_meta_info("answer")["cached_tokens"] for s in states]
    assert sum(c > 0 for c in cached) >= 60, cached
