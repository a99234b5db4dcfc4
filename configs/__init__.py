"""Experiment configs: `python train.py --config=configs/<variant>.py[:smoke] --workdir=DIR`."""
