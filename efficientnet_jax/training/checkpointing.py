"""Orbax checkpoints: periodic async saves, keep-last-N plus best-by-EMA-top-1, exact resume,
and restore onto any number of devices (SIGTERM handling: preemption.py).

A checkpoint holds two items: 'state' (the whole TrainState: params, BN statistics, optimizer
state, EMA, step and RNG) and 'meta' (JSON: step, progressive stage, image size, model name).
The position in the input stream is the step itself, because the stream is deterministic.

Restoring always passes an abstract target carrying the *current* shardings, so a checkpoint
written on 8 devices restores on 1 (the saved shardings are never deserialised:
google/orbax#648, #678, #683; shared/reference/training.md §D.7).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

log = logging.getLogger(__name__)


def best_metric(metrics: Dict[str, float]) -> float:
    """What 'best' means: EMA top-1 when the run has an EMA, raw top-1 otherwise."""
    return float(metrics.get("ema_top1", metrics.get("top1", float("-inf"))))


def key_path_str(path) -> str:
    """A jax key path as "params/stem_conv/kernel"."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def shapes_in_order(tree: Any, prefix: str = "") -> Dict[str, Tuple[int, ...]]:
    """{'params/stem_conv/kernel': shape, ...} in the tree's own order (dicts: insertion order,
    i.e. the network's layer order for flax variables)."""
    if hasattr(tree, "shape"):
        return {prefix: tuple(tree.shape)}
    out: Dict[str, Tuple[int, ...]] = {}
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            out.update(shapes_in_order(v, f"{prefix}/{k}" if prefix else str(k)))
        return out
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
    for p, x in leaves:
        if hasattr(x, "shape"):
            key = key_path_str(p)
            out[f"{prefix}/{key}" if prefix else key] = tuple(x.shape)
    return out


_COLLECTIONS = {"params": 0, "batch_stats": 1}
_LAYERS = {"stem": 0, "stage": 1, "head": 2, "classifier": 3}


def network_order(key: str) -> tuple:
    """Sort key putting params before BN statistics and layers in forward order
    (stem, stage0_block0, ..., stage10_block2, head, classifier), whatever order a dict kept."""
    parts = key.split("/")
    rank = [_COLLECTIONS.get(parts[0], 2)]
    for part in parts[1:]:
        name = re.match(r"[a-z]+", part)
        rank.append(_LAYERS.get(name.group(0) if name else part, 4))
        rank.extend(int(t) if t.isdigit() else t for t in re.findall(r"\d+|\D+", part))
    return tuple((0, r) if isinstance(r, int) else (1, r) for r in rank)


def check_fits(saved: Any, target: Any, where: str) -> None:
    """Raise a ValueError naming the first key whose presence or shape differs.

    `saved` and `target` are {'params', 'batch_stats'}-like trees of anything with a `.shape`
    (checkpoint metadata, ShapeDtypeStructs, arrays).
    """
    a, b = shapes_in_order(saved), shapes_in_order(target)
    for key in sorted(dict.fromkeys([*b, *a]), key=network_order):
        if key not in a:
            raise ValueError(f"{where} does not fit the model: {key} {b[key]} is missing from the checkpoint")
        if key not in b:
            raise ValueError(f"{where} does not fit the model: the checkpoint has {key} {a[key]}, "
                             "the model has no such key")
        if a[key] != b[key]:
            raise ValueError(
                f"{where} does not fit the model: {key} has shape {a[key]} in the checkpoint "
                f"but {b[key]} in the model"
            )


class Checkpointer:
    """A thin, typed wrapper over `ocp.CheckpointManager` with the project's policies."""

    def __init__(
        self,
        directory: str,
        every_steps: int,
        keep: int = 3,
        keep_best: int = 1,
        async_save: bool = True,
        read_only: bool = False,
    ):
        self.directory = os.path.abspath(directory) if "://" not in directory else directory
        keep_policies: List[Any] = [policies.LatestN(max(keep, 1))]
        if keep_best:
            keep_policies.append(policies.BestN(
                get_metric_fn=best_metric, n=keep_best, keep_checkpoints_without_metrics=False,
            ))
        options = ocp.CheckpointManagerOptions(
            save_decision_policy=policies.FixedIntervalPolicy(max(int(every_steps), 1)),
            preservation_policy=policies.AnyPreservationPolicy(keep_policies),
            best_fn=best_metric,  # what best_step() ranks by
            best_mode="max",
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=not read_only,  # half-written saves of a killed run
            read_only=read_only,
            create=not read_only,
        )
        # Handlers named up front so metadata can be read before anything is saved (eval, resume).
        handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
        self._mngr = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    # Queries -------------------------------------------------------------------------------
    def latest_step(self) -> Optional[int]:
        return self._mngr.latest_step()

    def best_step(self) -> Optional[int]:
        return self._mngr.best_step()

    def all_steps(self) -> List[int]:
        return list(self._mngr.all_steps())

    def metrics(self, step: int) -> Optional[Dict[str, float]]:
        return self._mngr.metrics(step)

    def resolve(self, which: str) -> int:
        """'latest' | 'best' | a step number -> an existing step, or a clear error."""
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        if which == "latest":
            return self.latest_step()
        if which == "best":
            return self.best_step()
        try:
            step = int(which)
        except ValueError:
            raise ValueError(f"checkpoint must be 'latest', 'best' or a step number, got {which!r}") from None
        if step not in steps:
            raise FileNotFoundError(f"no checkpoint at step {step} in {self.directory}; have {sorted(steps)}")
        return step

    # Save / restore ------------------------------------------------------------------------
    def should_save(self, step: int) -> bool:
        """True at multiples of `every_steps` that are newer than the latest checkpoint."""
        return self._mngr.should_save(step)

    def save(self, step: int, state: Any, meta: Dict[str, Any], metrics: Optional[Dict[str, float]] = None) -> bool:
        """Save `step` now (asynchronously unless configured otherwise); False if it already exists.

        Orbax writes into a temporary directory and renames it when complete, so a crash mid-save
        leaves the previous checkpoints intact; old steps are pruned only after a save completes.
        """
        if step in self._mngr.all_steps():
            return False
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        return self._mngr.save(step, args=args, metrics=metrics, force=True)

    def restore(self, step: int, abstract_state: Any) -> Tuple[Any, Dict[str, Any]]:
        """Restore `step` onto the shardings carried by `abstract_state` (ShapeDtypeStructs).

        Fails with the first mismatching key and its shapes when the checkpoint does not fit.
        """
        where = f"checkpoint {self.directory}/{step}"
        saved = self._mngr.item_metadata(step)["state"]
        saved_tree = getattr(saved, "tree", saved)
        if not isinstance(saved_tree, dict):
            raise ValueError(f"{where} has no readable 'state' item (metadata: {saved!r})")
        get = (lambda k: abstract_state[k]) if isinstance(abstract_state, Mapping) else (
            lambda k: getattr(abstract_state, k))
        wanted = {"params": get("params"), "batch_stats": get("batch_stats")}
        check_fits({k: saved_tree.get(k) for k in wanted}, wanted, where)
        target = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), abstract_state,
        )
        restored = self._mngr.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()),
        )
        return restored["state"], dict(restored["meta"] or {})

    def wait(self) -> None:
        self._mngr.wait_until_finished()

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()
