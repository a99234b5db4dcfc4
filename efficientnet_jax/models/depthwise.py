"""Depthwise convolution lowerings: XLA's grouped conv, and k*k shifted multiply-adds.

Layouts: x NHWC, kernel (kh, kw, 1, C) HWIO, pads [(top, bottom), (left, right)] as produced
by `layers.conv_padding` (TF SAME, asymmetric at stride 2 on even sizes, or PyTorch symmetric).

Impls ('auto' picks per backend, see `resolve_dw_impl`):
  'xla'             lax.conv_general_dilated(feature_group_count=C).
  'shift'           shift-form forward with a hand-written backward (jax.custom_vjp).
  'shift_autodiff'  the same forward, differentiated by JAX.
  'cpu_kernel'      at inference with BN folded, every conv as C++ kernels: MBConv's expand conv
                    + act + depthwise + BN + act + SE mean as one, the 1x1 convs (SE gate,
                    project, skip; head; classifier) and the stem as others
                    (efficientnet_jax/kernels; required, an error if they cannot be built);
                    everywhere else 'shift', whose backward (training, float32) then runs
                    on C++ kernels too. 'auto' uses the kernels on CPU when they can be built and
                    'shift' otherwise.

Why a custom backward (XLA CPU, jaxlib 0.10.2; benchmarks/bench_depthwise.py measures it):
autodiff of the shift form gives dkernel as k*k `reduce(slice(pad(x)) * g)`. XLA hands each
multiply-reduce to a YNNPACK fusion, which cannot fuse the slice, so every tap first
materialises a shifted copy of x (k*k - 1 full-size writes, ~25 ms each at 32x56x56x144) and
that is most of the backward. Here dkernel is one multi-output reduce over W that reads the
padded input and g once (the k*k remaining (N, H, C) partial sums are tiny), and dx is the
transposed conv written as shifted multiply-adds over g, per stride phase so that no zeros of
a dilated g are multiplied. Where the CPU kernels are used (above), dkernel is
kernels.depthwise_kernel_grad instead: XLA runs that reduce slowly on small wide maps (7x7x1152,
5x5 taps at batch 32: 23.6 ms against the kernel's 2.8; 112x112x32, 3x3: 22.8 against 6.7), and
its 16 reduces were 16 % of a B0 batch-32 training step; and dx is the depthwise inference
kernel run over g (`_grad_input_kernel`).
"""

from __future__ import annotations

import functools
from typing import Iterator, List, Sequence, Tuple

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
Pads = Tuple[Tuple[int, int], Tuple[int, int]]

DW_IMPLS = ("auto", "xla", "shift", "shift_autodiff", "cpu_kernel")


def resolve_dw_impl(impl: str) -> str:
    """'auto' picks the lowering XLA compiles well on the current backend.

    On CPU, XLA's grouped convolution is 10-30x slower than k*k shifted multiply-adds
    (jax-ml/jax#23713, measured in shared/reference/perf_baseline.md), and the shift form's
    autodiff backward is ~2x slower than the custom one here; on GPU/TPU the native depthwise
    convolution is the fast path.
    """
    if impl not in DW_IMPLS:
        raise ValueError(f"dw_impl must be one of {DW_IMPLS}, got {impl!r}")
    if impl == "cpu_kernel":  # this per-op path; the fused inference kernel is `use_fused_kernel`
        return "shift"
    if impl != "auto":
        return impl
    return "shift" if jax.default_backend() == "cpu" else "xla"


def use_fused_kernel(impl: str) -> bool:
    """Whether folded inference runs MBConv's depthwise stage and the stem as the fused CPU kernels.

    'cpu_kernel' insists (KernelUnavailable says why it cannot be built); 'auto' takes it on CPU
    when it can be built. The caller checks the rest (folded BN, float32, a supported activation).
    """
    if impl not in DW_IMPLS:
        raise ValueError(f"dw_impl must be one of {DW_IMPLS}, got {impl!r}")
    from efficientnet_jax import kernels  # builds the C++ library on first use

    if impl == "cpu_kernel":
        kernels.load()
        return True
    return impl == "auto" and jax.default_backend() == "cpu" and kernels.available()


