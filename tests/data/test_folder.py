"""Image-folder data sets: class order, splits, and errors that name the offending path."""

import os

import numpy as np
import pytest

from efficientnet_jax.data import dataset_info, default_input_config, make_train_iterator
from efficientnet_jax.data import folder
from tests.data.conftest import write_png


def test_flat_folder_info_and_split(indexed_folder):
    root, _ = indexed_folder
    info = dataset_info(f"folder:{root}")
    assert info.class_names == ("cat", "dog", "eel") and info.num_classes == 3
    assert (info.train_split, info.eval_split) == ("train", "test")
    assert info.num_train + info.num_eval == 10 and info.num_eval == 2
    paths, labels = folder.load(root, "all")
    assert [os.path.basename(os.path.dirname(p)) for p in paths[:5]] == ["cat"] * 4 + ["dog"]
    np.testing.assert_array_equal(labels, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2])


def test_split_layout_and_iterator(tmp_path):
    for split, n in (("train", 3), ("val", 1)):
        for name in ("b_class", "a_class"):
            os.makedirs(tmp_path / split / name)
            for k in range(n):
                write_png(str(tmp_path / split / name / f"{k}.png"), np.full((12, 9, 3), 40 * k, np.uint8))
    info = dataset_info(f"folder:{tmp_path}")
    assert info.class_names == ("a_class", "b_class")
    assert (info.train_split, info.eval_split, info.num_train, info.num_eval) == ("train", "val", 6, 2)
    cfg = default_input_config()
    cfg.dataset = f"folder:{tmp_path}"  # varied sizes, inception crop + flip: the per-example path
    batch = next(make_train_iterator(cfg, global_batch_size=4, image_size=16, seed=0))
    assert batch["image"].shape == (4, 16, 16, 3) and batch["label_onehot"].shape == (4, 2)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        folder.scan(str(tmp_path / "nowhere"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        folder.scan(str(empty))
    no_images = tmp_path / "no_images"
    (no_images / "cls").mkdir(parents=True)
    (no_images / "cls" / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"no_images/cls holds no images"):
        folder.scan(str(no_images))
    broken = tmp_path / "broken"
    (broken / "cls").mkdir(parents=True)
    write_png(str(broken / "cls" / "good.png"), np.zeros((4, 4, 3), np.uint8))
    (broken / "cls" / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"unreadable image file .*bad\.png"):
        folder.scan(str(broken))
    with pytest.raises(ValueError, match="needs a path"):
        dataset_info("folder:")
