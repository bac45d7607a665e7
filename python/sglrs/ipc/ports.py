"""IPC endpoints of one server, allocated in one place.

Each server gets a private temporary directory holding its ZMQ ipc sockets, so two servers on
one host never collide; the directory is removed at shutdown.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from dataclasses import dataclass


@dataclass(frozen=True)
class PortArgs:
    ipc_dir: str
    scheduler_input: str  # TokenizerManager -> scheduler rank 0
    detokenizer_input: str  # scheduler -> detokenizer
    tokenizer_input: str  # detokenizer and scheduler -> TokenizerManager

    @classmethod
    def allocate(cls) -> PortArgs:
        ipc_dir = tempfile.mkdtemp(prefix="sglrs-ipc-")
        return cls(
            ipc_dir=ipc_dir,
            scheduler_input=f"ipc://{ipc_dir}/scheduler",
            detokenizer_input=f"ipc://{ipc_dir}/detokenizer",
            tokenizer_input=f"ipc://{ipc_dir}/tokenizer",
        )

    def cleanup(self) -> None:
        shutil.rmtree(self.ipc_dir, ignore_errors=True)


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (for torch.distributed rendezvous and tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