def use_kernel_backward(impl: str, dtype: jnp.dtype) -> bool:
    """Whether the 'shift' backward runs on the C++ kernels, dkernel and dx (float32 on CPU):
    'cpu_kernel' insists (KernelUnavailable says why they cannot be built), 'auto' takes them
    where they build."""
    if impl not in ("auto", "cpu_kernel") or jnp.dtype(dtype) != jnp.float32 or jax.default_backend() != "cpu":
        return False
    from efficientnet_jax import kernels  # builds the C++ library on first use

    if impl == "cpu_kernel":
        kernels.load()
        return True
    return kernels.available()


def depthwise_conv(x: Array, kernel: Array, stride: int, pads: Sequence[Tuple[int, int]], impl: str) -> Array:
    """Depthwise conv, kernel (kh, kw, 1, C); `impl` is one of DW_IMPLS ('auto' resolved here)."""
    resolved = resolve_dw_impl(impl)  # also rejects unknown names
    cpu_kernels = resolved == "shift" and use_kernel_backward(impl, x.dtype)
    impl = resolved
    pads_t: Pads = (tuple(int(p) for p in pads[0]), tuple(int(p) for p in pads[1]))  # hashable: static arg
    if impl == "xla":
        return lax.conv_general_dilated(
            x, kernel, (stride, stride), pads_t,
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=kernel.shape[-1],
        )
    if impl == "shift":
        return _shift_custom_vjp(x, kernel, int(stride), pads_t, cpu_kernels)
    return _shift_forward(_pad_input(x, pads_t), kernel, stride)  # 'shift_autodiff'


# ---------------------------------------------------------------------------------------------
# Forward (shared by 'shift' and 'shift_autodiff'; the numerics the parity tests pin down).
# ---------------------------------------------------------------------------------------------

def _pad_input(x: Array, pads: Pads) -> Array:
    return jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))


def _out_size(padded: int, k: int, stride: int) -> int:
    return (padded - k) // stride + 1


def _taps(xp: Array, kh: int, kw: int, stride: int, ho: int, wo: int) -> Iterator[Tuple[int, int, Array]]:
    """(dy, dx, xp[:, dy::stride, dx::stride][:ho, :wo]) for every tap, dy-major."""
    n, c = xp.shape[0], xp.shape[3]
    for dy in range(kh):
        for dx in range(kw):
            limit = (n, dy + (ho - 1) * stride + 1, dx + (wo - 1) * stride + 1, c)
            yield dy, dx, lax.slice(xp, (0, dy, dx, 0), limit, (1, stride, stride, 1))


def _shift_forward(xp: Array, kernel: Array, stride: int) -> Array:
    """sum over taps of shifted (strided) views of the padded input times the tap's weights."""
    kh, kw = kernel.shape[:2]
    ho, wo = _out_size(xp.shape[1], kh, stride), _out_size(xp.shape[2], kw, stride)
    w = kernel[:, :, 0, :]
    out = None
    for dy, dx, patch in _taps(xp, kh, kw, stride, ho, wo):
        term = patch * w[dy, dx]
        out = term if out is None else out + term
    return out


# ---------------------------------------------------------------------------------------------
# Backward.
# ---------------------------------------------------------------------------------------------

