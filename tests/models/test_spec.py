"""Block tables, rounding rules and compound scaling against the reference numbers."""

import math

import pytest

from efficientnet_jax import compound_scaling, create_model, get_spec
from efficientnet_jax.models.spec import build_blocks, make_divisible


def _stage_depths(name):
    blocks = build_blocks(get_spec(name))
    return [sum(b.stage == s for b in blocks) for s in range(blocks[-1].stage + 1)]


# shared/reference/architecture.md §1 (measured on timm; == keras == official ceil(d*r)).
@pytest.mark.parametrize(
    "name,depths",
    [
        ("efficientnet_b0", [1, 2, 2, 3, 3, 4, 1]), ("efficientnet_b3", [2, 3, 3, 5, 5, 6, 2]),
        ("efficientnet_b7", [4, 7, 7, 10, 10, 13, 4]), ("efficientnet_l2", [6, 11, 11, 16, 16, 22, 6]),
        ("efficientnet_lite4", [1, 4, 4, 6, 6, 8, 1]), ("efficientnetv2_b3", [2, 3, 3, 5, 7, 12]),
        ("efficientnetv2_m", [3, 5, 5, 7, 14, 18, 5]), ("efficientnetv2_xl", [4, 8, 8, 16, 24, 32, 8]),
    ],
)
def test_stage_depths(name, depths):
    assert _stage_depths(name) == depths


def test_b0_block_table():
    # (in, out, mid, se, skip) per block, from the reference B0 table (stages.txt).
    rows = [(b.in_channels, b.out_channels, b.mid_channels, b.se_channels, b.has_skip)
            for b in build_blocks(get_spec("efficientnet_b0"))]
    assert rows[0] == (32, 16, 32, 8, False)
    assert rows[1] == (16, 24, 96, 4, False) and rows[2] == (24, 24, 144, 6, True)
    assert rows[-1] == (192, 320, 1152, 48, False)
    rates = [b.drop_path_rate for b in build_blocks(get_spec("efficientnet_b0"))]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.2 * 15 / 16)  # 0.1875


def test_b7_channels_and_v2_rounding():
    b7 = build_blocks(get_spec("efficientnet_b7"))
    assert get_spec("efficientnet_b7").stem_out == 64 and get_spec("efficientnet_b7").head_out == 2560
    assert [b.out_channels for b in b7 if b.index == 0] == [32, 48, 80, 160, 224, 384, 640]
    # V2 drops the 10 % rule: V2-B3's first stage stays at 16 channels; V1's rule would give 24.
    assert build_blocks(get_spec("efficientnetv2_b3"))[0].out_channels == 16
    assert make_divisible(16 * 1.2, round_limit=0.9) == 24
    # Lite keeps stem 32 / head 1280 at any width.
    lite4 = get_spec("efficientnet_lite4")
    assert (lite4.stem_out, lite4.head_out) == (32, 1280)
    assert all(b.se_channels == 0 for b in build_blocks(lite4))


def test_v2_s_table():
    blocks = build_blocks(get_spec("efficientnetv2_s"))
    first = [b for b in blocks if b.index == 0]
    assert [(b.block, b.in_channels, b.out_channels, b.stride) for b in first] == [
        ("fused", 24, 24, 1), ("fused", 24, 48, 2), ("fused", 48, 64, 2),
        ("mbconv", 64, 128, 2), ("mbconv", 128, 160, 1), ("mbconv", 160, 256, 2),
    ]
    assert blocks[0].has_skip and [b.se_channels for b in first][3:] == [16, 32, 40]


def test_compound_scaling_rule():
    d, w, r = compound_scaling(1.0)
    assert (d, w, r) == (pytest.approx(1.2), pytest.approx(1.1), 258)
    assert d * w**2 * (r / 224) ** 2 == pytest.approx(1.2 * 1.1**2 * 1.15**2, rel=5e-3)
    spec = get_spec("efficientnet_b0", phi=2.5)
    assert spec.depth_mult == pytest.approx(1.2**2.5) and spec.width_mult == pytest.approx(1.1**2.5)
    assert spec.resolution == round(224 * 1.15**2.5)
    assert get_spec("efficientnet_b0", phi=0).width_mult == 1.0
    custom = get_spec("efficientnet_b0", phi=1, alpha=1.4, beta=1.2, gamma=1.0)
    assert (custom.depth_mult, custom.width_mult, custom.resolution) == (1.4, 1.2, 224)
    assert [sum(b.stage == s for b in build_blocks(custom)) for s in range(7)] == [
        math.ceil(1.4 * r) for r in (1, 2, 2, 3, 3, 4, 1)
    ]


def test_bad_names_and_overrides_are_named():
    with pytest.raises(ValueError, match="efficientnet_b9"):
        create_model("efficientnet_b9")
    with pytest.raises(ValueError, match="drop_ratee"):
        create_model("efficientnet_b0", drop_ratee=0.1)
    with pytest.raises(ValueError, match="phi"):
        create_model("efficientnet_b0", alpha=1.3)
    with pytest.raises(ValueError, match="padding"):
        create_model("efficientnet_b0", padding="valid")
    with pytest.raises(ValueError, match="dtype"):
        create_model("efficientnet_b0", dtype="float8")


def test_tf_prefix_sets_tf_numerics():
    spec = get_spec("tf_efficientnet_b0", padding="symmetric")
    # The prefix states the numerics; an explicit override still wins.
    assert spec.padding == "symmetric" and spec.bn_eps == 1e-3
    assert get_spec("efficientnet_b0", bn_eps=1e-5).bn_eps == 1e-5


def test_fused_stages_edit():
    spec = get_spec("efficientnet_b0", fused_stages=3)
    assert [s.block for s in spec.stages] == ["fused"] * 3 + ["mbconv"] * 4
    blocks = build_blocks(spec)
    assert blocks[0].se_channels == 0 and blocks[-1].se_channels == 48
    back = get_spec("efficientnetv2_b0", fused_stages=0)
    assert all(s.block == "mbconv" and s.se_ratio == 0.25 for s in back.stages)
    with pytest.raises(ValueError, match="fused_stages"):
        get_spec("efficientnet_b0", fused_stages=8)
