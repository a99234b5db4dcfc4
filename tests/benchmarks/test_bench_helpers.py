"""The benchmark helpers that decide what is compared and how repetitions are counted."""

import importlib.util
import os
import sys
import time

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "benchmarks")


def _load(name):
    # By file path under a unique name: benchmarks/ is a folder of scripts, not a package.
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", os.path.join(BENCH, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_common, _names = _load("_common"), _load("_names")
Stats, markdown_table, time_reps = _common.Stats, _common.markdown_table, _common.time_reps
keras_name, timm_name = _names.keras_name, _names.timm_name


def test_peer_names_follow_timm_and_keras():
    assert timm_name("efficientnet_b0") == "efficientnet_b0"
    assert timm_name("efficientnetv2_b2") == "tf_efficientnetv2_b2"  # timm has V2-B* only as tf_
    assert timm_name("tf_efficientnet_b3") == "tf_efficientnet_b3"
    assert keras_name("tf_efficientnet_b7") == "EfficientNetB7"
    assert keras_name("efficientnetv2_s") == "EfficientNetV2S"
    assert keras_name("efficientnet_lite0") is None and keras_name("efficientnet_b8") is None


def test_time_reps_runs_each_repetition_for_the_target_time():
    # A call that is instant at first (a prefetched batch) then slow must not inflate the count.
    calls = []

    def fn():
        calls.append(1)
        if len(calls) > 3:
            time.sleep(0.01)

    iters, per_call = time_reps(fn, reps=2, target_s=0.05)
    assert len(per_call) == 2 and all(n >= 1 for n in iters)
    assert sum(iters) == len(calls) < 30
    assert per_call[1] >= 0.009


def test_stats_and_table():
    s = Stats.of([3.0, 1.0, 2.0])
    assert (s.median, s.lo, s.hi, s.n) == (2.0, 1.0, 3.0, 3)
    assert Stats.of([]) is None
    lines = markdown_table(["a", "long header"], [["xyz", "1"]]).splitlines()
    assert len(lines) == 3 and len({len(ln) for ln in lines}) == 1  # columns line up
