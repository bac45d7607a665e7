"""Parallelism flags that cannot work fail at launch with a message naming the problem."""

from __future__ import annotations

import pytest
import torch
from tiny_model import tiny_llama_dir

from sglrs.cli import main
from sglrs.engine.engine import Engine
from sglrs.ipc.ports import free_tcp_port


def serve(capsys, *flags: str) -> tuple[int, str]:
    argv = ["serve", "--model-path", str(tiny_llama_dir()), "--port", str(free_tcp_port())]
    code = main([*argv, *flags])
    return code, capsys.readouterr().err


def test_tp_not_dividing_the_heads(capsys):
    code, err = serve(capsys, "--tp-size", "3")
    assert code == 2
    assert "--tp-size 3 does not fit the model: num_attention_heads=4" in err
    assert "num_key_value_heads=2" in err


def test_fewer_gpus_than_tp(capsys):
    if torch.cuda.device_count() >= 2:
        pytest.skip("this host has 2 GPUs")
    code, err = serve(capsys, "--tp-size", "2", "--device", "cuda")
    assert code == 2
    assert f"needs 2 GPUs on this node, found {torch.cuda.device_count()}" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--nnodes", "2", "--tp-size", "2"], "needs --dist-init-addr"),
        (["--nnodes", "2", "--tp-size", "3", "--dist-init-addr", "h:1"], "multiple of --nnodes"),
        (["--tp-size", "2", "--dist-init-addr", "nohost"], "must be host:port"),
    ],
)
def test_bad_multi_node_flags(capsys, flags, message):
    code, err = serve(capsys, *flags)
    assert code == 2 and message in err


def test_engine_rejects_tp_not_dividing_the_heads():
    with pytest.raises(ValueError, match="num_attention_heads=4"):
        Engine(model_path=str(tiny_llama_dir()), tp_size=3, log_level="warning")
