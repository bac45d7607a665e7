"""The interpreter's semantics on a deterministic fake backend: ordering, variables, roles,
select scoring, fork/join, streaming and errors."""

from __future__ import annotations

import math

import pytest
from fake_backend import FakeBackend

import sglrs as sgl
from sglrs.lang.choices import best_index, mean_logprob
from sglrs.lang.selection import choice_tokens


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend()


def test_text_and_gen_append_in_order(fake):
    @sgl.function
    def prog(s, name):
        s += "Hi " + name + "."
        s += sgl.gen("x", max_tokens=3, stop=".", temperature=0.5)

    state = prog.run(name="Ann", backend=fake, temperature=0)
    assert state.text() == "Hi Ann.[7]" and state["x"] == "[7]"
    params = fake.bodies[-1]["sampling_params"]
    # The gen's own values override the run's defaults.
    assert params == {"max_new_tokens": 3, "stop": ["."], "temperature": 0.5}


def test_run_defaults_apply_to_gens(fake):
    @sgl.function
    def prog(s):
        s += "a" + sgl.gen("x")

    prog.run(backend=fake, max_new_tokens=5, top_p=0.9)
    assert fake.bodies[-1]["sampling_params"] == {"max_new_tokens": 5, "top_p": 0.9}


def test_roles_follow_the_template_including_its_default_system(fake):
    @sgl.function
    def prog(s):
        s += sgl.user("Hello")
        s += sgl.assistant(sgl.gen("reply"))

    state = prog.run(backend=fake)
    assert state.messages() == [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": state["reply"]},
    ]
    assert state.text() == fake.chat_template().render(state.messages())
    assert state.text().startswith("<|im_start|>system\nDefault.<|im_end|>\n")


def test_llama3_style_template_gets_bos_once():
    template = sgl.lang.chat_template.ChatTemplate(
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
        "<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}",
        bos_token="<|begin_of_text|>",
    )
    header = "<|start_header_id|>system<|end_header_id|>\n\n"
    assert template.affixes([], "system") == ("<|begin_of_text|>" + header, "<|eot_id|>")
    later = template.affixes([{"role": "system", "content": "S"}], "user")
    assert later == ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>")


def test_role_misuse_is_an_error(fake):
    @sgl.function
    def nested(s):
        s += sgl.user_begin() + sgl.assistant_begin()

    with pytest.raises(sgl.LangError, match="inside the open user role"):
        nested.run(backend=fake)

    @sgl.function
    def unopened(s):
        s += sgl.user_end()

    with pytest.raises(sgl.LangError, match="user_end\\(\\) without user_begin"):
        unopened.run(backend=fake)


def test_select_prefers_the_best_mean_logprob_in_one_batched_request(fake):
    @sgl.function
    def prog(s):
        s += "Pick: " + sgl.select("word", choices=["xyz", "aei", "bcd"])

    state = prog.run(backend=fake)
    assert state["word"] == "aei" and state.text() == "Pick: aei"
    meta = state.get_meta_info("word")
    assert meta["scores"] == pytest.approx([-1.0, -0.1, -1.0])
    warm, batch = fake.bodies
    assert warm["sampling_params"] == {"max_new_tokens": 0}
    assert batch["text"] == ["Pick: xyz", "Pick: aei", "Pick: bcd"]
    # Logprobs from the prefix's last token on: the cached prefix is reused.
    assert batch["logprob_start_len"] == len("Pick: ") - 1


def test_select_ties_go_to_the_first_choice(fake):
    @sgl.function
    def prog(s):
        s += "Q: " + sgl.select("c", choices=["bb", "cc", "aa", "ee"])
        s += " " + sgl.gen("g", choices=["x", "y"])

    state = prog.run(backend=fake)
    assert state["c"] == "aa"  # ties with "ee", listed first
    assert state["g"] == "x"  # "x" and "y" tie
    assert best_index([1.0, 2.0, 2.0]) == 1


def test_select_single_choice_needs_no_request(fake):
    @sgl.function
    def prog(s):
        s += "Q: " + sgl.select("c", choices=["only"])

    state = prog.run(backend=fake)
    assert state["c"] == "only" and fake.bodies == []


def test_select_validates_choices():
    with pytest.raises(ValueError, match="non-empty list"):
        sgl.select("c", choices=[])
    with pytest.raises(ValueError, match="non-empty list"):
        sgl.select("c", choices="yes")
    with pytest.raises(ValueError, match="at most one of regex and json_schema"):
        sgl.gen("x", regex="a", json_schema={"type": "string"})
    with pytest.raises(ValueError, match="cannot also take regex"):
        sgl.gen("x", choices=["a"], regex="a")


