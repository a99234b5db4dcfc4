"""Fixtures for the input-pipeline tests: small image folders whose pixels encode an id."""

import os

import numpy as np
import pytest

# Images of the indexed folder are flat colours: value = 10 + 20 * id (ids 0..9, distinct
# after any resize), so a preprocessed pixel tells which example it came from.
FOLDER_CLASSES = {"cat": 4, "dog": 3, "eel": 3}


def id_of(image: np.ndarray) -> int:
    """Recover the example id from an image normalised with mean 0 / std 1 (i.e. x / 255)."""
    value = float(np.median(image)) * 255.0
    return int(round((value - 10.0) / 20.0))


def write_png(path: str, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path)


@pytest.fixture(scope="session")
def indexed_folder(tmp_path_factory):
    """root/<class>/<n>.png with 10 flat-colour 6x6 images; returns (root, {id: label})."""
    root = tmp_path_factory.mktemp("folder_ds")
    labels = {}
    k = 0
    for label, (name, count) in enumerate(sorted(FOLDER_CLASSES.items())):
        os.makedirs(root / name)
        for _ in range(count):
            write_png(str(root / name / f"{k:02d}.png"), np.full((6, 6, 3), 10 + 20 * k, np.uint8))
            labels[k] = label
            k += 1
    return str(root), labels


def folder_config(root: str):
    from efficientnet_jax.data import default_input_config

    cfg = default_input_config()
    cfg.dataset = f"folder:{root}"
    cfg.crop_mode = "resize"
    cfg.flip = False
    cfg.mean = (0.0, 0.0, 0.0)
    cfg.std = (1.0, 1.0, 1.0)
    cfg.prefetch = 0
    return cfg
