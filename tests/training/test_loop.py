"""The training loop end to end, in process, on the embedded digits data set.

All runs share one tiny config (conftest.smoke_config: 30 steps, checkpoints every 10), so
after the first run every compile is a cache hit.
"""

import glob
import json
import os
import signal

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from train_helpers import SMOKE_STEPS, smoke_config

from efficientnet_jax.training import inputs, train_and_evaluate
from efficientnet_jax.training.evaluate_checkpoint import evaluate_checkpoint
from efficientnet_jax.training.metrics import NonFiniteError

tiny_config = smoke_config


def read_jsonl(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def saved_params(workdir, step):
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    return ocp.StandardCheckpointer().restore(path)["params"]


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert jax.tree.structure(a) == jax.tree.structure(b)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("run"))
    return workdir, train_and_evaluate(tiny_config(), workdir)


def test_run_writes_metrics_config_tensorboard_and_checkpoints(trained):
    workdir, results = trained
    for key in ("top1", "top5", "loss", "ema_top1", "ema_top5", "ema_loss"):
        assert np.isfinite(results[key]), key
    assert results["step"] == SMOKE_STEPS and results["num_examples"] == 360  # every held-out digit, once
    lines = read_jsonl(workdir)
    train = [r for r in lines if "train/loss" in r]
    assert [r["step"] for r in train] == list(range(1, SMOKE_STEPS + 1))
    for key in ("train/loss", "train/top1", "train/grad_norm", "train/lr", "train/epoch", "train/img_per_sec"):
        assert key in train[0], key
    assert train[0]["train/lr"] == 0.0 and train[1]["train/lr"] > 0  # linear warm-up from 0
    evals = [r for r in lines if "eval/top1" in r]
    assert len(evals) == 1 and evals[0]["eval/ema_top1"] == results["ema_top1"]
    with open(os.path.join(workdir, "config.json")) as f:
        saved = json.load(f)
    assert saved["config"]["total_steps"] == SMOKE_STEPS and saved["resolved"]["num_classes"] == 10
    assert saved["resolved"]["steps_per_epoch"] == 1437 // 16
    import tensorflow as tf

    events = glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))
    tags = {v.tag for e in tf.compat.v1.train.summary_iterator(events[0]) for v in e.summary.value}
    assert {"train/loss", "eval/ema_top1"} <= tags
    assert sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()) == [10, 20, 30]


def test_rerun_resumes_instead_of_retraining(trained):
    workdir, results = trained
    n_lines = len(read_jsonl(workdir))
    again = train_and_evaluate(tiny_config(), workdir)
    assert again["top1"] == results["top1"] and again["step"] == SMOKE_STEPS
    assert not [r for r in read_jsonl(workdir)[n_lines:] if "train/loss" in r]  # no step was retrained


def test_evaluate_checkpoint_reproduces_the_final_eval(trained):
    workdir, results = trained
    latest = evaluate_checkpoint(tiny_config(), workdir, "latest")
    for key in ("top1", "top5", "loss", "ema_top1", "ema_loss"):
        assert latest[key] == pytest.approx(results[key], rel=1e-6), key
    assert evaluate_checkpoint(tiny_config(), workdir, "best")["step"] == SMOKE_STEPS  # the evaluated one
    assert evaluate_checkpoint(tiny_config(), workdir, "10")["step"] == 10
    with pytest.raises(ValueError, match="'latest', 'best' or a step"):
        evaluate_checkpoint(tiny_config(), workdir, "newest")


def test_sigterm_saves_then_rerun_finishes_exactly(trained, tmp_path, monkeypatch):
    workdir, _ = trained
    real = inputs.train_batches

    def preempt_during_update_13(exp, stage, start_step):
        for i, batch in enumerate(real(exp, stage, start_step), start=start_step + 1):
            if i == 13:
                os.kill(os.getpid(), signal.SIGTERM)  # arrives while update 13 is being prepared
            yield batch

    monkeypatch.setattr(inputs, "train_batches", preempt_during_update_13)
    out = train_and_evaluate(tiny_config(), str(tmp_path))
    assert out == {"preempted": True, "step": 13}
    assert os.path.isdir(tmp_path / "checkpoints" / "13")  # off the every-10-steps grid: the SIGTERM save
    monkeypatch.setattr(inputs, "train_batches", real)
    finished = train_and_evaluate(tiny_config(), str(tmp_path))
    assert finished["step"] == SMOKE_STEPS
    # Bitwise the parameters of the uninterrupted run.
    assert_trees_equal(saved_params(str(tmp_path), SMOKE_STEPS), saved_params(workdir, SMOKE_STEPS))


