"""efficientnet_pytorch (lukemelas) state dicts -> our model, random calibrated weights.

`EfficientNet.from_name(..., image_size=N)` pads with `Conv2dStaticSamePadding` computed for N
(TF SAME for that size, asymmetric at stride 2 on even maps), and BN eps 1e-3: TF numerics.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
efficientnet_pytorch = pytest.importorskip("efficientnet_pytorch")

import parity_harness as H  # noqa: E402

from efficientnet_jax.models.layers import conv_padding  # noqa: E402
from efficientnet_jax.weights import load_pretrained  # noqa: E402

RES = 72


def test_lukemelas_uses_static_tf_same_padding():
    tm = efficientnet_pytorch.EfficientNet.from_name("efficientnet-b0", image_size=RES)
    pad = tm._conv_stem.static_padding
    assert isinstance(pad, torch.nn.ZeroPad2d)
    before, after = conv_padding(RES, 3, 2, "same")
    assert tuple(pad.padding) == (before, after, before, after) == (0, 1, 0, 1)
    assert tm._bn0.eps == 1e-3
    # Every depthwise conv is padded like our dynamic 'same' at its map size, including the odd
    # 9x9 and 5x5 maps of a 72x72 input where TF SAME is symmetric.
    size = -(-RES // 2)
    for blk in tm._blocks:
        k, s = blk._block_args.kernel_size, blk._block_args.stride
        s = s[0] if isinstance(s, list) else s
        b, a = conv_padding(size, k, s, "same")
        assert tuple(blk._depthwise_conv.static_padding.padding) == (b, a, b, a), (size, k, s)
        size = -(-size // s)


def test_lukemelas_b0_parity(tmp_path):
    tm = efficientnet_pytorch.EfficientNet.from_name("efficientnet-b0", image_size=RES)
    H.calibrate_torch(tm, H.lukemelas_residual_bns(tm), RES, seed=0)
    x = np.random.default_rng(1).standard_normal((2, 3, RES, RES)).astype(np.float32)
    ref = H.torch_logits(tm, x)
    path = H.save_state_dict(tm, tmp_path / "efficientnet-b0.pth")
    model, variables, meta = load_pretrained(path, "efficientnet-b0")  # source from the key names
    assert (meta["source"], meta["model"], meta["padding"], meta["bn_eps"]) == (
        "efficientnet_pytorch", "efficientnet_b0", "same", 1e-3)
    H.compare("efficientnet_pytorch", "efficientnet-b0", ref, H.ours_logits(model, variables, H.nchw_to_nhwc(x)),
              f"random, image_size={RES}")
