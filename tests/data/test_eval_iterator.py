"""make_eval_iterator: one padded, masked pass; every example counted exactly once."""

import numpy as np
import pytest

from efficientnet_jax.data import default_input_config, make_eval_iterator, preprocess_eval, normalize
from efficientnet_jax.data import digits, examples
from tests.data.conftest import folder_config, id_of


def test_digits_eval_pass_is_padded_and_masked():
    cfg = default_input_config()
    cfg.crop_mode = "resize"
    batches = list(make_eval_iterator(cfg, global_batch_size=128, image_size=32))
    assert len(batches) == 3  # 360 = 128 + 128 + 104 real
    for b in batches:
        assert b["image"].shape == (128, 32, 32, 3) and b["image"].dtype == np.float32
        assert b["label"].dtype == np.int32 and b["mask"].dtype == np.float32
    mask = np.concatenate([b["mask"] for b in batches])
    assert mask.sum() == 360 and (mask[:360] == 1).all() and (mask[360:] == 0).all()
    labels = np.concatenate([b["label"] for b in batches])[:360]
    np.testing.assert_array_equal(labels, digits.load("test")[1])
    # eval preprocessing is the documented one (and deterministic)
    want = normalize(preprocess_eval(digits.load("test")[0][0], image_size=32, crop_mode="resize"),
                     cfg.mean, cfg.std).numpy()
    np.testing.assert_allclose(batches[0]["image"][0], want, atol=1e-5)
    again = list(make_eval_iterator(cfg, global_batch_size=128, image_size=32))
    np.testing.assert_array_equal(again[2]["image"], batches[2]["image"])


@pytest.mark.parametrize("precomputed", [True, False])
@pytest.mark.parametrize("process_count,global_batch", [(1, 4), (2, 4), (3, 6)])
def test_every_example_once_across_processes(indexed_folder, process_count, global_batch, precomputed, monkeypatch):
    if not precomputed:  # force the per-example path used for splits too large to precompute
        monkeypatch.setattr(examples, "PRECOMPUTE_MAX_BYTES", 0)
    root, labels = indexed_folder
    cfg = folder_config(root)
    cfg.eval_split = "all"  # 10 examples: never divisible by these local batches
    counts = np.zeros(10, int)
    steps = set()
    for p in range(process_count):
        batches = list(make_eval_iterator(cfg, global_batch_size=global_batch, image_size=4, process_index=p,
                                          process_count=process_count))
        steps.add(len(batches))
        for b in batches:
            assert b["image"].shape[0] == global_batch // process_count
            for image, label, m in zip(b["image"], b["label"], b["mask"]):
                if m:
                    counts[id_of(image)] += 1
                    assert label == labels[id_of(image)]
                else:
                    assert label == 0 and not image.any()
    assert len(steps) == 1  # the same number of eval steps on every process
    np.testing.assert_array_equal(counts, 1)
