"""Keras applications weights -> our model, through the in-graph preprocessing.

Reference: keras.applications models (JAX backend, weights=None) holding the weights of a
calibrated timm `tf_*` model (ported with the mapping of
shared/reference/architecture_data/timm_to_keras_check.py, not with our converter), saved with
`model.save_weights('x.weights.h5')` (Keras 3 format). Keras gets raw 0-255 images and normalises
inside its graph (V1: Rescaling + Normalization weights; V2-B0: Rescaling + constants; V2-S:
x/128 - 1); ours gets the images normalised per the converted metadata.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

import parity_harness as H  # noqa: E402

# Keras 3.15 on numpy 2 warns about __array__(copy=...) on every variable read.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

from efficientnet_jax.weights import convert_file, load_pretrained  # noqa: E402

RES = 72
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HALF128 = (128 / 255,) * 3
CASES = [  # keras application, timm twin, V2?, the normalisation keras applies
    ("EfficientNetB0", "tf_efficientnet_b0", False, MEAN, STD),
    ("EfficientNetB3", "tf_efficientnet_b3", False, MEAN, STD),
    ("EfficientNetV2B0", "tf_efficientnetv2_b0", True, MEAN, STD),
    ("EfficientNetV2S", "tf_efficientnetv2_s", True, HALF128, HALF128),
]


def _keras_reference(app, twin, v2, mean, std, seed):
    tm = timm.create_model(twin, pretrained=False)
    H.calibrate_torch(tm, H.timm_residual_bns(tm), RES, seed=seed, sample=H.imagenet_normalised_sampler(RES, mean, std))
    with H.cheap_keras_init():
        km = getattr(keras.applications, app)(weights=None, input_shape=(RES, RES, 3), classifier_activation=None)
    assert H.port_timm_to_keras(tm, km, v2) == []
    if not v2:
        H.set_keras_normalization(km, mean, np.square(std))
    return km


@pytest.mark.parametrize("app,twin,v2,mean,std", CASES, ids=[c[0] for c in CASES])
def test_keras_parity(app, twin, v2, mean, std, tmp_path):
    km = _keras_reference(app, twin, v2, mean, std, seed=0)
    raw = H.uniform_images(2, RES, seed=1)
    ref = np.asarray(km.predict(raw, verbose=0))
    path = str(tmp_path / f"{app}.weights.h5")
    km.save_weights(path)

    model, variables, meta = load_pretrained(path, app)  # Keras spelling; source from the extension
    assert (meta["source"], meta["padding"], meta["bn_eps"]) == ("keras", "same", 1e-3)
    np.testing.assert_allclose(meta["mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(meta["std"], std, rtol=1e-6)
    ours = H.ours_logits(model, variables, H.normalise(raw, meta))
    H.compare("keras", app, ref, ours, ".weights.h5 (Keras 3)")

    if app == "EfficientNetB0":
        # Legacy HDF5 (model.save('x.h5'), which Keras 3 still writes) and the .keras archive must
        # give exactly the variables and preprocessing whose logits were just checked.
        legacy = str(tmp_path / "legacy.h5")
        km.save(legacy)
        archive = str(tmp_path / "model.keras")
        km.save(archive)
        # Weights-only legacy HDF5 (tf.keras `save_weights('x.h5')`, the published imagenet files'
        # layout: layer_names at the root).
        weights_only = str(tmp_path / "weights_only.h5")
        from keras.src.legacy.saving import legacy_h5_format

        with h5py.File(weights_only, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, km)
        for other in (legacy, archive, weights_only):
            variables_o, meta_o = convert_file(other, app)
            assert (meta_o["mean"], meta_o["std"], meta_o["num_params"]) == (meta["mean"], meta["std"], meta["num_params"])
            for a, b in zip(_leaves(variables_o), _leaves(variables)):
                np.testing.assert_array_equal(a, b)


def _leaves(tree):
    from efficientnet_jax.weights.common import flatten

    return [v for _, v in sorted(flatten(tree).items())]


def test_keras_imagenet_std_in_variance_slot(tmp_path):
    """Published V1 'imagenet' files hold the std in the Normalization variance slot (Keras adds
    Rescaling(1/sqrt(std)) for them, tensorflow/tensorflow#49930): record std, not sqrt(std)."""
    with H.cheap_keras_init():
        km = keras.applications.EfficientNetB0(weights=None, input_shape=(RES, RES, 3))
    H.set_keras_normalization(km, MEAN, STD)  # the bug: std where the variance belongs
    path = str(tmp_path / "b0.weights.h5")
    km.save_weights(path)
    _, meta = convert_file(path, "efficientnet_b0", source="keras")
    np.testing.assert_allclose(meta["std"], STD, rtol=1e-6)
    np.testing.assert_allclose(meta["mean"], MEAN, rtol=1e-6)
    # A B0 file for B3: the first tensor that does not fit, in Keras' own names.
    with pytest.raises(ValueError, match=r"'stem_conv/kernel' has shape \(3, 3, 3, 32\), expected \(3, 3, 3, 40\)"):
        convert_file(path, "EfficientNetB3")
