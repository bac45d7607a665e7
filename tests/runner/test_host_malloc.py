"""The glibc malloc settings of CPU runners apply (on glibc) and can be turned off."""

from __future__ import annotations

import platform

import pytest

from sglrs.runner import host_malloc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_settings_apply_on_glibc():
    assert host_malloc.keep_freed_memory()
    assert host_malloc.keep_freed_memory()  # idempotent


def test_disabled_by_env(monkeypatch):
    monkeypatch.setenv(host_malloc.DISABLE_ENV, "1")
    assert not host_malloc.keep_freed_memory()
