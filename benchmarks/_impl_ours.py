"""Our model in a worker: inference, training step, input pipeline, complexity, matmul peak.

Imported only by `_worker.py`, in a process that imports nothing of PyTorch or Keras.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from efficientnet_jax import create_model

Fn = Callable[[], Any]


def _model(name: str, dw_impl: str, precision: str):
    kw: Dict[str, Any] = {"dw_impl": dw_impl}
    if precision == "bf16":
        kw["dtype"] = "bfloat16"  # params, BN statistics and the classifier stay float32
    return create_model(name, **kw)


def _init(model) -> Dict[str, Any]:
    # The project's fast init (small image, unoptimised one-off compile), as the trainer uses.
    from efficientnet_jax import init_variables

    return init_variables(model, jax.random.PRNGKey(0))


class Inference:
    """Our forward, jit-compiled ahead of time per batch size.

    `deploy` (impl 'ours'): `efficientnet_jax.inference_fn`, BN folded into the convs, the
    weights compiled in and CPU dots on XLA's emitter, as a served model runs (ONNX Runtime's
    export folds BN and pre-packs weights too). Otherwise
    (impl 'ours_plain'): `model.apply(variables, x, train=False)` with the variables as arguments.
    """

    def __init__(self, name: str, resolution: int, dw_impl: str, precision: str, deploy: bool = True):
        self.model = _model(name, dw_impl, precision)
        self.resolution = resolution
        self.variables = jax.block_until_ready(_init(self.model))
        self.deploy = deploy
        form = "inference_fn (BN folded, constant weights, inference compiler options)" if deploy else "model.apply, variables as arguments"
        self.notes = [f"dw_impl={dw_impl}", f"dtype={'bfloat16' if precision == 'bf16' else 'float32'}", form]

    def make(self, batch: int) -> Fn:
        r = self.resolution
        x = jax.device_put(np.random.default_rng(0).standard_normal((batch, r, r, 3), np.float32))
        if self.deploy:
            from efficientnet_jax.inference import inference_fn

            compiled = inference_fn(self.model, self.variables).lower(x).compile()
            return lambda: compiled(x).block_until_ready()
        fwd = jax.jit(lambda v, x: self.model.apply(v, x, train=False))
        compiled = fwd.lower(self.variables, x).compile()
        v = self.variables
        return lambda: compiled(v, x).block_until_ready()


def _optimizer(name: str) -> Tuple[Any, Any, str]:
    """(tx, schedule, description): the project's optimizer when training/optim.py provides it."""
    import ml_collections
    import optax

    lr = 0.01
    try:
        from efficientnet_jax.training import optim

        schedule = optim.make_schedule("constant", lr, steps_per_epoch=1, total_steps=1, warmup_epochs=0)
        cfg = ml_collections.ConfigDict(dict(
            optimizer=name, weight_decay=0.0, grad_clip_norm=0.0,
            opt=dict(momentum=0.9, nesterov=False, rms_decay=0.9, rms_eps=1e-3, rms_initial_scale=1.0,
                     b1=0.9, b2=0.999, adam_eps=1e-8),
        ))
        return optim.make_optimizer(cfg, schedule), schedule, f"efficientnet_jax.training.optim {name}"
    except (ImportError, AttributeError, TypeError, KeyError) as e:  # API not there (yet)
        return optax.sgd(lr, momentum=0.9), (lambda step: jnp.float32(lr)), f"optax.sgd momentum (fallback: {e!r})"


