"""Shared parity harness for tests/weights: calibrated random reference models and comparisons.

Random weights with random BN statistics blow a deep net up (activations of 1e3-1e4, where
float32 noise dominates any comparison), so references are CALIBRATED before use: BN affine
parameters are drawn near (1, 0), running statistics are re-estimated as the cumulative average
of a few train-mode forward passes on the same kind of input the test feeds, and the last BN of
every residual branch gets gamma x 0.1 (as shared/reference/architecture_data/timm_to_keras_check.py
does) so the random net stays well-conditioned.

Every comparison is recorded in RESULTS; tests/weights/conftest.py prints the table at the end
of the run (the max |logit_ours - logit_ref| per model and source).
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Dict, Iterable, List, Tuple

import numpy as np

TOL = 1e-4
RESULTS: List[Tuple[str, str, str, float, float]] = []  # (source, model, note, max |d|, mean |logit|)


# ---------------------------------------------------------------------------------------------
# PyTorch references


def calibrate_torch(model, residual_bns: Iterable, res: int, seed: int = 0, batches: int = 2, batch: int = 8,
                    sample=None):
    """Random BN affine, calibrated running stats, small residual-branch gain; returns model.eval().

    `sample(n, generator) -> NCHW float tensor` draws calibration inputs (default: standard
    normal); calibrate on the distribution the comparison feeds, or BN cannot centre it.
    """
    import torch

    if sample is None:
        def sample(n, g):
            return torch.randn(n, 3, res, res, generator=g)

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration batches
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
        for bn in residual_bns:
            bn.weight.mul_(0.1)
        # Non-BN parameters (conv kernels, SE/classifier biases) keep the library's own init.
        model.train()
        for _ in range(batches):
            model(sample(batch, g))
    return model.eval()


def timm_residual_bns(model) -> List:
    import torch

    out = []
    for stage in model.blocks:
        for blk in stage:
            if getattr(blk, "has_skip", False):
                out.append([m for m in blk.modules() if isinstance(m, torch.nn.BatchNorm2d)][-1])
    return out


def lukemelas_residual_bns(model) -> List:
    out = []
    for blk in model._blocks:
        a = blk._block_args
        if blk.id_skip and a.stride == 1 and a.input_filters == a.output_filters:
            out.append(blk._bn2)
    return out


def torch_logits(model, x_nchw: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        return model(torch.from_numpy(np.ascontiguousarray(x_nchw))).numpy()


def save_state_dict(model, path: str) -> str:
    """Save in the native format picked by the extension (.safetensors or torch.save)."""
    import torch

    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if str(path).endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save(sd, str(path))
    return str(path)


# ---------------------------------------------------------------------------------------------
# Ours


def ours_logits(module, variables, x_nhwc: np.ndarray) -> np.ndarray:
    import jax

    fn = jax.jit(lambda v, x: module.apply(v, x, train=False))
    # Full float32 matmuls/convs on every backend (GPUs default to TF32, far above 1e-4).
    with jax.default_matmul_precision("float32"):
        return np.asarray(fn(variables, np.asarray(x_nhwc, np.float32)))


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


def uniform_images(n: int, res: int, seed: int) -> np.ndarray:
    """Random 0-255 'images' (NHWC float32), the raw input of the Keras comparisons."""
    return np.random.default_rng(seed).uniform(0, 255, size=(n, res, res, 3)).astype(np.float32)


def imagenet_normalised_sampler(res: int, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
    """calibrate_torch sampler: uniform 0-255 images normalised like the comparison input."""
    import torch

    def sample(n, g):
        raw = torch.rand(n, res, res, 3, generator=g) * 255.0
        x = (raw / 255.0 - torch.tensor(mean)) / torch.tensor(std)
        return x.permute(0, 3, 1, 2).contiguous()

    return sample


def normalise(raw_0_255: np.ndarray, meta: Dict) -> np.ndarray:
    """What predict/eval feed our model: pixel/255 -> (x - mean) / std, from the metadata."""
    lo, hi = meta["value_range"]
    x = raw_0_255.astype(np.float32) / 255.0 * (hi - lo) + lo
    return (x - np.asarray(meta["mean"], np.float32)) / np.asarray(meta["std"], np.float32)


def compare(source: str, model: str, ref: np.ndarray, ours: np.ndarray, note: str = "", tol: float = TOL) -> float:
    ref, ours = np.asarray(ref, np.float64), np.asarray(ours, np.float64)
    assert ref.shape == ours.shape, (ref.shape, ours.shape)
    d = float(np.max(np.abs(ref - ours)))
    scale = float(np.mean(np.abs(ref)))
    RESULTS.append((source, model, note, d, scale))
    print(f"[parity] {source:<20} {model:<24} {note:<28} max|dlogit| = {d:.2e}  (mean|logit| {scale:.2f})")
    assert np.all(np.isfinite(ref)), "reference produced non-finite logits"
    assert scale > 1e-2, f"degenerate reference logits (mean |logit| {scale})"
    assert d <= tol, f"{source} {model} {note}: max |dlogit| {d:.3e} > {tol}"
    assert (ref.argmax(-1) == ours.argmax(-1)).all()
    return d


# ---------------------------------------------------------------------------------------------
# Keras references: a calibrated timm tf_* model ported into keras.applications (the mapping of
# shared/reference/architecture_data/timm_to_keras_check.py, independent of our converter).


@contextlib.contextmanager
def cheap_keras_init():
    """keras.applications with zero kernel init: on the JAX backend each truncated-normal init
    compiles separately (~30 s per model on 2 cores); every weight is overwritten anyway."""
    from keras.src.applications import efficientnet as e1, efficientnet_v2 as e2

    saved = [(m, a, getattr(m, a)) for m in (e1, e2) for a in ("CONV_KERNEL_INITIALIZER", "DENSE_KERNEL_INITIALIZER")]
    try:
        for m, a, _ in saved:
            setattr(m, a, "zeros")
        yield
    finally:
        for m, a, v in saved:
            setattr(m, a, v)


def _k_conv(w):
    return w.permute(2, 3, 1, 0).numpy()


def _k_dw(w):
    return w.permute(2, 3, 0, 1).numpy()


def _k_bn(sd, p):
    return [sd[p + ".weight"].numpy(), sd[p + ".bias"].numpy(), sd[p + ".running_mean"].numpy(), sd[p + ".running_var"].numpy()]


def port_timm_to_keras(tm, km, v2: bool) -> List[str]:
    """Copy a timm tf_* model's weights into a keras.applications model; returns unset layers."""
    import keras

    sd = {k: v.detach().float() for k, v in tm.state_dict().items()}
    layers = {layer.name: layer for layer in km.layers}
    used = set()

    def setw(name, ws):
        layers[name].set_weights(ws)
        used.add(name)

    def se(t, k):
        if t + ".se.conv_reduce.weight" in sd:
            setw(k + "se_reduce", [_k_conv(sd[t + ".se.conv_reduce.weight"]), sd[t + ".se.conv_reduce.bias"].numpy()])
            setw(k + "se_expand", [_k_conv(sd[t + ".se.conv_expand.weight"]), sd[t + ".se.conv_expand.bias"].numpy()])

    setw("stem_conv", [_k_conv(sd["conv_stem.weight"])])
    setw("stem_bn", _k_bn(sd, "bn1"))
    for i, stage in enumerate(tm.blocks):
        for j, blk in enumerate(stage):
            t, k = f"blocks.{i}.{j}", f"block{i + 1}{chr(97 + j)}_"
            kind = type(blk).__name__
            if kind == "ConvBnAct":
                setw(k + "project_conv", [_k_conv(sd[t + ".conv.weight"])])
                setw(k + "project_bn", _k_bn(sd, t + ".bn1"))
            elif kind == "EdgeResidual":
                setw(k + "expand_conv", [_k_conv(sd[t + ".conv_exp.weight"])])
                setw(k + "expand_bn", _k_bn(sd, t + ".bn1"))
                setw(k + "project_conv", [_k_conv(sd[t + ".conv_pwl.weight"])])
                setw(k + "project_bn", _k_bn(sd, t + ".bn2"))
            elif kind == "DepthwiseSeparableConv":
                setw(k + "dwconv", [_k_dw(sd[t + ".conv_dw.weight"])])
                setw(k + "bn", _k_bn(sd, t + ".bn1"))
                se(t, k)
                setw(k + "project_conv", [_k_conv(sd[t + ".conv_pw.weight"])])
                setw(k + "project_bn", _k_bn(sd, t + ".bn2"))
            elif kind == "InvertedResidual":
                setw(k + "expand_conv", [_k_conv(sd[t + ".conv_pw.weight"])])
                setw(k + "expand_bn", _k_bn(sd, t + ".bn1"))
                setw(k + ("dwconv2" if v2 else "dwconv"), [_k_dw(sd[t + ".conv_dw.weight"])])
                setw(k + "bn", _k_bn(sd, t + ".bn2"))
                se(t, k)
                setw(k + "project_conv", [_k_conv(sd[t + ".conv_pwl.weight"])])
                setw(k + "project_bn", _k_bn(sd, t + ".bn3"))
            else:
                raise ValueError(kind)
    setw("top_conv", [_k_conv(sd["conv_head.weight"])])
    setw("top_bn", _k_bn(sd, "bn2"))
    setw("predictions", [sd["classifier.weight"].numpy().T, sd["classifier.bias"].numpy()])
    return [layer.name for layer in km.layers
            if layer.weights and layer.name not in used and not isinstance(layer, keras.layers.Normalization)]


def set_keras_normalization(km, mean, variance) -> None:
    """Set the V1 input Normalization's adapt-weights; keras 3 caches them at build, so
    finalize_state() is needed after set_weights (architecture.md 3.10)."""
    import keras

    nl = [layer for layer in km.layers if isinstance(layer, keras.layers.Normalization)][0]
    w = nl.get_weights()
    nl.set_weights([np.asarray(mean, np.float32).reshape(w[0].shape), np.asarray(variance, np.float32).reshape(w[1].shape),
                    np.zeros_like(w[2])])
    nl.finalize_state()


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
