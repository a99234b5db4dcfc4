"""End to end: a 2-trial sweep of real train.py runs on a local Ray instance, then resumed locally."""

import csv
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SWEEP = str(pathlib.Path(__file__).with_name("tiny_sweep.py"))


def _sweep(workdir, *extra):
    return subprocess.run(
        [sys.executable, "-m", "efficientnet_jax.tools.sweep", f"--config={SWEEP}", f"--workdir={workdir}", *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=900,
    )


def test_dry_run_prints_one_command_per_trial(tmp_path):
    proc = _sweep(tmp_path, "--dry_run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all("train.py" in l and "--config.model.act=" in l for l in lines)
    assert not any(tmp_path.iterdir())  # nothing ran


def test_ray_sweep_runs_gathers_and_resumes(tmp_path):
    pytest.importorskip("ray")
    proc = _sweep(tmp_path, "--ray=local")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [r["model.act"] for r in rows] == ["swish", "relu6"]
    for r in rows:
        assert r["status"] == "done" and 0.0 <= float(r["final_top1"]) <= 1.0
        assert int(r["params"]) > 0 and float(r["gmacs"]) > 0
    assert (tmp_path / "results.md").read_text().count("\n") == 4
    assert (tmp_path / "results.png").stat().st_size > 1000

    # Re-running skips finished trials; an unfinished one (no trial.json) runs again and resumes.
    first = tmp_path / "model.act=relu6"
    os.remove(first / "trial.json")
    proc = _sweep(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 of 2 trials already finished; running 1" in proc.stdout + proc.stderr
    assert json.loads((first / "trial.json").read_text())["returncode"] == 0
    assert (first / "train.log").read_text().count("$ ") == 2  # the command ran twice in its workdir
