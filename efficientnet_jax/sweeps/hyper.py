"""The `get_hyper(h)` vocabulary of big_vision / scenic sweep configs.

A sweep file is an ordinary config file (its `get_config()` is the base config) that also defines
`get_hyper(h)`, returning a list of trials, each a dict of `--config.KEY=VALUE` overrides:

    def get_hyper(h):
        return h.product([
            h.sweep("config.model_overrides.se", [True, False]),
            h.sweep("config.seed", [0, 1]),
        ])

Keys may be written with or without the leading "config.".
"""

from __future__ import annotations

import importlib.util
import itertools
import pathlib
import sys
from typing import Any, Dict, Iterable, List, Sequence

Trial = Dict[str, Any]


def _key(key: str) -> str:
    return key[len("config."):] if key.startswith("config.") else key


class Hyper:
    """Builders that return lists of trials (dicts of overrides)."""

    @staticmethod
    def sweep(key: str, values: Iterable[Any]) -> List[Trial]:
        values = list(values)
        if not values:
            raise ValueError(f"h.sweep({key!r}, ...) got no values")
        return [{_key(key): v} for v in values]

    @staticmethod
    def fixed(key: str, value: Any) -> List[Trial]:
        return [{_key(key): value}]

    @staticmethod
    def product(sweeps: Sequence[List[Trial]]) -> List[Trial]:
        out = []
        for combo in itertools.product(*sweeps):
            merged: Trial = {}
            for part in combo:
                clash = set(merged) & set(part)
                if clash:
                    raise ValueError(f"h.product: key(s) {sorted(clash)} set by more than one sweep")
                merged.update(part)
            out.append(merged)
        return out

    @staticmethod
    def zipit(sweeps: Sequence[List[Trial]]) -> List[Trial]:
        lengths = {len(s) for s in sweeps}
        if len(lengths) > 1:
            raise ValueError(f"h.zipit needs sweeps of equal length, got lengths {sorted(lengths)}")
        return [{k: v for part in parts for k, v in part.items()} for parts in zip(*sweeps)]

    @staticmethod
    def chainit(sweeps: Sequence[List[Trial]]) -> List[Trial]:
        return [t for s in sweeps for t in s]


def load_module(path: str):
    """Import a config file by path (the part before an optional ':arg')."""
    file = pathlib.Path(path.split(":", 1)[0])
    if not file.is_file():
        raise FileNotFoundError(f"sweep config {file} does not exist")
    spec = importlib.util.spec_from_file_location(f"_sweep_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def expand_sweep(path: str) -> List[Trial]:
    """The trials of the sweep config at `path` (each a dict of dotted config keys to values)."""
    module = load_module(path)
    if not hasattr(module, "get_hyper"):
        raise ValueError(f"{path} has no get_hyper(h): it is a plain config, not a sweep")
    trials = module.get_hyper(Hyper())
    if not isinstance(trials, list) or not all(isinstance(t, dict) for t in trials):
        raise ValueError(f"{path}: get_hyper must return a list of dicts, got {type(trials).__name__}")
    if not trials:
        raise ValueError(f"{path}: get_hyper returned no trials")
    return trials
