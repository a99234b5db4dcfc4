"""Run an ablation sweep and tabulate it.

    python -m efficientnet_jax.tools.sweep --config=configs/sweeps/scaling_ablation.py --workdir=DIR
        [--parallel N | --ray ADDRESS | --dry-run] [--only-gather]

Each trial is a real `train.py --config=SWEEP --workdir=DIR/TRIAL --config.KEY=VALUE ...` run.
Re-running the command skips finished trials and resumes interrupted ones. Results land in
DIR/results.csv, DIR/results.md and DIR/results.png (top-1 vs multiply-adds).
"""

from __future__ import annotations

import shlex
import sys

from absl import app, flags

from efficientnet_jax.sweeps import results, runner
from efficientnet_jax.sweeps.hyper import expand_sweep

flags.DEFINE_string("config", None, "Sweep config file (a config with get_hyper(h)).", required=True)
flags.DEFINE_string("workdir", None, "Directory holding one sub-directory per trial.", required=True)
flags.DEFINE_integer("parallel", 1, "Trials to run at once on this machine (one device group each).")
flags.DEFINE_string("ray", None, "Run trials on the Ray cluster at this address ('local' starts one here).")
flags.DEFINE_bool("dry_run", False, "Print the trial commands (for SLURM, XManager, TPU queues) and exit.")
flags.DEFINE_bool("only_gather", False, "Do not run anything; rebuild the tables and plot.")
FLAGS = flags.FLAGS


def main(argv) -> int:
    del argv
    trials = expand_sweep(FLAGS.config)
    if FLAGS.dry_run:
        for t in trials:
            print(shlex.join(runner.trial_command(FLAGS.config, f"{FLAGS.workdir}/{runner.trial_name(t)}", t)))
        return 0
    if not FLAGS.only_gather:
        if FLAGS.ray:
            records = runner.run_ray(FLAGS.config, FLAGS.workdir, trials, FLAGS.ray)
        else:
            records = runner.run_local(FLAGS.config, FLAGS.workdir, trials, FLAGS.parallel)
        failed = [r for r in records if r["returncode"] != 0]
    else:
        failed = []
    rows = results.gather(FLAGS.workdir, trials)
    paths = results.write_tables(FLAGS.workdir, rows)
    png = results.plot(FLAGS.workdir, rows, title=FLAGS.config)
    print(open(paths["md"]).read())
    print(f"wrote {paths['csv']}, {paths['md']}" + (f", {png}" if png else ""))
    for r in failed:
        print(f"FAILED: {runner.trial_name(r['overrides'])} (see its train.log)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
