"""host_memory.configure_host_malloc(): a repeated XLA CPU call stops page-faulting its temporaries."""

import json
import os
import subprocess
import sys

import pytest

PROBE = r"""
import json, os, resource, sys
from efficientnet_jax import host_memory
mode = host_memory.configure_host_malloc(sys.argv[1])  # 'huge_pages' relaunches this very probe
import jax, jax.numpy as jnp
# 128 MB of temporaries per call: sin(x) and cos(x) feed dots, so XLA materialises both. (Above
# glibc's 32 MB ceiling for its dynamic mmap threshold, so by default they stay mmapped.)
w = jnp.ones((4096, 8))
f = jax.jit(lambda x: jnp.dot(jnp.sin(x), w) + jnp.dot(jnp.cos(x), w))
x = jnp.ones((4096, 4096))
# With keep_freed the first calls still grow the heap now and then (a freed buffer's hole can be
# split by small allocations before the next call reuses it); it settles within a few dozen calls,
# so take the quietest of 8 windows of 5 calls after a warm-up.
for _ in range(10):
    f(x).block_until_ready()
windows = []
for _ in range(8):
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        f(x).block_until_ready()
    windows.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 5)
print(json.dumps({"mode": mode, "faults_per_call": min(windows), "pid": os.getpid(),
                  "tunables": os.environ.get("GLIBC_TUNABLES", "")}))
"""


def _probe(mode):
    env = dict(os.environ)
    for var in ("EFFICIENTNET_JAX_HOST_MALLOC", "EFFICIENTNET_JAX_MALLOC_RELAUNCHED", "GLIBC_TUNABLES"):
        env.pop(var, None)
    proc = subprocess.Popen([sys.executable, "-c", PROBE, mode], env=env, stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0
    result = json.loads(out.strip().splitlines()[-1])
    assert result["pid"] == proc.pid  # a relaunch replaces the process image, it does not fork
    return result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_keep_freed_and_huge_pages_remove_per_call_page_faults():
    from efficientnet_jax import host_memory

    off, keep, huge = _probe("system"), _probe("keep_freed"), _probe("huge_pages")
    assert (off["mode"], keep["mode"]) == ("system", "keep_freed")
    # Off: every call maps its temporaries afresh (one fault per 4 KiB page, ~32k for 128 MB).
    assert off["faults_per_call"] > 8000, off
    assert keep["faults_per_call"] < off["faults_per_call"] / 5, (off, keep)
    # Huge pages where this kernel and glibc allow them (relaunched with the tunable), else keep_freed.
    can_relaunch = host_memory._thp_mode() == "madvise" and host_memory._glibc_version() >= (2, 35)
    assert huge["mode"] == ("huge_pages" if can_relaunch else "keep_freed"), huge
    assert (host_memory.HUGE_PAGES_TUNABLE in huge["tunables"]) == can_relaunch, huge
    assert huge["faults_per_call"] < off["faults_per_call"] / 5, (off, huge)


def test_env_var_overrides_the_default_and_rejects_unknown_modes(monkeypatch):
    from efficientnet_jax import host_memory

    calls = []
    monkeypatch.setattr(host_memory, "_applied", False)
    monkeypatch.setattr(host_memory.ctypes, "CDLL", lambda *_: calls.append(1) or (_ for _ in ()).throw(OSError))
    monkeypatch.setattr(host_memory.os, "execve", lambda *a: pytest.fail("must not relaunch pytest"))
    monkeypatch.setenv(host_memory.ENV_VAR, "system")
    assert host_memory.configure_host_malloc("keep_freed") == "system" and not calls
    monkeypatch.delenv(host_memory.ENV_VAR)
    assert host_memory.configure_host_malloc("system") == "system" and not calls  # the caller's default
    monkeypatch.setenv(host_memory.ENV_VAR, "keep_freed")
    assert host_memory.configure_host_malloc("system") == "system"  # CDLL fails here: not applied
    assert calls, "keep_freed must try to apply even when the caller's default is off"
    monkeypatch.setenv(host_memory.ENV_VAR, "jemalloc")
    with pytest.raises(ValueError, match="EFFICIENTNET_JAX_HOST_MALLOC"):
        host_memory.configure_host_malloc("system")


def test_huge_pages_never_relaunch_twice(monkeypatch):
    from efficientnet_jax import host_memory

    monkeypatch.setattr(host_memory, "_thp_mode", lambda: "madvise")
    monkeypatch.setattr(host_memory, "_glibc_version", lambda: (2, 36))
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.check=0")
    monkeypatch.delenv(host_memory._RELAUNCHED, raising=False)
    env = host_memory._huge_pages_env()
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.check=0:" + host_memory.HUGE_PAGES_TUNABLE  # appended
    monkeypatch.setenv(host_memory._RELAUNCHED, "1")  # the relaunched process
    assert host_memory._huge_pages_env() is None
    monkeypatch.delenv(host_memory._RELAUNCHED)
    monkeypatch.setattr(host_memory, "_glibc_version", lambda: (2, 31))  # no hugetlb tunable yet
    assert host_memory._huge_pages_env() is None
