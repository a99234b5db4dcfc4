"""Compile the CPU kernels of this package on first use and register them with XLA's FFI.

The C++ sources ship with the package; `load()` builds them with the machine's C++ compiler
(`$CXX`, else g++/c++/clang++) for this CPU (`-march=native`) against the FFI headers of the
installed jaxlib, into a cache directory keyed by the source, the jaxlib version, the compiler, its
flags and the CPU, so every later process loads the library at once. Building takes ~6 s on 2
cores (the sources compile side by side).

Cache: `$EFFICIENTNET_JAX_KERNEL_CACHE`, else `$XDG_CACHE_HOME/efficientnet_jax/kernels`, else
`~/.cache/efficientnet_jax/kernels`. Set `EFFICIENTNET_JAX_CPU_KERNELS=0` to never build or use
them (the models then run XLA's own lowering everywhere).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import List, Optional

import jax
import jaxlib

from efficientnet_jax.cache_dirs import kernel_cache_dir

HERE = Path(__file__).parent
SOURCES = [HERE / "fused_depthwise.cc", HERE / "fused_pointwise.cc", HERE / "fused_stem.cc", HERE / "depthwise_grad.cc",
           HERE / "gemm_tn.cc"]
HEADERS = [HERE / "common.h"]
TARGETS = {
    "efficientnet_jax_fused_depthwise": "EfficientNetJaxFusedDepthwise",
    "efficientnet_jax_fused_expand_depthwise": "EfficientNetJaxFusedDepthwise",  # with expand weights
    "efficientnet_jax_fused_pointwise": "EfficientNetJaxFusedPointwise",
    "efficientnet_jax_fused_stem": "EfficientNetJaxFusedStem",
    "efficientnet_jax_depthwise_kernel_grad": "EfficientNetJaxDepthwiseKernelGrad",  # training
    "efficientnet_jax_gemm_tn": "EfficientNetJaxGemmTn",  # training
}
CXXFLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC"]


def cxxflags() -> List[str]:
    """The build's flags: -march from `$EFFICIENTNET_JAX_KERNEL_MARCH`, else `native` (this CPU).

    The kernels pick their register tiles by instruction set (common.h: AVX-512VL or AVX2), so the
    tests also build for `haswell` to run the AVX2 tiles on an AVX-512 machine.
    """
    return [*CXXFLAGS, f"-march={os.environ.get('EFFICIENTNET_JAX_KERNEL_MARCH') or 'native'}"]

_lock = threading.Lock()
_state: dict = {}  # "library": ctypes.CDLL, or "error": str once a build or load has failed


class KernelUnavailable(RuntimeError):
    """The CPU kernels could not be built or loaded here (no compiler, disabled, ...)."""


def enabled() -> bool:
    return os.environ.get("EFFICIENTNET_JAX_CPU_KERNELS", "1") not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    return kernel_cache_dir()


def _compiler() -> str:
    for name in filter(None, (os.environ.get("CXX"), "g++", "c++", "clang++")):
        path = shutil.which(name)
        if path:
            return path
    raise KernelUnavailable("no C++ compiler found (tried $CXX, g++, c++, clang++)")


def _cpu_signature() -> str:
    """What -march=native depends on: a library built on another CPU may use missing instructions."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_path() -> Path:
    """Where this source, jaxlib, compiler and CPU's build lives (built or not)."""
    key = hashlib.sha256()
    for part in (*(f.read_bytes() for f in SOURCES + HEADERS), jaxlib.__version__.encode(), _compiler().encode(),
                 " ".join(cxxflags()).encode(), _cpu_signature().encode()):
        key.update(part)
        key.update(b"\0")
    return cache_dir() / f"cpu_kernels-{key.hexdigest()[:16]}.so"


def _run(cmds: List[List[str]]) -> None:
    """Run the commands at once (one source each: the cores build the sources side by side)."""
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for cmd in cmds]
    for cmd, proc in zip(cmds, procs):
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise KernelUnavailable(f"building the CPU kernels failed: {' '.join(cmd)}\n{err[-4000:]}")


def _build(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a scratch directory beside the target and rename: concurrent processes never load
    # a half-written library, and a failed build leaves nothing behind.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        flags = cxxflags()
        compile_flags = [f for f in flags if f != "-shared"]
        objects = [os.path.join(tmp, src.stem + ".o") for src in SOURCES]
        _run([[_compiler(), *compile_flags, "-isystem", jax.ffi.include_dir(), "-c", str(src), "-o", obj]
              for src, obj in zip(SOURCES, objects)])
        library = os.path.join(tmp, target.name)
        _run([[_compiler(), *flags, *objects, "-o", library]])
        os.replace(library, target)


def load() -> ctypes.CDLL:
    """The kernel library, built if needed and registered with XLA (once per process).

    Raises KernelUnavailable (with the reason) when disabled or when it cannot be built.
    """
    with _lock:
        if "library" in _state:
            return _state["library"]
        if "error" in _state:
            raise KernelUnavailable(_state["error"])
        try:
            if not enabled():
                raise KernelUnavailable("disabled by EFFICIENTNET_JAX_CPU_KERNELS=0")
            path = library_path()
            if not path.exists():
                _build(path)
            library = ctypes.cdll.LoadLibrary(str(path))
            for target, symbol in TARGETS.items():
                jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")
        except (KernelUnavailable, OSError) as e:
            _state["error"] = str(e)
            raise KernelUnavailable(str(e)) from None
        _state["library"] = library
        return library


def available() -> bool:
    """True when the kernels are (or can be) built and loaded here; never raises."""
    try:
        load()
        return True
    except KernelUnavailable:
        return False


def unavailable_reason() -> Optional[str]:
    return None if available() else _state.get("error")
