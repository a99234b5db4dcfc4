"""timm (PyTorch eager / torch.compile) and ONNX Runtime on a timm export, in a worker.

Imported only by `_worker.py`, in a process that imports neither JAX's model nor TensorFlow
(importing TensorFlow before torchvision segfaults on this stack).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any, Callable, List

import numpy as np
import torch
import torch.nn.functional as F

import timm

Fn = Callable[[], Any]


class _Timm:
    """Shared set-up: model, memory format, device, autocast and torch.compile."""

    def __init__(self, name: str, threads: int, channels_last: bool, compiled: bool, device: str, precision: str,
                 train: bool):
        torch.set_num_threads(threads)
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        self.channels_last = channels_last
        model = timm.create_model(name, num_classes=1000).to(self.device)
        model = model.train() if train else model.eval()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.forward = torch.compile(model) if compiled else model
        # AMP: bf16 autocast, the accelerator counterpart of our dtype='bfloat16'.
        self.amp = precision == "bf16"
        self.notes = [f"timm {name}", "channels_last" if channels_last else "NCHW",
                      "torch.compile" if compiled else "eager", "autocast bf16" if self.amp else "float32"]

    def autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def images(self, batch: int, resolution: int) -> torch.Tensor:
        x = torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(0)).to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class TimmInference(_Timm):
    def __init__(self, name: str, resolution: int, threads: int, channels_last: bool, compiled: bool, device: str,
                 precision: str):
        super().__init__(name, threads, channels_last, compiled, device, precision, train=False)
        self.resolution = resolution

    def make(self, batch: int) -> Fn:
        x = self.images(batch, self.resolution)

        def fwd():
            with torch.inference_mode(), self.autocast():
                self.forward(x)
            self.sync()

        return fwd


class TimmTrain(_Timm):
    """zero_grad / forward / cross-entropy / backward / optimizer step, as a timm training loop does."""

    def __init__(self, name: str, resolution: int, threads: int, channels_last: bool, compiled: bool, device: str,
                 precision: str, optimizer: str):
        super().__init__(name, threads, channels_last, compiled, device, precision, train=True)
        self.resolution = resolution
        params = self.model.parameters()
        if optimizer == "rmsprop":  # TF-style hyper-parameters (timm's RMSpropTF differs only in eps placement)
            self.opt = torch.optim.RMSprop(params, lr=0.01, alpha=0.9, eps=1e-3, momentum=0.9)
        else:
            self.opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
        self.notes.append(f"optimizer: torch.optim.{type(self.opt).__name__}")

    def make(self, batch: int) -> Fn:
        x = self.images(batch, self.resolution)
        y = torch.randint(0, 1000, (batch,), generator=torch.Generator().manual_seed(0)).to(self.device)

        def step():
            self.opt.zero_grad(set_to_none=True)
            with self.autocast():
                loss = F.cross_entropy(self.forward(x), y)
            loss.backward()
            self.opt.step()
            self.sync()

        return step


class OrtInference:
    """ONNX Runtime (CPUExecutionProvider, or CUDA on a GPU) on timm's TorchScript-path ONNX export."""

    def __init__(self, name: str, resolution: int, threads: int, device: str):
        import onnxruntime as ort

        path = _export(name, resolution)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        providers: List[str] = ["CPUExecutionProvider"]
        if device == "gpu":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError("onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(path, so, providers=providers)
        self.resolution = resolution
        self.notes = [f"timm {name} -> ONNX opset 17", f"providers={self.session.get_providers()}",
                      f"intra_op_num_threads={threads}"]

    def make(self, batch: int) -> Fn:
        r = self.resolution
        x = np.random.default_rng(0).standard_normal((batch, 3, r, r), np.float32)
        return lambda: self.session.run(None, {"x": x})


def _export(name: str, resolution: int) -> str:
    """Export (once, cached in the temp dir) timm's eval model with a dynamic batch axis."""
    folder = os.path.join(tempfile.gettempdir(), "efficientnet_jax_bench")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}_{resolution}_torch{torch.__version__}.onnx")
    if not os.path.exists(path):
        model = timm.create_model(name, num_classes=1000).eval()
        tmp = f"{path}.{os.getpid()}.tmp"
        # The TorchScript exporter: the dynamo one needs onnxscript and gives the same graph for a CNN.
        torch.onnx.export(model, torch.randn(1, 3, resolution, resolution), tmp, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, opset_version=17,
                          dynamo=False)
        os.replace(tmp, path)  # atomic: a crashed export never leaves a half-written model
    return path
