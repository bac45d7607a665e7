"""The frontend language: multi-step LLM programs as Python functions (SGLang's `sgl.function`).

import sglrs as sgl

@sgl.function
def qa(s, question):
    s += sgl.user(question)
    s += sgl.assistant(sgl.gen("answer", max_tokens=64))

sgl.set_default_backend(sgl.RuntimeEndpoint("http://127.0.0.1:30000"))
print(qa.run(question="What is RadixAttention?")["answer"])
"""

from sglrs.lang import api
from sglrs.lang.api import *  # noqa: F403
from sglrs.lang.errors import (
    BackendRequestError,
    BackendUnreachableError,
    ChatTemplateError,
    LangError,
    NoBackendError,
    ProgramError,
    UnknownVariableError,
)

__all__ = [
    *api.__all__,
    "BackendRequestError",
    "BackendUnreachableError",
    "ChatTemplateError",
    "LangError",
    "NoBackendError",
    "ProgramError",
    "UnknownVariableError",
]
