"""Gather a sweep's trials into results.csv, results.md and a top-1 vs multiply-adds plot."""

from __future__ import annotations

import csv
import json
import pathlib
from typing import Dict, List, Optional, Sequence

from efficientnet_jax.models import create_model
from efficientnet_jax.models.complexity import count_macs, count_params
from efficientnet_jax.sweeps.hyper import Trial
from efficientnet_jax.sweeps.runner import TRIAL_FILE, format_value, trial_name

COLUMNS = ["trial", "params", "gmacs", "final_top1", "best_top1", "final_ema_top1", "best_ema_top1", "wall_s", "status"]


def _read_jsonl(path: pathlib.Path) -> List[Dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill: the rest of the file is still good
    return rows


def model_cost(trial_dir: pathlib.Path) -> Dict[str, Optional[float]]:
    """Parameters and GMACs of the trial's model, from the config train.py saved in its workdir."""
    cfg_file = trial_dir / "config.json"
    if not cfg_file.is_file():
        return {"params": None, "gmacs": None}
    saved = json.loads(cfg_file.read_text())
    cfg, resolved = saved["config"], saved["resolved"]
    overrides = {k: v for k, v in cfg["model"].items() if v is not None}
    model = create_model(cfg["model_name"], num_classes=resolved["num_classes"], **overrides)
    return {"params": count_params(model), "gmacs": count_macs(model, resolved["eval_image_size"]) / 1e9}


def trial_result(workdir: str, overrides: Trial) -> Dict:
    """One row: overrides, model cost, final and best top-1 (raw and EMA), wall time, status."""
    trial_dir = pathlib.Path(workdir) / trial_name(overrides)
    evals = [r for r in _read_jsonl(trial_dir / "metrics.jsonl") if "eval/top1" in r]
    row: Dict = {"trial": trial_name(overrides), **{k: format_value(v) for k, v in overrides.items()}}
    row.update(model_cost(trial_dir))
    for key, name in (("eval/top1", "top1"), ("eval/ema_top1", "ema_top1")):
        values = [r[key] for r in evals if key in r]
        row[f"final_{name}"] = values[-1] if values else None
        row[f"best_{name}"] = max(values) if values else None
    record = trial_dir / TRIAL_FILE
    row["wall_s"] = json.loads(record.read_text())["wall_s"] if record.is_file() else None
    row["status"] = "done" if record.is_file() else ("partial" if evals else "not run")
    return row


def gather(workdir: str, trials: Sequence[Trial]) -> List[Dict]:
    return [trial_result(workdir, t) for t in trials]


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def write_tables(workdir: str, rows: List[Dict]) -> Dict[str, str]:
    """results.csv and results.md in `workdir`; returns their paths."""
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in COLUMNS]
    header = ["trial"] + keys + COLUMNS[1:]
    out = pathlib.Path(workdir)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    md = ["| " + " | ".join(h.replace("_", " ") for h in header[1:]) + " |", "|" + "---|" * (len(header) - 1)]
    md += ["| " + " | ".join(_fmt(r.get(h)) for h in header[1:]) + " |" for r in rows]
    (out / "results.md").write_text("\n".join(md) + "\n")
    return {"csv": str(out / "results.csv"), "md": str(out / "results.md")}


def short_labels(trials: Sequence[str]) -> List[str]:
    """Legend labels: only the overrides that differ between trials, without the `model.` prefix.

    `eval_image_size` is dropped when it equals `image_size` (every shipped sweep sets both).
    """
    parsed = [dict(kv.split("=", 1) for kv in t.split(",") if "=" in kv) for t in trials]
    keys = [k for k in dict.fromkeys(k for d in parsed for k in d)
            if len({d.get(k) for d in parsed}) > 1
            and not (k == "eval_image_size" and all(d.get(k) == d.get("image_size") for d in parsed))]
    labels = []
    for t, d in zip(trials, parsed):
        parts = [f"{k.removeprefix('config.').removeprefix('model.')}={d[k]}" for k in keys if k in d]
        labels.append(" ".join(parts) or t or "base")
    return labels


def plot(workdir: str, rows: List[Dict], title: str = "") -> Optional[str]:
    """top-1 (EMA when present) against GMACs, one numbered point per finished trial -> results.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(r["gmacs"], r["best_ema_top1"] if r.get("best_ema_top1") is not None else r["best_top1"], r["trial"])
           for r in rows if r.get("gmacs") is not None and r.get("best_top1") is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
    for i, ((x, y, _), label) in enumerate(zip(pts, short_labels([p[2] for p in pts])), start=1):
        ax.scatter([x * 1e3], [100 * y], s=40, label=f"{i}: {label}")
        ax.annotate(str(i), (x * 1e3, 100 * y), fontsize=8, xytext=(4, 3), textcoords="offset points")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    ax.set_xlabel("multiply-adds per image (MMACs)")
    ax.set_ylabel("held-out top-1 (%)")
    ax.set_title(title or pathlib.Path(workdir).name)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = pathlib.Path(workdir) / "results.png"
    fig.savefig(path)
    plt.close(fig)
    return str(path)
