"""Stop strings (hold-back, trim, no_stop_trim), stop token ids, EOS and length."""

from __future__ import annotations

import pytest

from sglrs.sampling import SamplingParams
from sglrs.tokenizer import DecodeStreams, StopStrings, held_suffix_len

EOS = 0  # <|endoftext|> in the fixture tokenizer


def test_held_suffix_len() -> None:
    assert held_suffix_len("abc #", ["###"]) == 1
    assert held_suffix_len("abc ##", ["###"]) == 2
    assert held_suffix_len("abc ###", ["###"]) == 2  # "###" itself is a match, not a hold
    assert held_suffix_len("abc", ["###", "cd"]) == 1
    assert held_suffix_len("abc", ["xyz"]) == 0


def test_stop_string_across_deltas_is_held_then_trimmed() -> None:
    s = StopStrings(["###"])
    assert s.feed("ab #") == "ab "
    assert s.feed("#") == ""
    assert s.matched is None
    assert s.feed("# cd") == ""
    assert s.matched == "###" and s.text == "ab "


def test_hold_released_when_the_text_diverges() -> None:
    s = StopStrings(["###"])
    assert s.feed("a ##") == "a "
    assert s.feed("b") == "##b"
    assert s.flush() == ""


def test_no_stop_trim_keeps_the_stop_and_its_delta() -> None:
    s = StopStrings(["END"], no_stop_trim=True)
    assert s.feed("the E") == "the "
    assert s.feed("ND!") == "END!"
    assert s.matched == "END"


def test_earliest_of_several_stops() -> None:
    s = StopStrings(["world", "lo w"])
    assert s.feed("hello world") == "hel"
    assert s.matched == "lo w"


def test_flush_on_other_finish() -> None:
    s = StopStrings(["###"])
    assert s.feed("x ##") == "x "
    assert s.flush() == "##"


def run(tok, params: dict, ids: list[int], prompt: list[int] | None = None, per_step: int = 1):
    streams = DecodeStreams(tok, eos_token_ids=[EOS])
    streams.add("r", SamplingParams.from_dict(params), prompt or [])
    text, reason, accepted = "", None, 0
    for i in range(0, len(ids), per_step):
        (delta,) = streams.step([("r", ids[i : i + per_step])])
        text += delta.text
        accepted += delta.num_tokens
        if delta.finish_reason is not None:
            reason = delta.finish_reason
            assert "r" not in streams.streams
            break
    return text, reason, accepted


def test_stop_string_with_a_real_tokenizer(bpe_tokenizer) -> None:
    ids = bpe_tokenizer.encode("Stop here ### and there END of story.", add_special_tokens=False)
    for per_step in (1, 2, 3):
        text, reason, _ = run(bpe_tokenizer, {"stop": ["###", "END"]}, ids, per_step=per_step)
        assert text == "Stop here " and reason == {"type": "stop", "matched": "###"}
    text, reason, _ = run(bpe_tokenizer, {"stop": "END", "no_stop_trim": True}, ids)
    assert text.startswith("Stop here ### and there END") and reason["matched"] == "END"


def test_stream_never_shows_a_stop_prefix_early(bpe_tokenizer) -> None:
    ids = bpe_tokenizer.encode("Hello ## there ### end", add_special_tokens=False)
    streams = DecodeStreams(bpe_tokenizer)
    streams.add("r", SamplingParams.from_dict({"stop": "###"}))
    shown = ""
    for t in ids:
        (delta,) = streams.step([("r", [t])])
        shown += delta.text
        assert "#" not in shown[len("Hello ## there") :]
        if delta.finish_reason:
            break
    assert shown == "Hello ## there "


def test_stop_token_ids(bpe_tokenizer) -> None:
    ids = bpe_tokenizer.encode("Hello world! Hello", add_special_tokens=False)
    stop_id = ids[2]
    text, reason, accepted = run(bpe_tokenizer, {"stop_token_ids": [stop_id]}, ids, per_step=4)
    assert reason == {"type": "stop", "matched": stop_id} and accepted == 3
    assert text == bpe_tokenizer.decode(ids[:2])
    text, _, _ = run(bpe_tokenizer, {"stop_token_ids": [stop_id], "no_stop_trim": True}, ids)
    assert text == bpe_tokenizer.decode(ids[:3])


def test_eos_and_ignore_eos(bpe_tokenizer) -> None:
    ids = bpe_tokenizer.encode("Hello world", add_special_tokens=False) + [EOS, 5, 6]
    text, reason, _ = run(bpe_tokenizer, {}, ids)
    assert reason == {"type": "stop", "matched": EOS} and text == "Hello world"
    text, reason, accepted = run(bpe_tokenizer, {"ignore_eos": True, "max_new_tokens": 4}, ids)
    assert reason == {"type": "length", "length": 4} and accepted == 4


def test_length_flushes_held_text(bpe_tokenizer) -> None:
    ids = bpe_tokenizer.encode("Hello ##", add_special_tokens=False)
    text, reason, _ = run(bpe_tokenizer, {"stop": "###", "max_new_tokens": len(ids)}, ids)
    assert reason == {"type": "length", "length": len(ids)} and text == "Hello ##"


def test_external_finish_flushes(bpe_tokenizer) -> None:
    streams = DecodeStreams(bpe_tokenizer)
    streams.add("a", SamplingParams.from_dict({"stop": "###"}))
    streams.add("b", SamplingParams())
    ids = bpe_tokenizer.encode("x ##", add_special_tokens=False)
    first = streams.step([("a", ids), ("b", ids)])
    assert [d.text for d in first] == ["x ", "x ##"]
    abort = {"type": "abort", "message": "client gone"}
    (last,) = streams.step([("a", [])], finish_reasons=[abort])
    assert last.text == "##" and last.finish_reason == abort
    with pytest.raises(ValueError, match="already has a decode stream"):
        streams.add("b", SamplingParams())