class Train:
    """The project's jitted train step (donated state, batch on the 'data' mesh axis).

    Cross-entropy without label smoothing, no weight decay and no EMA, so it does what the
    peers' steps do; dropout and stochastic depth are on, as in any training run.
    """

    def __init__(self, name: str, resolution: int, dw_impl: str, precision: str, optimizer: str):
        from efficientnet_jax.training import experiment, parallel, steps

        self.model = _model(name, dw_impl, precision)
        self.resolution = resolution
        self.num_classes = self.model.spec.num_classes
        self.mesh = parallel.make_mesh()
        tx, schedule, desc = _optimizer(optimizer)
        # As train.py initialises: one FAST_COMPILE program for the variables and optimizer state.
        st = experiment.new_train_state(self.model, tx, self.mesh, seed=0, use_ema=False)
        self.state = jax.block_until_ready(st)
        self.step = steps.jit_train_step(self.mesh, self.model, tx, schedule, label_smoothing=0.0, ema_decay=0.0)
        self._global_batch = parallel.global_batch
        self.notes = [f"dw_impl={dw_impl}", f"optimizer: {desc}", "train step: efficientnet_jax.training.steps"]

    def host_batch(self, images: np.ndarray, labels: np.ndarray) -> Dict[str, np.ndarray]:
        onehot = np.eye(self.num_classes, dtype=np.float32)[labels % self.num_classes]
        return {"image": images, "label": labels.astype(np.int32), "label_onehot": onehot}

    def compile(self, host_batch: Dict[str, np.ndarray]):
        return self.step.lower(self.state, self._global_batch(host_batch, self.mesh)).compile()

    def make(self, batch: int) -> Fn:
        """A step on one fixed synthetic batch (device-resident: no input cost at all)."""
        r = self.resolution
        rng = np.random.default_rng(0)
        host = self.host_batch(rng.standard_normal((batch, r, r, 3), np.float32),
                               rng.integers(0, self.num_classes, batch))
        compiled = self.compile(host)
        dev = self._global_batch(host, self.mesh)

        def step():
            self.state, metrics = compiled(self.state, dev)
            metrics["loss"].block_until_ready()

        return step


def input_iterator(resolution: int, batch: int, augment: str):
    """The project's tf.data training stream on the embedded digits set, upsampled to `resolution`."""
    from efficientnet_jax.data import default_input_config, make_train_iterator

    cfg = default_input_config()
    cfg.dataset = "digits"
    cfg.augment = augment
    return make_train_iterator(cfg, global_batch_size=batch, image_size=resolution, seed=0)


class RealTrain(Train):
    """The same step fed by the real input pipeline: host batch -> device included in every step."""

    def __init__(self, name: str, resolution: int, dw_impl: str, precision: str, optimizer: str, augment: str):
        super().__init__(name, resolution, dw_impl, precision, optimizer)
        self.augment = augment
        self.notes.append(f"input: digits upsampled to {resolution}, augment={augment}, tf.data")

    def make(self, batch: int) -> Fn:
        batches = input_iterator(self.resolution, batch, self.augment)
        first = next(batches)
        compiled = self.compile(self.host_batch(first["image"], first["label"]))

        def step():
            b = next(batches)
            dev = self._global_batch(self.host_batch(b["image"], b["label"]), self.mesh)
            self.state, metrics = compiled(self.state, dev)
            metrics["loss"].block_until_ready()

        return step


class InputOnly:
    """The input pipeline alone: one call = one batch out of the iterator."""

    def __init__(self, resolution: int, augment: str):
        self.resolution, self.augment = resolution, augment
        self.notes = [f"digits upsampled to {resolution}, augment={augment}, tf.data"]

    def make(self, batch: int) -> Fn:
        it = input_iterator(self.resolution, batch, self.augment)
        next(it)  # builds the pipeline and starts its prefetch threads
        return lambda: next(it)


def complexity(name: str, resolution: int) -> Dict[str, Any]:
    """The Keras-applications columns of a variant, counted from the model itself."""
    from efficientnet_jax.models.complexity import count_depth, count_macs, count_params

    model = create_model(name)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False))
    nbytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(shapes))
    return {
        "macs": count_macs(model, resolution),
        "params": count_params(model),
        "depth": count_depth(model),
        "size_mb": nbytes / 2**20,  # float32 weights incl. BN statistics, as Keras's table (h5 size)
        "spec_resolution": model.spec.resolution,
    }
