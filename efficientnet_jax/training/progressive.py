"""EfficientNetV2 progressive learning: image size and regularisation grow over stages.

As google/automl efficientnetv2 main.py does it: with S stages over T steps, stage s (0-based)
trains until step int((s + 1) / S * T) at image size int(ibase + (train_size - ibase) *
(s + 1) / S), RandAugment magnitude linspace(min_magnitude, magnitude, S)[s] and mixup/cutmix
alpha linspace(0, alpha, S)[s]. Dropout stays at its final value, as in the released code
(its `dp_list` is computed and then deleted). Each stage is one jit compilation.
"""

from __future__ import annotations

import dataclasses
from typing import Any, List, Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class Stage:
    index: int
    start_step: int
    end_step: int  # exclusive: the stage runs steps start_step+1 .. end_step (1-based updates)
    image_size: int
    randaug_magnitude: float
    mixup_alpha: float
    cutmix_alpha: float


def make_stages(
    num_stages: int,
    total_steps: int,
    image_size: int,
    randaug_magnitude: float,
    mixup_alpha: float,
    cutmix_alpha: float,
    min_image_size: Optional[int] = None,
    min_randaug_magnitude: float = 5.0,
) -> List[Stage]:
    """The stage table; `num_stages <= 1` gives one stage with the final settings throughout."""
    if num_stages <= 1:
        return [Stage(0, 0, total_steps, image_size, float(randaug_magnitude), float(mixup_alpha),
                      float(cutmix_alpha))]
    ibase = min_image_size if min_image_size else image_size / 2  # automl: data.ibase or size / 2
    ram = np.linspace(min_randaug_magnitude, randaug_magnitude, num_stages)
    mix = np.linspace(0.0, mixup_alpha, num_stages)
    cut = np.linspace(0.0, cutmix_alpha, num_stages)
    stages, start = [], 0
    for s in range(num_stages):
        ratio = (s + 1) / num_stages
        end = int(ratio * total_steps)
        stages.append(Stage(
            index=s, start_step=start, end_step=end, image_size=int(ibase + (image_size - ibase) * ratio),
            randaug_magnitude=float(ram[s]), mixup_alpha=float(mix[s]), cutmix_alpha=float(cut[s]),
        ))
        start = end
    return stages


def stages_from_config(config: Any, total_steps: int, image_size: int) -> List[Stage]:
    """`make_stages` with the config's `progressive` and `input` sections."""
    p = config.progressive
    return make_stages(
        p.stages, total_steps, image_size,
        randaug_magnitude=config.input.randaug_magnitude,
        mixup_alpha=config.input.mixup_alpha, cutmix_alpha=config.input.cutmix_alpha,
        min_image_size=p.min_image_size, min_randaug_magnitude=p.min_randaug_magnitude,
    )


def stage_at(stages: List[Stage], step: int) -> Stage:
    """The stage that trains update number `step + 1` (the last stage once training is done)."""
    for st in stages:
        if step < st.end_step:
            return st
    return stages[-1]
