"""Files that do not fit fail loudly: ValueError naming the first missing / mis-shaped / unexpected
tensor (source name, our path, both shapes), refusal to unpickle objects, source mix-ups."""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from efficientnet_jax.weights import convert_file, load_pretrained, load_weights, save_converted  # noqa: E402


@pytest.fixture(scope="module")
def lite0_state():
    tm = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    return {k: v.detach().clone() for k, v in tm.state_dict().items()}


def _save(sd, tmp_path, name="sd.pth"):
    path = str(tmp_path / name)
    torch.save(sd, path)
    return path


def test_missing_tensor(lite0_state, tmp_path):
    sd = dict(lite0_state)
    del sd["blocks.2.1.conv_dw.weight"]
    with pytest.raises(ValueError, match=r"missing tensor 'blocks\.2\.1\.conv_dw\.weight'.*stage2_block1/dw_conv/kernel"):
        convert_file(_save(sd, tmp_path), "tf_efficientnet_lite0")


def test_wrong_shape(lite0_state, tmp_path):
    sd = dict(lite0_state)
    sd["blocks.1.0.bn2.running_var"] = torch.ones(7)
    with pytest.raises(ValueError, match=r"'blocks\.1\.0\.bn2\.running_var' has shape \(7,\), expected \(96,\)"
                                         r".*batch_stats/stage1_block0/dw_bn/var \(96,\)"):
        convert_file(_save(sd, tmp_path), "tf_efficientnet_lite0")


def test_unexpected_tensor(lite0_state, tmp_path):
    sd = dict(lite0_state)
    sd["blocks.1.0.extra.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"unexpected tensor 'blocks\.1\.0\.extra\.weight' with shape \(3,\)"):
        convert_file(_save(sd, tmp_path), "tf_efficientnet_lite0")


def test_other_variant(lite0_state, tmp_path):
    # Lite0 weights for Lite1 (deeper): the first tensor that is not there is named.
    with pytest.raises(ValueError, match=r"missing tensor 'blocks\.1\.2\.conv_pw\.weight'"):
        convert_file(_save(lite0_state, tmp_path), "tf_efficientnet_lite1")
    # ... for B0 (SE everywhere): the first SE tensor.
    with pytest.raises(ValueError, match=r"missing tensor 'blocks\.0\.0\.se\.conv_reduce\.weight'"):
        convert_file(_save(lite0_state, tmp_path), "tf_efficientnet_b0")


def test_refuses_pickled_objects(tmp_path):
    path = str(tmp_path / "model.pth")
    torch.save(timm.create_model("tf_efficientnet_lite0"), path)  # a whole nn.Module, not a state dict
    with pytest.raises(ValueError, match="weights_only"):
        convert_file(path, "tf_efficientnet_lite0")


def test_source_mixups(lite0_state, tmp_path):
    path = _save(lite0_state, tmp_path)
    with pytest.raises(ValueError, match="looks like a timm state dict"):
        convert_file(path, "efficientnet_lite0", source="efficientnet_pytorch")
    with pytest.raises(ValueError, match="unknown source"):
        convert_file(path, "efficientnet_lite0", source="caffe")
    with pytest.raises(ValueError, match="name its model"):
        load_weights(path)
    odd = str(tmp_path / "weights.npz")
    np.savez(odd, a=np.zeros(1))
    with pytest.raises(ValueError, match="cannot tell the source"):
        convert_file(odd, "efficientnet_lite0")
    lukemelas = _save({"_conv_stem.weight": torch.zeros(24, 3, 3, 3)}, tmp_path, "lm.pth")
    with pytest.raises(ValueError, match="no Fused-MBConv"):
        convert_file(lukemelas, "efficientnetv2_s")


def test_converted_dir_checks(lite0_state, tmp_path):
    variables, meta = convert_file(_save(lite0_state, tmp_path), "tf_efficientnet_lite0")
    out = save_converted(tmp_path / "ckpt", variables, meta)
    with pytest.raises(FileExistsError, match="overwrite"):
        save_converted(out, variables, meta)
    save_converted(out, variables, meta, overwrite=True)
    with pytest.raises(FileExistsError, match="not a converted checkpoint"):
        save_converted(tmp_path, variables, meta, overwrite=True)
    # A model named beside a converted checkpoint must fit it.
    assert load_weights(out, model="tf_efficientnet_lite0")["params"].keys() == variables["params"].keys()
    with pytest.raises(ValueError, match="stage1_block2"):
        load_weights(out, model="tf_efficientnet_lite1")
    # Metadata that names another model than the variables hold.
    with open(os.path.join(out, "metadata.json")) as f:
        m = json.load(f)
    m["spec"]["width_mult"] = 1.1
    with open(os.path.join(out, "metadata.json"), "w") as f:
        json.dump(m, f)
    with pytest.raises(ValueError, match="converted checkpoint"):
        load_pretrained(out)
    with pytest.raises(ValueError, match="not a converted checkpoint"):
        load_weights(str(tmp_path / "ckpt" / "variables"))