def test_select_variants(fake):
    @sgl.function
    def prog(s, method):
        s += "Q: " + sgl.select("c", choices=["ab", "ba", "bbb"], choices_method=method)

    greedy = prog.run(method=sgl.greedy_token_selection, backend=fake)
    assert greedy["c"] == "ab"  # the best first token wins
    uncond = prog.run(method=sgl.unconditional_likelihood_normalized, backend=fake)
    # Conditional and unconditional logprobs agree after the first token, so the first
    # token's conditional logprob decides.
    assert uncond["c"] == "ab"
    assert "unconditional_token_logprobs" in uncond.get_meta_info("c")


def test_choice_tokens_take_the_token_merged_across_the_boundary():
    entries = [[-0.5, 1, "is"], [-0.2, 2, " blue"]]
    assert choice_tokens(entries, "blue") == [[-0.2, 2, " blue"]]
    assert choice_tokens(entries, " blue") == [[-0.2, 2, " blue"]]
    assert choice_tokens([[-0.5, 1, ":"], [-0.3, 2, " y"], [-0.1, 3, "es"]], "yes") == [
        [-0.3, 2, " y"],
        [-0.1, 3, "es"],
    ]
    assert mean_logprob([[None, 1, "a"]]) == -math.inf


def test_fork_join_gathers_branch_variables_as_lists(fake):
    @sgl.function
    def prog(s):
        s += "Base."
        forks = s.fork(3)
        forks += lambda i: f"Branch {i}:" + sgl.gen("out")
        forks.join()
        s += " done"

    state = prog.run(backend=fake)
    assert state["out"] == ["[14]", "[14]", "[14]"]
    assert [m["prompt_tokens"] for m in state.get_meta_info("out")] == [14, 14, 14]
    assert state.text() == "Base. done"
    # The shared prefix was prefilled once before the branches.
    assert fake.bodies[0] == {"text": "Base.", "sampling_params": {"max_new_tokens": 0}}


def test_streaming_pieces_join_to_the_final_text(fake):
    @sgl.function
    def prog(s):
        s += "abc" + sgl.gen("x") + "!"

    state = prog.run(backend=fake, stream=True)
    pieces = list(state.text_iter())
    assert pieces == ["abc", "[", "3", "]", "!"]
    assert "".join(pieces) == state.text()
    assert "".join(state.text_iter("x")) == state["x"] == "[3]"


def test_errors_surface_at_the_next_read(fake):
    @sgl.function
    def prog(s):
        s += "a" + sgl.gen("x", max_tokens=5000)
        s += "b" + sgl.gen("y")

    with pytest.raises(sgl.BackendRequestError, match="context length"):
        prog.run(backend=fake)

    @sgl.function
    def reads(s):
        s += "a" + sgl.gen("x", max_tokens=5000)
        return s["x"]

    with pytest.raises(sgl.BackendRequestError, match="context length"):
        reads.run(backend=fake)


def test_unknown_variable(fake):
    @sgl.function
    def prog(s):
        s += "a" + sgl.gen("answer")
        return s["answr"]

    with pytest.raises(KeyError, match="unknown variable 'answr'.*'answer'"):
        prog.run(backend=fake)


def test_no_backend_and_bad_arguments(fake):
    @sgl.function
    def prog(s, x):
        s += x

    sgl.set_default_backend(None)
    with pytest.raises(sgl.NoBackendError, match="set_default_backend"):
        prog.run(x="a")
    with pytest.raises(TypeError, match="prog: missing a required argument: 'x'"):
        prog.run(backend=fake)
    with pytest.raises(TypeError, match="reserved by run"):
        sgl.function(lambda s, temperature: None)
    sgl.set_default_backend(fake)
    try:
        assert prog.run(x="hello").text() == "hello"
    finally:
        sgl.set_default_backend(None)


def test_run_batch_keeps_order_and_reports_progress(fake, capsys):
    @sgl.function
    def prog(s, i):
        s += "#" * i + sgl.gen("n")

    states = prog.run_batch([{"i": i} for i in range(10)], backend=fake, progress_bar=True)
    assert [s["n"] for s in states] == [f"[{i}]" for i in range(10)]
    assert "10/10" in capsys.readouterr().err