def test_nan_guard_stops_with_the_step_number_and_keeps_good_checkpoints(tmp_path, monkeypatch):
    real = inputs.train_batches

    def poison_update_13(exp, stage, start_step):
        for i, batch in enumerate(real(exp, stage, start_step), start=start_step + 1):
            if i == 13:
                batch = {**batch, "image": np.full_like(batch["image"], np.nan)}
            yield batch

    monkeypatch.setattr(inputs, "train_batches", poison_update_13)
    with pytest.raises(NonFiniteError, match="at step 13") as err:
        train_and_evaluate(tiny_config(log_every_steps=100), str(tmp_path))  # found at the step-20 save
    assert err.value.step == 13
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10"]  # nothing saved after the bad step


def test_checkpoint_of_another_model_fails_with_the_first_mismatching_key(trained):
    workdir, _ = trained
    config = tiny_config()
    config.model.width_mult = 0.5
    with pytest.raises(ValueError, match=r"does not fit the model: params/stem_bn/bias has shape "
                                         r"\(8,\) in the checkpoint but \(16,\) in the model"):
        train_and_evaluate(config, workdir)


def _save_converted(directory, params, batch_stats, config, num_classes):
    from efficientnet_jax.training.experiment import build_model
    from efficientnet_jax.weights.checkpoint import make_metadata, save_converted

    spec = build_model(config, num_classes).spec
    variables = {"params": params, "batch_stats": batch_stats}
    save_converted(str(directory), variables, make_metadata(spec, config.model_name, "timm", None, variables))
    return str(directory)


def test_converted_weights_evaluate_as_is_and_fine_tune_with_a_new_head(trained, tmp_path):
    from efficientnet_jax.training import experiment

    workdir, results = trained
    state = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(SMOKE_STEPS), "state"))
    params, stats = jax.tree.map(np.asarray, state["params"]), jax.tree.map(np.asarray, state["batch_stats"])
    # (1) The run's own weights as converted weights: eval.py's no-training path gives the run's accuracy.
    same = _save_converted(tmp_path / "same", params, stats, tiny_config(), 10)
    direct = evaluate_checkpoint(tiny_config(init_from=same), None)
    assert direct["top1"] == pytest.approx(results["top1"])
    assert direct["loss"] == pytest.approx(results["loss"], rel=1e-5)
    # (2) Weights with a 1000-class head: fine-tuning on 10 classes keeps the body, re-initialises the head.
    head = {"kernel": np.ones((params["classifier"]["kernel"].shape[0], 1000), np.float32),
            "bias": np.ones(1000, np.float32)}
    other = _save_converted(tmp_path / "imagenet_head", {**params, "classifier": head}, stats, tiny_config(), 1000)
    config = tiny_config(init_from=other)
    merged = experiment.load_pretrained(experiment.resolve(config), other)
    np.testing.assert_array_equal(merged["params"]["stem_conv"]["kernel"], params["stem_conv"]["kernel"])
    np.testing.assert_array_equal(merged["batch_stats"]["head_bn"]["var"], stats["head_bn"]["var"])
    assert merged["params"]["classifier"]["kernel"].shape[1] == 10
    assert not np.any(np.asarray(merged["params"]["classifier"]["bias"]) == 1.0)  # fresh, not the loaded ones
    with pytest.raises(ValueError, match=r"classifier/(kernel|bias) has shape .*1000.* in the weights"):
        evaluate_checkpoint(config, None)  # evaluating as-is needs a head for these classes
    finished = train_and_evaluate(config, str(tmp_path / "finetune"))
    assert finished["step"] == SMOKE_STEPS and np.isfinite(finished["loss"])


def test_profiler_traces_the_requested_steps(tmp_path):
    train_and_evaluate(tiny_config(profile_start_step=3, profile_num_steps=2), str(tmp_path))
    traces = glob.glob(str(tmp_path / "profile" / "**" / "*.xplane.pb"), recursive=True)
    assert traces and os.path.getsize(traces[0]) > 0