def _phase_taps(k: int, stride: int, pad_lo: int, size: int) -> Tuple[int, List[List[Tuple[int, int]]]]:
    """Along one axis: dx[stride*q + r] = sum over (tap, off) in phases[r] of g[q + off] * w[tap].

    Input position i = stride*q + r was read by tap t of output (i + pad_lo - t) / stride when
    that is an integer, so each residue r gets the taps t == r + pad_lo (mod stride).
    Returns (q, phases) with q = ceil(size / stride) rows per phase.
    """
    q = -(-size // stride)
    phases = [[(t, (r + pad_lo - t) // stride) for t in range(k) if (r + pad_lo - t) % stride == 0]
              for r in range(stride)]
    return q, phases


def _pad_for_offsets(phases: List[List[Tuple[int, int]]], q: int, out: int) -> Tuple[int, int]:
    """Zero padding of g along one axis so that every g[q' + off], 0 <= q' < q, is in range."""
    offs = [off for p in phases for _, off in p]
    if not offs:
        return 0, 0
    return max(0, -min(offs)), max(0, q - 1 + max(offs) - (out - 1))


def _grad_input(g: Array, kernel: Array, stride: int, pads: Pads, hw: Tuple[int, int]) -> Array:
    """dx: the transposed depthwise conv, as shifted multiply-adds over g, accumulated in f32.

    At stride s the s*s output phases (dx[s*q + ry, s*q' + rx]) each use only their own taps
    (k=3, s=2: 4, 2, 2, 1 taps), so the work is that of the forward; dilating g with zeros and
    running a stride-1 shift form would multiply 3/4 zeros (measured 1.3-1.7x slower). The
    phases are interleaved by stack + reshape, which XLA fuses into the one output loop.
    """
    kh, kw, _, c = kernel.shape
    n, ho, wo, _ = g.shape
    qh, ph = _phase_taps(kh, stride, pads[0][0], hw[0])
    qw, pw = _phase_taps(kw, stride, pads[1][0], hw[1])
    (lh, hh), (lw, hw_) = _pad_for_offsets(ph, qh, ho), _pad_for_offsets(pw, qw, wo)
    gp = jnp.pad(g, ((0, 0), (lh, hh), (lw, hw_), (0, 0)))
    w = kernel[:, :, 0, :].astype(jnp.float32)
    rows = []
    for taps_y in ph:
        cols = []
        for taps_x in pw:
            acc = None
            for ty, oy in taps_y:
                for tx, ox in taps_x:
                    patch = lax.slice(gp, (0, oy + lh, ox + lw, 0), (n, oy + lh + qh, ox + lw + qw, c))
                    term = patch.astype(jnp.float32) * w[ty, tx]
                    acc = term if acc is None else acc + term
            cols.append(jnp.zeros((n, qh, qw, c), jnp.float32) if acc is None else acc)  # k < stride
        rows.append(cols)
    if stride == 1:
        dx = rows[0][0]
    else:
        dx = jnp.stack([jnp.stack(cols, axis=3) for cols in rows], axis=2)
        dx = dx.reshape(n, qh * stride, qw * stride, c)[:, : hw[0], : hw[1]]
    return dx


def _grad_input_kernel(g: Array, kernel: Array, stride: int, pads: Pads, hw: Tuple[int, int]) -> Array:
    """`_grad_input` on the CPU depthwise kernel (kernels.fused_depthwise, no bias or activation).

    At stride 1 dx is the kernel flipped in both axes over g, padded by k - 1 - pad. At stride s
    each phase (dx[s*q + ry, s*q' + rx]) is a stride-1 depthwise conv of g with the phase's taps
    in order of their offset into g, padded by minus the smallest offset; XLA interleaves the
    phases as in `_grad_input`. The kernel reads g once per phase and writes dx: XLA's version
    also wrote a padded copy of g. B0 batch-32 training step, one process alternating both
    programs (2 runs): 1.28 -> 1.21 and 1.28 -> 1.17 s. A phase without taps (k < s) or whose
    taps start past its own position (not one of the family's paddings) takes `_grad_input`.
    """
    from efficientnet_jax import kernels

    kh, kw, _, c = kernel.shape
    n, ho, wo, _ = g.shape
    zero = jnp.zeros((c,), jnp.float32)

    def conv(w, p):
        return kernels.fused_depthwise(g, w, zero, 1, p, "identity")[0]

    if stride == 1:
        return conv(kernel[::-1, ::-1], ((kh - 1 - pads[0][0], kh - 1 - pads[0][1]),
                                         (kw - 1 - pads[1][0], kw - 1 - pads[1][1])))
    qh, ph = _phase_taps(kh, stride, pads[0][0], hw[0])
    qw, pw = _phase_taps(kw, stride, pads[1][0], hw[1])
    rows = []
    for ty in ph:
        cols = []
        for tx in pw:
            ty_s, tx_s = sorted(ty, key=lambda t: t[1]), sorted(tx, key=lambda t: t[1])
            if not ty_s or not tx_s or ty_s[0][1] > 0 or tx_s[0][1] > 0:
                return _grad_input(g, kernel, stride, pads, hw)
            # Static slices (tap indices are Python ints): no gather, nothing for a trace to convert.
            sub = jnp.stack([jnp.stack([kernel[a, b] for b, _ in tx_s]) for a, _ in ty_s])
            pt, pl = -ty_s[0][1], -tx_s[0][1]
            pb, pr = qh - ho - pt + len(ty_s) - 1, qw - wo - pl + len(tx_s) - 1
            cols.append(conv(sub, ((pt, pb), (pl, pr))))
        rows.append(cols)
    dx = jnp.stack([jnp.stack(cols, axis=3) for cols in rows], axis=2)
    return dx.reshape(n, qh * stride, qw * stride, c)[:, : hw[0], : hw[1]]


def _sum_many(operands: List[Array], axis: int) -> List[Array]:
    """One variadic reduce (sum) over `axis`: XLA emits a single loop for all operands."""
    zeros = [jnp.zeros((), a.dtype) for a in operands]
    return list(lax.reduce(operands, zeros, lambda a, b: tuple(u + v for u, v in zip(a, b)), (axis,)))


def _grad_kernel(xp: Array, g: Array, kh: int, kw: int, stride: int) -> Array:
    """dkernel[dy, dx, c] = sum_{n,h,w} xp[n, dy + s*h, dx + s*w, c] * g[n, h, w, c], in f32.

    Measured on XLA CPU at 32x56x56x144 k3 (median ms): k*k separate multiply-reduces 250
    (each becomes a YNNPACK fusion that needs a materialised shifted copy of x), one stacked
    product then one reduce 530, a (N*H, W*C) row-block reduce 500, a dot over positions 1050,
    one variadic reduce over all of N, H, W 225 (a strided column loop), and this one, a
    variadic reduce over W only (every tap in one loop over xp and g, output k*k x N*H*C)
    followed by k*k small reduces over N, H: 75 (35 when xp is already in memory, as it is
    after the forward).
    """
    _, ho, wo, c = g.shape
    g32 = g.astype(jnp.float32)
    products = [patch.astype(jnp.float32) * g32 for _, _, patch in _taps(xp, kh, kw, stride, ho, wo)]
    partial = _sum_many(products, axis=2)
    return jnp.stack([jnp.sum(p, axis=(0, 1)) for p in partial]).reshape(kh, kw, 1, c)


# ---------------------------------------------------------------------------------------------
# custom_vjp wiring.
# ---------------------------------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _shift_custom_vjp(x: Array, kernel: Array, stride: int, pads: Pads, cpu_kernels: bool = False) -> Array:
    return _shift_forward(_pad_input(x, pads), kernel, stride)


def _shift_custom_vjp_fwd(x: Array, kernel: Array, stride: int, pads: Pads, cpu_kernels: bool = False):
    xp = _pad_input(x, pads)
    # Keep the padded input (the forward materialises it anyway) so dkernel does not re-pad.
    return _shift_forward(xp, kernel, stride), (xp, kernel)


def _shift_custom_vjp_bwd(stride: int, pads: Pads, cpu_kernels: bool, res, g: Array):
    xp, kernel = res
    kh, kw = kernel.shape[:2]
    hw = (xp.shape[1] - sum(pads[0]), xp.shape[2] - sum(pads[1]))
    if cpu_kernels:  # float32 on CPU (use_kernel_backward)
        from efficientnet_jax import kernels

        dx = _grad_input_kernel(g, kernel, stride, pads, hw)
        dk = kernels.depthwise_kernel_grad(xp, g, kh, kw, stride)
    else:
        dx = _grad_input(g, kernel, stride, pads, hw)
        dk = _grad_kernel(xp, g, kh, kw, stride)
    return dx.astype(xp.dtype), dk.astype(kernel.dtype)


_shift_custom_vjp.defvjp(_shift_custom_vjp_fwd, _shift_custom_vjp_bwd)
