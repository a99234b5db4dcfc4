"""Run the trials of a sweep: one after another, N at a time, or on a Ray cluster.

Each trial is a real `train.py` run in its own workdir whose name spells its overrides. A trial
that finished writes `trial.json` there; re-running the sweep skips it, and an interrupted trial
resumes from its checkpoints because train.py resumes in its workdir.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from efficientnet_jax.sweeps.hyper import Trial

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
TRIAL_FILE = "trial.json"


def format_value(value: Any) -> str:
    """A value as config_flags parses it on the command line."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "(" + ",".join(format_value(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def trial_name(overrides: Trial) -> str:
    """A readable, file-system safe directory name for a trial, e.g. `model.se=False,seed=1`."""
    if not overrides:
        return "base"
    text = ",".join(f"{k}={format_value(v)}" for k, v in sorted(overrides.items()))
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", text)[:200]


def trial_command(config: str, workdir: str, overrides: Trial, python: str = sys.executable) -> List[str]:
    cmd = [python, str(REPO_ROOT / "train.py"), f"--config={config}", f"--workdir={workdir}"]
    cmd += [f"--config.{k}={format_value(v)}" for k, v in sorted(overrides.items())]
    return cmd


def is_finished(trial_dir: pathlib.Path) -> bool:
    return (trial_dir / TRIAL_FILE).is_file()


def run_trial(config: str, trial_dir: str, overrides: Trial, env: Optional[Dict[str, str]] = None) -> Dict:
    """Run one trial to completion (train.py resumes if it was interrupted); record its outcome."""
    trial_dir = pathlib.Path(trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    cmd = trial_command(config, str(trial_dir), overrides)
    start = time.time()
    with open(trial_dir / "train.log", "a") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
    record = {"overrides": overrides, "command": shlex.join(cmd), "returncode": proc.returncode,
              "wall_s": time.time() - start}
    if proc.returncode == 0:
        (trial_dir / TRIAL_FILE).write_text(json.dumps(record, indent=1))
    return record


def _device_env(slot: int, parallel: int) -> Optional[Dict[str, str]]:
    """Give each of `parallel` concurrent trials its own device group (GPUs) or thread share (CPU)."""
    if parallel <= 1:
        return None
    env = dict(os.environ)
    gpus = [g for g in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if g]
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[slot::parallel])
    return env


def run_local(config: str, workdir: str, trials: Sequence[Trial], parallel: int = 1, log=print) -> List[Dict]:
    """Run the unfinished trials locally, `parallel` at a time; returns their records in order."""
    pending = [(i, t) for i, t in enumerate(trials) if not is_finished(pathlib.Path(workdir) / trial_name(t))]
    log(f"{len(trials) - len(pending)} of {len(trials)} trials already finished; running {len(pending)}")
    records: Dict[int, Dict] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = {
            pool.submit(run_trial, config, os.path.join(workdir, trial_name(t)), t, _device_env(n % parallel, parallel)): i
            for n, (i, t) in enumerate(pending)
        }
        for fut in concurrent.futures.as_completed(futures):
            rec = fut.result()
            records[futures[fut]] = rec
            status = "done" if rec["returncode"] == 0 else f"FAILED (exit {rec['returncode']})"
            log(f"[{len(records)}/{len(pending)}] {trial_name(rec['overrides'])}: {status} in {rec['wall_s']:.0f}s")
    return [records[i] for i in sorted(records)]


def run_ray(config: str, workdir: str, trials: Sequence[Trial], address: str, log=print) -> List[Dict]:
    """Run the unfinished trials as Ray tasks (one CPU each; `workdir` must be shared by the nodes).

    `address` is a Ray cluster address ('auto', 'ray://host:10001', ...) or 'local' for a Ray
    instance started here.
    """
    import ray

    if not ray.is_initialized():
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    remote_trial = ray.remote(num_cpus=1)(run_trial)
    pending = [t for t in trials if not is_finished(pathlib.Path(workdir) / trial_name(t))]
    log(f"{len(trials) - len(pending)} of {len(trials)} trials already finished; {len(pending)} sent to Ray")
    refs = [remote_trial.remote(config, os.path.join(workdir, trial_name(t)), t) for t in pending]
    records = ray.get(refs)
    for rec in records:
        status = "done" if rec["returncode"] == 0 else f"FAILED (exit {rec['returncode']})"
        log(f"{trial_name(rec['overrides'])}: {status} in {rec['wall_s']:.0f}s")
    return records
