"""A variant is data: stage specs plus multipliers and rounding rules.

`ModelSpec` holds everything that decides the architecture and its numerics. `build_blocks`
expands it into the flat list of concrete blocks (channels rounded, repeats scaled, per-block
stochastic-depth rate), which is what the network module and the weight converters walk.
Rounding rules follow the official code (google/automl efficientnet_builder.py and
effnetv2_model.py), which timm and Keras reproduce to the integer.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence, Tuple

BLOCK_TYPES = ("mbconv", "fused")


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """One stage of the base (unscaled) architecture.

    `block`: 'mbconv' (1x1 expand -> kxk depthwise -> SE -> 1x1 project; no expand conv when
    expand_ratio == 1, i.e. V1's first "depthwise-separable" stage) or 'fused' (kxk expand conv
    -> [SE] -> 1x1 project; a single kxk conv + BN + act when expand_ratio == 1).
    `se_ratio` is relative to the block *input* channels (0 = no SE).
    """

    block: str
    repeats: int
    kernel: int
    stride: int
    expand_ratio: int
    out_channels: int
    se_ratio: float = 0.0

    def __post_init__(self):
        if self.block not in BLOCK_TYPES:
            raise ValueError(f"StageSpec.block must be one of {BLOCK_TYPES}, got {self.block!r}")


@dataclasses.dataclass(frozen=True)
class BlockConfig:
    """A concrete block after scaling: what the module builds and converters map."""

    stage: int
    index: int  # index within the stage
    block: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    expand_ratio: int
    se_channels: int  # 0 = no SE
    drop_path_rate: float

    @property
    def mid_channels(self) -> int:
        return self.in_channels * self.expand_ratio

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything that defines a variant. Override any field with `dataclasses.replace`."""

    name: str
    stages: Tuple[StageSpec, ...]
    width_mult: float = 1.0
    depth_mult: float = 1.0
    resolution: int = 224  # eval resolution
    train_resolution: Optional[int] = None  # V2 trains smaller than it evaluates
    stem_channels: int = 32
    head_channels: int = 1280
    num_classes: int = 1000
    drop_rate: float = 0.2  # dropout before the classifier
    drop_path_rate: float = 0.2  # stochastic depth, max; grows linearly with the block index
    act: str = "swish"
    se: bool = True  # False drops every SE (Lite, or an ablation)
    # Rounding: V1/Lite keep the "10 % rule" of make_divisible, V2 drops it.
    round_limit: float = 0.9
    depth_divisor: int = 8
    min_depth: Optional[int] = None
    # Lite: stem/head fixed and first/last stage repeats not depth-scaled.
    fix_stem_head: bool = False
    # Numerics that decide parity with a weight source.
    padding: str = "same"  # 'same' (TF) | 'symmetric' (PyTorch)
    bn_eps: float = 1e-3
    bn_momentum: float = 0.99  # flax convention: decay of the running average
    # Preprocessing of the published weights of this variant.
    mean: Tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: Tuple[float, float, float] = (0.229, 0.224, 0.225)
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    family: str = "v1"  # 'v1' | 'lite' | 'v2'
    published_top1: Optional[float] = None
    published_top1_source: str = ""

    def __post_init__(self):
        if self.padding not in ("same", "symmetric"):
            raise ValueError(f"{self.name}: padding must be 'same' (TF) or 'symmetric' (PyTorch), got {self.padding!r}")
        if not 0.0 <= self.drop_rate < 1.0 or not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"{self.name}: drop_rate/drop_path_rate must be in [0, 1), got "
                             f"{self.drop_rate}/{self.drop_path_rate}")
        if self.width_mult <= 0 or self.depth_mult <= 0:
            raise ValueError(f"{self.name}: width_mult/depth_mult must be > 0")

    def round_channels(self, channels: float) -> int:
        """`round_filters` of the official code: multiply by width, round to the divisor."""
        return make_divisible(
            channels * self.width_mult, self.depth_divisor, self.min_depth, self.round_limit
        )

    def round_repeats(self, repeats: int) -> int:
        return int(math.ceil(self.depth_mult * repeats))

    @property
    def stem_out(self) -> int:
        return self.stem_channels if self.fix_stem_head else self.round_channels(self.stem_channels)

    @property
    def head_out(self) -> int:
        return self.head_channels if self.fix_stem_head else self.round_channels(self.head_channels)


def make_divisible(
    value: float, divisor: int = 8, min_value: Optional[int] = None, round_limit: float = 0.9
) -> int:
    """Round `value` to a multiple of `divisor`, never going below `round_limit` of it.

    `round_limit=0.9` is V1's rule (add one divisor when rounding lost more than 10 %);
    `round_limit=0` is V2's (no such correction).
    """
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < round_limit * value:
        new += divisor
    return int(new)


def build_blocks(spec: ModelSpec) -> Tuple[BlockConfig, ...]:
    """Expand a ModelSpec into its concrete blocks, in order."""
    last = len(spec.stages) - 1
    repeats = [
        s.repeats if spec.fix_stem_head and i in (0, last) else spec.round_repeats(s.repeats)
        for i, s in enumerate(spec.stages)
    ]
    total = sum(repeats)
    blocks = []
    in_ch = spec.stem_out
    idx = 0
    for si, (stage, n) in enumerate(zip(spec.stages, repeats)):
        out_ch = spec.round_channels(stage.out_channels)
        for j in range(n):
            se_ch = max(1, int(in_ch * stage.se_ratio)) if (spec.se and stage.se_ratio > 0) else 0
            blocks.append(
                BlockConfig(
                    stage=si,
                    index=j,
                    block=stage.block,
                    in_channels=in_ch,
                    out_channels=out_ch,
                    kernel=stage.kernel,
                    stride=stage.stride if j == 0 else 1,
                    expand_ratio=stage.expand_ratio,
                    se_channels=se_ch,
                    drop_path_rate=spec.drop_path_rate * idx / total,
                )
            )
            in_ch = out_ch
            idx += 1
    return tuple(blocks)


def stage_strides(spec: ModelSpec) -> Sequence[int]:
    """Cumulative output stride after each stage (the stem has stride 2)."""
    out, s = [], 2
    for stage in spec.stages:
        s *= stage.stride
        out.append(s)
    return out
