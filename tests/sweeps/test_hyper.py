"""The get_hyper vocabulary and trial naming."""

import pytest

from efficientnet_jax.sweeps import Hyper, expand_sweep
from efficientnet_jax.sweeps.runner import format_value, trial_command, trial_name

h = Hyper()


def test_product_zip_chain():
    trials = h.product([h.sweep("config.a", [1, 2]), h.sweep("b", ["x", "y", "z"])])
    assert len(trials) == 6 and trials[0] == {"a": 1, "b": "x"} and trials[-1] == {"a": 2, "b": "z"}
    assert h.zipit([h.sweep("a", [1, 2]), h.sweep("b", [3, 4])]) == [{"a": 1, "b": 3}, {"a": 2, "b": 4}]
    assert h.chainit([h.fixed("a", 1), h.sweep("b", [2, 3])]) == [{"a": 1}, {"b": 2}, {"b": 3}]


def test_misuse_is_named():
    with pytest.raises(ValueError, match="equal length"):
        h.zipit([h.sweep("a", [1, 2]), h.sweep("b", [3])])
    with pytest.raises(ValueError, match="'a'"):
        h.product([h.sweep("a", [1]), h.sweep("config.a", [2])])
    with pytest.raises(ValueError, match="no values"):
        h.sweep("a", [])


def test_trial_names_and_commands_spell_the_overrides():
    t = {"model.se": False, "image_size": 64, "input.mean": (0.5, 0.5, 0.5)}
    assert trial_name(t) == "image_size=64,input.mean=_0.5,0.5,0.5_,model.se=False"
    cmd = trial_command("configs/x.py", "/w/t", t)
    assert cmd[1].endswith("train.py") and "--config.model.se=False" in cmd and "--config.image_size=64" in cmd
    assert "--config.input.mean=(0.5,0.5,0.5)" in cmd
    assert format_value((1,)) == "(1,)"


@pytest.mark.parametrize("name,count", [("scaling_ablation", 9), ("compound_grid", 8), ("block_ablation", 6)])
def test_shipped_sweeps_expand(name, count):
    trials = expand_sweep(f"configs/sweeps/{name}.py")
    assert len(trials) == count
    assert len({trial_name(t) for t in trials}) == count  # every trial gets its own workdir


def test_compound_grid_respects_the_constraint():
    from efficientnet_jax.sweeps.hyper import load_module

    for a, b, g in load_module("configs/sweeps/compound_grid.py").grid():
        assert a * b * b * g * g == pytest.approx(2.0) and g >= 1.0


def test_a_plain_config_is_not_a_sweep():
    with pytest.raises(ValueError, match="get_hyper"):
        expand_sweep("configs/quickstart.py")
