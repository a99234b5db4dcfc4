"""Smoke tests of benchmarks/: the scripts parse, reject bad flags, and a tiny run yields figures.

Only that figures come out is asserted, never how fast anything ran (the machine is shared).
Ours' training step is left out of the tiny runs: compiling it takes longer than this area's
time budget; bench_train's driver, table and input-pipeline path are exercised with `input`.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "benchmarks")
# Keep the tiny runs from waiting for a quiet machine and from measuring the matmul peak.
TINY = ["--resolution", "32", "--rounds", "1", "--reps", "1", "--target", "0.01", "--warmup", "1",
        "--no-peak", "--max-wait", "0"]


def run(script, *args, timeout=240):
    return subprocess.run([sys.executable, os.path.join(BENCH, script), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


@pytest.mark.parametrize("script,flags", [
    ("bench_inference.py", ["--models", "--ours-variants", "--compile-only", "--batches"]),
    ("bench_train.py", ["--optimizer", "--augment", "--compile-only", "--impls"]),
    ("_worker.py", ["--mode", "--impl"]),
])
def test_help_lists_the_flags(script, flags):
    p = run(script, "--help", timeout=60)
    assert p.returncode == 0, p.stderr
    for flag in flags:
        assert flag in p.stdout


def test_unknown_impl_is_named():
    p = run("bench_inference.py", "--impls", "ours,tensorrt", "--no-peak", timeout=60)
    assert p.returncode != 0 and "tensorrt" in p.stderr


def test_tiny_inference_run_reports_every_impl(tmp_path):
    out = tmp_path / "infer.json"
    p = run("bench_inference.py", "--impls", "ours,ours_plain,ort", "--batches", "1", *TINY, "--json", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ONNX Runtime (timm export)" in p.stdout and "Keras-applications table" in p.stdout
    res = json.loads(out.read_text())
    assert res["info"]["efficientnet_b0"]["params"] == 5_288_548
    for impl in ("ours", "ours_plain", "ort"):
        (r,) = res["results"]["efficientnet_b0"][impl]
        assert r["error"] == "", r["error"]
        assert r["result"]["batches"]["1"]["reps"][0] > 0
        assert r["result"]["time_to_first_step_s"] > 0


def test_tiny_train_run_times_the_input_pipeline(tmp_path):
    out = tmp_path / "train.json"
    p = run("bench_train.py", "--impls", "input", "--batches", "2", "--augment", "none", *TINY, "--json", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "input pipeline alone" in p.stdout
    (r,) = json.loads(out.read_text())["results"]["efficientnet_b0"]["input"]
    assert r["error"] == "" and r["result"]["batches"]["2"]["reps"][0] > 0


def test_windows_mode_alternates_long_lived_workers(tmp_path):
    """--windows: one process per impl, every (window, batch) timed for each impl, the order rotating."""
    out = tmp_path / "windows.json"
    at = TINY.index("--rounds")
    tiny = TINY[:at] + TINY[at + 2:]
    p = run("bench_inference.py", "--impls", "ours,ort", "--batches", "1", "2", *tiny, "--windows", "2",
            "--json", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    windows = [ln for ln in p.stderr.splitlines() if "] window " in ln]
    assert len(windows) == 2, p.stderr
    assert windows[0].split("window 0: ")[1].startswith("ours B1") and windows[1].split("window 1: ")[1].startswith("ort B1")
    assert "- B2: ours over ONNX Runtime (timm export) " in p.stdout and "over 2 windows" in p.stdout
    res = json.loads(out.read_text())["results"]["efficientnet_b0"]
    for impl in ("ours", "ort"):
        (r,) = res[impl]
        assert r["error"] == "", r["error"]
        for b in ("1", "2"):
            reps = r["result"]["batches"][b]["reps"]
            assert len(reps) == 2 and all(t > 0 for t in reps)
        assert r["result"]["time_to_first_step_s"] > 0
