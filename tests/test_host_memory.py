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
                  "tunables": os.environ.get("GLIBC_TUNABLES", ""), "preload": os.environ.get("LD_PRELOAD", ""),
                  "active": host_memory.large_blocks_active()}))
"""


def _probe(mode):
    env = dict(os.environ)
    for var in ("EFFICIENTNET_JAX_HOST_MALLOC", "EFFICIENTNET_JAX_MALLOC_RELAUNCHED", "GLIBC_TUNABLES", "LD_PRELOAD"):
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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_cache_large_relaunches_with_the_allocator_and_removes_per_call_faults():
    from efficientnet_jax import host_memory

    off, cached = _probe("system"), _probe("cache_large")
    if host_memory.large_blocks_library() is None:  # no C compiler or not glibc: the documented fallback
        assert cached["mode"] == "keep_freed", cached
    else:
        assert cached["mode"] == "cache_large" and cached["active"], cached
        assert "large_blocks-" not in cached["preload"], cached  # children start without it
    assert off["faults_per_call"] > 8000, off
    assert cached["faults_per_call"] < off["faults_per_call"] / 5, (off, cached)


ALLOCATOR_PROBE = r"""
import ctypes, json, os
libc = ctypes.CDLL(None)
for name, res, args in (("malloc", ctypes.c_void_p, [ctypes.c_size_t]), ("calloc", ctypes.c_void_p, [ctypes.c_size_t, ctypes.c_size_t]),
                        ("realloc", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t]), ("free", None, [ctypes.c_void_p]),
                        ("malloc_usable_size", ctypes.c_size_t, [ctypes.c_void_p]),
                        ("posix_memalign", ctypes.c_int, [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_size_t])):
    getattr(libc, name).restype, getattr(libc, name).argtypes = res, args
mapped = lambda: ctypes.c_size_t.in_dll(libc, "efficientnet_jax_large_blocks_mapped").value
reused = lambda: ctypes.c_size_t.in_dll(libc, "efficientnet_jax_large_blocks_reused").value
MB = 1 << 20
out = {}
a = libc.malloc(100 * MB); ctypes.memset(a, 7, 100 * MB); libc.free(a)
b = libc.malloc(99 * MB)  # about the same size: the same block, its pages kept
out["same_block"] = a == b and ctypes.string_at(b, 4) == b"" * 4
out["usable"] = libc.malloc_usable_size(b)
c = libc.realloc(b, 300 * MB)  # grows into a new block, contents kept
out["realloc_keeps"] = ctypes.string_at(c, 4) == b"" * 4
libc.free(c)
z = libc.calloc(100, MB)  # calloc is glibc's: zeroed even though a cached block is free
out["calloc_zero"] = ctypes.string_at(z, 64) == bytes(64)
libc.free(z)
p = ctypes.c_void_p()
out["memalign_rc"] = libc.posix_memalign(ctypes.byref(p), 4096, 200 * MB)
out["memalign_aligned"] = p.value % 4096 == 0
libc.free(p)
small = libc.malloc(1000)
out["small_usable"] = libc.malloc_usable_size(small)
libc.free(small)
out["mapped"], out["reused"] = mapped(), reused()
print(json.dumps(out))
"""


def _run_preloaded(probe: str, **extra_env) -> dict:
    """Run `probe` in a Python with the large-block allocator preloaded; its last stdout line as JSON."""
    from efficientnet_jax import host_memory

    library = host_memory.large_blocks_library()
    if library is None:
        pytest.skip("no C compiler here to build the allocator")
    env = {k: v for k, v in os.environ.items() if k != "EFFICIENTNET_JAX_LARGE_BLOCK_CACHE_MB"}
    env.update(LD_PRELOAD=library, **extra_env)
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_large_block_allocator_reuses_blocks_and_keeps_malloc_semantics():
    r = _run_preloaded(ALLOCATOR_PROBE)
    assert r["same_block"] and r["realloc_keeps"] and r["calloc_zero"], r
    assert r["usable"] >= 99 << 20 and r["memalign_rc"] == 0 and r["memalign_aligned"], r
    assert 0 < r["small_usable"] < 4096, r  # small blocks stay glibc's
    # malloc 100 MB, then 99 MB (reused), realloc to 300 MB (new), posix_memalign 200 MB (the freed
    # 300 MB block: at most twice the request).
    assert (r["mapped"], r["reused"]) == (2, 2), r
    none_kept = _run_preloaded(ALLOCATOR_PROBE, EFFICIENTNET_JAX_LARGE_BLOCK_CACHE_MB="0")  # a cache of 0 bytes maps afresh each time
    assert none_kept["reused"] == 0 and none_kept["mapped"] == 4, none_kept


WAIT_PROBE = r"""
import ctypes, json, threading
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.restype, libc.free.argtypes = None, [ctypes.c_void_p]
count = lambda name: ctypes.c_size_t.in_dll(libc, "efficientnet_jax_large_blocks_" + name).value
MB = 1 << 20
hold = libc.malloc(100 * MB)
threading.Timer(0.05, libc.free, [hold]).start()  # freed while the next request waits for it
again = libc.malloc(100 * MB)
out = {"waited_for_it": again == hold, "mapped": count("mapped"), "timed_out": count("waits_timed_out")}
held = [libc.malloc(100 * MB) for _ in range(6)]  # all kept: the first 4 wait in vain, then no more waits
out["held_mapped"], out["held_timed_out"] = count("mapped"), count("waits_timed_out")
print(json.dumps(out))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_large_block_allocator_waits_for_a_block_being_freed_but_not_forever():
    r = _run_preloaded(WAIT_PROBE)
    assert r["waited_for_it"] and (r["mapped"], r["timed_out"]) == (1, 0), r
    assert (r["held_mapped"], r["held_timed_out"]) == (7, 4), r


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
