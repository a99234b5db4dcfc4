"""Training as users run it (train.py / eval.py subprocesses) across device and process counts.

- 1 device vs 8 simulated CPU devices vs 2 processes joined by jax.distributed (gloo CPU
  collectives) at the same global batch: the same losses to float tolerance (growing with the
  step, see assert_same_losses). `input_shards=2`
  makes every run read the data as the 2-process run does (see training/inputs.py).
- A checkpoint written on 8 devices restores and continues on 1 device.
- SIGKILL at an arbitrary step, then the same command again: final parameters bitwise equal to
  the uninterrupted run.
- eval.py prints the metrics as one JSON object on its last stdout line.
All runs share one program per device count through the persistent compilation cache.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from train_helpers import CACHE_DIR, SMOKE_FLAGS
from train_helpers import SMOKE_STEPS as STEPS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAGS = SMOKE_FLAGS + ["--config.tensorboard=False"]


def env(devices=1, **extra):
    """This process's environment (1-device runs then reuse its compiled programs) on N CPU devices."""
    e = dict(os.environ)
    e.update({
        "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": CACHE_DIR, "TF_CPP_MIN_LOG_LEVEL": "2",
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    })
    if devices > 1:  # read when JAX starts; 1-device runs keep this process's flags (part of the cache key)
        e["XLA_FLAGS"] = (e.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
    e.update(extra)
    return e


def start(script, workdir, *flags, **env_kw):
    log = open(os.path.join(os.path.dirname(workdir), os.path.basename(workdir) + f".{script}.log"), "ab")
    return subprocess.Popen([sys.executable, script, *FLAGS, f"--workdir={workdir}", *flags], cwd=ROOT,
                            env=env(**env_kw), stdout=subprocess.PIPE if script == "eval.py" else log, stderr=log)


def finish(proc, timeout=400):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{proc.args} exited with {proc.returncode}; see its .log next to the workdir"
    return out


def run(script, workdir, *flags, **env_kw):
    return finish(start(script, workdir, *flags, **env_kw))


def losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return {r["step"]: r["train/loss"] for r in map(json.loads, f) if "train/loss" in r}


def params(workdir, step):
    return ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))["params"]


def assert_same_losses(got, want, name=""):
    """Per-step losses equal up to float32 reassociation, which compounds with every update.

    Device counts change only the order of reductions (gradient all-reduce, cross-replica BN
    statistics): ~3e-7 relative at step 1, drifting to ~3e-5 by step 30 on an AVX2 host. The bound
    grows with the step (2e-6 per step, 6e-5 at step 30), still far below what a real fault (an
    unaveraged gradient, per-device BN statistics, a skipped or repeated batch) does to a loss.
    """
    steps = sorted(want)
    assert sorted(got) == steps, name
    g, w = np.array([got[s] for s in steps]), np.array([want[s] for s in steps])
    rel = np.abs(g - w) / np.abs(w)
    bound = 2e-6 * np.array(steps, np.float64)
    bad = [f"step {s}: {a} vs {b} (rel {r:.1e} > {t:.1e})" for s, a, b, r, t in zip(steps, g, w, rel, bound) if r > t]
    assert not bad, f"{name}: " + "; ".join(bad)


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs of the same training at once: 1 device, 8 devices, 2 processes x 1 device."""
    base = tmp_path_factory.mktemp("mp")
    dirs = {k: str(base / k) for k in ("one", "eight", "two_proc")}
    port = free_port()
    procs = [start("train.py", dirs["one"]), start("train.py", dirs["eight"], devices=8)]
    procs += [start("train.py", dirs["two_proc"], "--distributed", JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                    JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)) for i in range(2)]
    for p in procs:
        finish(p)
    return base, dirs


def test_one_device_eight_devices_and_two_processes_give_the_same_losses(runs):
    _, dirs = runs
    ref = losses(dirs["one"])
    assert sorted(ref) == list(range(1, STEPS + 1))
    for name in ("eight", "two_proc"):
        assert_same_losses(losses(dirs[name]), ref, name)
    cfg = json.load(open(os.path.join(dirs["two_proc"], "config.json")))["resolved"]
    assert (cfg["devices"], cfg["processes"]) == (2, 2)
    assert json.load(open(os.path.join(dirs["eight"], "config.json")))["resolved"]["devices"] == 8


def test_eight_device_checkpoint_continues_on_one_device_and_sigkill_resume_is_exact(runs):
    base, dirs = runs
    # (a) Continue the 8-device run from its step-10 checkpoint on 1 device.
    moved = str(base / "eight_to_one")
    shutil.copytree(dirs["eight"], moved)
    for step in (20, 30):
        shutil.rmtree(os.path.join(moved, "checkpoints", str(step)))
    os.remove(os.path.join(moved, "metrics.jsonl"))
    continued = start("train.py", moved)
    # (b) Meanwhile: SIGKILL a 1-device run in the middle of training.
    killed_dir = str(base / "killed")
    victim = start("train.py", killed_dir)
    jsonl, killed_at, deadline = os.path.join(killed_dir, "metrics.jsonl"), None, time.time() + 300
    while killed_at is None and time.time() < deadline and victim.poll() is None:
        done = losses(killed_dir) if os.path.exists(jsonl) else {}
        if done and max(done) >= 17:
            victim.send_signal(signal.SIGKILL)
            killed_at = max(done)
        time.sleep(0.02)
    victim.wait()
    assert killed_at is not None and killed_at < STEPS, "the run ended before it could be killed"
    assert victim.returncode == -signal.SIGKILL
    finish(continued)
    run("train.py", killed_dir)  # the same command again: resumes from the last complete checkpoint

    ref, cont = losses(dirs["one"]), losses(moved)
    assert sorted(cont) == list(range(11, STEPS + 1))  # resumed at 10 on one device
    assert_same_losses(cont, {s: ref[s] for s in cont}, "8-device checkpoint continued on 1 device")
    assert os.path.isdir(os.path.join(moved, "checkpoints", str(STEPS)))
    ref_params = params(dirs["one"], STEPS)
    # Bitwise: the same program on the same device count, whatever step the kill hit.
    resumed = params(killed_dir, STEPS)
    assert jax.tree.structure(resumed) == jax.tree.structure(ref_params)
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(ref_params)):
        np.testing.assert_array_equal(a, b, err_msg=f"killed at step {killed_at}")


def test_eval_py_prints_one_json_line_matching_the_final_eval(runs):
    _, dirs = runs
    out = run("eval.py", dirs["one"]).decode().strip().splitlines()
    result = json.loads(out[-1])
    with open(os.path.join(dirs["one"], "metrics.jsonl")) as f:
        final = [r for r in map(json.loads, f) if "eval/top1" in r][-1]
    for key in ("top1", "top5", "loss", "ema_top1", "ema_top5", "ema_loss"):
        assert result[key] == pytest.approx(final[f"eval/{key}"], rel=1e-6), key
    assert result["step"] == STEPS
    best = json.loads(run("eval.py", dirs["one"], "--checkpoint=10").decode().strip().splitlines()[-1])
    assert best["step"] == 10 and "ema_top1" in best
