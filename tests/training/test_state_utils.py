"""Checkpoint fit checks, pretrained-weight merging, progressive stages, the NaN guard buffer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from efficientnet_jax.training.checkpointing import Checkpointer, check_fits
from efficientnet_jax.training.metrics import MetricBuffer, NonFiniteError
from efficientnet_jax.training.pretrained import merge_pretrained
from efficientnet_jax.training.progressive import make_stages, stage_at


def _vars(num_classes=10, width=8):
    return {
        "params": {"stem_conv": {"kernel": jnp.ones((3, 3, 3, width))},
                   "classifier": {"kernel": jnp.ones((width, num_classes)), "bias": jnp.zeros(num_classes)}},
        "batch_stats": {"stem_bn": {"mean": jnp.zeros(width), "var": jnp.ones(width)}},
    }


def test_check_fits_names_the_first_mismatching_key_and_shapes():
    check_fits(_vars(), _vars(), "ckpt")
    with pytest.raises(ValueError, match=r"params/stem_conv/kernel has shape \(3, 3, 3, 8\) in the checkpoint "
                                         r"but \(3, 3, 3, 16\) in the model"):
        check_fits(_vars(width=8), _vars(width=16), "ckpt")
    extra = _vars()
    extra["params"]["se"] = {"kernel": jnp.ones(2)}
    with pytest.raises(ValueError, match="the model has no such key"):
        check_fits(extra, _vars(), "ckpt")
    with pytest.raises(ValueError, match="params/se/kernel .* is missing from the checkpoint"):
        check_fits(_vars(), extra, "ckpt")


def test_merge_pretrained_reinitialises_only_a_mismatching_head():
    init = jax.tree.map(lambda x: x * 0 + 7, _vars(num_classes=5))
    loaded = _vars(num_classes=1000)
    merged, kept = merge_pretrained(init, loaded, "w")
    assert sorted(kept) == ["params/classifier/bias", "params/classifier/kernel"]
    np.testing.assert_array_equal(merged["params"]["stem_conv"]["kernel"], 1.0)  # loaded
    np.testing.assert_array_equal(merged["params"]["classifier"]["kernel"], 7.0)  # fresh head
    np.testing.assert_array_equal(merged["batch_stats"]["stem_bn"]["var"], 1.0)
    with pytest.raises(ValueError, match="classifier/bias has shape"):
        merge_pretrained(init, loaded, "w", reinit_head=False)  # eval of pretrained weights: no new head
    with pytest.raises(ValueError, match=r"stem_conv/kernel has shape \(3, 3, 3, 8\) in the weights"):
        merge_pretrained(_vars(width=16), loaded, "w")


def test_progressive_stages_follow_automl():
    stages = make_stages(4, 1000, 300, randaug_magnitude=10, mixup_alpha=0.2, cutmix_alpha=0.2, min_image_size=128)
    assert [s.end_step for s in stages] == [250, 500, 750, 1000]
    assert [s.image_size for s in stages] == [171, 214, 257, 300]  # int(128 + 172 * (s + 1) / 4)
    np.testing.assert_allclose([s.randaug_magnitude for s in stages], [5, 5 + 5 / 3, 5 + 10 / 3, 10])
    np.testing.assert_allclose([s.mixup_alpha for s in stages], [0, 0.2 / 3, 0.4 / 3, 0.2])
    assert stage_at(stages, 0).index == 0 and stage_at(stages, 249).index == 0 and stage_at(stages, 250).index == 1
    assert stage_at(stages, 1000).index == 3
    single = make_stages(0, 100, 224, 10, 0.0, 0.0)
    assert len(single) == 1 and single[0].image_size == 224 and single[0].end_step == 100


def test_metric_buffer_reports_the_first_non_finite_step():
    buf = MetricBuffer()
    for step, loss in [(1, 2.0), (2, 1.0), (3, float("nan")), (4, float("inf"))]:
        buf.add(step, {"loss": jnp.float32(loss), "grad_norm": jnp.float32(1.0)})
    with pytest.raises(NonFiniteError, match="at step 3") as err:
        buf.summary()
    assert err.value.step == 3
    buf = MetricBuffer()
    buf.add(1, {"loss": jnp.float32(2.0), "grad_norm": jnp.float32(3.0)})
    buf.add(2, {"loss": jnp.float32(4.0), "grad_norm": jnp.float32(jnp.inf)})
    with pytest.raises(NonFiniteError, match="at step 2"):
        buf.check()


def test_checkpointer_keeps_latest_n_plus_best_and_restores_with_target(tmp_path):
    ckpt = Checkpointer(str(tmp_path / "ck"), every_steps=1, keep=2, keep_best=1, async_save=False)
    tree = {"params": {"w": jnp.arange(4.0)}, "batch_stats": {}}
    for step, top1 in [(1, None), (2, 0.9), (3, 0.5), (4, None), (5, None)]:
        state = jax.tree.map(lambda x: x + step, tree)
        ckpt.save(step, state, {"step": step}, metrics=None if top1 is None else {"ema_top1": top1, "top1": 0.0})
    ckpt.wait()
    assert ckpt.all_steps() == [2, 4, 5]  # last 2 + the best evaluated one
    assert ckpt.best_step() == 2 and ckpt.resolve("best") == 2 and ckpt.resolve("latest") == 5
    with pytest.raises(FileNotFoundError, match="no checkpoint at step 3"):
        ckpt.resolve("3")
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                           sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])),
                            tree)
    restored, meta = ckpt.restore(4, abstract)
    np.testing.assert_array_equal(restored["params"]["w"], np.arange(4.0) + 4)
    assert meta == {"step": 4}
    wrong = {"params": {"w": jax.ShapeDtypeStruct((5,), jnp.float32)}, "batch_stats": {}}
    with pytest.raises(ValueError, match=r"params/w has shape \(4,\) in the checkpoint but \(5,\) in the model"):
        ckpt.restore(4, wrong)
    ckpt.close()
