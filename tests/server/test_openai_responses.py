"""SGLang-shaped outputs -> OpenAI responses and streamed chunks."""

from __future__ import annotations

from sglrs.server.openai.protocol import parse_chat_request, parse_completion_request
from sglrs.server.openai.responses import (
    ResponseInfo,
    StreamFormatter,
    chat_response,
    completion_response,
    usage,
)

INFO = ResponseInfo(id="cmpl-r", model="tiny", created=7, cache_report=False)
CHAT = [{"role": "user", "content": "hi"}]


def output(text, n_tokens, finish=None, prompt=5, cached=0, logprobs=None, index=None):
    meta = {
        "id": "r",
        "finish_reason": finish,
        "prompt_tokens": prompt,
        "completion_tokens": n_tokens,
        "cached_tokens": cached,
    }
    if logprobs is not None:
        meta["output_token_logprobs"] = [[lp, tid, tok] for lp, tid, tok, _ in logprobs]
        meta["output_top_logprobs"] = [top for *_, top in logprobs]
    out = {"text": text, "output_ids": list(range(n_tokens)), "meta_info": meta}
    if index is not None:
        out["index"] = index
    return out


LENGTH = {"type": "length", "length": 2}
STOP = {"type": "stop", "matched": "\n"}


def test_completion_response_with_usage_over_n():
    req = parse_completion_request({"prompt": "p", "n": 2})
    outs = [output("ab", 2, LENGTH, cached=1), output("cd", 3, STOP, cached=4)]
    resp = completion_response(outs, req, INFO)
    assert resp["object"] == "text_completion" and resp["id"] == "cmpl-r"
    assert resp["model"] == "tiny" and resp["created"] == 7
    assert [c["text"] for c in resp["choices"]] == ["ab", "cd"]
    assert [c["index"] for c in resp["choices"]] == [0, 1]
    assert [c["finish_reason"] for c in resp["choices"]] == ["length", "stop"]
    assert resp["choices"][1]["matched_stop"] == "\n"
    # The prompt is counted once for its n samples.
    assert resp["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
    cached = ResponseInfo(id="x", model="m", created=0, cache_report=True)
    assert completion_response(outs, req, cached)["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 5
    }


def test_usage_over_several_prompts():
    outs = [output("a", 1, STOP, prompt=3), output("b", 2, STOP, prompt=4)]
    assert usage(outs, 1, False)["prompt_tokens"] == 7
    outs4 = [output("a", 1, STOP, prompt=p) for p in (3, 3, 4, 4)]
    assert usage(outs4, 2, False)["prompt_tokens"] == 7


LOGPROBS = [
    (-0.5, 10, "Hel", [[-0.5, 10, "Hel"], [-1.5, 11, "He"]]),
    (-0.25, 12, "lo", [[-0.25, 12, "lo"], [-2.0, 13, "l"]]),
]


def test_completion_logprobs():
    req = parse_completion_request({"prompt": "p", "logprobs": 2})
    resp = completion_response([output("Hello", 2, STOP, logprobs=LOGPROBS)], req, INFO)
    lp = resp["choices"][0]["logprobs"]
    assert lp["tokens"] == ["Hel", "lo"]
    assert lp["token_logprobs"] == [-0.5, -0.25]
    assert lp["text_offset"] == [0, 3]
    assert lp["top_logprobs"] == [{"Hel": -0.5, "He": -1.5}, {"lo": -0.25, "l": -2.0}]


def test_chat_response_and_logprobs():
    req = parse_chat_request({"messages": CHAT, "logprobs": True, "top_logprobs": 1})
    resp = chat_response([output("Hello", 2, STOP, logprobs=LOGPROBS)], req, INFO)
    assert resp["object"] == "chat.completion"
    choice = resp["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Hello"}
    content = choice["logprobs"]["content"]
    assert content[0]["token"] == "Hel" and content[0]["bytes"] == list(b"Hel")
    assert content[1]["top_logprobs"][0] == {"token": "lo", "logprob": -0.25, "bytes": list(b"lo")}
    plain = chat_response([output("x", 1, STOP)], parse_chat_request({"messages": CHAT}), INFO)
    assert plain["choices"][0]["logprobs"] is None


def test_chat_stream_deltas_roles_and_usage():
    req = parse_chat_request(
        {"messages": CHAT, "n": 2, "stream": True, "stream_options": {"include_usage": True}}
    )
    fmt = StreamFormatter(chat=True, req=req, info=INFO, choices=2)
    chunks = []
    for out in [
        output("He", 1, index=0),
        output("Yo", 1, index=1),
        output("Hello", 2, index=0),
        output("Hello!", 3, STOP, index=0),
        output("Yo", 2, LENGTH, index=1),
    ]:
        chunks += fmt.chunks(out)
    assert all(c["object"] == "chat.completion.chunk" and c["usage"] is None for c in chunks)
    by_index: dict[int, list] = {0: [], 1: []}
    for c in chunks:
        (choice,) = c["choices"]
        by_index[choice["index"]].append(choice)
    first = by_index[0]
    assert first[0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["delta"].get("content", "") for c in first) == "Hello!"
    assert [c["finish_reason"] for c in first][-1] == "stop"
    assert all(c["finish_reason"] is None for c in first[:-1])
    second = by_index[1]
    assert "".join(c["delta"].get("content", "") for c in second) == "Yo"
    assert second[-1]["finish_reason"] == "length" and second[-1]["delta"] == {}
    final = fmt.usage_chunk()
    assert final["choices"] == []
    assert final["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}


def test_completion_stream_logprob_deltas():
    req = parse_completion_request({"prompt": "p", "stream": True, "logprobs": 1})
    fmt = StreamFormatter(chat=False, req=req, info=INFO, choices=1)
    first = fmt.chunks(output("Hel", 1, logprobs=LOGPROBS[:1]))
    second = fmt.chunks(output("Hello", 2, STOP, logprobs=LOGPROBS))
    assert fmt.usage_chunk() is None  # not asked for
    (a,), (b,) = first[0]["choices"], second[0]["choices"]
    assert a["text"] == "Hel" and a["logprobs"]["tokens"] == ["Hel"]
    assert b["text"] == "lo" and b["logprobs"]["tokens"] == ["lo"]
    assert b["logprobs"]["text_offset"] == [3]
    assert b["finish_reason"] == "stop"
    assert "usage" not in first[0]


def test_stream_skips_empty_progress():
    req = parse_completion_request({"prompt": "p", "stream": True})
    fmt = StreamFormatter(chat=False, req=req, info=INFO, choices=1)
    assert len(fmt.chunks(output("a", 1))) == 1
    # An incomplete UTF-8 character held back by the detokenizer: no new text yet.
    assert fmt.chunks(output("a", 2)) == []
