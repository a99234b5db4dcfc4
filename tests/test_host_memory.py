"""keep_freed_memory(): a repeated XLA CPU call stops page-faulting its temporary buffer."""

import json
import os
import subprocess
import sys

import pytest

PROBE = r"""
import json, resource, sys
from efficientnet_jax import host_memory
applied = host_memory.keep_freed_memory() if sys.argv[1] == "on" else False
import jax, jax.numpy as jnp
# 128 MB of temporaries per call: sin(x) and cos(x) feed dots, so XLA materialises both. (Above
# glibc's 32 MB ceiling for its dynamic mmap threshold, so without the fix they stay mmapped.)
w = jnp.ones((4096, 8))
f = jax.jit(lambda x: jnp.dot(jnp.sin(x), w) + jnp.dot(jnp.cos(x), w))
x = jnp.ones((4096, 4096))
# With the fix the first calls still grow the heap now and then (a freed buffer's hole can be
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
faults = min(windows)
print(json.dumps({"applied": applied, "faults_per_call": faults}))
"""


def _probe(mode):
    env = dict(os.environ)
    env.pop("EFFICIENTNET_JAX_HOST_MALLOC", None)
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True,
                         timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_keep_freed_memory_removes_per_call_page_faults():
    off, on = _probe("off"), _probe("on")
    assert on["applied"] is True
    # Off: every call maps its temporaries afresh (one fault per 4 KiB page, ~32k for 128 MB).
    assert off["faults_per_call"] > 8000, off
    assert on["faults_per_call"] < off["faults_per_call"] / 5, (off, on)


def test_env_var_opts_out(monkeypatch):
    from efficientnet_jax import host_memory

    monkeypatch.setenv(host_memory.ENV_VAR, "system")
    monkeypatch.setattr(host_memory, "_applied", False)
    assert host_memory.keep_freed_memory() is False


def test_env_var_forces_either_way(monkeypatch):
    from efficientnet_jax import host_memory

    calls = []
    monkeypatch.setattr(host_memory, "_applied", False)
    monkeypatch.setattr(host_memory.ctypes, "CDLL", lambda *_: calls.append(1) or (_ for _ in ()).throw(OSError))
    monkeypatch.delenv(host_memory.ENV_VAR, raising=False)
    assert host_memory.keep_freed_memory(default=False) is False and not calls  # caller said no
    monkeypatch.setenv(host_memory.ENV_VAR, "keep_freed")
    host_memory.keep_freed_memory(default=False)
    assert calls, "keep_freed must try to apply even when the caller's default is off"
    monkeypatch.setenv(host_memory.ENV_VAR, "jemalloc")
    with pytest.raises(ValueError, match="EFFICIENTNET_JAX_HOST_MALLOC"):
        host_memory.keep_freed_memory()
